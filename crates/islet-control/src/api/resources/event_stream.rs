//! Event streams (contract §10.4): the outbox as server-sent events, for tenants who would
//! rather pull than receive webhooks.
//!
//! `GET /events/stream?types=sandbox.*,quota.exceeded&external_user_id=u` and
//! `GET /tenant/events/stream?types=…&scope=all|external_user:{id}|workspace:{id}`. Each event
//! is `id: <position>`, `event: <type>` and `data:` the same JSON body a webhook receives, with
//! `type` inside it. A reconnecting client sends `Last-Event-ID` (or `?after=`) and resumes
//! after that position; a fresh one starts with events from now on.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use islet_store::EventRow;
use islet_types::{SandboxId, TenantId};
use islet_webhooks::catalogue;
use islet_webhooks::payload::{event_body, PreviewLinks};
use serde::Deserialize;
use tokio_stream::wrappers::ReceiverStream;

use crate::api::extract::Caller;
use crate::api::extract::{IdPath, Query};
use crate::error::ApiError;
use crate::state::AppState;

/// How often a quiet stream checks the outbox when no write signalled.
const POLL: Duration = Duration::from_secs(1);
/// Event streams one tenant may hold open at once.
pub(crate) const MAX_STREAMS_PER_TENANT: usize = 20;

/// A tenant's hold on one of its stream slots, given back on drop.
struct Slot {
    state: AppState,
    tenant: TenantId,
}

impl Slot {
    fn take(state: &AppState, tenant: &TenantId) -> Result<Self, ApiError> {
        let mut open = state.streams.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(tenant.clone()).or_default();
        if *n >= MAX_STREAMS_PER_TENANT {
            return Err(ApiError::RateLimited(format!(
                "at most {MAX_STREAMS_PER_TENANT} event streams may be open at once"
            )));
        }
        *n += 1;
        Ok(Self { state: state.clone(), tenant: tenant.clone() })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.state.streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.tenant);
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct StreamQuery {
    types: Option<String>,
    external_user_id: Option<String>,
    scope: Option<String>,
    after: Option<String>,
}

/// Who an event must concern to pass the filter.
#[derive(Debug, Clone, PartialEq)]
enum Scope {
    All,
    ExternalUser(String),
    Workspace(String),
    /// One sandbox's events (`GET /sandboxes/{id}/events`).
    Sandbox(SandboxId),
}

struct Filter {
    types: Vec<String>,
    scope: Scope,
}

impl Filter {
    fn parse(q: &StreamQuery) -> Result<Self, ApiError> {
        let types: Vec<String> = q
            .types
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(bad) = types.iter().find(|t| !catalogue::well_formed(t)) {
            return Err(ApiError::validation(
                format!("`{bad}` is not an event name or pattern (`a.b`, `a.*`, `*`)"),
                "types",
            ));
        }
        let mut scope = match q.scope.as_deref() {
            None | Some("") | Some("all") => Scope::All,
            Some(s) => match s.split_once(':') {
                Some(("external_user", id)) if !id.is_empty() => Scope::ExternalUser(id.into()),
                Some(("workspace", id)) if !id.is_empty() => Scope::Workspace(id.into()),
                _ => {
                    return Err(ApiError::validation(
                        "scope must be `all`, `external_user:<id>` or `workspace:<id>`",
                        "scope",
                    ))
                }
            },
        };
        if let Some(user) = q.external_user_id.as_deref().filter(|u| !u.is_empty()) {
            if scope != Scope::All {
                return Err(ApiError::validation(
                    "give either scope or external_user_id, not both",
                    "external_user_id",
                ));
            }
            scope = Scope::ExternalUser(user.into());
        }
        Ok(Self { types, scope })
    }

    fn allows(&self, event: &EventRow) -> bool {
        if !catalogue::filter_allows(&self.types, &event.event_type) {
            return false;
        }
        let data = &event.payload["data"];
        match &self.scope {
            Scope::All => true,
            Scope::ExternalUser(u) => data["external_user_id"].as_str() == Some(u),
            Scope::Workspace(w) => data["external_workspace_id"].as_str() == Some(w),
            Scope::Sandbox(id) => event.sandbox_id.as_deref() == Some(id.as_str()),
        }
    }
}

fn start_after(headers: &HeaderMap, q: &StreamQuery) -> Result<Option<i64>, ApiError> {
    let raw = headers.get("last-event-id").and_then(|v| v.to_str().ok()).or(q.after.as_deref());
    match raw {
        None | Some("") => Ok(None),
        Some(r) => r.parse::<i64>().ok().filter(|n| *n >= 0).map(Some).ok_or_else(|| {
            ApiError::validation("Last-Event-ID / after must be an event position", "after")
        }),
    }
}

pub(crate) async fn stream(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> Result<Response, ApiError> {
    let filter = Filter::parse(&q)?;
    open(state, caller.tenant_id, filter, &headers, &q).await
}

/// `GET /sandboxes/{id}/events?types=&after=`: one sandbox's lifecycle events, as the tenant
/// stream sends them.
pub(crate) async fn sandbox_stream(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<SandboxId>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> Result<Response, ApiError> {
    // Unknown or foreign sandboxes fail before the stream starts.
    state.store.get_sandbox(&caller.tenant_id, &id).await?;
    if q.scope.is_some() || q.external_user_id.is_some() {
        return Err(ApiError::validation("a sandbox's stream is scoped to it already", "scope"));
    }
    let filter = Filter { scope: Scope::Sandbox(id), ..Filter::parse(&q)? };
    open(state, caller.tenant_id, filter, &headers, &q).await
}

async fn open(
    state: AppState,
    tenant: TenantId,
    filter: Filter,
    headers: &HeaderMap,
    q: &StreamQuery,
) -> Result<Response, ApiError> {
    let slot = Slot::take(&state, &tenant)?;
    let after = match start_after(headers, q)? {
        Some(n) => n,
        None => state.store.latest_event_seq().await?,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(64);
    tokio::spawn(follow(state, tenant, filter, after, tx, slot));
    let sse = Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)));
    Ok(sse.into_response())
}

/// Send the tenant's events after `after` until the client goes away.
async fn follow(
    state: AppState,
    tenant: TenantId,
    filter: Filter,
    mut after: i64,
    tx: tokio::sync::mpsc::Sender<Result<Event, Infallible>>,
    _slot: Slot,
) {
    let links = crate::webhook_links::ControlLinks(state.clone());
    let urls = links.for_tenant(&tenant).await;
    let mut signal = state.store.event_signal();
    loop {
        signal.borrow_and_update();
        let rows = match state.store.events_after(&tenant, after, 200).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "event stream read failed");
                return;
            }
        };
        for row in &rows {
            after = row.seq;
            if !filter.allows(row) {
                continue;
            }
            let body = event_body(row, &row.event_type, None, urls.as_ref());
            let event = Event::default()
                .id(row.seq.to_string())
                .event(row.event_type.clone())
                .data(body.to_string());
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
        if !rows.is_empty() {
            continue;
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = state.shutdown.cancelled() => return,
            _ = signal.changed() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

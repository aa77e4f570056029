//! `GET /sandboxes/{id}/readiness` and its SSE stream, which the SDK's `wait_until_ready` uses.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures::Stream;
use islet_types::SandboxState;

use super::view::Readiness;
use crate::api::extract::Caller;
use crate::api::extract::IdPath;
use crate::api::wire::{self, Data};
use crate::error::ApiError;
use crate::state::AppState;
use islet_types::SandboxId;

const STREAM_LIMIT: Duration = Duration::from_secs(120);

pub(crate) async fn readiness(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<SandboxId>,
) -> Result<Json<Data<Readiness>>, ApiError> {
    let record = state.store.get_sandbox(&caller.tenant_id, &id).await?;
    Ok(wire::data(Readiness {
        ready: record.state == SandboxState::Running,
        state: record.state.as_str(),
    }))
}

pub(crate) async fn stream(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<SandboxId>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // Unknown or foreign sandboxes fail before the stream starts.
    state.store.get_sandbox(&caller.tenant_id, &id).await?;
    let tenant = caller.tenant_id;
    let events = futures::stream::unfold(Some(tokio::time::Instant::now()), move |started| {
        let (state, tenant, id) = (state.clone(), tenant.clone(), id.clone());
        async move {
            let started = started?;
            let mut delay = Duration::from_millis(10);
            loop {
                let record = state.store.get_sandbox(&tenant, &id).await.ok();
                // A sandbox on its way holds the stream until it is ready; one that will not
                // become ready by itself (stopped, paused, failed, gone) answers `timeout` at
                // once, with its state, which the SDK reads as "not ready" and stops waiting.
                let (name, done) = match record.as_ref().map(|r| r.state) {
                    Some(SandboxState::Running) => ("ready", true),
                    Some(SandboxState::Creating) if started.elapsed() < STREAM_LIMIT => ("", false),
                    _ => ("timeout", true),
                };
                if done {
                    let data = serde_json::json!({
                        "type": name,
                        "state": record.map(|r| r.state.as_str()),
                    });
                    return Some((Ok(Event::default().event(name).data(data.to_string())), None));
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(200));
            }
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("keepalive")))
}

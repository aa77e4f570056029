//! Webhook endpoints (contract §10.1): create (the secret is shown once), list, get, update,
//! delete, rotate the secret, send a test event, the delivery log and replays, and the event
//! catalogue.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use islet_store::{DeliveryRecord, NewDelivery, NewWebhook, WebhookPatch, WebhookRecord};
use islet_types::time::{now_millis, rfc3339};
use islet_types::{DeliveryId, WebhookId};
use islet_webhooks::deliver::RESERVED_HEADERS;
use islet_webhooks::signing::Secret;
use islet_webhooks::target::{check_url, resolve_checked, TargetError};
use islet_webhooks::{catalogue, payload, schedule};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::api::extract::body;
use crate::api::extract::Caller;
use crate::api::extract::IdPath;
use crate::api::extract::{Query, RawBody};
use crate::api::wire::{self, Data};
use crate::error::ApiError;
use crate::state::AppState;

const MAX_HEADERS: usize = 20;
const MAX_HEADER_VALUE: usize = 1024;
const MAX_NAME: usize = 200;
const MAX_EVENTS: usize = 50;
const MAX_URL: usize = 2048;
/// Endpoints one tenant may have: enough for environments and fan-out, and a bound on what one
/// tenant's events cost the dispatcher.
pub(crate) const MAX_WEBHOOKS_PER_TENANT: usize = 25;
/// How long the previous secret keeps signing after a rotation, unless the caller says.
const DEFAULT_GRACE_SEC: u64 = 24 * 3600;
const MAX_GRACE_SEC: u64 = 7 * 24 * 3600;

/// The endpoint as a tenant sees it: never the secret, only its first characters.
#[derive(Debug, Serialize)]
pub(crate) struct WebhookView {
    pub id: WebhookId,
    pub url: String,
    pub name: Option<String>,
    pub events: Vec<String>,
    pub headers: BTreeMap<String, String>,
    pub metadata: Map<String, Value>,
    pub retry_count: u32,
    pub active: bool,
    /// `active`, `paused` (by the tenant) or `disabled` (by Islet: `disabled_reason` says why).
    pub status: &'static str,
    pub disabled_reason: Option<String>,
    pub secret_preview: String,
    /// While the secret before a rotation still signs.
    pub previous_secret_expires_at: Option<String>,
    pub failing_since: Option<String>,
    pub last_success_at: Option<String>,
    pub last_failure_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The secret, only in the answer that made it (create, rotate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// The answer that shows a secret: in `data` and again at the top level, where the SDK reads
/// it.
#[derive(Debug, Serialize)]
pub(crate) struct WithSecret {
    pub data: WebhookView,
    pub secret: String,
}

/// `GET /webhooks`.
#[derive(Debug, Serialize)]
pub(crate) struct WebhookList {
    pub data: Vec<WebhookView>,
    pub total: usize,
}

/// One delivery and every attempt at it.
#[derive(Debug, Serialize)]
pub(crate) struct DeliveryView {
    pub id: DeliveryId,
    pub webhook_id: WebhookId,
    pub event_id: String,
    pub event_type: String,
    /// `event_type` again, as the SDK names it.
    pub event: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: u32,
    pub max_attempts: u32,
    pub next_attempt_at: Option<String>,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub replay_of: Option<DeliveryId>,
    pub created_at: String,
    pub delivered_at: Option<String>,
    pub finished_at: Option<String>,
    pub attempt_log: Vec<AttemptView>,
}

#[derive(Debug, Serialize)]
pub(crate) struct AttemptView {
    pub attempt: u32,
    pub started_at: String,
    pub duration_ms: i64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    /// The first 1 KiB of the answer.
    pub response: Option<String>,
}

/// `GET /webhooks/{id}/deliveries`: newest first, cursor-paged.
#[derive(Debug, Serialize)]
pub(crate) struct DeliveryPage {
    pub data: Vec<DeliveryView>,
    pub next_cursor: Option<String>,
}

/// `POST /webhooks/{id}/test`: how the one attempt went.
#[derive(Debug, Serialize)]
pub(crate) struct TestResult {
    pub delivered: bool,
    pub delivery_id: DeliveryId,
    pub status: String,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: Option<i64>,
    pub response: Option<String>,
}

/// `POST /webhooks/{id}/deliveries/{delivery}/replay`: the new delivery, queued.
#[derive(Debug, Serialize)]
pub(crate) struct Replayed {
    pub id: DeliveryId,
    pub delivery_id: DeliveryId,
    pub replay_of: DeliveryId,
    pub replay_id: Option<String>,
    pub webhook_id: WebhookId,
    pub event_id: String,
    pub status: &'static str,
}

pub(crate) fn view(w: &WebhookRecord) -> WebhookView {
    let status = if w.active {
        "active"
    } else if w.disabled_reason.is_some() {
        "disabled"
    } else {
        "paused"
    };
    let preview: String = w.secret.chars().take(10).collect();
    WebhookView {
        id: w.id.clone(),
        url: w.url.clone(),
        name: w.name.clone(),
        events: w.events.clone(),
        headers: w.headers.clone(),
        metadata: w.metadata.clone(),
        retry_count: w.retry_count,
        active: w.active,
        status,
        disabled_reason: w.disabled_reason.clone(),
        secret_preview: format!("{preview}…"),
        previous_secret_expires_at: w
            .previous_secret_until
            .filter(|u| *u > now_millis())
            .map(rfc3339),
        failing_since: w.failing_since.map(rfc3339),
        last_success_at: w.last_success_at.map(rfc3339),
        last_failure_at: w.last_failure_at.map(rfc3339),
        created_at: rfc3339(w.created_at),
        updated_at: rfc3339(w.updated_at),
        secret: None,
    }
}

fn with_secret(w: &WebhookRecord, secret: &Secret) -> WithSecret {
    let secret = secret.expose().to_owned();
    WithSecret { data: WebhookView { secret: Some(secret.clone()), ..view(w) }, secret }
}

fn delivery_view(d: &DeliveryRecord) -> DeliveryView {
    let attempt_log = d
        .attempt_log
        .iter()
        .map(|a| AttemptView {
            attempt: a.attempt,
            started_at: rfc3339(a.started_at),
            duration_ms: a.duration_ms,
            status_code: a.status,
            error: a.error.clone(),
            response: a.response.clone(),
        })
        .collect();
    DeliveryView {
        id: d.id.clone(),
        webhook_id: d.webhook_id.clone(),
        event_id: d.event_id.clone(),
        event_type: d.event_type.clone(),
        event: d.event_type.clone(),
        status: d.state.clone(),
        attempts: d.attempts,
        max_attempts: d.max_attempts,
        next_attempt_at: d.next_attempt_at.map(rfc3339),
        status_code: d.last_status,
        error: d.last_error.clone(),
        replay_of: d.replay_of.clone(),
        created_at: rfc3339(d.created_at),
        delivered_at: d.finished_at.filter(|_| d.state == "delivered").map(rfc3339),
        finished_at: d.finished_at.map(rfc3339),
        attempt_log,
    }
}

/// The fields create and update accept. `Option<Option<…>>` tells "absent" from `null`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WebhookBody {
    #[serde(default, deserialize_with = "present")]
    url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    events: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    headers: Option<Option<BTreeMap<String, String>>>,
    #[serde(default, deserialize_with = "present")]
    metadata: Option<Option<serde_json::Map<String, Value>>>,
    #[serde(default, deserialize_with = "present")]
    retry_count: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    active: Option<Option<bool>>,
}

/// A field that may be left out but not sent as `null` (only `name` can be cleared).
fn not_null<T>(value: Option<Option<T>>, field: &'static str) -> Result<Option<T>, ApiError> {
    match value {
        None => Ok(None),
        Some(Some(v)) => Ok(Some(v)),
        Some(None) => Err(ApiError::validation(format!("{field} cannot be null"), field)),
    }
}

fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

async fn checked_url(state: &AppState, raw: &str) -> Result<String, ApiError> {
    if raw.len() > MAX_URL {
        return Err(ApiError::validation("url must be at most 2048 bytes", "url"));
    }
    let policy = state.config.webhooks.policy;
    let url = check_url(raw, policy).map_err(|e| ApiError::validation(e.to_string(), "url"))?;
    if let Some(url::Host::Domain(host)) = url.host() {
        // Refused now when it can only reach private addresses; a name that does not resolve
        // yet is accepted and checked again on every delivery.
        if let Err(e @ TargetError::ResolvesPrivate(_)) = resolve_checked(host, policy).await {
            return Err(ApiError::validation(e.to_string(), "url"));
        }
    }
    Ok(url.to_string())
}

fn checked_events(events: &[String]) -> Result<Vec<String>, ApiError> {
    if events.is_empty() || events.len() > MAX_EVENTS {
        return Err(ApiError::validation(
            "events must list 1 to 50 event names or patterns",
            "events",
        ));
    }
    catalogue::validate(events).map_err(|e| ApiError::validation(e.to_string(), "events"))
}

fn checked_headers(
    headers: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ApiError> {
    if headers.len() > MAX_HEADERS {
        return Err(ApiError::validation("at most 20 headers", "headers"));
    }
    let mut out = BTreeMap::new();
    for (name, value) in headers {
        let parsed = http::HeaderName::try_from(name.as_str()).map_err(|_| {
            ApiError::validation(format!("`{name}` is not a header name"), "headers")
        })?;
        if RESERVED_HEADERS.contains(&parsed.as_str()) || parsed.as_str().starts_with("x-miosa-") {
            return Err(ApiError::validation(
                format!("header `{name}` is set by the dispatcher and cannot be replaced"),
                "headers",
            ));
        }
        if value.len() > MAX_HEADER_VALUE || http::HeaderValue::try_from(value.as_str()).is_err() {
            return Err(ApiError::validation(
                format!("header `{name}` has an invalid value (at most 1024 visible characters)"),
                "headers",
            ));
        }
        out.insert(parsed.as_str().to_owned(), value);
    }
    Ok(out)
}

fn checked_name(name: Option<String>) -> Result<Option<String>, ApiError> {
    match name {
        Some(n) if n.chars().count() > MAX_NAME || n.chars().any(char::is_control) => {
            Err(ApiError::validation("name must be at most 200 printable characters", "name"))
        }
        other => Ok(other),
    }
}

fn checked_metadata(
    metadata: serde_json::Map<String, Value>,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    if Value::Object(metadata.clone()).to_string().len() > 16 * 1024 {
        return Err(ApiError::validation("metadata must be under 16 KiB", "metadata"));
    }
    Ok(metadata)
}

fn checked_retries(retry_count: i64) -> Result<u32, ApiError> {
    u32::try_from(retry_count)
        .ok()
        .filter(|r| *r <= schedule::MAX_RETRIES)
        .ok_or_else(|| ApiError::validation("retry_count must be 0..=10", "retry_count"))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    RawBody(bytes): RawBody,
) -> Result<Response, ApiError> {
    let b: WebhookBody = body::parse(&bytes)?;
    let raw_url =
        not_null(b.url, "url")?.ok_or_else(|| ApiError::validation("url is required", "url"))?;
    let url = checked_url(&state, &raw_url).await?;
    let events = not_null(b.events, "events")?.unwrap_or_else(|| vec!["*".into()]);
    let events = checked_events(&events)?;
    let secret = Secret::generate();
    let new = NewWebhook {
        url,
        name: checked_name(b.name.flatten())?,
        events,
        headers: checked_headers(not_null(b.headers, "headers")?.unwrap_or_default())?,
        metadata: checked_metadata(not_null(b.metadata, "metadata")?.unwrap_or_default())?,
        retry_count: not_null(b.retry_count, "retry_count")?
            .map(checked_retries)
            .transpose()?
            .unwrap_or(schedule::DEFAULT_RETRIES),
        active: not_null(b.active, "active")?.unwrap_or(true),
        secret: secret.expose().to_owned(),
    };
    let record =
        state.store.create_webhook(&caller.tenant_id, new, MAX_WEBHOOKS_PER_TENANT).await?;
    Ok((StatusCode::CREATED, Json(with_secret(&record, &secret))).into_response())
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<WebhookList>, ApiError> {
    let all = state.store.list_webhooks(&caller.tenant_id).await?;
    let data: Vec<WebhookView> = all.iter().map(view).collect();
    Ok(Json(WebhookList { total: data.len(), data }))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<WebhookId>,
) -> Result<Json<Data<WebhookView>>, ApiError> {
    let w = state.store.get_webhook(&caller.tenant_id, &id).await?;
    Ok(wire::data(view(&w)))
}

pub(crate) async fn update(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<WebhookId>,
    RawBody(bytes): RawBody,
) -> Result<Json<Data<WebhookView>>, ApiError> {
    // The endpoint must exist (for this tenant) before its new values are judged.
    state.store.get_webhook(&caller.tenant_id, &id).await?;
    let b: WebhookBody = body::parse(&bytes)?;
    let url = match not_null(b.url, "url")? {
        Some(raw) => Some(checked_url(&state, &raw).await?),
        None => None,
    };
    let patch = WebhookPatch {
        url,
        name: b.name.map(checked_name).transpose()?,
        events: not_null(b.events, "events")?.as_deref().map(checked_events).transpose()?,
        headers: not_null(b.headers, "headers")?.map(checked_headers).transpose()?,
        metadata: not_null(b.metadata, "metadata")?.map(checked_metadata).transpose()?,
        retry_count: not_null(b.retry_count, "retry_count")?.map(checked_retries).transpose()?,
        active: not_null(b.active, "active")?,
    };
    let w = state.store.update_webhook(&caller.tenant_id, &id, patch).await?;
    if w.active {
        state.webhooks.wake();
    }
    Ok(wire::data(view(&w)))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<WebhookId>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_webhook(&caller.tenant_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RotateBody {
    grace_period_sec: Option<u64>,
}

/// `POST /webhooks/{id}/rotate-secret`: a new secret, shown once; the old one keeps signing
/// (`X-Miosa-Signature-Previous`, and a second `webhook-signature` entry) for the grace period.
pub(crate) async fn rotate_secret(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<WebhookId>,
    RawBody(bytes): RawBody,
) -> Result<Json<WithSecret>, ApiError> {
    state.store.get_webhook(&caller.tenant_id, &id).await?;
    let b: RotateBody = body::parse(&bytes)?;
    let grace = b.grace_period_sec.unwrap_or(DEFAULT_GRACE_SEC);
    if grace > MAX_GRACE_SEC {
        return Err(ApiError::validation(
            "grace_period_sec must be 0..=604800",
            "grace_period_sec",
        ));
    }
    let secret = Secret::generate();
    let until = now_millis() + (grace * 1000) as i64;
    let w = state
        .store
        .rotate_webhook_secret(&caller.tenant_id, &id, secret.expose().to_owned(), until)
        .await?;
    Ok(Json(with_secret(&w, &secret)))
}

/// `POST /webhooks/{id}/test`: one `webhook.test` delivery, attempted once, and its result.
pub(crate) async fn test(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<WebhookId>,
) -> Result<Json<Data<TestResult>>, ApiError> {
    let w = state.store.get_webhook(&caller.tenant_id, &id).await?;
    if !w.active {
        return Err(ApiError::Conflict("the webhook is not active; set active=true first".into()));
    }
    let delivery = DeliveryId::generate();
    let body = payload::test_body(&caller.tenant_id, &id, &delivery, now_millis());
    state
        .store
        .insert_delivery(NewDelivery {
            id: delivery.clone(),
            webhook_id: id.clone(),
            tenant_id: caller.tenant_id.clone(),
            event_id: body["event_id"].as_str().unwrap_or_default().to_owned(),
            event_type: "webhook.test".into(),
            order_key: None,
            body: body.to_string(),
            max_attempts: 1,
            replay_of: None,
            replay_id: None,
        })
        .await?;
    state.webhooks.wake();
    let deadline =
        tokio::time::Instant::now() + state.config.webhooks.timeout + Duration::from_secs(5);
    loop {
        let d = state.store.get_delivery(&caller.tenant_id, &id, &delivery).await?;
        if d.state != "pending" || tokio::time::Instant::now() >= deadline {
            let last = d.attempt_log.last();
            return Ok(wire::data(TestResult {
                delivered: d.state == "delivered",
                delivery_id: d.id.clone(),
                status: d.state.clone(),
                status_code: d.last_status,
                error: d.last_error.clone(),
                duration_ms: last.map(|a| a.duration_ms),
                response: last.and_then(|a| a.response.clone()),
            }));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct DeliveriesQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

pub(crate) async fn deliveries(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<WebhookId>,
    Query(q): Query<DeliveriesQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let limit = match q.limit.as_deref() {
        None => 50,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=200).contains(l))
            .ok_or_else(|| ApiError::validation("limit must be 1..=200", "limit"))?,
    };
    let before =
        match q.cursor.as_deref() {
            None | Some("") => None,
            Some(raw) => Some(raw.parse::<i64>().map_err(|_| {
                ApiError::validation("cursor is not one this API returned", "cursor")
            })?),
        };
    let (rows, next) = state.store.list_deliveries(&caller.tenant_id, &id, limit, before).await?;
    let data = rows.iter().map(delivery_view).collect();
    Ok(Json(DeliveryPage { data, next_cursor: next.map(|n| n.to_string()) }))
}

pub(crate) async fn get_delivery(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<WebhookId>,
    IdPath(delivery): IdPath<DeliveryId>,
) -> Result<Json<Data<DeliveryView>>, ApiError> {
    let d = state.store.get_delivery(&caller.tenant_id, &id, &delivery).await?;
    Ok(wire::data(delivery_view(&d)))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ReplayBody {
    replay_id: Option<String>,
}

/// `POST /webhooks/{id}/deliveries/{delivery}/replay`: send the event again as a new delivery
/// (its own id, `replay_of` naming the original). A `replay_id` makes the call idempotent:
/// reusing one is a 409.
pub(crate) async fn replay(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<WebhookId>,
    IdPath(delivery): IdPath<DeliveryId>,
    RawBody(bytes): RawBody,
) -> Result<Response, ApiError> {
    let of = delivery;
    let b: ReplayBody = body::parse(&bytes)?;
    if let Some(r) = &b.replay_id {
        if r.is_empty() || r.len() > 200 || r.chars().any(char::is_control) {
            return Err(ApiError::validation(
                "replay_id must be 1 to 200 printable characters",
                "replay_id",
            ));
        }
    }
    let webhook = state.store.get_webhook(&caller.tenant_id, &id).await?;
    let original = state.store.get_delivery(&caller.tenant_id, &id, &of).await?;
    if !webhook.active {
        return Err(ApiError::Conflict("the webhook is not active; set active=true first".into()));
    }
    let new_id = DeliveryId::generate();
    let body = payload::replay_body(&original.body, &new_id, &of)
        .ok_or_else(|| ApiError::Internal(format!("stored body of {of} is not JSON")))?;
    state
        .store
        .insert_delivery(NewDelivery {
            id: new_id.clone(),
            webhook_id: id.clone(),
            tenant_id: caller.tenant_id.clone(),
            event_id: original.event_id.clone(),
            event_type: original.event_type.clone(),
            order_key: None,
            body,
            max_attempts: webhook.retry_count + 1,
            replay_of: Some(of.clone()),
            replay_id: b.replay_id.clone(),
        })
        .await?;
    state.webhooks.wake();
    let replayed = Replayed {
        id: new_id.clone(),
        delivery_id: new_id,
        replay_of: of,
        replay_id: b.replay_id,
        webhook_id: id,
        event_id: original.event_id,
        status: "pending",
    };
    Ok((StatusCode::ACCEPTED, wire::data(replayed)).into_response())
}

/// `GET /webhooks/events`: what can be subscribed to and how deliveries are signed.
pub(crate) async fn catalogue(Caller(_caller): Caller) -> Json<Value> {
    let categories: serde_json::Map<String, Value> =
        catalogue::CATEGORIES.iter().map(|(c, events)| ((*c).to_owned(), json!(events))).collect();
    let events: Vec<&str> = catalogue::all_events().collect();
    let mut retry = vec![0u64];
    retry.extend(schedule::STEPS.iter().map(|d| d.as_secs()));
    Json(json!({
        "data": categories,
        "events": events,
        "aliases": { catalogue::READY_ALIAS.0: catalogue::READY_ALIAS.1 },
        "patterns": ["<category>.*", "*"],
        "workspace_scoped_categories": [],
        "signing": {
            "header": "x-miosa-signature",
            "algorithm": "hmac-sha256",
            "format": "sha256=<hex>",
            "key": "the endpoint secret's UTF-8 bytes, verbatim",
            "previous_secret_header": "x-miosa-signature-previous",
            "standard_webhooks": {
                "headers": ["webhook-id", "webhook-timestamp", "webhook-signature"],
                "format": "v1,<base64 HMAC-SHA256 of `<webhook-id>.<webhook-timestamp>.<body>`>",
                "key": "base64-decoded part of the secret after `whsec_`",
            },
        },
        "delivery_headers": [
            "x-miosa-event", "x-miosa-delivery", "x-miosa-signature", "miosa-signature",
            "webhook-id", "webhook-timestamp", "webhook-signature",
        ],
        "retry_schedule_seconds": retry,
        "success": "any 2xx; 3xx is not followed; 410 disables the endpoint",
    }))
}

//! Forwarding of a sandbox's process, file and terminal routes to the agent inside it.
//!
//! The control plane authenticates the caller and checks the sandbox is theirs and running;
//! the agent does the work and answers in the API's own shapes. Bodies stream both ways, so a
//! large upload or download never sits in memory here. Credentials never cross: only the
//! headers the agent needs are passed on.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use islet_store::SandboxRecord;

use crate::api::extract::RunningSandbox;
use crate::error::ApiError;
use crate::state::AppState;

/// Request headers the agent may see.
const PASSED_REQUEST_HEADERS: [http::HeaderName; 3] =
    [http::header::CONTENT_TYPE, http::header::CONTENT_LENGTH, http::header::ACCEPT];

/// Response headers the client may see.
const PASSED_RESPONSE_HEADERS: [http::HeaderName; 4] = [
    http::header::CONTENT_TYPE,
    http::header::CONTENT_LENGTH,
    http::header::CACHE_CONTROL,
    http::header::CONTENT_DISPOSITION,
];

pub(crate) async fn forward(
    State(state): State<AppState>,
    RunningSandbox(record): RunningSandbox,
    request: Request,
) -> Result<Response, ApiError> {
    touch(&state, &record);

    // `…/sandboxes/{id}/<rest>` → `/<rest>` on the agent, query string kept verbatim. Inside
    // `/api/v1` the URI starts at `/sandboxes/{id}` (the id as sent, possibly
    // percent-encoded): drop those two segments.
    let uri = request.uri();
    let after_id = uri.path().strip_prefix("/sandboxes/").unwrap_or(uri.path());
    let path = after_id.find('/').map_or("/", |i| &after_id[i..]);
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let mut builder = http::Request::builder()
        .method(request.method().clone())
        .uri(path_and_query)
        .header(http::header::HOST, "agent");
    for name in &PASSED_REQUEST_HEADERS {
        if let Some(value) = request.headers().get(name) {
            builder = builder.header(name, value);
        }
    }
    let agent_request =
        builder.body(request.into_body()).map_err(|e| ApiError::Internal(e.to_string()))?;
    let response = state.runtime.agent(&record.id).send(agent_request).await.map_err(|e| {
        tracing::warn!(sandbox_id = %record.id, error = %e, "agent unreachable");
        ApiError::AgentUnavailable
    })?;
    let (parts, body) = response.into_parts();
    if parts.status.is_client_error() || parts.status.is_server_error() {
        // What the agent may answer; anything else (a 401 or 402 from whatever holds its
        // socket) must not reach the tenant as the platform's word.
        let agents = [400, 403, 404, 405, 409, 413, 422, 500];
        if !agents.contains(&parts.status.as_u16()) {
            tracing::warn!(sandbox_id = %record.id, status = %parts.status, "the agent answered a status it never sends");
            return Err(ApiError::AgentUnavailable);
        }
        return relay_error(parts, body).await;
    }
    let mut out = Response::builder().status(parts.status);
    for name in &PASSED_RESPONSE_HEADERS {
        if let Some(value) = parts.headers.get(name) {
            out = out.header(name, value);
        }
    }
    // A stream (exec/stream, process logs, file watch) is activity for as long as it is open.
    let streaming = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let body = if streaming {
        let guard = keep_active(&state, &record);
        Body::new(http_body_util::BodyExt::map_frame(body, move |frame| {
            let _active = &guard;
            frame
        }))
    } else {
        Body::new(body)
    };
    out.body(body).map_err(|e| ApiError::Internal(e.to_string())).map(IntoResponse::into_response)
}

/// The largest agent error answer that is rewritten (the agent's are a few hundred bytes).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// An error the agent answered, as every error of the API looks: its envelope with this
/// request's `request_id` added. An answer that is not an envelope (its router's own 405, say)
/// gets one built from its status.
async fn relay_error(
    parts: http::response::Parts,
    body: hyper::body::Incoming,
) -> Result<Response, ApiError> {
    let bytes = http_body_util::Limited::new(body, MAX_ERROR_BODY)
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .map_err(|_| ApiError::AgentUnavailable)?;
    let request_id = crate::request_id::current();
    let envelope = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut object)) if object.contains_key("error") => {
            object.insert("request_id".into(), request_id.into());
            serde_json::Value::Object(object)
        }
        _ => {
            let (code, retryable) = crate::error::code_for_status(parts.status);
            let text = String::from_utf8_lossy(&bytes);
            let message = match text.trim() {
                "" => parts.status.canonical_reason().unwrap_or("error").to_lowercase(),
                text => text.chars().take(500).collect(),
            };
            serde_json::json!({
                "error": { "code": code, "message": message, "retryable": retryable },
                "request_id": request_id,
            })
        }
    };
    Ok((parts.status, axum::Json(envelope)).into_response())
}

/// Record activity for the sandbox until the returned guard is dropped, so that an open
/// terminal or stream keeps it from being stopped as idle: every third of its idle timeout
/// (at least every second, at most every 30 s).
pub(crate) fn keep_active(state: &AppState, record: &SandboxRecord) -> tokio_util::sync::DropGuard {
    let every = std::time::Duration::from_secs(record.idle_timeout_sec.unwrap_or(90) / 3)
        .clamp(std::time::Duration::from_secs(1), std::time::Duration::from_secs(30));
    let token = tokio_util::sync::CancellationToken::new();
    let (store, id, stop) = (state.store.clone(), record.id.clone(), token.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {
                    if let Err(e) = store.touch_sandbox(&id).await {
                        tracing::warn!(sandbox_id = %id, error = %e, "could not record activity");
                    }
                }
            }
        }
    });
    token.drop_guard()
}

/// Note activity for idle timeouts, off the request's path.
pub(crate) fn touch(state: &AppState, record: &SandboxRecord) {
    let now = islet_types::time::now_millis();
    // At most one write per sandbox every few seconds.
    if now - record.last_activity_at < 5_000 {
        return;
    }
    let (store, id) = (state.store.clone(), record.id.clone());
    tokio::spawn(async move {
        if let Err(e) = store.touch_sandbox(&id).await {
            tracing::warn!(sandbox_id = %id, error = %e, "could not record activity");
        }
    });
}

//! Lenient request extractors and the success envelope.
//!
//! Clients (SDKs, curl one-liners) often omit `Content-Type` or send an empty body when every
//! field is optional, so bodies are parsed by hand instead of with axum's strict `Json`.

use crate::error::AgentError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// JSON bodies carry base64 file contents, so they are allowed to be large; uploads of
/// anything bigger go through the streaming `PUT /fs/upload`.
pub const BODY_LIMIT: usize = 64 * 1024 * 1024;

pub(crate) struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AgentError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AgentError::TooLarge { limit: BODY_LIMIT as u64 }
            } else {
                AgentError::validation(format!("could not read request body: {rej}"))
            }
        })?;
        let raw: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
        serde_json::from_slice(raw)
            .map(JsonBody)
            .map_err(|e| AgentError::validation(format!("invalid JSON body: {e}")))
    }
}

/// Form-encoded query string, with rejections in the API's envelope.
pub(crate) struct Params<T>(pub T);

impl<S, T> FromRequestParts<S> for Params<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AgentError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Params(v))
            .map_err(|rej| AgentError::validation(rej.body_text()))
    }
}

/// `{"data": ...}` with a status.
pub(crate) fn ok<T: Serialize>(status: StatusCode, data: T) -> Response {
    (status, axum::Json(serde_json::json!({ "data": data }))).into_response()
}

/// Accepts `true`/`false` as well as the `1`/`0`/`yes` spellings some clients put in queries.
pub(crate) fn parse_bool(raw: Option<&str>, default: bool) -> Result<bool, AgentError> {
    match raw.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") => Ok(default),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(other) => Err(AgentError::validation(format!("expected a boolean, got {other:?}"))),
    }
}

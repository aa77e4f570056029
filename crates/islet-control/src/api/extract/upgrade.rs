//! A WebSocket upgrade with the API's refusal: a plain request to a WebSocket route is
//! `VALIDATION_FAILED`, in the envelope. Declared last in a handler, after the sandbox's own
//! extractor, so a foreign sandbox is 404 whatever the request looks like.

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::ApiError;

pub(crate) struct Upgrade(pub WebSocketUpgrade);

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        WebSocketUpgrade::from_request_parts(parts, state).await.map(Upgrade).map_err(|_| {
            ApiError::Validation {
                message: "this route needs a WebSocket upgrade".into(),
                field: None,
            }
        })
    }
}

//! Query strings and bodies with the API's refusals: a query that does not parse is
//! `VALIDATION_FAILED` (naming what is wrong), a body past the limit is `TOO_LARGE`, never the
//! framework's plain-text answers.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The largest request body a JSON route reads.
pub(crate) const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// The query string, deserialized.
pub(crate) struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(e) => Err(ApiError::Validation {
                message: format!("invalid query string: {}", e.body_text()),
                field: None,
            }),
        }
    }
}

/// The request body, whole (at most [`BODY_LIMIT`] bytes).
pub(crate) struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(RawBody(bytes)),
            Err(BytesRejection::FailedToBufferBody(e))
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::TooLarge { limit: BODY_LIMIT as u64 })
            }
            Err(e) => Err(ApiError::Validation {
                message: format!("unreadable body: {}", e.body_text()),
                field: None,
            }),
        }
    }
}

//! The authenticated caller, as [`crate::api::middleware::access::layer`] left it in the request.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use islet_store::Principal;

use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated caller.
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, ApiError> {
        parts.extensions.get::<Principal>().cloned().map(Caller).ok_or(ApiError::Unauthenticated)
    }
}

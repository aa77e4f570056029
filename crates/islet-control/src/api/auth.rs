//! `Authorization: Bearer msk_…` → the calling tenant.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use islet_store::Principal;

use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated caller.
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthenticated)?;
        state
            .store
            .authenticate(token)
            .await?
            .map(Caller)
            .ok_or(ApiError::Unauthenticated)
    }
}

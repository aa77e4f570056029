//! Lenient JSON bodies: the SDK sends POSTs with no body and no Content-Type, or `{}`.

use axum::body::Bytes;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Parse a JSON body; an empty body reads as `{}`.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let slice: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    serde_json::from_slice(slice).map_err(|e| ApiError::Validation {
        message: format!("invalid JSON body: {e}"),
        field: None,
    })
}

//! `GET/PUT /settings` (flat, contract §9): the tenant's API settings. So far the web origins
//! its browser code calls the API from (CORS), with the branding for convenience.

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::body;
use crate::error::ApiError;
use crate::state::AppState;

const MAX_ORIGINS: usize = 20;

/// `scheme://host[:port]`, http(s), lower-case, nothing else.
fn origin(raw: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::validation(
            format!("`{raw}` is not an origin (https://host[:port], no path)"),
            "allowed_origins",
        )
    };
    let url = url::Url::parse(raw).map_err(|_| bad())?;
    if !matches!(url.scheme(), "https" | "http")
        || url.host_str().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
        || !(url.path() == "/" || url.path().is_empty())
        || raw.trim_end_matches('/').len() != raw.trim_end_matches('/').trim().len()
    {
        return Err(bad());
    }
    Ok(url.origin().ascii_serialization())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    allowed_origins: Option<Vec<String>>,
}

async fn view(state: &AppState, tenant: &islet_types::TenantId) -> Result<Value, ApiError> {
    Ok(json!({
        "allowed_origins": state.store.allowed_origins(tenant).await?,
        "branding": state.store.branding(tenant).await?,
    }))
}

pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "data": view(&state, &caller.tenant_id).await? }),
    ))
}

pub async fn put(
    State(state): State<AppState>,
    Caller(caller): Caller,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: SettingsBody = body::parse(&bytes)?;
    if let Some(list) = b.allowed_origins {
        if list.len() > MAX_ORIGINS {
            return Err(ApiError::validation(
                "at most 20 origins",
                "allowed_origins",
            ));
        }
        let mut origins = list
            .iter()
            .map(|o| origin(o))
            .collect::<Result<Vec<_>, _>>()?;
        origins.sort();
        origins.dedup();
        state
            .store
            .set_allowed_origins(&caller.tenant_id, origins)
            .await?;
    }
    Ok(Json(
        json!({ "data": view(&state, &caller.tenant_id).await? }),
    ))
}

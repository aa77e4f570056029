//! Previews (contract §8): `expose`, the previews resource and a preview's share link.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use islet_store::{PreviewRecord, PreviewRequest, SandboxRecord, TokenKind};
use islet_types::preview::{valid_port, Scope, Visibility};
use islet_types::time::{now_millis, rfc3339};
use islet_types::PreviewId;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::preview_tokens::{mint, Mint};
use crate::api::extract::body;
use crate::api::extract::Caller;
use crate::api::extract::IdPath;
use crate::api::extract::RawBody;
use crate::api::wire::{self, Data};
use crate::error::ApiError;
use crate::preview_urls::{PreviewUrls, DEFAULT_PORT};
use crate::state::AppState;
use islet_types::SandboxId;

const MAX_LABEL: usize = 100;
const MAX_PREVIEW_TTL_SEC: u64 = 30 * 24 * 3600;

#[derive(Debug, Deserialize)]
pub(crate) struct PreviewBody {
    port: Option<u64>,
    visibility: Option<String>,
    label: Option<String>,
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    expires_in: Option<u64>,
}

impl PreviewBody {
    fn validate(self, port_required: bool) -> Result<PreviewRequest, ApiError> {
        let port = match self.port {
            Some(p) => valid_port(p)
                .ok_or_else(|| ApiError::validation("port must be 1..=65535", "port"))?,
            None if port_required => return Err(ApiError::validation("port is required", "port")),
            None => DEFAULT_PORT,
        };
        let visibility = self
            .visibility
            .map(|v| {
                v.parse::<Visibility>().map_err(|()| {
                    ApiError::validation("visibility must be `public` or `private`", "visibility")
                })
            })
            .transpose()?;
        if let Some(label) = &self.label {
            if label.chars().count() > MAX_LABEL || label.chars().any(char::is_control) {
                return Err(ApiError::validation(
                    "label must be at most 100 printable characters",
                    "label",
                ));
            }
        }
        if self
            .metadata
            .as_ref()
            .is_some_and(|m| serde_json::Value::Object(m.clone()).to_string().len() > 16 * 1024)
        {
            return Err(ApiError::validation("metadata must be under 16 KiB", "metadata"));
        }
        let expires_at = match self.expires_in {
            None => None,
            Some(s) if (1..=MAX_PREVIEW_TTL_SEC).contains(&s) => {
                Some(now_millis() + i64::try_from(s * 1000).unwrap_or(i64::MAX))
            }
            Some(_) => {
                return Err(ApiError::validation(
                    "expires_in must be 1..=2592000 seconds",
                    "expires_in",
                ))
            }
        };
        Ok(PreviewRequest {
            port,
            visibility,
            label: self.label,
            metadata: self.metadata,
            expires_at,
        })
    }
}

/// The preview object (`types.SandboxPreviewData`) plus the fields `expose` callers read.
#[derive(Debug, Serialize)]
pub(crate) struct PreviewView {
    pub id: PreviewId,
    pub sandbox_id: SandboxId,
    pub port: u16,
    pub url: String,
    /// `url` again, as the SDK names it.
    pub preview_url: String,
    /// `url` without its scheme and trailing slash.
    pub host: String,
    /// `public` or `private`.
    pub visibility: &'static str,
    /// `active`, `expired` or `deleted`.
    pub state: &'static str,
    pub label: Option<String>,
    pub metadata: Map<String, Value>,
    pub expires_at: Option<String>,
    pub created_at: String,
    pub share_token_prefix: Option<String>,
    pub share_token_expires_at: Option<String>,
    pub external_user_id: Option<String>,
    pub external_workspace_id: Option<String>,
    pub external_project_id: Option<String>,
    /// Always `temporary_preview`: a preview URL is not a stable address.
    pub url_class: &'static str,
    pub stable_for_embedding: bool,
    pub requires_token: bool,
    /// `embed` (public) or `mint_preview_token` (private).
    pub recommended_next_action: &'static str,
}

/// A preview made public: the preview, and the share link that opens it.
#[derive(Debug, Serialize)]
pub(crate) struct Shared {
    pub data: PreviewView,
    pub preview_token: String,
    pub share_url: String,
}

pub(crate) fn preview_view(
    urls: &PreviewUrls,
    p: &PreviewRecord,
    sandbox: &SandboxRecord,
) -> PreviewView {
    let now = now_millis();
    let state = if p.deleted_at.is_some() {
        "deleted"
    } else if p.expires_at.is_some_and(|e| e <= now) {
        "expired"
    } else {
        "active"
    };
    let url = urls.url(&p.sandbox_id, p.port);
    let public = p.visibility == Visibility::Public;
    PreviewView {
        id: p.id.clone(),
        sandbox_id: p.sandbox_id.clone(),
        port: p.port,
        host: url
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned(),
        preview_url: url.clone(),
        url,
        visibility: p.visibility.as_str(),
        state,
        label: p.label.clone(),
        metadata: p.metadata.clone(),
        expires_at: p.expires_at.map(rfc3339),
        created_at: rfc3339(p.created_at),
        share_token_prefix: p.share.as_ref().map(|s| s.prefix.clone()),
        share_token_expires_at: p.share.as_ref().map(|s| rfc3339(s.expires_at)),
        external_user_id: sandbox.external_user_id.clone(),
        external_workspace_id: sandbox.external_workspace_id.clone(),
        external_project_id: sandbox.external_project_id.clone(),
        url_class: "temporary_preview",
        stable_for_embedding: public,
        requires_token: !public,
        recommended_next_action: if public { "embed" } else { "mint_preview_token" },
    }
}

pub(crate) async fn live_sandbox(
    state: &AppState,
    caller: &Caller,
    id: &SandboxId,
) -> Result<SandboxRecord, ApiError> {
    let record = state.store.get_sandbox(&caller.0.tenant_id, id).await?;
    if record.state == islet_types::SandboxState::Destroyed {
        return Err(ApiError::NotFound("sandbox"));
    }
    Ok(record)
}

async fn upsert(
    state: &AppState,
    caller: &Caller,
    id: &SandboxId,
    bytes: &Bytes,
    port_required: bool,
) -> Result<Json<Data<PreviewView>>, ApiError> {
    let req = body::parse::<PreviewBody>(bytes)?.validate(port_required)?;
    let sandbox = live_sandbox(state, caller, id).await?;
    let preview = state.store.upsert_preview(&caller.0.tenant_id, &sandbox.id, req).await?;
    let urls = PreviewUrls::for_tenant(state, &caller.0.tenant_id).await?;
    Ok(wire::data(preview_view(&urls, &preview, &sandbox)))
}

/// `POST /sandboxes/{id}/expose`: idempotent per port.
pub(crate) async fn expose(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<SandboxId>,
    RawBody(bytes): RawBody,
) -> Result<Json<Data<PreviewView>>, ApiError> {
    upsert(&state, &caller, &id, &bytes, false).await
}

/// `POST /sandboxes/{id}/previews`.
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<SandboxId>,
    RawBody(bytes): RawBody,
) -> Result<Response, ApiError> {
    let json = upsert(&state, &caller, &id, &bytes, true).await?;
    Ok((StatusCode::CREATED, json).into_response())
}

pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<SandboxId>,
) -> Result<Json<Data<Vec<PreviewView>>>, ApiError> {
    let sandbox = live_sandbox(&state, &caller, &id).await?;
    let previews = state.store.list_previews(&caller.0.tenant_id, &sandbox.id).await?;
    let urls = PreviewUrls::for_tenant(&state, &caller.0.tenant_id).await?;
    let views: Vec<_> = previews.iter().map(|p| preview_view(&urls, p, &sandbox)).collect();
    Ok(wire::data(views))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<SandboxId>,
    IdPath(pid): IdPath<PreviewId>,
) -> Result<Json<Data<PreviewView>>, ApiError> {
    let sandbox = live_sandbox(&state, &caller, &id).await?;
    let preview = state.store.get_preview(&caller.0.tenant_id, &sandbox.id, &pid).await?;
    let urls = PreviewUrls::for_tenant(&state, &caller.0.tenant_id).await?;
    Ok(wire::data(preview_view(&urls, &preview, &sandbox)))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<SandboxId>,
    IdPath(pid): IdPath<PreviewId>,
) -> Result<StatusCode, ApiError> {
    let sandbox = live_sandbox(&state, &caller, &id).await?;
    state.store.delete_preview(&caller.0.tenant_id, &sandbox.id, &pid).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub(crate) struct ShareBody {
    ttl_seconds: Option<u64>,
    expires_in_sec: Option<u64>,
    expires_in: Option<u64>,
    scope: Option<String>,
}

/// `POST /sandboxes/{id}/previews/{pid}/share`: a share link for the preview's port. The body
/// has three top-level keys so the SDK keeps the token (contract §8).
pub(crate) async fn share(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<SandboxId>,
    IdPath(pid): IdPath<PreviewId>,
    RawBody(bytes): RawBody,
) -> Result<Json<Shared>, ApiError> {
    let b = body::parse::<ShareBody>(&bytes)?;
    let sandbox = live_sandbox(&state, &caller, &id).await?;
    let preview_id = pid;
    let mut preview =
        state.store.get_preview(&caller.0.tenant_id, &sandbox.id, &preview_id).await?;
    let asked = b.ttl_seconds.or(b.expires_in_sec).or(b.expires_in);
    // A share link does not outlive its preview.
    let ttl_secs = match preview.expires_at {
        None => asked,
        Some(at) => {
            let left = u64::try_from((at - now_millis()) / 1000).unwrap_or(0);
            if left == 0 {
                return Err(ApiError::NotFound("preview"));
            }
            Some(asked.unwrap_or(super::preview_tokens::DEFAULT_TTL_SECS).min(left))
        }
    };
    let minted = mint(
        &state,
        &sandbox,
        Mint {
            ttl_secs,
            scope: b.scope.as_deref(),
            default_scope: Scope::Read,
            port: Some(preview.port),
            kind: TokenKind::PreviewShare,
            preview_id: Some(preview_id.clone()),
            max_ttl_secs: super::preview_tokens::MAX_SHARE_TTL_SECS,
        },
    )
    .await?;
    preview.share = Some(minted.record);
    let urls = PreviewUrls::for_tenant(&state, &caller.0.tenant_id).await?;
    let share_url = urls.url_with_token(&sandbox.id, preview.port, "ms", &minted.token);
    Ok(Json(Shared {
        data: preview_view(&urls, &preview, &sandbox),
        preview_token: minted.token,
        share_url,
    }))
}

pub(crate) async fn revoke_share(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<SandboxId>,
    IdPath(pid): IdPath<PreviewId>,
) -> Result<StatusCode, ApiError> {
    let sandbox = live_sandbox(&state, &caller, &id).await?;
    let preview = state.store.get_preview(&caller.0.tenant_id, &sandbox.id, &pid).await?;
    if let Some(share) = preview.share {
        state
            .store
            .revoke_token(&caller.0.tenant_id, &sandbox.id, &share.id, TokenKind::PreviewShare)
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

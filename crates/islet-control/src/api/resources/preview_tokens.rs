//! Preview tokens and sandbox share links (contract §8): minted here, verified by the edge.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use islet_store::{SandboxRecord, TokenKind, TokenRecord};
use islet_tokens::Claims;
use islet_types::preview::{valid_port, Scope};
use islet_types::time::{now_millis, rfc3339};
use islet_types::{PreviewId, PreviewTokenId};
use serde::{Deserialize, Serialize};

use super::previews::live_sandbox;
use crate::api::extract::body;
use crate::api::extract::Caller;
use crate::api::extract::IdPath;
use crate::api::extract::{PreviewTokenParam, RawBody, ShareParam, TextPath};
use crate::api::wire::{self, Data};
use crate::error::ApiError;
use crate::preview_urls::{PreviewUrls, DEFAULT_PORT};
use crate::state::AppState;
use islet_types::SandboxId;

pub(crate) const DEFAULT_TTL_SECS: u64 = 3600;
/// Share links live longer than a session token, but not for ever.
pub(crate) const MAX_SHARE_TTL_SECS: u64 = 7 * 24 * 3600;

/// What to mint.
pub(crate) struct Mint<'a> {
    pub ttl_secs: Option<u64>,
    pub scope: Option<&'a str>,
    pub default_scope: Scope,
    pub port: Option<u16>,
    pub kind: TokenKind,
    pub preview_id: Option<PreviewId>,
    pub max_ttl_secs: u64,
}

pub(crate) struct Minted {
    pub token: String,
    pub record: TokenRecord,
}

/// Sign a token for `sandbox` and record it (for listing and revocation).
pub(crate) async fn mint(
    state: &AppState,
    sandbox: &SandboxRecord,
    m: Mint<'_>,
) -> Result<Minted, ApiError> {
    let ttl = m.ttl_secs.unwrap_or(DEFAULT_TTL_SECS);
    if ttl == 0 || ttl > m.max_ttl_secs {
        return Err(ApiError::validation(
            format!("expires_in must be 1..={} seconds", m.max_ttl_secs),
            "expires_in",
        ));
    }
    let scope = match m.scope {
        None => m.default_scope,
        Some(s) => s.parse().map_err(|()| ApiError::InvalidScope)?,
    };
    let now = now_millis();
    let expires_secs = u64::try_from(now / 1000).unwrap_or(0) + ttl;
    let claims = Claims {
        id: PreviewTokenId::generate(),
        tenant_id: sandbox.tenant_id.clone(),
        sandbox_id: sandbox.id.clone(),
        port: m.port,
        scope,
        expires_at: expires_secs,
    };
    let token = state.signer.sign(&claims);
    let record = TokenRecord {
        id: claims.id,
        tenant_id: claims.tenant_id,
        sandbox_id: claims.sandbox_id,
        port: m.port,
        scope,
        preview_id: m.preview_id,
        prefix: token.chars().take(12).collect(),
        created_at: now,
        expires_at: i64::try_from(expires_secs * 1000).unwrap_or(i64::MAX),
        revoked_at: None,
    };
    state.store.record_token(record.clone(), m.kind).await?;
    Ok(Minted { token, record })
}

/// The port a URL names: the asked one, else the sandbox's first exposed port, else the default.
async fn url_port(
    state: &AppState,
    sandbox: &SandboxRecord,
    asked: Option<u16>,
) -> Result<u16, ApiError> {
    if let Some(p) = asked {
        return Ok(p);
    }
    let previews = state.store.list_previews(&sandbox.tenant_id, &sandbox.id).await?;
    Ok(previews.first().map_or(DEFAULT_PORT, |p| p.port))
}

fn parse_port(port: Option<u64>) -> Result<Option<u16>, ApiError> {
    port.map(|p| {
        valid_port(p).ok_or_else(|| ApiError::validation("port must be 1..=65535", "port"))
    })
    .transpose()
}

/// The body of `POST …/preview-token` and `POST …/shares`.
#[derive(Debug, Deserialize)]
pub(crate) struct MintBody {
    expires_in: Option<u64>,
    scope: Option<String>,
    port: Option<u64>,
}

/// Mint a token of `kind` for the caller's sandbox from a request body; returns the token and
/// the URL that carries it (`?mt=` for tokens, `?ms=` for share links).
async fn mint_from_body(
    state: &AppState,
    caller: &Caller,
    id: &SandboxId,
    bytes: &Bytes,
    kind: TokenKind,
    max_ttl_secs: u64,
) -> Result<(SandboxRecord, Minted, String), ApiError> {
    let b = body::parse::<MintBody>(bytes)?;
    let port = parse_port(b.port)?;
    let sandbox = live_sandbox(state, caller, id).await?;
    let minted = mint(
        state,
        &sandbox,
        Mint {
            ttl_secs: b.expires_in,
            scope: b.scope.as_deref(),
            default_scope: Scope::Read,
            port,
            kind,
            preview_id: None,
            max_ttl_secs,
        },
    )
    .await?;
    let urls = PreviewUrls::for_tenant(state, &caller.0.tenant_id).await?;
    let url_port = url_port(state, &sandbox, port).await?;
    let param = if kind == TokenKind::Share { "ms" } else { "mt" };
    let url = urls.url_with_token(&sandbox.id, url_port, param, &minted.token);
    Ok((sandbox, minted, url))
}

/// `POST /sandboxes/{id}/preview-token`.
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<SandboxId>,
    RawBody(bytes): RawBody,
) -> Result<Json<Data<MintedToken>>, ApiError> {
    let (sandbox, minted, url) =
        mint_from_body(&state, &caller, &id, &bytes, TokenKind::Token, islet_tokens::MAX_TTL_SECS)
            .await?;
    Ok(wire::data(MintedToken {
        id: minted.record.id,
        token: minted.token,
        url,
        expires_at: rfc3339(minted.record.expires_at),
        scope: minted.record.scope.as_str(),
        port: minted.record.port,
        sandbox_id: sandbox.id,
    }))
}

/// A preview token just minted: the token itself (shown this once) and the URL carrying it.
#[derive(Debug, Serialize)]
pub(crate) struct MintedToken {
    pub id: PreviewTokenId,
    pub token: String,
    pub url: String,
    pub expires_at: String,
    /// `read` or `interact`.
    pub scope: &'static str,
    /// The one port it opens; none: any.
    pub port: Option<u16>,
    pub sandbox_id: SandboxId,
}

/// A minted preview token as listed: never its secret.
#[derive(Debug, Serialize)]
pub(crate) struct PreviewTokenView {
    pub id: PreviewTokenId,
    pub sandbox_id: SandboxId,
    pub port: Option<u16>,
    pub scope: &'static str,
    pub token_prefix: String,
    pub created_at: String,
    pub expires_at: String,
}

/// A share link; `share_url` only when the token is at hand (at creation).
#[derive(Debug, Serialize)]
pub(crate) struct ShareView {
    pub share_id: PreviewTokenId,
    pub id: PreviewTokenId,
    pub scope: &'static str,
    pub port: Option<u16>,
    pub expires_at: String,
    pub created_at: String,
    pub token_prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share_url: Option<String>,
}

fn token_view(t: &TokenRecord) -> PreviewTokenView {
    PreviewTokenView {
        id: t.id.clone(),
        sandbox_id: t.sandbox_id.clone(),
        port: t.port,
        scope: t.scope.as_str(),
        token_prefix: t.prefix.clone(),
        created_at: rfc3339(t.created_at),
        expires_at: rfc3339(t.expires_at),
    }
}

/// `GET /sandboxes/{id}/preview-tokens` (Islet extension): live tokens, never their secrets.
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<SandboxId>,
) -> Result<Json<Data<Vec<PreviewTokenView>>>, ApiError> {
    let sandbox = live_sandbox(&state, &caller, &id).await?;
    let tokens =
        state.store.list_tokens(&caller.0.tenant_id, &sandbox.id, TokenKind::Token).await?;
    Ok(wire::data(tokens.iter().map(token_view).collect()))
}

fn parse_token_id(raw: &str) -> Result<PreviewTokenId, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("token"))
}

async fn revoke(
    state: &AppState,
    caller: &Caller,
    id: &SandboxId,
    token_id: &str,
    kind: TokenKind,
) -> Result<StatusCode, ApiError> {
    let sandbox = live_sandbox(state, caller, id).await?;
    state
        .store
        .revoke_token(&caller.0.tenant_id, &sandbox.id, &parse_token_id(token_id)?, kind)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /sandboxes/{id}/preview-tokens/{token_id}` (Islet extension).
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<SandboxId>,
    TextPath(token_id, _): TextPath<PreviewTokenParam>,
) -> Result<StatusCode, ApiError> {
    revoke(&state, &caller, &id, &token_id, TokenKind::Token).await
}

/// `DELETE /sandboxes/{id}/shares/{share_id}`.
pub(crate) async fn revoke_share(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<SandboxId>,
    TextPath(share_id, _): TextPath<ShareParam>,
) -> Result<StatusCode, ApiError> {
    revoke(&state, &caller, &id, &share_id, TokenKind::Share).await
}

fn share_view(t: &TokenRecord, share_url: Option<String>) -> ShareView {
    ShareView {
        share_id: t.id.clone(),
        id: t.id.clone(),
        scope: t.scope.as_str(),
        port: t.port,
        expires_at: rfc3339(t.expires_at),
        created_at: rfc3339(t.created_at),
        token_prefix: t.prefix.clone(),
        share_url,
    }
}

/// `POST /sandboxes/{id}/shares`.
pub(crate) async fn create_share(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<SandboxId>,
    RawBody(bytes): RawBody,
) -> Result<Response, ApiError> {
    let (_, minted, share_url) =
        mint_from_body(&state, &caller, &id, &bytes, TokenKind::Share, MAX_SHARE_TTL_SECS).await?;
    let view = share_view(&minted.record, Some(share_url));
    Ok((StatusCode::CREATED, wire::data(view)).into_response())
}

/// `GET /sandboxes/{id}/shares`: live shares (their URLs are shown only at creation).
pub(crate) async fn list_shares(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(id): IdPath<SandboxId>,
) -> Result<Json<Data<Vec<ShareView>>>, ApiError> {
    let sandbox = live_sandbox(&state, &caller, &id).await?;
    let shares =
        state.store.list_tokens(&caller.0.tenant_id, &sandbox.id, TokenKind::Share).await?;
    let views: Vec<_> = shares.iter().map(|s| share_view(s, None)).collect();
    Ok(wire::data(views))
}

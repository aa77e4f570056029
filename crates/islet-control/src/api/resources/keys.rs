//! API keys and browser tokens (contract §12): `/api-keys` (list, create, get, rename or
//! rescope, rotate, revoke), `/api-keys/scoped` (a key bound to one end user, `msk_l2_…`) and
//! `/tokens/scoped` (short-lived browser tokens, `mst_…`). Nothing minted here can do more than
//! the credential that minted it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use islet_store::{BrowserTokenRecord, KeyRecord, NewBrowserToken, NewKey, Principal};
use islet_types::scope::{Scope, ScopeSet};
use islet_types::time::{now_millis, rfc3339, UnixMillis};
use islet_types::ApiKeyId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::extract::body;
use crate::api::extract::Caller;
use crate::api::extract::{KeyParam, Query, RawBody, TextPath, TokenParam};
use crate::api::wire::{self, Data};
use crate::error::ApiError;
use crate::state::AppState;

/// The longest a browser token lives, and its default.
const MAX_TOKEN_TTL_SEC: u64 = 86_400;
const DEFAULT_TOKEN_TTL_SEC: u64 = 3_600;

/// What a browser token gets when the caller names no scopes: everything a credential bound to
/// one end user can use (the SDK documents "inherits all"), cut to what the minter holds.
const BROWSER_DEFAULT: [Scope; 3] = [Scope::SandboxesWrite, Scope::PreviewsWrite, Scope::UsageRead];

fn parse_key_id(raw: &str) -> Result<ApiKeyId, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("api key"))
}

/// An API key as the API shows it: never its secret, only the first characters.
#[derive(Debug, Serialize)]
pub(crate) struct KeyView {
    pub id: ApiKeyId,
    pub name: String,
    pub key_prefix: String,
    /// `["*"]` for a key with every scope.
    pub scopes: Vec<&'static str>,
    /// `active`, `expired` or `revoked`.
    pub status: &'static str,
    pub external_user_id: Option<String>,
    pub description: Option<String>,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// A key just made or rotated, with its secret (shown this once), under both names the SDKs
/// read.
#[derive(Debug, Serialize)]
pub(crate) struct KeyWithSecret {
    #[serde(flatten)]
    pub key: KeyView,
    pub token: String,
    #[serde(rename = "key")]
    pub secret: String,
}

/// A browser token as the API shows it; `token` (the secret) only when it is minted.
#[derive(Debug, Serialize)]
pub(crate) struct TokenView {
    pub id: String,
    pub external_user_id: String,
    /// `external_user_id` again, as the SDK names it.
    pub user_id: String,
    pub workspace_id: Option<String>,
    pub scopes: Vec<&'static str>,
    pub issued_by: ApiKeyId,
    pub expires_at: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
    /// `active` or `revoked`.
    pub status: &'static str,
    /// What the tenant attached when minting it.
    pub extra: serde_json::Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

fn key_view(k: &KeyRecord) -> KeyView {
    let now = now_millis();
    let status = if k.revoked_at.is_some() {
        "revoked"
    } else if k.expires_at.is_some_and(|e| e <= now) {
        "expired"
    } else {
        "active"
    };
    KeyView {
        id: k.id.clone(),
        name: k.name.clone(),
        key_prefix: k.key_prefix.clone(),
        scopes: if k.full { vec!["*"] } else { k.scopes.names() },
        status,
        external_user_id: k.external_user_id.clone(),
        description: k.description.clone(),
        created_at: rfc3339(k.created_at),
        last_used_at: k.last_used_at.map(rfc3339),
        expires_at: k.expires_at.map(rfc3339),
        revoked_at: k.revoked_at.map(rfc3339),
    }
}

fn with_secret(k: &KeyRecord, plaintext: &str) -> KeyWithSecret {
    KeyWithSecret { key: key_view(k), token: plaintext.to_owned(), secret: plaintext.to_owned() }
}

fn token_view(t: &BrowserTokenRecord) -> TokenView {
    TokenView {
        id: t.id.clone(),
        external_user_id: t.external_user_id.clone(),
        user_id: t.external_user_id.clone(),
        workspace_id: t.workspace_id.clone(),
        scopes: t.scopes.names(),
        issued_by: t.issued_by.clone(),
        expires_at: rfc3339(t.expires_at),
        created_at: rfc3339(t.created_at),
        revoked_at: t.revoked_at.map(rfc3339),
        status: if t.revoked_at.is_some() { "revoked" } else { "active" },
        extra: t.extra.clone(),
        token: None,
    }
}

/// A key the caller may manage: one that holds nothing the caller lacks (so a `keys:write` key
/// cannot rotate its way into a wider key's secret).
async fn manageable(
    state: &AppState,
    caller: &Principal,
    id: &ApiKeyId,
) -> Result<KeyRecord, ApiError> {
    let key = state.store.get_api_key(&caller.tenant_id, id).await?;
    if !key.scopes.is_subset_of(caller.scopes) {
        return Err(ApiError::Forbidden(
            "a credential cannot manage a key with scopes it does not hold".into(),
        ));
    }
    Ok(key)
}

/// Refuse minting for an end user who is suspended.
async fn not_suspended(state: &AppState, caller: &Principal, user: &str) -> Result<(), ApiError> {
    match state.store.suspension(&caller.tenant_id, user).await? {
        Some(_) => Err(ApiError::Suspended(user.to_owned())),
        None => Ok(()),
    }
}

/// Scopes asked for, which must all be held by the caller.
fn granted(caller: &Principal, names: Option<Vec<String>>) -> Result<Option<ScopeSet>, ApiError> {
    let Some(names) = names else { return Ok(None) };
    if names.is_empty() {
        return Err(ApiError::validation("scopes must name at least one scope", "scopes"));
    }
    let set = ScopeSet::parse(&names).map_err(|e| ApiError::validation(e.to_string(), "scopes"))?;
    if !set.is_subset_of(caller.scopes) {
        return Err(ApiError::Forbidden(
            "a credential cannot grant scopes it does not hold".into(),
        ));
    }
    Ok(Some(set))
}

fn expiry(raw: Option<Value>) -> Result<Option<UnixMillis>, ApiError> {
    let at = match raw {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(|s| s.saturating_mul(1000)).ok_or_else(|| {
            ApiError::validation("expires_at must be unix seconds or RFC 3339", "expires_at")
        })?,
        Some(Value::String(s)) => chrono::DateTime::parse_from_rfc3339(&s)
            .map(|t| t.timestamp_millis())
            .map_err(|_| {
                ApiError::validation("expires_at must be unix seconds or RFC 3339", "expires_at")
            })?,
        Some(_) => {
            return Err(ApiError::validation(
                "expires_at must be unix seconds or RFC 3339",
                "expires_at",
            ))
        }
    };
    if at <= now_millis() {
        return Err(ApiError::validation("expires_at must be in the future", "expires_at"));
    }
    Ok(Some(at))
}

/// A name or id field: the create body's rule (1–256 printable bytes), and present when
/// `required`.
fn label(
    raw: Option<String>,
    field: &'static str,
    required: bool,
) -> Result<Option<String>, ApiError> {
    match super::create_body::label(raw, field)? {
        None if required => Err(ApiError::validation(format!("{field} is required"), field)),
        other => Ok(other),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct KeyBody {
    name: Option<String>,
    scopes: Option<Vec<String>>,
    expires_at: Option<Value>,
    description: Option<String>,
    external_user_id: Option<String>,
    status: Option<String>,
    /// Take the scopes of this preset (when `scopes` is left out).
    preset: Option<String>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<Data<Vec<KeyView>>>, ApiError> {
    let keys = state.store.list_api_keys(&caller.tenant_id).await?;
    Ok(wire::data(keys.iter().map(key_view).collect()))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    TextPath(id, _): TextPath<KeyParam>,
) -> Result<Json<Data<KeyView>>, ApiError> {
    let key = state.store.get_api_key(&caller.tenant_id, &parse_key_id(&id)?).await?;
    Ok(wire::data(key_view(&key)))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    RawBody(bytes): RawBody,
) -> Result<Response, ApiError> {
    let mut b: KeyBody = body::parse(&bytes)?;
    if let (None, Some(preset)) = (&b.scopes, &b.preset) {
        b.scopes = Some(super::key_presets::preset_scopes(&state, &caller, preset).await?);
    }
    let new = NewKey {
        name: label(b.name, "name", true)?.unwrap_or_default(),
        scopes: granted(&caller, b.scopes)?
            .or_else(|| (!caller.scopes.is_full()).then_some(caller.scopes)),
        external_user_id: label(b.external_user_id, "external_user_id", false)?,
        description: description(b.description)?,
        expires_at: expiry(b.expires_at)?,
    };
    created(&state, &caller, new).await
}

/// Make the key and answer 201 with its secret (shown this once).
async fn created(state: &AppState, caller: &Principal, new: NewKey) -> Result<Response, ApiError> {
    let (key, plaintext) = state.store.create_api_key(&caller.tenant_id, new).await?;
    Ok((StatusCode::CREATED, wire::data(with_secret(&key, &plaintext))).into_response())
}

/// A key's free-text description: anything up to 1,000 bytes.
fn description(raw: Option<String>) -> Result<Option<String>, ApiError> {
    match raw {
        Some(d) if d.len() > 1000 => {
            Err(ApiError::validation("description must be at most 1000 bytes", "description"))
        }
        other => Ok(other),
    }
}

/// `POST /api-keys/scoped {"external_user_id", "scopes", "expires_at"?}`.
pub(crate) async fn create_scoped(
    State(state): State<AppState>,
    Caller(caller): Caller,
    RawBody(bytes): RawBody,
) -> Result<Response, ApiError> {
    let b: KeyBody = body::parse(&bytes)?;
    let user = label(b.external_user_id, "external_user_id", true)?.unwrap_or_default();
    not_suspended(&state, &caller, &user).await?;
    let scopes = granted(&caller, b.scopes)?
        .ok_or_else(|| ApiError::validation("scopes is required", "scopes"))?;
    let new = NewKey {
        name: label(b.name, "name", false)?.unwrap_or_else(|| format!("scoped: {user}")),
        scopes: Some(scopes),
        external_user_id: Some(user),
        description: description(b.description)?,
        expires_at: expiry(b.expires_at)?,
    };
    created(&state, &caller, new).await
}

/// `PATCH /api-keys/{id} {"name"?, "scopes"?, "status": "revoked"?}`.
pub(crate) async fn update(
    State(state): State<AppState>,
    Caller(caller): Caller,
    TextPath(id, _): TextPath<KeyParam>,
    RawBody(bytes): RawBody,
) -> Result<Json<Data<KeyView>>, ApiError> {
    let id = parse_key_id(&id)?;
    manageable(&state, &caller, &id).await?;
    let b: KeyBody = body::parse(&bytes)?;
    match b.status.as_deref() {
        None | Some("active") => {}
        Some("revoked") => {
            state.store.revoke_api_key(&caller.tenant_id, &id).await?;
        }
        Some(_) => {
            return Err(ApiError::validation("status can only be set to `revoked`", "status"))
        }
    }
    let key = state
        .store
        .update_api_key(
            &caller.tenant_id,
            &id,
            label(b.name, "name", false)?,
            granted(&caller, b.scopes)?,
        )
        .await;
    let key = match key {
        // Revoked just now: answer what it is.
        Err(islet_store::StoreError::Conflict(_)) if b.status.as_deref() == Some("revoked") => {
            state.store.get_api_key(&caller.tenant_id, &id).await?
        }
        other => other?,
    };
    Ok(wire::data(key_view(&key)))
}

pub(crate) async fn rotate(
    State(state): State<AppState>,
    Caller(caller): Caller,
    TextPath(id, _): TextPath<KeyParam>,
) -> Result<Json<Data<KeyWithSecret>>, ApiError> {
    let id = parse_key_id(&id)?;
    manageable(&state, &caller, &id).await?;
    let (key, plaintext) = state.store.rotate_api_key(&caller.tenant_id, &id).await?;
    Ok(wire::data(with_secret(&key, &plaintext)))
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    Caller(caller): Caller,
    TextPath(id, _): TextPath<KeyParam>,
) -> Result<StatusCode, ApiError> {
    let id = parse_key_id(&id)?;
    manageable(&state, &caller, &id).await?;
    state.store.revoke_api_key(&caller.tenant_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct TokenBody {
    user_id: Option<String>,
    external_user_id: Option<String>,
    workspace_id: Option<String>,
    expires_in_seconds: Option<u64>,
    scopes: Option<Vec<String>>,
    #[serde(flatten)]
    extra: serde_json::Map<String, Value>,
}

/// `POST /tokens/scoped`: a browser token for one end user.
pub(crate) async fn create_token(
    State(state): State<AppState>,
    Caller(caller): Caller,
    RawBody(bytes): RawBody,
) -> Result<Response, ApiError> {
    let b: TokenBody = body::parse(&bytes)?;
    let user = label(b.user_id.or(b.external_user_id), "user_id", true)?.unwrap_or_default();
    not_suspended(&state, &caller, &user).await?;
    let workspace = label(b.workspace_id, "workspace_id", false)?;
    let ttl = b.expires_in_seconds.unwrap_or(DEFAULT_TOKEN_TTL_SEC);
    if !(1..=MAX_TOKEN_TTL_SEC).contains(&ttl) {
        return Err(ApiError::validation(
            "expires_in_seconds must be 1..=86400",
            "expires_in_seconds",
        ));
    }
    let scopes = match granted(&caller, b.scopes)? {
        Some(s) => s,
        None => ScopeSet::of(&BROWSER_DEFAULT).intersect(caller.scopes),
    };
    if Value::Object(b.extra.clone()).to_string().len() > 4096 {
        return Err(ApiError::validation("extra fields must be under 4 KiB", "extra"));
    }
    let expires_at = now_millis() + (ttl * 1000) as i64;
    let (token, plaintext) = state
        .store
        .create_browser_token(
            &caller.tenant_id,
            NewBrowserToken {
                issued_by: caller.key_id.clone(),
                external_user_id: user,
                workspace_id: workspace,
                scopes,
                extra: b.extra,
                expires_at,
            },
        )
        .await?;
    let minted = TokenView { token: Some(plaintext), ..token_view(&token) };
    Ok((StatusCode::CREATED, wire::data(minted)).into_response())
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct TokenQuery {
    user_id: Option<String>,
    external_user_id: Option<String>,
}

pub(crate) async fn list_tokens(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(q): Query<TokenQuery>,
) -> Result<Json<Data<Vec<TokenView>>>, ApiError> {
    let tokens = state
        .store
        .list_browser_tokens(&caller.tenant_id, q.user_id.or(q.external_user_id))
        .await?;
    Ok(wire::data(tokens.iter().map(token_view).collect()))
}

pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    Caller(caller): Caller,
    TextPath(id, _): TextPath<TokenParam>,
) -> Result<StatusCode, ApiError> {
    state.store.revoke_browser_token(&caller.tenant_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

//! API-key presets (`/api-keys/presets`): named scope sets a key can be created from, the
//! built-in ones and the tenant's own; and a key's audit trail (`/api-keys/{id}/events`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use islet_store::{KeyEvent, PresetRecord, Principal};
use islet_types::scope::ScopeSet;
use islet_types::time::rfc3339;
use islet_types::ApiKeyId;
use serde::{Deserialize, Serialize};

use crate::api::extract::{body, Caller, KeyParam, PresetParam, Query, RawBody, TextPath};
use crate::api::wire::{self, Data};
use crate::error::ApiError;
use crate::state::AppState;

/// The presets every tenant has: (name, scopes, description).
pub(crate) const BUILT_IN: &[(&str, &[&str], &str)] = &[
    ("full", &["*"], "Every scope: the tenant's own backend."),
    (
        "read_only",
        &["sandboxes:read", "usage:read", "webhooks:read", "keys:read"],
        "Read everything, change nothing.",
    ),
    (
        "sandboxes",
        &["sandboxes:write", "previews:write"],
        "Run sandboxes and their previews, nothing of the account.",
    ),
    ("ci", &["sandboxes:write"], "Create, run and destroy sandboxes (a CI runner)."),
    ("billing", &["usage:read"], "Read usage for billing."),
];

/// A preset as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct PresetView {
    pub name: String,
    pub scopes: Vec<String>,
    pub description: Option<String>,
    /// Built in (cannot be removed) or the tenant's own.
    pub builtin: bool,
    pub created_at: Option<String>,
}

/// One change made to a key.
#[derive(Debug, Serialize)]
pub(crate) struct KeyEventView {
    pub id: i64,
    /// `created`, `updated`, `rotated` or `revoked`.
    #[serde(rename = "type")]
    pub event_type: String,
    pub at: String,
    pub details: serde_json::Value,
}

fn built_in_views() -> impl Iterator<Item = PresetView> {
    BUILT_IN.iter().map(|(name, scopes, description)| PresetView {
        name: (*name).to_owned(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        description: Some((*description).to_owned()),
        builtin: true,
        created_at: None,
    })
}

fn view(p: PresetRecord) -> PresetView {
    PresetView {
        name: p.name,
        scopes: p.scopes,
        description: p.description,
        builtin: false,
        created_at: Some(rfc3339(p.created_at)),
    }
}

/// The scopes of the preset `name` (built in or the tenant's), for a key created from it.
pub(crate) async fn preset_scopes(
    state: &AppState,
    caller: &Principal,
    name: &str,
) -> Result<Vec<String>, ApiError> {
    if let Some((_, scopes, _)) = BUILT_IN.iter().find(|(n, _, _)| *n == name) {
        return Ok(scopes.iter().map(|s| (*s).to_owned()).collect());
    }
    let own = state.store.key_presets(&caller.tenant_id).await?;
    own.into_iter()
        .find(|p| p.name == name)
        .map(|p| p.scopes)
        .ok_or_else(|| ApiError::validation(format!("no preset named `{name}`"), "preset"))
}

/// `GET /api-keys/presets`: the built-in presets, then the tenant's own.
pub(crate) async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<Data<Vec<PresetView>>>, ApiError> {
    let own = state.store.key_presets(&caller.tenant_id).await?;
    Ok(wire::data(built_in_views().chain(own.into_iter().map(view)).collect()))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct PresetBody {
    name: Option<String>,
    scopes: Option<Vec<String>>,
    description: Option<String>,
}

/// A preset's name: 1 to 64 of `a-z`, `0-9`, `_` and `-`.
fn preset_name(raw: Option<String>) -> Result<String, ApiError> {
    let name = raw.ok_or_else(|| ApiError::validation("name is required", "name"))?;
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !ok {
        return Err(ApiError::validation("name must be 1 to 64 of a-z, 0-9, _ and -", "name"));
    }
    Ok(name)
}

/// `POST /api-keys/presets {name, scopes, description?}`: no preset holds a scope its
/// creator lacks, and built-in names are reserved.
pub(crate) async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    RawBody(bytes): RawBody,
) -> Result<Response, ApiError> {
    let b: PresetBody = body::parse(&bytes)?;
    let name = preset_name(b.name)?;
    if BUILT_IN.iter().any(|(n, _, _)| *n == name) {
        return Err(ApiError::Conflict(format!("`{name}` is a built-in preset")));
    }
    let names = b
        .scopes
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::validation("scopes must name at least one scope", "scopes"))?;
    let scopes =
        ScopeSet::parse(&names).map_err(|e| ApiError::validation(e.to_string(), "scopes"))?;
    if !scopes.is_subset_of(caller.scopes) {
        return Err(ApiError::Forbidden(
            "a credential cannot grant scopes it does not hold".into(),
        ));
    }
    if b.description.as_ref().is_some_and(|d| d.len() > 1000) {
        return Err(ApiError::validation("description must be at most 1000 bytes", "description"));
    }
    let saved = state
        .store
        .create_key_preset(&caller.tenant_id, name.clone(), scopes, b.description)
        .await
        .map_err(|e| match e {
            islet_store::StoreError::NameTaken(_) => {
                ApiError::Conflict(format!("a preset named `{name}` exists"))
            }
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, wire::data(view(saved))).into_response())
}

/// `DELETE /api-keys/presets/{name}`: the tenant's own only.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    TextPath(name, _): TextPath<PresetParam>,
) -> Result<StatusCode, ApiError> {
    if BUILT_IN.iter().any(|(n, _, _)| *n == name) {
        return Err(ApiError::Conflict(format!("`{name}` is a built-in preset")));
    }
    state.store.delete_key_preset(&caller.tenant_id, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct EventsQuery {
    limit: Option<u32>,
    #[serde(rename = "type")]
    event_type: Option<String>,
}

/// `GET /api-keys/{id}/events?limit&type`: every change made to the key, newest first (its
/// use is `last_used_at` on the key).
pub(crate) async fn events(
    State(state): State<AppState>,
    Caller(caller): Caller,
    TextPath(id, _): TextPath<KeyParam>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Data<Vec<KeyEventView>>>, ApiError> {
    let id: ApiKeyId = id.parse().map_err(|_| ApiError::NotFound("api key"))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::validation("limit must be 1..=1000", "limit"));
    }
    let rows = state.store.key_events(&caller.tenant_id, &id, limit, q.event_type).await?;
    Ok(wire::data(rows.into_iter().map(event_view).collect()))
}

fn event_view(e: KeyEvent) -> KeyEventView {
    KeyEventView { id: e.seq, event_type: e.event_type, at: rfc3339(e.at), details: e.details }
}

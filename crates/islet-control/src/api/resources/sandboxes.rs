//! Sandbox lifecycle routes (contract §5.2).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use islet_store::{ListFilter, SandboxPatch};
use islet_types::{SandboxId, SandboxState};
use serde::Deserialize;

use super::create_body::{label, CreateBody, MAX_TIMEOUT_SEC};
use super::view::{sandbox_view, SandboxView};
use crate::api::extract::body;
use crate::api::extract::Caller;
use crate::api::extract::IdPath;
use crate::api::extract::{NameParam, Query, RawBody, TextPath};
use crate::api::wire::{self, Data, Page, Paged};
use crate::error::ApiError;
use crate::lifecycle::{self, CreateOutcome, Step};
use crate::state::AppState;

const MAX_IDEMPOTENCY_KEY: usize = 255;

/// One sandbox as an answer.
type Object = Json<Data<SandboxView>>;

fn object(record: &islet_store::SandboxRecord) -> Object {
    wire::data(sandbox_view(record))
}

#[derive(Deserialize)]
pub(crate) struct CreateQuery {
    wait: Option<String>,
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(query): Query<CreateQuery>,
    headers: HeaderMap,
    RawBody(bytes): RawBody,
) -> Result<Response, ApiError> {
    // A create billed to another organization is refused, not billed here.
    if let Some(named) = super::bill_to::override_of(&headers)? {
        super::bill_to::resolve(&super::bill_to::own_org(&state, &caller.tenant_id).await?, named)?;
    }
    let body = body::parse::<CreateBody>(&bytes)?;
    let (no_timeout, no_idle) = body.omits_timeouts();
    let mut req = body.validate()?;
    // A credential bound to one end user creates for that user (and a browser token's
    // workspace) only, at the isolation the tenant chose.
    if let Some(bound) = &caller.external_user_id {
        match &req.external_user_id {
            Some(asked) if asked != bound => {
                return Err(ApiError::Forbidden(format!(
                    "this credential creates sandboxes for `{bound}` only"
                )))
            }
            _ => req.external_user_id = Some(bound.clone()),
        }
        if let Some(workspace) = &caller.workspace_id {
            match &req.external_workspace_id {
                Some(asked) if asked != workspace => {
                    return Err(ApiError::Forbidden(format!(
                        "this credential creates sandboxes in workspace `{workspace}` only"
                    )))
                }
                _ => req.external_workspace_id = Some(workspace.clone()),
            }
        }
        if req.isolation.is_some() {
            return Err(ApiError::Forbidden(
                "isolation is the tenant's choice, not an end user's".into(),
            ));
        }
    }
    // The end user's policy supplies the timeouts a create leaves out.
    if let (Some(user), true) = (&req.external_user_id, no_timeout || no_idle) {
        let workspace = req.external_workspace_id.as_deref();
        let (limits, _) = state.store.user_standing(&caller.tenant_id, user, workspace).await?;
        if let (true, Some(t)) = (no_timeout, limits.default_timeout_sec) {
            req.timeout_sec = t.clamp(1, MAX_TIMEOUT_SEC);
        }
        if let (true, false, Some(i)) = (no_idle, req.always_on, limits.default_idle_timeout_sec) {
            req.idle_timeout_sec = (i > 0).then_some(i.min(MAX_TIMEOUT_SEC));
        }
    }
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY);
            Some(
                key.ok_or_else(|| {
                    ApiError::validation(
                        "Idempotency-Key must be 1..=255 visible ASCII characters",
                        "Idempotency-Key",
                    )
                })?
                .to_owned(),
            )
        }
    };
    let wait = !matches!(query.wait.as_deref(), Some("false") | Some("0"));
    let outcome = lifecycle::create(
        &state,
        &caller.tenant_id,
        caller.isolation,
        key,
        req,
        wait,
        create_answer,
    )
    .await?;
    let (status, body) = render_create(&outcome)?;
    Ok((status, Json(body)).into_response())
}

/// How a create's outcome is answered: 201 running, 202 still starting, 500
/// `SANDBOX_START_FAILED`, or the first answer to the same idempotency key again.
fn render_create(outcome: &CreateOutcome) -> Result<(StatusCode, serde_json::Value), ApiError> {
    Ok(match outcome {
        CreateOutcome::Started(record) => (StatusCode::CREATED, data(record)),
        CreateOutcome::Starting(record) => (StatusCode::ACCEPTED, data(record)),
        // The stored answer of a failed start names the sandbox; it has no request id, since
        // every replay is another request.
        CreateOutcome::StartFailed(record) => {
            let (status, error) =
                ApiError::StartFailed { sandbox_id: record.id.clone() }.envelope();
            (status, serde_json::json!({ "error": error }))
        }
        CreateOutcome::Replayed { status, body } => (
            StatusCode::from_u16(*status).unwrap_or(StatusCode::CREATED),
            serde_json::from_str(body).map_err(|e| ApiError::Internal(e.to_string()))?,
        ),
    })
}

/// [`render_create`] as kept for an idempotency key's replays.
pub(crate) fn create_answer(outcome: &CreateOutcome) -> (u16, String) {
    match render_create(outcome) {
        Ok((status, body)) => (status.as_u16(), body.to_string()),
        Err(_) => (500, String::new()),
    }
}

fn data(record: &islet_store::SandboxRecord) -> serde_json::Value {
    serde_json::to_value(Data { data: sandbox_view(record) }).unwrap_or_default()
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    state: Option<String>,
    tags: Option<String>,
    external_user_id: Option<String>,
    external_workspace_id: Option<String>,
    external_project_id: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Paged<SandboxView>>, ApiError> {
    let sandbox_state = q
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<SandboxState>())
        .transpose()
        .map_err(|e| ApiError::validation(e, "state"))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::validation("limit must be between 1 and 1000", "limit"));
    }
    // A credential bound to one end user lists that user's sandboxes only.
    let external_user_id = match (&caller.external_user_id, q.external_user_id) {
        (Some(bound), Some(asked)) if *bound != asked => {
            return Ok(Json(Paged {
                data: Vec::new(),
                page: Page { limit, offset: q.offset.unwrap_or(0), total: 0 },
            }))
        }
        (Some(bound), _) => Some(bound.clone()),
        (None, asked) => asked,
    };
    let filter = ListFilter {
        state: sandbox_state,
        external_user_id,
        external_workspace_id: q.external_workspace_id,
        external_project_id: q.external_project_id,
        tags: q
            .tags
            .map(|t| {
                t.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect()
            })
            .unwrap_or_default(),
        // A workspace's browser token lists that workspace's sandboxes and those in none.
        workspace_or_none: caller.workspace_id.clone().filter(|_| caller.user_bound()),
        include_destroyed: false,
        limit,
        offset: q.offset.unwrap_or(0),
    };
    let (records, total) = state.store.list_sandboxes(&caller.tenant_id, filter).await?;
    let items: Vec<_> = records.iter().map(sandbox_view).collect();
    Ok(Json(Paged { data: items, page: Page { limit, offset: q.offset.unwrap_or(0), total } }))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<SandboxId>,
) -> Result<Object, ApiError> {
    let record = state.store.get_sandbox(&caller.tenant_id, &id).await?;
    Ok(object(&record))
}

pub(crate) async fn get_by_name(
    State(state): State<AppState>,
    Caller(caller): Caller,
    TextPath(name, _): TextPath<NameParam>,
) -> Result<Object, ApiError> {
    let record = state.store.get_sandbox_by_name(&caller.tenant_id, &name).await?;
    if !caller.reaches(&record) {
        return Err(ApiError::NotFound("sandbox"));
    }
    Ok(object(&record))
}

#[derive(Deserialize)]
pub(crate) struct PatchBody {
    name: Option<String>,
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    tags: Option<Vec<String>>,
    timeout_sec: Option<u64>,
    idle_timeout_sec: Option<u64>,
}

/// A patch goes through the create body's own checks, field by field.
fn validate_patch(b: PatchBody) -> Result<SandboxPatch, ApiError> {
    use super::create_body::{idle_timeout, metadata, tags, timeout};
    Ok(SandboxPatch {
        name: label(b.name, "name")?.map(Some),
        metadata: b.metadata.map(metadata).transpose()?,
        tags: b.tags.map(tags).transpose()?,
        timeout_sec: b.timeout_sec.map(timeout).transpose()?,
        idle_timeout_sec: b.idle_timeout_sec.map(idle_timeout).transpose()?,
    })
}

pub(crate) async fn patch(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<SandboxId>,
    RawBody(bytes): RawBody,
) -> Result<Object, ApiError> {
    let patch = validate_patch(body::parse(&bytes)?)?;
    let record = state.store.patch_sandbox(&caller.tenant_id, &id, patch).await?;
    Ok(object(&record))
}

#[derive(Deserialize)]
pub(crate) struct TagsBody {
    tags: Vec<String>,
}

pub(crate) async fn set_tags(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<SandboxId>,
    RawBody(bytes): RawBody,
) -> Result<Object, ApiError> {
    let tags: TagsBody = body::parse(&bytes)?;
    let patch = validate_patch(PatchBody {
        name: None,
        metadata: None,
        tags: Some(tags.tags),
        timeout_sec: None,
        idle_timeout_sec: None,
    })?;
    let record = state.store.patch_sandbox(&caller.tenant_id, &id, patch).await?;
    Ok(object(&record))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<SandboxId>,
) -> Result<StatusCode, ApiError> {
    lifecycle::destroy(&state, &caller.tenant_id, &id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn stop(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<SandboxId>,
) -> Result<Object, ApiError> {
    let record = lifecycle::apply(&state, &caller.tenant_id, &id, Step::Stop).await?;
    Ok(object(&record))
}

pub(crate) async fn pause(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<SandboxId>,
) -> Result<Object, ApiError> {
    let record = lifecycle::apply(&state, &caller.tenant_id, &id, Step::Pause).await?;
    Ok(object(&record))
}

pub(crate) async fn resume(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<SandboxId>,
) -> Result<Object, ApiError> {
    let record = lifecycle::apply(&state, &caller.tenant_id, &id, Step::Resume).await?;
    Ok(object(&record))
}

#[derive(Deserialize)]
pub(crate) struct ExtendBody {
    timeout_sec: Option<u64>,
}

/// Keep-alive: the sandbox lives `timeout_sec` (or its current timeout) from now.
pub(crate) async fn extend(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<SandboxId>,
    RawBody(bytes): RawBody,
) -> Result<Object, ApiError> {
    let body: ExtendBody = body::parse(&bytes)?;
    let current = state.store.get_sandbox(&caller.tenant_id, &id).await?;
    if current.state == SandboxState::Destroyed || current.state == SandboxState::Destroying {
        return Err(ApiError::NotRunning(current.state.to_string()));
    }
    let patch = validate_patch(PatchBody {
        name: None,
        metadata: None,
        tags: None,
        timeout_sec: Some(body.timeout_sec.unwrap_or(current.timeout_sec)),
        idle_timeout_sec: None,
    })?;
    let record = state.store.patch_sandbox(&caller.tenant_id, &id, patch).await?;
    Ok(object(&record))
}

//! Per-user quotas and policy documents (contract §11): `/quotas/external/{uid}`,
//! `/external-users/{uid}/policy`, `/external-users/{uid}/effective-policy`,
//! `/workspaces/{ws}/policy` and `/tenant/policy`. Quotas are the `quotas` section of the
//! user's policy document, so the two APIs read and write the same values; the tenant's
//! document holds the defaults, and a workspace's (an `external_workspace_id`) the defaults of
//! the sandboxes created in it, between the tenant's and the user's.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use islet_store::{Subject, SuspendedBy};
use islet_types::policy::{self, Holding, Limits, QUOTA_FIELDS};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::api::extract::body;
use crate::api::extract::Caller;
use crate::api::extract::{Query, RawBody, TextPath, Uid, WorkspaceParam};
use crate::api::wire::{self, Data};
use crate::error::ApiError;
use crate::state::AppState;

/// An external user id in a path: what `external_user_id` accepts on a sandbox.
pub(crate) fn user_id(raw: &str) -> Result<String, ApiError> {
    Ok(super::create_body::label(Some(raw.to_owned()), "external_user_id")?.unwrap_or_default())
}

/// A workspace id in a path or query: what `external_workspace_id` accepts on a sandbox.
pub(crate) fn workspace_id(raw: &str) -> Result<String, ApiError> {
    Ok(super::create_body::label(Some(raw.to_owned()), "external_workspace_id")?
        .unwrap_or_default())
}

fn limit_values(limits: &Limits) -> Map<String, Value> {
    let values = [
        limits.max_sandboxes,
        limits.max_concurrent,
        limits.max_cpu,
        limits.max_memory_mb,
        limits.max_storage_gb,
        limits.max_runtime_sec,
        limits.max_sandbox_seconds_per_day,
        limits.max_credit_cents,
    ];
    QUOTA_FIELDS.iter().zip(values).map(|(f, v)| ((*f).to_owned(), json!(v))).collect()
}

/// The quota view: effective limits flat and under `limits` (null = uncapped), where each
/// came from, and what the user holds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct QuotaView {
    pub external_user_id: String,
    /// Every quota field at the top level too, as the SDK reads them.
    #[serde(flatten)]
    pub flat: Map<String, Value>,
    pub limits: Map<String, Value>,
    /// `user`, `tenant` or `default` for each field.
    pub sources: Map<String, Value>,
    pub usage: Held,
}

/// What an end user holds now.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Held {
    pub sandboxes: u64,
    /// `sandboxes` again, as the SDK names it.
    pub total_sandboxes: u64,
    pub concurrent: u64,
    pub cpu: u64,
    pub memory_mb: u64,
    pub storage_gb: f64,
}

/// `GET /external-users/{uid}`: the quota view and the user's suspension.
#[derive(Debug, Serialize)]
pub(crate) struct UserView {
    #[serde(flatten)]
    pub quota: QuotaView,
    pub suspended: bool,
    pub suspended_at: Option<String>,
    /// `tenant` or `operator`.
    pub suspended_by: Option<&'static str>,
    pub suspension_reason: Option<String>,
}

/// `POST /external-users/{uid}/suspend`.
#[derive(Debug, Serialize)]
pub(crate) struct Suspended {
    pub external_user_id: String,
    pub suspended: bool,
    /// The sandboxes stopped now (the reaper stops any that could not be).
    pub stopped: Vec<islet_types::SandboxId>,
}

/// `POST /external-users/{uid}/unsuspend`.
#[derive(Debug, Serialize)]
pub(crate) struct Unsuspended {
    pub external_user_id: String,
    pub suspended: bool,
    pub was_suspended: bool,
}

/// One field of `GET /external-users/{uid}/effective-policy`.
#[derive(Debug, Serialize)]
pub(crate) struct Effective {
    pub value: Value,
    pub source: &'static str,
}

fn quota_view(
    user: &str,
    limits: &Limits,
    held: &Holding,
    sources: Map<String, Value>,
) -> QuotaView {
    let values = limit_values(limits);
    QuotaView {
        external_user_id: user.to_owned(),
        flat: values.clone(),
        limits: values,
        sources,
        usage: Held {
            sandboxes: held.sandboxes,
            total_sandboxes: held.sandboxes,
            concurrent: held.concurrent,
            cpu: held.cpu,
            memory_mb: held.memory_mb,
            storage_gb: held.storage_mb as f64 / 1024.0,
        },
    }
}

async fn quota_answer(
    state: &AppState,
    tenant: &islet_types::TenantId,
    user: &str,
) -> Result<QuotaView, ApiError> {
    let held = state.store.user_holding(tenant, user).await?;
    // The limits and their sources from the same documents, read once. A user's quotas are
    // theirs outside any workspace; a workspace's document adds to them for its sandboxes.
    let docs = state.store.policy_documents(tenant, user, None).await?;
    let limits = Limits::of(&docs);
    let sources: Map<String, Value> = policy::effective(&docs)
        .into_iter()
        .filter(|(section, _)| section == "quotas")
        .flat_map(|(_, fields)| fields)
        .map(|(f, e)| (f, json!(e.source.as_str())))
        .collect();
    Ok(quota_view(user, &limits, &held, sources))
}

/// A policy document: the tenant's own JSON, validated section by section.
type Document = Json<Data<Map<String, Value>>>;

pub(crate) async fn get_quota(
    State(state): State<AppState>,
    Caller(caller): Caller,
    TextPath(uid, _): TextPath<Uid>,
) -> Result<Json<Data<QuotaView>>, ApiError> {
    let user = user_id(&uid)?;
    Ok(wire::data(quota_answer(&state, &caller.tenant_id, &user).await?))
}

/// `PUT /quotas/external/{uid}`: the user's quotas become exactly the fields given; a field
/// left out is not capped for this user (the tenant's default, if any, applies).
pub(crate) async fn put_quota(
    State(state): State<AppState>,
    Caller(caller): Caller,
    TextPath(uid, _): TextPath<Uid>,
    RawBody(bytes): RawBody,
) -> Result<Json<Data<QuotaView>>, ApiError> {
    let user = user_id(&uid)?;
    let given: Map<String, Value> = body::parse(&bytes)?;
    for field in given.keys() {
        if !QUOTA_FIELDS.contains(&field.as_str()) {
            return Err(ApiError::Validation {
                message: format!("unknown quota `{field}`; known: {}", QUOTA_FIELDS.join(", ")),
                field: None,
            });
        }
    }
    policy::validate(&json!({ "quotas": given }))
        .map_err(|e| ApiError::Validation { message: e.0, field: None })?;
    let section: Map<String, Value> = given.into_iter().filter(|(_, v)| !v.is_null()).collect();
    state
        .store
        .set_policy_section(&caller.tenant_id, Subject::User(user.clone()), "quotas", Some(section))
        .await?;
    Ok(wire::data(quota_answer(&state, &caller.tenant_id, &user).await?))
}

pub(crate) async fn delete_quota(
    State(state): State<AppState>,
    Caller(caller): Caller,
    TextPath(uid, _): TextPath<Uid>,
) -> Result<StatusCode, ApiError> {
    let user = user_id(&uid)?;
    state.store.set_policy_section(&caller.tenant_id, Subject::User(user), "quotas", None).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_doc(
    state: &AppState,
    tenant: &islet_types::TenantId,
    subject: Subject,
) -> Result<Document, ApiError> {
    let doc = state.store.policy(tenant, subject).await?.unwrap_or_default();
    Ok(wire::data(doc))
}

async fn put_doc(
    state: &AppState,
    tenant: &islet_types::TenantId,
    subject: Subject,
    bytes: &Bytes,
) -> Result<Document, ApiError> {
    let raw: Value = body::parse(bytes)?;
    // `{"policy": {...}}` is accepted as well as the bare document.
    let raw = match raw.get("policy") {
        Some(inner) if raw.as_object().is_some_and(|o| o.len() == 1) => inner.clone(),
        _ => raw,
    };
    let doc =
        policy::validate(&raw).map_err(|e| ApiError::Validation { message: e.0, field: None })?;
    state.store.set_policy(tenant, subject, Some(doc.clone())).await?;
    Ok(wire::data(doc))
}

pub(crate) async fn get_user_policy(
    State(state): State<AppState>,
    Caller(caller): Caller,
    TextPath(uid, _): TextPath<Uid>,
) -> Result<Document, ApiError> {
    get_doc(&state, &caller.tenant_id, Subject::User(user_id(&uid)?)).await
}

pub(crate) async fn put_user_policy(
    State(state): State<AppState>,
    Caller(caller): Caller,
    TextPath(uid, _): TextPath<Uid>,
    RawBody(bytes): RawBody,
) -> Result<Document, ApiError> {
    put_doc(&state, &caller.tenant_id, Subject::User(user_id(&uid)?), &bytes).await
}

pub(crate) async fn delete_user_policy(
    State(state): State<AppState>,
    Caller(caller): Caller,
    TextPath(uid, _): TextPath<Uid>,
) -> Result<StatusCode, ApiError> {
    state.store.set_policy(&caller.tenant_id, Subject::User(user_id(&uid)?), None).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn get_workspace_policy(
    State(state): State<AppState>,
    Caller(caller): Caller,
    TextPath(ws, _): TextPath<WorkspaceParam>,
) -> Result<Document, ApiError> {
    get_doc(&state, &caller.tenant_id, Subject::Workspace(workspace_id(&ws)?)).await
}

pub(crate) async fn put_workspace_policy(
    State(state): State<AppState>,
    Caller(caller): Caller,
    TextPath(ws, _): TextPath<WorkspaceParam>,
    RawBody(bytes): RawBody,
) -> Result<Document, ApiError> {
    put_doc(&state, &caller.tenant_id, Subject::Workspace(workspace_id(&ws)?), &bytes).await
}

pub(crate) async fn delete_workspace_policy(
    State(state): State<AppState>,
    Caller(caller): Caller,
    TextPath(ws, _): TextPath<WorkspaceParam>,
) -> Result<StatusCode, ApiError> {
    let subject = Subject::Workspace(workspace_id(&ws)?);
    state.store.set_policy(&caller.tenant_id, subject, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn get_tenant_policy(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Document, ApiError> {
    get_doc(&state, &caller.tenant_id, Subject::Tenant).await
}

pub(crate) async fn put_tenant_policy(
    State(state): State<AppState>,
    Caller(caller): Caller,
    RawBody(bytes): RawBody,
) -> Result<Document, ApiError> {
    put_doc(&state, &caller.tenant_id, Subject::Tenant, &bytes).await
}

pub(crate) async fn delete_tenant_policy(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<StatusCode, ApiError> {
    state.store.set_policy(&caller.tenant_id, Subject::Tenant, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct SuspendBody {
    reason: Option<String>,
}

/// `GET /external-users/{uid}`: whether the user is suspended, their limits and holdings.
pub(crate) async fn get_user(
    State(state): State<AppState>,
    Caller(caller): Caller,
    TextPath(uid, _): TextPath<Uid>,
) -> Result<Json<Data<UserView>>, ApiError> {
    let user = user_id(&uid)?;
    let suspension = state.store.suspension(&caller.tenant_id, &user).await?;
    Ok(wire::data(UserView {
        quota: quota_answer(&state, &caller.tenant_id, &user).await?,
        suspended: suspension.is_some(),
        suspended_at: suspension.as_ref().map(|s| islet_types::time::rfc3339(s.at)),
        suspended_by: suspension.as_ref().map(|s| s.by.as_str()),
        suspension_reason: suspension.and_then(|s| s.reason),
    }))
}

/// `POST /external-users/{uid}/suspend {"reason"?}`: the user's sandboxes stop, their
/// user-bound keys and browser tokens die, and nothing of theirs is admitted until
/// `POST /external-users/{uid}/unsuspend`.
pub(crate) async fn suspend(
    State(state): State<AppState>,
    Caller(caller): Caller,
    TextPath(uid, _): TextPath<Uid>,
    RawBody(bytes): RawBody,
) -> Result<Json<Data<Suspended>>, ApiError> {
    let user = user_id(&uid)?;
    let b: SuspendBody = body::parse(&bytes)?;
    if b.reason.as_ref().is_some_and(|r| r.len() > 500) {
        return Err(ApiError::validation("reason must be at most 500 bytes", "reason"));
    }
    state.store.suspend_user(&caller.tenant_id, &user, b.reason, SuspendedBy::Tenant).await?;
    let mut stopped = Vec::new();
    for (tenant, id) in state.store.suspended_running().await? {
        if tenant != caller.tenant_id {
            continue;
        }
        match crate::lifecycle::apply(&state, &tenant, &id, crate::lifecycle::Step::Stop).await {
            Ok(_) => stopped.push(id),
            Err(e) => {
                tracing::warn!(sandbox_id = %id, error = %e, "stopping a suspended user's sandbox failed; the reaper retries")
            }
        }
    }
    Ok(wire::data(Suspended { external_user_id: user, suspended: true, stopped }))
}

pub(crate) async fn unsuspend(
    State(state): State<AppState>,
    Caller(caller): Caller,
    TextPath(uid, _): TextPath<Uid>,
) -> Result<Json<Data<Unsuspended>>, ApiError> {
    let user = user_id(&uid)?;
    let (was, _) =
        state.store.unsuspend_user(&caller.tenant_id, &user, SuspendedBy::Tenant).await?;
    Ok(wire::data(Unsuspended { external_user_id: user, suspended: false, was_suspended: was }))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EffectiveParams {
    /// The workspace whose sandboxes are asked about (`external_workspace_id` is the same).
    workspace_id: Option<String>,
    external_workspace_id: Option<String>,
}

/// `GET /external-users/{uid}/effective-policy[?workspace_id=]`:
/// `{section: {field: {value, source}}}`, for the user's sandboxes in that workspace.
pub(crate) async fn effective_policy(
    State(state): State<AppState>,
    Caller(caller): Caller,
    TextPath(uid, _): TextPath<Uid>,
    Query(params): Query<EffectiveParams>,
) -> Result<Json<Data<BTreeMap<String, BTreeMap<String, Effective>>>>, ApiError> {
    let user = user_id(&uid)?;
    let workspace = params.workspace_id.or(params.external_workspace_id);
    let workspace = workspace.as_deref().map(workspace_id).transpose()?;
    let docs = state.store.policy_documents(&caller.tenant_id, &user, workspace.as_deref()).await?;
    let doc: BTreeMap<String, BTreeMap<String, Effective>> = policy::effective(&docs)
        .into_iter()
        .map(|(section, fields)| {
            let fields = fields
                .into_iter()
                .map(|(f, e)| (f, Effective { value: e.value, source: e.source.as_str() }))
                .collect();
            (section, fields)
        })
        .collect();
    Ok(wire::data(doc))
}

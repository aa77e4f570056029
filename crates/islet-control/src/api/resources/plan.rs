//! `GET /tenant/plan`: the tenant's plan on this platform — the limits the platform sets for
//! every tenant and what the tenant holds now — and the MIOSA calls that cannot mean anything
//! here, refused with their reason.

use axum::extract::State;
use axum::Json;
use islet_types::time::rfc3339;
use islet_types::{SandboxId, TenantId};
use serde::Serialize;

use super::create_body::MAX_TIMEOUT_SEC;
use super::event_stream::MAX_STREAMS_PER_TENANT;
use super::webhooks::MAX_WEBHOOKS_PER_TENANT;
use crate::api::extract::{Caller, IdPath, BODY_LIMIT};
use crate::api::wire::{self, Data};
use crate::error::ApiError;
use crate::state::AppState;

/// The tenant and its plan.
#[derive(Debug, Serialize)]
pub(crate) struct PlanView {
    pub tenant_id: TenantId,
    pub name: String,
    /// Self-hosted Islet has one plan: what the operator configured.
    pub plan: &'static str,
    /// The isolation its sandboxes get (`container` or `gvisor`).
    pub isolation: &'static str,
    pub created_at: String,
    pub limits: PlatformLimits,
    pub usage: Holdings,
}

/// What the platform allows every tenant.
#[derive(Debug, Serialize)]
pub(crate) struct PlatformLimits {
    /// Requests per second per API key or browser token (0: no limit).
    pub api_requests_per_sec: u32,
    /// Requests per second per end user, across their tokens (0: no limit).
    pub user_requests_per_sec: u32,
    pub max_timeout_sec: u64,
    pub max_webhooks: usize,
    pub max_event_streams: usize,
    pub max_request_body_bytes: usize,
    /// End users' own limits are the tenant's policy (`/tenant/policy`, `/quotas/external`).
    pub per_user_limits: &'static str,
}

/// What the tenant's sandboxes hold now.
#[derive(Debug, Serialize)]
pub(crate) struct Holdings {
    /// Not destroyed.
    pub sandboxes: u64,
    /// Creating, running or paused.
    pub live_sandboxes: u64,
    pub cpu: u64,
    pub memory_mb: u64,
    pub storage_mb: u64,
}

/// What the platform allows every tenant.
pub(crate) fn platform_limits(state: &AppState) -> PlatformLimits {
    PlatformLimits {
        api_requests_per_sec: state.config.api_rate_limit,
        user_requests_per_sec: state.config.api_user_rate_limit,
        max_timeout_sec: MAX_TIMEOUT_SEC,
        max_webhooks: MAX_WEBHOOKS_PER_TENANT,
        max_event_streams: MAX_STREAMS_PER_TENANT,
        max_request_body_bytes: BODY_LIMIT,
        per_user_limits: "the tenant's policy: GET /tenant/policy, /quotas/external/{uid}",
    }
}

/// What the tenant's sandboxes hold now.
pub(crate) async fn holdings(state: &AppState, tenant: &TenantId) -> Result<Holdings, ApiError> {
    let held = state.store.tenant_holding(tenant).await?;
    Ok(Holdings {
        sandboxes: held.sandboxes,
        live_sandboxes: held.concurrent,
        cpu: held.cpu,
        memory_mb: held.memory_mb,
        storage_mb: held.storage_mb,
    })
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<Data<PlanView>>, ApiError> {
    let (name, isolation, created_at) = state.store.tenant(&caller.tenant_id).await?;
    let usage = holdings(&state, &caller.tenant_id).await?;
    Ok(wire::data(PlanView {
        tenant_id: caller.tenant_id,
        name,
        plan: "self-hosted",
        isolation: isolation.unwrap_or(state.config.default_isolation).as_str(),
        created_at: rfc3339(created_at),
        limits: platform_limits(&state),
        usage,
    }))
}

/// `POST /sandboxes/{id}/browser/cdp-url`: no template here runs a browser to grant. The
/// sandbox must be the caller's first: another tenant's is 404, as everywhere.
pub(crate) async fn browser_cdp_url(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<SandboxId>,
) -> ApiError {
    if let Err(e) = state.store.get_sandbox(&caller.tenant_id, &id).await {
        return e.into();
    }
    ApiError::Unsupported {
        what: "browser CDP grants",
        reason: "no template runs a browser; run a CDP-speaking browser in the sandbox and expose its port as a preview",
    }
}

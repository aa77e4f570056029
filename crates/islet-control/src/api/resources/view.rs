//! The sandbox object on the wire (contract §5.1).

use islet_store::SandboxRecord;
use islet_types::time::{now_millis, rfc3339};
use islet_types::{SandboxId, SandboxState, TenantId};
use serde::Serialize;
use serde_json::{Map, Value};

/// A sandbox as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct SandboxView {
    pub id: SandboxId,
    pub state: &'static str,
    /// `state == "running"`.
    pub ready: bool,
    pub tenant_id: TenantId,
    pub template_id: String,
    pub name: Option<String>,
    pub external_user_id: Option<String>,
    pub external_workspace_id: Option<String>,
    pub external_project_id: Option<String>,
    pub metadata: Map<String, Value>,
    pub tags: Vec<String>,
    /// The size tier its resources match, if any.
    pub size: Option<&'static str>,
    pub cpu_count: u32,
    pub memory_mb: u32,
    pub disk_mb: u32,
    /// `disk_mb` again, as the SDK reads it.
    pub disk_size_mb: u32,
    pub isolation: &'static str,
    pub timeout_sec: u64,
    /// Until `expires_at`, for a sandbox that is live or stopped.
    pub timeout_remaining_ms: Option<i64>,
    pub idle_timeout_sec: Option<u64>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub ready_at: Option<String>,
    pub destroyed_at: Option<String>,
    pub expires_at: Option<String>,
    /// From its first start to its destroy (or now).
    pub total_runtime_sec: Option<i64>,
    pub boot_ms: Option<i64>,
    pub error: Option<String>,
    pub slug: Option<String>,
    /// Never stopped as idle.
    pub always_on: bool,
}

pub(crate) fn sandbox_view(r: &SandboxRecord) -> SandboxView {
    let now = now_millis();
    let remaining = r
        .expires_at
        .filter(|_| r.state.is_live() || r.state == SandboxState::Stopped)
        .map(|e| (e - now).max(0));
    let runtime_end = r.destroyed_at.unwrap_or(now);
    SandboxView {
        id: r.id.clone(),
        state: r.state.as_str(),
        ready: r.state == SandboxState::Running,
        tenant_id: r.tenant_id.clone(),
        template_id: r.template_id.clone(),
        name: r.name.clone(),
        external_user_id: r.external_user_id.clone(),
        external_workspace_id: r.external_workspace_id.clone(),
        external_project_id: r.external_project_id.clone(),
        metadata: r.metadata.clone(),
        tags: r.tags.clone(),
        size: r.resources.tier(),
        cpu_count: r.resources.cpu_count,
        memory_mb: r.resources.memory_mb,
        disk_mb: r.resources.disk_mb,
        disk_size_mb: r.resources.disk_mb,
        isolation: r.isolation.as_str(),
        timeout_sec: r.timeout_sec,
        timeout_remaining_ms: remaining,
        idle_timeout_sec: r.idle_timeout_sec,
        created_at: rfc3339(r.created_at),
        started_at: r.started_at.map(rfc3339),
        ready_at: r.ready_at.map(rfc3339),
        destroyed_at: r.destroyed_at.map(rfc3339),
        expires_at: r.expires_at.map(rfc3339),
        total_runtime_sec: r.started_at.map(|s| (runtime_end - s).max(0) / 1000),
        boot_ms: r.boot_ms,
        error: r.error.clone(),
        slug: r.slug.clone(),
        always_on: r.always_on,
    }
}

/// `GET /sandboxes/{id}/readiness`.
#[derive(Debug, Serialize)]
pub(crate) struct Readiness {
    pub ready: bool,
    pub state: &'static str,
}

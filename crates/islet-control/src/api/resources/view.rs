//! The sandbox object on the wire (contract §5.1).

use islet_store::SandboxRecord;
use islet_types::time::{now_millis, rfc3339};
use islet_types::SandboxState;

pub fn sandbox_view(r: &SandboxRecord) -> serde_json::Value {
    let now = now_millis();
    let remaining = r
        .expires_at
        .filter(|_| r.state.is_live() || r.state == SandboxState::Stopped)
        .map(|e| (e - now).max(0));
    let runtime_end = r.destroyed_at.unwrap_or(now);
    serde_json::json!({
        "id": r.id,
        "state": r.state.as_str(),
        "ready": r.state == SandboxState::Running,
        "tenant_id": r.tenant_id,
        "template_id": r.template_id,
        "name": r.name,
        "external_user_id": r.external_user_id,
        "external_workspace_id": r.external_workspace_id,
        "external_project_id": r.external_project_id,
        "metadata": r.metadata,
        "tags": r.tags,
        "size": r.resources.tier(),
        "cpu_count": r.resources.cpu_count,
        "memory_mb": r.resources.memory_mb,
        "disk_mb": r.resources.disk_mb,
        "disk_size_mb": r.resources.disk_mb,
        "isolation": r.isolation.as_str(),
        "timeout_sec": r.timeout_sec,
        "timeout_remaining_ms": remaining,
        "idle_timeout_sec": r.idle_timeout_sec,
        "created_at": rfc3339(r.created_at),
        "started_at": r.started_at.map(rfc3339),
        "ready_at": r.ready_at.map(rfc3339),
        "destroyed_at": r.destroyed_at.map(rfc3339),
        "expires_at": r.expires_at.map(rfc3339),
        "total_runtime_sec": r.started_at.map(|s| (runtime_end - s).max(0) / 1000),
        "boot_ms": r.boot_ms,
        "error": r.error,
    })
}

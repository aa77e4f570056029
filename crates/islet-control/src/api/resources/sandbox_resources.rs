//! A sandbox's CPU and memory (`GET` and `PATCH /sandboxes/{id}/resources`): read, and changed
//! within the end user's quota, live on a running sandbox of either isolation level.

use axum::extract::State;
use axum::Json;
use islet_store::SandboxRecord;
use islet_types::{Resources, SandboxId, SandboxState};
use serde::{Deserialize, Serialize};

use crate::api::extract::{body, Caller, IdPath, RawBody};
use crate::api::wire::{self, Data};
use crate::error::ApiError;
use crate::lifecycle;
use crate::state::AppState;

/// `GET /sandboxes/{id}/resources`.
#[derive(Debug, Serialize)]
pub(crate) struct ResourcesView {
    pub id: SandboxId,
    pub resources: Current,
    pub capabilities: Capabilities,
}

#[derive(Debug, Serialize)]
pub(crate) struct Current {
    pub cpu: u32,
    /// `cpu` again, as create names it.
    pub cpu_count: u32,
    pub memory_mb: u32,
    /// Fixed at create: the sandbox's disk is a filesystem image of this size.
    pub disk_mb: u32,
}

/// What can change live, now.
#[derive(Debug, Serialize)]
pub(crate) struct Capabilities {
    pub live_cpu: bool,
    pub live_memory: bool,
    pub max_cpu: u32,
    pub max_memory_mb: u32,
    /// Why a change would not apply live, when it would not.
    pub reason: Option<&'static str>,
}

/// `PATCH /sandboxes/{id}/resources`: what changed and how.
#[derive(Debug, Serialize)]
pub(crate) struct Resized {
    /// Applied to the running sandbox at once (otherwise when it runs again).
    pub applied_live: bool,
    pub requires_restart: bool,
    pub changes: Changes,
    pub resources: Current,
    pub capabilities: Capabilities,
}

#[derive(Debug, Serialize)]
pub(crate) struct Changes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_count: Option<Change>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<Change>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Change {
    pub from: u32,
    pub to: u32,
}

fn current(r: &Resources) -> Current {
    Current { cpu: r.cpu_count, cpu_count: r.cpu_count, memory_mb: r.memory_mb, disk_mb: r.disk_mb }
}

fn capabilities(record: &SandboxRecord) -> Capabilities {
    let on_host = matches!(record.state, SandboxState::Running | SandboxState::Paused);
    Capabilities {
        live_cpu: on_host,
        live_memory: on_host,
        max_cpu: Resources::MAX_CPU,
        max_memory_mb: Resources::MAX_MEMORY_MB,
        reason: (!on_host).then_some("not running: a change applies when it starts again"),
    }
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<SandboxId>,
) -> Result<Json<Data<ResourcesView>>, ApiError> {
    let record = state.store.get_sandbox(&caller.tenant_id, &id).await?;
    Ok(wire::data(ResourcesView {
        id: record.id.clone(),
        resources: current(&record.resources),
        capabilities: capabilities(&record),
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResizeBody {
    cpu_count: Option<u32>,
    memory_mb: Option<u32>,
}

pub(crate) async fn resize(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<SandboxId>,
    RawBody(bytes): RawBody,
) -> Result<Json<Data<Resized>>, ApiError> {
    // The sandbox first: another tenant's is 404 whatever the body says.
    state.store.get_sandbox(&caller.tenant_id, &id).await?;
    let b: ResizeBody = body::parse(&bytes)?;
    if b.cpu_count.is_none() && b.memory_mb.is_none() {
        return Err(ApiError::validation("give cpu_count, memory_mb or both", "cpu_count"));
    }
    // The new size is worked out under the sandbox's lock, from what it has then.
    let (before, after, live) =
        lifecycle::resize(&state, &caller.tenant_id, &id, b.cpu_count, b.memory_mb).await?;
    let change = |from: u32, to: u32| (from != to).then_some(Change { from, to });
    Ok(wire::data(Resized {
        applied_live: live,
        requires_restart: false,
        changes: Changes {
            cpu_count: change(before.resources.cpu_count, after.resources.cpu_count),
            memory_mb: change(before.resources.memory_mb, after.resources.memory_mb),
        },
        resources: current(&after.resources),
        capabilities: capabilities(&after),
    }))
}

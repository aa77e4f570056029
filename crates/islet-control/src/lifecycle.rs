//! Sandbox lifecycle commands. Handlers call these; they call the store and the runtime.
//! Operations on one sandbox are serialised by a per-sandbox lock, so a destroy that arrives
//! during a create waits for it instead of racing it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http::StatusCode;
use islet_runtime::SandboxSpec;
use islet_store::{BeginCreate, SandboxRecord, TransitionFacts};
use islet_types::sandbox::{Isolation, Transition};
use islet_types::{CreateSandbox, SandboxId, SandboxState, TenantId};

use crate::api::view::sandbox_view;
use crate::error::ApiError;
use crate::state::AppState;

type Locks = Mutex<HashMap<SandboxId, Arc<tokio::sync::Mutex<()>>>>;

fn locks() -> &'static Locks {
    static LOCKS: OnceLock<Locks> = OnceLock::new();
    LOCKS.get_or_init(Default::default)
}

/// Hold the sandbox's operation lock for the life of the guard.
async fn lock(id: &SandboxId) -> tokio::sync::OwnedMutexGuard<()> {
    let mutex = {
        let mut map = locks().lock().unwrap_or_else(|e| e.into_inner());
        map.entry(id.clone()).or_default().clone()
    };
    mutex.lock_owned().await
}

/// Is an operation on this sandbox in progress right now?
pub(crate) fn busy(id: &SandboxId) -> bool {
    let map = locks().lock().unwrap_or_else(|e| e.into_inner());
    map.get(id).is_some_and(|m| m.try_lock().is_err())
}

/// Start again a sandbox left in `creating` by a task that died: take down whatever that task
/// built (files kept), then start it as usual.
pub(crate) async fn retry_start(state: &AppState, id: &SandboxId) -> Result<Created, ApiError> {
    {
        let _guard = lock(id).await;
        let record = state.store.get_sandbox_any(id).await?;
        if record.state != SandboxState::Creating {
            return Ok(Created {
                status: StatusCode::CREATED,
                body: serde_json::json!({ "data": sandbox_view(state, &record) }),
            });
        }
        state.runtime.stop(id, record.isolation, record.net_index).await?;
    }
    start(state, id, true).await
}

fn forget_lock(id: &SandboxId) {
    let mut map = locks().lock().unwrap_or_else(|e| e.into_inner());
    if map.get(id).is_some_and(|m| Arc::strong_count(m) == 1) {
        map.remove(id);
    }
}

/// Run lifecycle work on a task of its own. A request handler's future is dropped when its
/// client disconnects; lifecycle work must never stop between two steps because of that.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(work)
        .await
        .map_err(|e| ApiError::Internal(format!("lifecycle task failed: {e}")))?
}

/// Admit and start a sandbox (see [`create_attached`]), unaffected by the caller going away.
pub async fn create(
    state: &AppState,
    tenant: &TenantId,
    tenant_isolation: Option<Isolation>,
    idempotency_key: Option<String>,
    req: CreateSandbox,
    wait: bool,
) -> Result<Created, ApiError> {
    let (state, tenant) = (state.clone(), tenant.clone());
    detached(async move {
        create_attached(&state, &tenant, tenant_isolation, idempotency_key, req, wait).await
    })
    .await
}

pub async fn destroy(
    state: &AppState,
    tenant: &TenantId,
    id: &SandboxId,
    timed_out: bool,
) -> Result<SandboxRecord, ApiError> {
    let (state, tenant, id) = (state.clone(), tenant.clone(), id.clone());
    detached(async move { destroy_attached(&state, &tenant, &id, timed_out).await }).await
}

/// A lifecycle step on an existing sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Stop,
    Pause,
    Resume,
}

/// Apply `step` to the tenant's sandbox, unaffected by the caller going away.
pub async fn apply(
    state: &AppState,
    tenant: &TenantId,
    id: &SandboxId,
    step: Step,
) -> Result<SandboxRecord, ApiError> {
    let (state, tenant, id) = (state.clone(), tenant.clone(), id.clone());
    detached(async move {
        match step {
            Step::Stop => stop_attached(&state, &tenant, &id).await,
            Step::Pause => pause_attached(&state, &tenant, &id).await,
            Step::Resume => resume_attached(&state, &tenant, &id).await,
        }
    })
    .await
}

/// The result of a create: status and the JSON body to send (and to replay).
pub struct Created {
    pub status: StatusCode,
    pub body: serde_json::Value,
}

fn hostname(id: &SandboxId) -> String {
    id.as_str().replace('_', "-")
}

fn spec(record: &SandboxRecord) -> Result<SandboxSpec, ApiError> {
    Ok(SandboxSpec {
        id: record.id.clone(),
        hostname: hostname(&record.id),
        template: record.template_id.clone(),
        isolation: record.isolation,
        resources: record.resources,
        env: record.env.clone(),
        net_index: record
            .net_index
            .ok_or_else(|| ApiError::Internal("sandbox has no network slot".into()))?,
        egress_group: record.tenant_id.to_string(),
    })
}

/// Admit and start a sandbox. With an idempotency key, concurrent and repeated requests with
/// the same body get the same sandbox; a different body gets 422.
async fn create_attached(
    state: &AppState,
    tenant: &TenantId,
    tenant_isolation: Option<Isolation>,
    idempotency_key: Option<String>,
    req: CreateSandbox,
    wait: bool,
) -> Result<Created, ApiError> {
    let isolation = req.isolation.or(tenant_isolation).unwrap_or(state.config.default_isolation);
    let keyed = idempotency_key.is_some();
    let pool = state.pool.get().cloned();
    match state.store.begin_create(tenant, idempotency_key, req, isolation, pool).await? {
        BeginCreate::Claimed(record) => {
            tracing::info!(sandbox_id = %record.id, "sandbox taken from the warm pool");
            // It started under the pool's rules; from now on it is held to the tenant's. If
            // that cannot be made so, it does not run for the tenant unrestricted: it is stopped
            // (a resume starts it again under the rules, or fails).
            if let Some(slot) = record.net_index {
                if let Err(e) = state.runtime.rebind_egress(slot, tenant.as_str()).await {
                    tracing::error!(sandbox_id = %record.id, error = %e, "egress rules for a pool hand-over failed; stopping it");
                    if stop_attached(state, tenant, &record.id).await.is_err() {
                        // Not left `running` either way: failed, its host resources gone.
                        let _ = state
                            .runtime
                            .stop(&record.id, record.isolation, record.net_index)
                            .await;
                        let facts = TransitionFacts {
                            error: Some("egress rules could not be applied".into()),
                            ..Default::default()
                        };
                        let _ = state.store.transition(&record.id, Transition::Failed, facts).await;
                    }
                    return Err(e.into());
                }
            }
            let body = serde_json::json!({ "data": sandbox_view(state, &record) });
            if keyed {
                state.store.finish_idempotent(tenant, &record.id, 201, body.to_string()).await?;
            }
            Ok(Created { status: StatusCode::CREATED, body })
        }
        BeginCreate::Mismatch => Err(ApiError::IdempotencyMismatch),
        BeginCreate::Refused { refusal, external_user_id } => {
            Err(ApiError::quota(refusal, external_user_id))
        }
        BeginCreate::Replay { response: Some((status, body)), .. } => Ok(Created {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::CREATED),
            body: serde_json::from_str(&body).map_err(|e| ApiError::Internal(e.to_string()))?,
        }),
        BeginCreate::Replay { sandbox, .. } => {
            let record = if wait { wait_started(state, &sandbox.id).await? } else { sandbox };
            // Same status as the first answer would have had: 202 while it is still starting.
            let status = if record.state == SandboxState::Creating {
                StatusCode::ACCEPTED
            } else {
                StatusCode::CREATED
            };
            Ok(Created {
                status,
                body: serde_json::json!({ "data": sandbox_view(state, &record) }),
            })
        }
        BeginCreate::New(record) => {
            if !wait {
                let state2 = state.clone();
                let id = record.id.clone();
                tokio::spawn(async move {
                    let _ = start(&state2, &id, keyed).await;
                });
                return Ok(Created {
                    status: StatusCode::ACCEPTED,
                    body: serde_json::json!({ "data": sandbox_view(state, &record) }),
                });
            }
            start(state, &record.id, keyed).await
        }
    }
}

/// Start a sandbox that is in `creating` and record the outcome.
pub(crate) async fn start(
    state: &AppState,
    id: &SandboxId,
    keyed: bool,
) -> Result<Created, ApiError> {
    let _guard = lock(id).await;
    let record = state.store.get_sandbox_any(id).await?;
    if record.state != SandboxState::Creating {
        return Ok(Created {
            status: StatusCode::CREATED,
            body: serde_json::json!({ "data": sandbox_view(state, &record) }),
        });
    }
    let outcome = state.runtime.create(&spec(&record)?).await;
    let (status, record) = match outcome {
        Ok(started) => {
            let facts = TransitionFacts {
                boot_ms: Some(started.boot.as_millis() as i64),
                ..Default::default()
            };
            let record = state.store.transition(id, Transition::Started, facts).await?;
            tracing::info!(sandbox_id = %id, boot_ms = started.boot.as_millis() as u64, "sandbox running");
            (StatusCode::CREATED, record)
        }
        Err(e) => {
            tracing::error!(sandbox_id = %id, error = %e, "sandbox failed to start");
            let facts = TransitionFacts {
                error: Some("the sandbox failed to start".into()),
                ..Default::default()
            };
            let record = state.store.transition(id, Transition::Failed, facts).await?;
            (StatusCode::INTERNAL_SERVER_ERROR, record)
        }
    };
    let body = if status.is_success() {
        serde_json::json!({ "data": sandbox_view(state, &record) })
    } else {
        serde_json::json!({ "error": {
            "code": "SANDBOX_START_FAILED",
            "message": "the sandbox failed to start",
            "details": { "sandbox_id": record.id },
            "retryable": false,
        }})
    };
    if keyed {
        state
            .store
            .finish_idempotent(&record.tenant_id, id, status.as_u16(), body.to_string())
            .await?;
    }
    Ok(Created { status, body })
}

/// Wait (bounded) until a sandbox leaves `creating`.
async fn wait_started(state: &AppState, id: &SandboxId) -> Result<SandboxRecord, ApiError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let record = state.store.get_sandbox_any(id).await?;
        if record.state != SandboxState::Creating {
            return Ok(record);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(ApiError::Starting);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Destroy a sandbox. A destroyed sandbox is destroyed again without complaint.
async fn destroy_attached(
    state: &AppState,
    tenant: &TenantId,
    id: &SandboxId,
    timed_out: bool,
) -> Result<SandboxRecord, ApiError> {
    let record = state.store.get_sandbox(tenant, id).await?;
    destroy_record(state, record, timed_out).await
}

pub(crate) async fn destroy_record(
    state: &AppState,
    record: SandboxRecord,
    timed_out: bool,
) -> Result<SandboxRecord, ApiError> {
    let id = record.id.clone();
    let guard = lock(&id).await;
    let mut record = state.store.get_sandbox_any(&id).await?;
    if record.state == SandboxState::Destroyed {
        return Ok(record);
    }
    if record.state != SandboxState::Destroying {
        crate::metering::sample(state, &record).await;
        let facts = TransitionFacts { timed_out, ..Default::default() };
        record = state.store.transition(&id, Transition::Destroy, facts).await?;
    }
    // The runtime knows the slot from the record; a failure leaves the sandbox in
    // `destroying` for the reaper to finish.
    state.runtime.destroy(&id, record.isolation, record.net_index).await?;
    let record =
        state.store.transition(&id, Transition::Destroyed, TransitionFacts::default()).await?;
    drop(guard);
    forget_lock(&id);
    Ok(record)
}

/// Stop: processes end, the network slot is released, files stay.
async fn stop_attached(
    state: &AppState,
    tenant: &TenantId,
    id: &SandboxId,
) -> Result<SandboxRecord, ApiError> {
    let _guard = lock(id).await;
    let record = state.store.get_sandbox(tenant, id).await?;
    if record.state == SandboxState::Stopped {
        return Ok(record);
    }
    record.state.transition(Transition::Stop)?;
    crate::metering::sample(state, &record).await;
    state.runtime.stop(id, record.isolation, record.net_index).await?;
    Ok(state.store.transition(id, Transition::Stop, TransitionFacts::default()).await?)
}

async fn pause_attached(
    state: &AppState,
    tenant: &TenantId,
    id: &SandboxId,
) -> Result<SandboxRecord, ApiError> {
    let _guard = lock(id).await;
    let record = state.store.get_sandbox(tenant, id).await?;
    if record.state == SandboxState::Paused {
        return Ok(record);
    }
    record.state.transition(Transition::Pause)?;
    crate::metering::sample(state, &record).await;
    state.runtime.pause(id, record.isolation).await?;
    Ok(state.store.transition(id, Transition::Pause, TransitionFacts::default()).await?)
}

/// Resume a paused sandbox (thaw) or a stopped one (start again over its kept files).
async fn resume_attached(
    state: &AppState,
    tenant: &TenantId,
    id: &SandboxId,
) -> Result<SandboxRecord, ApiError> {
    let record = {
        let _guard = lock(id).await;
        let record = state.store.get_sandbox(tenant, id).await?;
        match record.state {
            SandboxState::Running => return Ok(record),
            SandboxState::Paused => {
                state.runtime.resume(id, record.isolation).await?;
                return Ok(state
                    .store
                    .transition(id, Transition::Resume, TransitionFacts::default())
                    .await?);
            }
            _ => state.store.transition(id, Transition::Resume, TransitionFacts::default()).await?,
        }
    };
    let created = start(state, &record.id, false).await?;
    if !created.status.is_success() {
        return Err(ApiError::Internal("the sandbox failed to restart".into()));
    }
    Ok(state.store.get_sandbox(tenant, id).await?)
}

impl From<islet_types::TransitionError> for ApiError {
    fn from(e: islet_types::TransitionError) -> Self {
        ApiError::Conflict(e.to_string())
    }
}

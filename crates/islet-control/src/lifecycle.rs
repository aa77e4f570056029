//! Sandbox lifecycle commands. Handlers call these; they call the store and the runtime, and
//! return what happened (a record, a [`CreateOutcome`]), never HTTP: how an outcome is answered
//! is the API's ([`Answer`]). Operations on one sandbox are serialised by a per-sandbox lock,
//! so a destroy that arrives during a create waits for it instead of racing it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use islet_runtime::SandboxSpec;
use islet_store::{BeginCreate, SandboxRecord, TransitionFacts};
use islet_types::sandbox::{Isolation, Transition};
use islet_types::{CreateSandbox, SandboxId, SandboxState, TenantId};

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
pub(crate) async fn retry_start(
    state: &AppState,
    id: &SandboxId,
    answer: Answer,
) -> Result<CreateOutcome, ApiError> {
    {
        let _guard = lock(id).await;
        let record = state.store.get_sandbox_any(id).await?;
        if record.state != SandboxState::Creating {
            return Ok(CreateOutcome::Started(record));
        }
        state.runtime.stop(id, record.isolation, record.net_index).await?;
    }
    start(state, id, Some(answer)).await
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

/// What a create came to.
#[derive(Debug)]
pub enum CreateOutcome {
    /// Running (started now, taken from the warm pool, or found running).
    Started(SandboxRecord),
    /// Admitted and still starting (the caller did not wait, or a replay found it starting).
    Starting(SandboxRecord),
    /// Admitted, but the runtime could not start it: it is in `error`.
    StartFailed(SandboxRecord),
    /// An earlier request with the same idempotency key finished: its answer, as it was.
    Replayed { status: u16, body: String },
}

/// How the API answers an outcome, as a status and a body: kept with the idempotency key when
/// a keyed create finishes, so every replay gets the first answer.
pub type Answer = fn(&CreateOutcome) -> (u16, String);

/// Admit and start a sandbox (see [`create_attached`]), unaffected by the caller going away.
pub async fn create(
    state: &AppState,
    tenant: &TenantId,
    tenant_isolation: Option<Isolation>,
    idempotency_key: Option<String>,
    req: CreateSandbox,
    wait: bool,
    answer: Answer,
) -> Result<CreateOutcome, ApiError> {
    let (state, tenant) = (state.clone(), tenant.clone());
    let create = Create { tenant_isolation, idempotency_key, req, wait, answer };
    detached(async move { create_attached(&state, &tenant, create).await }).await
}

/// A create request as [`create_attached`] takes it.
struct Create {
    tenant_isolation: Option<Isolation>,
    idempotency_key: Option<String>,
    req: CreateSandbox,
    wait: bool,
    answer: Answer,
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
            Step::Stop => halt(&state, &tenant, &id, Transition::Stop).await,
            Step::Pause => halt(&state, &tenant, &id, Transition::Pause).await,
            Step::Resume => resume_attached(&state, &tenant, &id).await,
        }
    })
    .await
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
    create: Create,
) -> Result<CreateOutcome, ApiError> {
    let Create { tenant_isolation, idempotency_key, req, wait, answer } = create;
    let isolation = req.isolation.or(tenant_isolation).unwrap_or(state.config.default_isolation);
    let keyed = idempotency_key.is_some().then_some(answer);
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
                    if halt(state, tenant, &record.id, Transition::Stop).await.is_err() {
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
            let outcome = CreateOutcome::Started(record);
            if let Some(answer) = keyed {
                keep_answer(state, &outcome, answer).await?;
            }
            Ok(outcome)
        }
        BeginCreate::Mismatch => Err(ApiError::IdempotencyMismatch),
        BeginCreate::Refused { refusal, external_user_id } => {
            Err(ApiError::quota(refusal, external_user_id))
        }
        BeginCreate::Replay { response: Some((status, body)), .. } => {
            Ok(CreateOutcome::Replayed { status, body })
        }
        BeginCreate::Replay { sandbox, .. } => {
            let record = if wait { wait_started(state, &sandbox.id).await? } else { sandbox };
            // What the first answer would have been: starting while it still is.
            Ok(match record.state {
                SandboxState::Creating => CreateOutcome::Starting(record),
                _ => CreateOutcome::Started(record),
            })
        }
        BeginCreate::New(record) => {
            if !wait {
                let state2 = state.clone();
                let id = record.id.clone();
                tokio::spawn(async move {
                    let _ = start(&state2, &id, keyed).await;
                });
                return Ok(CreateOutcome::Starting(record));
            }
            start(state, &record.id, keyed).await
        }
    }
}

/// Start a sandbox that is in `creating` and record the outcome; with `keyed`, keep the
/// answer for the create's idempotency key.
pub(crate) async fn start(
    state: &AppState,
    id: &SandboxId,
    keyed: Option<Answer>,
) -> Result<CreateOutcome, ApiError> {
    let _guard = lock(id).await;
    let record = state.store.get_sandbox_any(id).await?;
    if record.state != SandboxState::Creating {
        return Ok(CreateOutcome::Started(record));
    }
    let outcome = match state.runtime.create(&spec(&record)?).await {
        Ok(started) => {
            let facts = TransitionFacts {
                boot_ms: Some(started.boot.as_millis() as i64),
                ..Default::default()
            };
            let record = state.store.transition(id, Transition::Started, facts).await?;
            tracing::info!(sandbox_id = %id, boot_ms = started.boot.as_millis() as u64, "sandbox running");
            CreateOutcome::Started(record)
        }
        Err(e) => {
            tracing::error!(sandbox_id = %id, error = %e, "sandbox failed to start");
            let facts = TransitionFacts {
                error: Some("the sandbox failed to start".into()),
                ..Default::default()
            };
            CreateOutcome::StartFailed(state.store.transition(id, Transition::Failed, facts).await?)
        }
    };
    if let Some(answer) = keyed {
        keep_answer(state, &outcome, answer).await?;
    }
    Ok(outcome)
}

/// Keep the answer to a keyed create for its replays.
async fn keep_answer(
    state: &AppState,
    outcome: &CreateOutcome,
    answer: Answer,
) -> Result<(), ApiError> {
    let (CreateOutcome::Started(record) | CreateOutcome::StartFailed(record)) = outcome else {
        return Ok(());
    };
    let (status, body) = answer(outcome);
    Ok(state.store.finish_idempotent(&record.tenant_id, &record.id, status, body).await?)
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

/// Stop (processes end, the network slot is released, files stay) or pause (processes
/// freeze): sample the meter, act on the host, then record the change. Already there is done.
async fn halt(
    state: &AppState,
    tenant: &TenantId,
    id: &SandboxId,
    t: Transition,
) -> Result<SandboxRecord, ApiError> {
    let _guard = lock(id).await;
    let record = state.store.get_sandbox(tenant, id).await?;
    if record.state == halted(t) {
        return Ok(record);
    }
    record.state.transition(t)?;
    crate::metering::sample(state, &record).await;
    match t {
        Transition::Pause => state.runtime.pause(id, record.isolation).await?,
        _ => state.runtime.stop(id, record.isolation, record.net_index).await?,
    }
    Ok(state.store.transition(id, t, TransitionFacts::default()).await?)
}

/// The state a halting transition ends in.
fn halted(t: Transition) -> SandboxState {
    match t {
        Transition::Pause => SandboxState::Paused,
        _ => SandboxState::Stopped,
    }
}

/// Give a sandbox new CPU and memory (`None` keeps a value): admitted by the store, then
/// applied at once to the cgroups of a running or paused sandbox (a stopped one gets them when
/// it starts again). The meter samples first, so the time before is billed at the old size. A
/// memory limit below what the sandbox uses now is refused; a change the host refuses anyway
/// is undone in the store, without admission (it restores what was admitted before).
pub async fn resize(
    state: &AppState,
    tenant: &TenantId,
    id: &SandboxId,
    cpu_count: Option<u32>,
    memory_mb: Option<u32>,
) -> Result<(SandboxRecord, SandboxRecord, bool), ApiError> {
    let (state, tenant, id) = (state.clone(), tenant.clone(), id.clone());
    detached(async move {
        let _guard = lock(&id).await;
        let before = state.store.get_sandbox(&tenant, &id).await?;
        let resources = before
            .resources
            .resized(cpu_count, memory_mb)
            .map_err(|e| ApiError::validation(e.to_string(), e.field()))?;
        let on_host = matches!(before.state, SandboxState::Running | SandboxState::Paused);
        if on_host {
            let used = state.runtime.usage(&id).map_or(0, |u| u.memory_bytes);
            if u64::from(resources.memory_mb) * 1024 * 1024 < used {
                return Err(ApiError::Conflict(format!(
                    "the sandbox uses {} MiB now, more than {} MiB",
                    used >> 20,
                    resources.memory_mb
                )));
            }
            crate::metering::sample(&state, &before).await;
        }
        let after = state.store.resize_sandbox(&tenant, &id, resources).await?;
        if !on_host {
            return Ok((before, after, false));
        }
        if let Err(e) = state.runtime.resize(&id, &resources) {
            tracing::warn!(sandbox_id = %id, error = %e, "a resize the host refused is undone");
            let _ = state.runtime.resize(&id, &before.resources);
            state.store.set_resources(&id, before.resources).await?;
            return Err(ApiError::Conflict("the host refused the new limits".into()));
        }
        Ok((before, after, true))
    })
    .await
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
                // Admitted first (a suspended user is refused here): a refused resume never
                // unfreezes the sandbox, not even for a moment.
                let resumed = state
                    .store
                    .transition(id, Transition::Resume, TransitionFacts::default())
                    .await?;
                if let Err(e) = state.runtime.resume(id, record.isolation).await {
                    // Still frozen: the record says so again.
                    let undo = Transition::Pause;
                    if let Err(u) =
                        state.store.transition(id, undo, TransitionFacts::default()).await
                    {
                        tracing::warn!(sandbox_id = %id, error = %u, "could not record a failed unpause");
                    }
                    return Err(e.into());
                }
                return Ok(resumed);
            }
            _ => state.store.transition(id, Transition::Resume, TransitionFacts::default()).await?,
        }
    };
    if let CreateOutcome::StartFailed(_) = start(state, &record.id, None).await? {
        return Err(ApiError::Internal("the sandbox failed to restart".into()));
    }
    Ok(state.store.get_sandbox(tenant, id).await?)
}

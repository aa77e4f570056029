//! Background enforcement: sandboxes past their timeout are destroyed (`sandbox.timeout`),
//! idle ones are stopped, interrupted destroys are finished, creates whose task died are
//! started again, old idempotency keys dropped, suspended users' sandboxes stopped.

use islet_types::time::now_millis;
use islet_types::SandboxState;
use tokio_util::sync::CancellationToken;

use crate::lifecycle;
use crate::state::AppState;

pub(crate) async fn run(state: AppState, shutdown: CancellationToken) {
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(state.config.reap_interval) => {}
        }
        ticks += 1;
        if let Err(e) = sweep(&state).await {
            tracing::warn!(error = %e, "reaper sweep failed");
        }
        if ticks.is_multiple_of(5) {
            if let Err(e) = stop_over_spend(&state).await {
                tracing::warn!(error = %e, "spending cap check failed");
            }
        }
        if ticks.is_multiple_of(600) {
            if let Err(e) = state.store.expire_idempotency_keys().await {
                tracing::warn!(error = %e, "idempotency key expiry failed");
            }
        }
    }
}

/// Nothing runs of a user who has used their running time for the day or their credit for the
/// month (as metered: within a meter interval and five sweeps of the cap).
async fn stop_over_spend(state: &AppState) -> Result<(), crate::ApiError> {
    for (tenant, user, refusal) in state.store.over_spend().await? {
        tracing::info!(%tenant, external_user_id = %user, limit = refusal.limit, max = refusal.max, current = refusal.current, "stopping a user past a spending cap");
        for id in state.store.user_running(&tenant, &user).await? {
            if let Err(e) = lifecycle::apply(state, &tenant, &id, lifecycle::Step::Stop).await {
                tracing::warn!(sandbox_id = %id, error = %e, "reaper stop failed");
            }
        }
    }
    Ok(())
}

async fn sweep(state: &AppState) -> Result<(), crate::ApiError> {
    // Egress rules a failed change left unapplied are applied again.
    if let Err(e) = state.runtime.heal_egress().await {
        tracing::warn!(error = %e, "egress rules still not applied");
    }
    // Nothing of a suspended end user runs.
    for (tenant, id) in state.store.suspended_running().await? {
        tracing::info!(sandbox_id = %id, "reaper stopping a suspended user's sandbox");
        if let Err(e) = lifecycle::apply(state, &tenant, &id, lifecycle::Step::Stop).await {
            tracing::warn!(sandbox_id = %id, error = %e, "reaper stop failed");
        }
    }
    let now = now_millis();
    for record in state.store.sandboxes_not_destroyed().await? {
        let expired = record.expires_at.is_some_and(|e| e <= now);
        let idle = record.state == SandboxState::Running
            && !record.always_on
            && record.idle_timeout_sec.is_some_and(|idle| {
                let idle_ms = i64::try_from(idle).unwrap_or(i64::MAX).saturating_mul(1000);
                record.last_activity_at.saturating_add(idle_ms) <= now
            });
        let stuck = record.state == SandboxState::Creating
            && now - record.created_at > state.config.stuck_create_after.as_millis() as i64
            && !lifecycle::busy(&record.id);
        let (id, tenant) = (record.id.clone(), record.tenant_id.clone());
        if stuck && !expired {
            tracing::warn!(sandbox_id = %id, "reaper restarting a create that never finished");
            if let Err(e) = lifecycle::retry_start(state, &id, crate::api::create_answer).await {
                tracing::warn!(sandbox_id = %id, error = %e, "reaper restart failed");
            }
        } else if expired || record.state == SandboxState::Destroying {
            tracing::info!(sandbox_id = %id, expired, "reaper destroying sandbox");
            if let Err(e) = lifecycle::destroy_record(state, record, expired).await {
                tracing::warn!(sandbox_id = %id, error = %e, "reaper destroy failed");
            }
        } else if idle {
            tracing::info!(sandbox_id = %id, "reaper stopping idle sandbox");
            if let Err(e) = lifecycle::apply(state, &tenant, &id, lifecycle::Step::Stop).await {
                tracing::warn!(sandbox_id = %id, error = %e, "reaper stop failed");
            }
        }
    }
    Ok(())
}

//! Carries out bulk jobs (`POST /bulk/sandboxes/{op}`), one sandbox at a time, tenants in
//! turn and each tenant's oldest job first. Each item's outcome is stored as it is done, so a restart carries on with the next
//! pending item; one interrupted mid-way is done again (every operation is safe to repeat).

use std::time::Duration;

use islet_store::{BulkOp, BulkWork, ItemStatus};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::lifecycle::{self, Step};
use crate::state::AppState;

/// How often the worker looks for work when nobody wakes it.
const IDLE: Duration = Duration::from_secs(5);
/// How often finished jobs past their keeping time are removed.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub(crate) async fn run(state: AppState, shutdown: CancellationToken) {
    // The tenant served last: the next item is another tenant's when one has work.
    let mut last = None;
    let mut pruned_at = None::<std::time::Instant>;
    loop {
        match state.store.next_bulk_work(last.as_ref()).await {
            Ok(Some(work)) => {
                last = Some(work.tenant_id.clone());
                if shutdown.is_cancelled() {
                    return;
                }
                let (status, error) = match apply(&state, &work).await {
                    Ok(()) => (ItemStatus::Succeeded, None),
                    Err(e) => (outcome(&e), Some((e.code().to_owned(), e.to_string()))),
                };
                let (code, message) = error.unzip();
                if let Err(e) = state.store.finish_bulk_item(&work, status, code, message).await {
                    tracing::warn!(job = %work.job_id, error = %e, "could not record a bulk item");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
            Ok(None) => {
                if pruned_at.is_none_or(|at| at.elapsed() > PRUNE_EVERY) {
                    pruned_at = Some(std::time::Instant::now());
                    if let Err(e) = state.store.prune_bulk_jobs().await {
                        tracing::warn!(error = %e, "could not prune finished bulk jobs");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read bulk work"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = state.bulk_wake.notified() => {}
            () = tokio::time::sleep(IDLE) => {}
        }
    }
}

async fn apply(state: &AppState, work: &BulkWork) -> Result<(), ApiError> {
    // Ids are kept as given: one that is not a sandbox id names no sandbox.
    let id: islet_types::SandboxId =
        work.sandbox_id.parse().map_err(|_| ApiError::NotFound("sandbox"))?;
    let tenant = &work.tenant_id;
    match work.op {
        BulkOp::Pause => lifecycle::apply(state, tenant, &id, Step::Pause).await.map(drop),
        BulkOp::Resume => lifecycle::apply(state, tenant, &id, Step::Resume).await.map(drop),
        BulkOp::Stop => lifecycle::apply(state, tenant, &id, Step::Stop).await.map(drop),
        BulkOp::Destroy => lifecycle::destroy(state, tenant, &id, false).await.map(drop),
    }
}

/// A sandbox that is not there, or not in a state the operation applies to, is skipped; any
/// other refusal (a quota, a runtime failure) failed.
fn outcome(e: &ApiError) -> ItemStatus {
    match e {
        ApiError::NotFound(_)
        | ApiError::NotRunning(_)
        | ApiError::Starting
        | ApiError::Conflict(_) => ItemStatus::Skipped,
        _ => ItemStatus::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_wrong_state_is_skipped_the_rest_failed() {
        assert_eq!(outcome(&ApiError::NotFound("sandbox")), ItemStatus::Skipped);
        assert_eq!(outcome(&ApiError::Conflict("paused already".into())), ItemStatus::Skipped);
        assert_eq!(outcome(&ApiError::NotRunning("stopped".into())), ItemStatus::Skipped);
        assert_eq!(outcome(&ApiError::Starting), ItemStatus::Skipped);
        assert_eq!(outcome(&ApiError::Capacity), ItemStatus::Failed);
        assert_eq!(outcome(&ApiError::Internal("x".into())), ItemStatus::Failed);
    }
}

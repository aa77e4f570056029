//! After a restart, make the host and the store agree again:
//! - `creating` sandboxes (the server died mid-create) are cleaned and started again, so a
//!   client retrying with its idempotency key gets a running sandbox;
//! - `running`/`paused` sandboxes whose agent still answers are kept; dead ones are marked
//!   `error` and their host resources removed;
//! - `stopped` ones have nothing left running; `destroying` ones are finished;
//! - anything on the host that no sandbox in the store claims is removed.

use std::collections::HashSet;

use islet_store::TransitionFacts;
use islet_types::sandbox::Transition;
use islet_types::{SandboxId, SandboxState};

use crate::lifecycle;
use crate::state::AppState;

pub(crate) async fn reconcile(state: &AppState) {
    if let Err(e) = run(state).await {
        tracing::error!(error = %e, "reconciliation failed");
    }
}

async fn run(state: &AppState) -> Result<(), crate::ApiError> {
    let records = state.store.sandboxes_not_destroyed().await?;
    // The tenants' egress rules, for every sandbox that holds a network slot, before any
    // repair starts one again.
    let groups =
        state.store.all_egress().await?.into_iter().map(|(t, p)| (t.to_string(), p)).collect();
    let slots =
        records.iter().filter_map(|r| r.net_index.map(|i| (i, r.tenant_id.to_string()))).collect();
    // A failure leaves the rules to the reaper's retries; the repairs below must still run.
    if let Err(e) = state.runtime.load_egress(groups, slots).await {
        tracing::error!(error = %e, "loading the tenants' egress rules failed; retrying");
    }
    let mut restarts = Vec::new();
    let mut claimed_links = HashSet::new();
    let mut claimed_ids = HashSet::new();
    for record in records {
        let id = record.id.clone();
        claimed_ids.insert(id.to_string());
        if let Some(i) = record.net_index {
            claimed_links.insert(state.runtime.link_name(i));
        }
        // One sandbox that cannot be repaired must not stop the others from being repaired.
        let repaired = match record.state {
            SandboxState::Creating => {
                // Interrupted mid-create (or mid-resume): take down what was built, keep the
                // files (a resumed sandbox's are the tenant's), and start it again below.
                let stopped = state.runtime.stop(&id, record.isolation, record.net_index).await;
                if stopped.is_ok() {
                    restarts.push(id.clone());
                }
                stopped.map_err(Into::into)
            }
            SandboxState::Running | SandboxState::Paused => {
                let alive = if record.state == SandboxState::Paused {
                    state.runtime.is_paused(&id, record.isolation).await
                } else {
                    state.runtime.agent(&id).healthy().await
                };
                if alive {
                    tracing::info!(sandbox_id = %id, "recovered sandbox");
                    Ok(())
                } else {
                    tracing::warn!(sandbox_id = %id, "sandbox lost while the server was down");
                    let facts = TransitionFacts {
                        error: Some("lost while the server was down".into()),
                        ..Default::default()
                    };
                    match state.runtime.stop(&id, record.isolation, record.net_index).await {
                        Ok(()) => state
                            .store
                            .transition(&id, Transition::Failed, facts)
                            .await
                            .map(drop)
                            .map_err(Into::into),
                        Err(e) => Err(e.into()),
                    }
                }
            }
            SandboxState::Stopped | SandboxState::Error => state
                .runtime
                .stop(&id, record.isolation, record.net_index)
                .await
                .map_err(Into::into),
            SandboxState::Destroying => {
                lifecycle::destroy_record(state, record, false).await.map(drop)
            }
            SandboxState::Destroyed => Ok(()),
        };
        if let Err(e) = repaired {
            let e: crate::ApiError = e;
            tracing::error!(sandbox_id = %id, error = %e, "could not reconcile sandbox");
        }
    }
    let leftovers = state.runtime.leftovers().await?;
    for (isolation, raw) in leftovers.containers {
        if let (false, Ok(id)) = (claimed_ids.contains(&raw), raw.parse::<SandboxId>()) {
            tracing::warn!(sandbox_id = %id, "removing unknown container");
            if let Err(e) = state.runtime.destroy(&id, isolation, None).await {
                tracing::error!(sandbox_id = %id, error = %e, "could not remove unknown container");
            }
        }
    }
    for raw in leftovers.sandbox_dirs {
        if let (false, Ok(id)) = (claimed_ids.contains(&raw), raw.parse::<SandboxId>()) {
            tracing::warn!(sandbox_id = %id, "removing unknown sandbox files");
            if let Err(e) = state.runtime.destroy(&id, Default::default(), None).await {
                tracing::error!(sandbox_id = %id, error = %e, "could not remove unknown files");
            }
        }
    }
    for link in leftovers.links {
        if !claimed_links.contains(&link) {
            tracing::warn!(link = %link, "removing unclaimed link");
            if let Err(e) = state.runtime.remove_link(&link).await {
                tracing::error!(link = %link, error = %e, "could not remove link");
            }
        }
    }
    for id in restarts {
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = lifecycle::start(&state, &id, Some(crate::api::create_answer)).await {
                tracing::warn!(sandbox_id = %id, error = %e, "restart after crash failed");
            }
        });
    }
    Ok(())
}

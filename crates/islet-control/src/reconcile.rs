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

pub async fn reconcile(state: &AppState) {
    if let Err(e) = run(state).await {
        tracing::error!(error = %e, "reconciliation failed");
    }
}

async fn run(state: &AppState) -> Result<(), crate::ApiError> {
    let records = state.store.sandboxes_not_destroyed().await?;
    let mut restarts = Vec::new();
    let mut claimed_links = HashSet::new();
    let mut claimed_ids = HashSet::new();
    for record in records {
        let id = record.id.clone();
        claimed_ids.insert(id.to_string());
        match record.state {
            SandboxState::Creating => {
                state
                    .runtime
                    .destroy(&id, record.isolation, record.net_index)
                    .await?;
                if let Some(i) = record.net_index {
                    claimed_links.insert(state.runtime.link_name(i));
                }
                restarts.push(id);
            }
            SandboxState::Running | SandboxState::Paused => {
                let alive = record.state == SandboxState::Paused
                    || state.runtime.agent(&id).healthy().await;
                if alive {
                    if let Some(i) = record.net_index {
                        claimed_links.insert(state.runtime.link_name(i));
                    }
                    tracing::info!(sandbox_id = %id, "recovered sandbox");
                } else {
                    tracing::warn!(sandbox_id = %id, "sandbox lost while the server was down");
                    state
                        .runtime
                        .destroy(&id, record.isolation, record.net_index)
                        .await?;
                    let facts = TransitionFacts {
                        error: Some("lost while the server was down".into()),
                        ..Default::default()
                    };
                    state
                        .store
                        .transition(&id, Transition::Failed, facts)
                        .await?;
                }
            }
            SandboxState::Stopped | SandboxState::Error => {
                state
                    .runtime
                    .stop(&id, record.isolation, record.net_index)
                    .await?;
            }
            SandboxState::Destroying => {
                lifecycle::destroy_record(state, record, false).await?;
            }
            SandboxState::Destroyed => {}
        }
    }
    let leftovers = state.runtime.leftovers().await?;
    for (isolation, raw) in leftovers.containers {
        if !claimed_ids.contains(&raw) {
            if let Ok(id) = raw.parse::<SandboxId>() {
                tracing::warn!(sandbox_id = %id, "removing unknown container");
                state.runtime.destroy(&id, isolation, None).await?;
            }
        }
    }
    for raw in leftovers.sandbox_dirs {
        if !claimed_ids.contains(&raw) {
            if let Ok(id) = raw.parse::<SandboxId>() {
                tracing::warn!(sandbox_id = %id, "removing unknown sandbox files");
                state.runtime.destroy(&id, Default::default(), None).await?;
            }
        }
    }
    for link in leftovers.links {
        let live_running = claimed_links.contains(&link);
        if !live_running {
            tracing::warn!(link = %link, "removing unclaimed link");
            state.runtime.remove_link(&link).await?;
        }
    }
    for id in restarts {
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = lifecycle::start(&state, &id, true).await {
                tracing::warn!(sandbox_id = %id, error = %e, "restart after crash failed");
            }
        });
    }
    Ok(())
}

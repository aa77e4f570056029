//! The meter: every sandbox that is not destroyed is sampled on an interval (CPU time and
//! memory from its cgroup, bytes through its link, running time, allocated storage) into the store's usage records;
//! lifecycle operations take one last sample before a sandbox stops running, so nothing it used
//! goes unaccounted.

use islet_store::{SandboxRecord, UsageSample};
use islet_types::time::now_millis;
use islet_types::SandboxState;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

fn sample_of(state: &AppState, record: &SandboxRecord) -> Option<UsageSample> {
    let live = matches!(record.state, SandboxState::Running | SandboxState::Paused);
    let usage = if live { state.runtime.usage(&record.id) } else { None };
    match record.state {
        SandboxState::Creating | SandboxState::Destroyed => None,
        _ => Some(UsageSample {
            sandbox_id: record.id.clone(),
            at: now_millis(),
            cpu_usec: usage.map(|u| u.cpu_usec),
            memory_bytes: usage.map_or(0, |u| u.memory_bytes),
            network: if live {
                record
                    .net_index
                    .and_then(|i| state.runtime.network_counters(i))
                    .map(|n| (n.ingress_bytes, n.egress_bytes))
            } else {
                None
            },
        }),
    }
}

/// Account one sandbox now (before it stops, pauses or is destroyed).
pub(crate) async fn sample(state: &AppState, record: &SandboxRecord) {
    if let Some(s) = sample_of(state, record) {
        state.metrics.record(&s);
        if let Err(e) = state.store.record_usage(vec![s]).await {
            tracing::warn!(sandbox_id = %record.id, error = %e, "usage sample failed");
        }
    }
}

/// Account every sandbox that is not destroyed.
pub(crate) async fn sample_all(state: &AppState) {
    let records = match state.store.sandboxes_not_destroyed().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "listing sandboxes to meter failed");
            return;
        }
    };
    let samples: Vec<UsageSample> = records.iter().filter_map(|r| sample_of(state, r)).collect();
    let alive: std::collections::HashSet<&islet_types::SandboxId> =
        records.iter().map(|r| &r.id).collect();
    state.metrics.retain(|id| alive.contains(id));
    for s in &samples {
        state.metrics.record(s);
    }
    if samples.is_empty() {
        return;
    }
    if let Err(e) = state.store.record_usage(samples).await {
        tracing::warn!(error = %e, "usage samples failed");
    }
}

pub(crate) async fn run(state: AppState, shutdown: CancellationToken) {
    loop {
        sample_all(&state).await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(state.config.meter_interval) => {}
        }
    }
}

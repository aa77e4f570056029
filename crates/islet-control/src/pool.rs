//! The warm pool: a few sandboxes started ahead of demand, owned by a system tenant no key can
//! reach, and handed over whole to the first create that fits (see `Store::begin_create`).
//! Taking one costs a database transaction instead of a container start.

use std::time::Duration;

use islet_store::{ListFilter, Pool};
use islet_types::{CreateSandbox, Resources, SandboxState};
use tokio_util::sync::CancellationToken;

use crate::api::MAX_TIMEOUT_SEC;
use crate::lifecycle;
use crate::state::AppState;

/// Name of the tenant that owns pooled sandboxes.
pub(crate) const POOL_TENANT: &str = "__islet_warm_pool__";
const REFILL_EVERY: Duration = Duration::from_millis(200);

pub(crate) async fn run(state: AppState, shutdown: CancellationToken) {
    let size = state.config.warm_pool;
    if size == 0 {
        return;
    }
    let tenant_id = match state.store.system_tenant(POOL_TENANT).await {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "warm pool disabled: no pool tenant");
            return;
        }
    };
    let pool = Pool {
        tenant_id: tenant_id.clone(),
        isolation: state.config.default_isolation,
        resources: default_resources(),
    };
    let _ = state.pool.set(pool.clone());
    tracing::info!(size, "warm pool on");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return drain(&state, &tenant_id).await,
            _ = tokio::time::sleep(REFILL_EVERY) => {}
        }
        let filter = ListFilter { limit: 1000, ..Default::default() };
        let members = match state.store.list_sandboxes(&tenant_id, filter).await {
            Ok((members, _)) => members,
            Err(e) => {
                tracing::warn!(error = %e, "warm pool: cannot count members");
                continue;
            }
        };
        let ready = members
            .iter()
            .filter(|m| matches!(m.state, SandboxState::Running | SandboxState::Creating))
            .count();
        if ready >= size {
            continue;
        }
        // One at a time: refilling must not starve the creates it is meant to speed up.
        let request = CreateSandbox {
            template_id: islet_runtime::template::DEFAULT_TEMPLATE.to_owned(),
            name: None,
            external_user_id: None,
            external_workspace_id: None,
            external_project_id: None,
            metadata: Default::default(),
            tags: Vec::new(),
            env: Default::default(),
            resources: pool.resources,
            timeout_sec: MAX_TIMEOUT_SEC,
            idle_timeout_sec: None,
            isolation: Some(pool.isolation),
            slug: None,
            always_on: false,
        };
        if let Err(e) = lifecycle::create(
            &state,
            &tenant_id,
            None,
            None,
            request,
            true,
            crate::api::create_answer,
        )
        .await
        {
            tracing::warn!(error = %e, "warm pool: could not start a sandbox");
        }
    }
}

/// On a clean shutdown the pool's sandboxes go: they belong to nobody, and the next start
/// fills a fresh pool. (After a crash, reconciliation keeps them like any other sandbox.)
async fn drain(state: &AppState, tenant_id: &islet_types::TenantId) {
    let filter = ListFilter { limit: 1000, ..Default::default() };
    let Ok((members, _)) = state.store.list_sandboxes(tenant_id, filter).await else {
        return;
    };
    for member in members {
        if let Err(e) = lifecycle::destroy(state, tenant_id, &member.id, false).await {
            tracing::warn!(sandbox_id = %member.id, error = %e, "warm pool: could not remove");
        }
    }
}

/// The resources of a create that names none: what pooled sandboxes are started with.
pub(crate) fn default_resources() -> Resources {
    Resources::resolve(None, None, None, None).unwrap_or(Resources {
        cpu_count: 1,
        memory_mb: 2048,
        disk_mb: 10_240,
    })
}

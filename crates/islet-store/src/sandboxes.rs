//! Sandboxes: inserting one (or handing over one from the warm pool), reading, listing and
//! patching them. State changes are `transitions.rs`'s.

use islet_types::sandbox::Isolation;
use islet_types::time::now_millis;
use islet_types::{CreateSandbox, SandboxId, SandboxState, TenantId};
use rusqlite::{params, OptionalExtension, Transaction};

use crate::events::insert_event;
use crate::net_slots::free_net_index;
use crate::rows::name_unique;
use crate::sandbox_rows::{from_row, get_tx, SandboxRecord, COLUMNS};
use crate::{Store, StoreError};

/// Filters of `GET /sandboxes`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub state: Option<SandboxState>,
    pub external_user_id: Option<String>,
    pub external_workspace_id: Option<String>,
    pub external_project_id: Option<String>,
    /// Every listed tag must be present.
    pub tags: Vec<String>,
    /// Only sandboxes in this workspace or in none (what a workspace's browser token sees).
    pub workspace_or_none: Option<String>,
    /// Include destroyed sandboxes (off unless asked for by state).
    pub include_destroyed: bool,
    pub limit: u32,
    pub offset: u32,
}

/// The `WHERE` clause of `filter` over the tenant's sandboxes, and its arguments (`?1` is the
/// tenant).
pub(crate) fn filter_sql(tenant: &str, filter: &ListFilter) -> (String, Vec<String>) {
    let mut clauses = vec!["tenant_id = ?1".to_owned()];
    let mut args: Vec<String> = vec![tenant.to_owned()];
    if filter.state.is_none() && !filter.include_destroyed {
        clauses.push("state != 'destroyed'".into());
    }
    let mut push = |clause: &str, value: String| {
        args.push(value);
        clauses.push(format!("{clause} = ?{}", args.len()));
    };
    if let Some(state) = filter.state {
        push("state", state.as_str().to_owned());
    }
    let labels = [
        ("external_user_id", &filter.external_user_id),
        ("external_workspace_id", &filter.external_workspace_id),
        ("external_project_id", &filter.external_project_id),
    ];
    for (column, value) in labels {
        if let Some(v) = value {
            push(column, v.clone());
        }
    }
    if let Some(ws) = &filter.workspace_or_none {
        args.push(ws.clone());
        clauses.push(format!(
            "(external_workspace_id = ?{} OR external_workspace_id IS NULL)",
            args.len()
        ));
    }
    for tag in &filter.tags {
        args.push(tag.clone());
        clauses.push(format!(
            "EXISTS (SELECT 1 FROM json_each(sandboxes.tags) WHERE value = ?{})",
            args.len()
        ));
    }
    (clauses.join(" AND "), args)
}

/// Fields `PATCH /sandboxes/{id}` may change.
#[derive(Debug, Clone, Default)]
pub struct SandboxPatch {
    pub name: Option<Option<String>>,
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    pub tags: Option<Vec<String>>,
    pub timeout_sec: Option<u64>,
    pub idle_timeout_sec: Option<Option<u64>>,
}

/// Insert a new sandbox in `creating` with its `sandbox.created` event.
pub(crate) fn insert_tx(
    tx: &Transaction<'_>,
    tenant_id: &TenantId,
    req: &CreateSandbox,
    isolation: Isolation,
) -> Result<SandboxRecord, StoreError> {
    let now = now_millis();
    let id = SandboxId::generate();
    let net_index = free_net_index(tx)?;
    let record = SandboxRecord {
        id,
        tenant_id: tenant_id.clone(),
        name: req.name.clone(),
        state: SandboxState::Creating,
        template_id: req.template_id.clone(),
        isolation,
        external_user_id: req.external_user_id.clone(),
        external_workspace_id: req.external_workspace_id.clone(),
        external_project_id: req.external_project_id.clone(),
        metadata: req.metadata.clone(),
        tags: req.tags.clone(),
        env: req.env.clone(),
        resources: req.resources,
        timeout_sec: req.timeout_sec,
        idle_timeout_sec: req.idle_timeout_sec,
        net_index: Some(net_index),
        created_at: now,
        started_at: None,
        ready_at: None,
        destroyed_at: None,
        expires_at: Some(now + (req.timeout_sec as i64) * 1000),
        last_activity_at: now,
        boot_ms: None,
        error: None,
        slug: req.slug.clone(),
        always_on: req.always_on,
    };
    slug_free(tx, tenant_id, req.slug.as_deref())?;
    let result = tx.execute(
        &format!("INSERT INTO sandboxes ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
                  ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)"),
        params![
            record.id.as_str(),
            record.tenant_id.as_str(),
            record.name,
            record.state.as_str(),
            record.template_id,
            record.isolation.as_str(),
            record.external_user_id,
            record.external_workspace_id,
            record.external_project_id,
            serde_json::Value::Object(record.metadata.clone()).to_string(),
            serde_json::to_string(&record.tags).map_err(StoreError::corrupt)?,
            serde_json::to_string(&record.env).map_err(StoreError::corrupt)?,
            record.resources.cpu_count,
            record.resources.memory_mb,
            record.resources.disk_mb,
            record.timeout_sec,
            record.idle_timeout_sec,
            record.net_index,
            record.created_at,
            record.started_at,
            record.ready_at,
            record.destroyed_at,
            record.expires_at,
            record.last_activity_at,
            record.boot_ms,
            record.error,
            record.slug,
            record.always_on,
        ],
    );
    name_unique(result, record.name.as_deref())?;
    insert_event(tx, &record, "sandbox.created")?;
    Ok(record)
}

/// Refuse a slug another live sandbox of the tenant has.
fn slug_free(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    slug: Option<&str>,
) -> Result<(), StoreError> {
    let Some(slug) = slug else { return Ok(()) };
    let taken = tx
        .query_row(
            "SELECT 1 FROM sandboxes WHERE tenant_id = ?1 AND slug = ?2 AND state != 'destroyed'",
            params![tenant.as_str(), slug],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if taken {
        return Err(StoreError::Conflict(format!("a sandbox with slug `{slug}` exists")));
    }
    Ok(())
}

/// Hand the oldest running sandbox of the pool to `tenant_id`, as if it had just been created
/// for `req`: its owner, labels and clock change, and the tenant gets its `sandbox.created` and
/// `sandbox.running` events. `None` when the pool is empty.
pub(crate) fn claim_tx(
    tx: &Transaction<'_>,
    pool_tenant: &TenantId,
    tenant_id: &TenantId,
    req: &CreateSandbox,
) -> Result<Option<SandboxRecord>, StoreError> {
    let id: Option<String> = tx
        .query_row(
            "SELECT id FROM sandboxes WHERE tenant_id = ?1 AND state = 'running'
             ORDER BY created_at LIMIT 1",
            [pool_tenant.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    let Some(id) = id else { return Ok(None) };
    let id: SandboxId = id.parse().map_err(StoreError::corrupt)?;
    slug_free(tx, tenant_id, req.slug.as_deref())?;
    let now = now_millis();
    let result = tx.execute(
        "UPDATE sandboxes SET tenant_id = ?2, name = ?3, external_user_id = ?4,
            external_workspace_id = ?5, external_project_id = ?6, metadata = ?7, tags = ?8,
            timeout_sec = ?9, idle_timeout_sec = ?10, created_at = ?11, started_at = ?11,
            ready_at = ?11, expires_at = ?12, last_activity_at = ?11, boot_ms = 0,
            slug = ?13, always_on = ?14
         WHERE id = ?1",
        params![
            id.as_str(),
            tenant_id.as_str(),
            req.name,
            req.external_user_id,
            req.external_workspace_id,
            req.external_project_id,
            serde_json::Value::Object(req.metadata.clone()).to_string(),
            serde_json::to_string(&req.tags).map_err(StoreError::corrupt)?,
            req.timeout_sec,
            req.idle_timeout_sec,
            now,
            now + req.timeout_sec as i64 * 1000,
            req.slug,
            req.always_on,
        ],
    );
    name_unique(result, req.name.as_deref())?;
    let record = get_tx(tx, &id)?.ok_or(StoreError::NotFound("sandbox"))?;
    // From now on its running time and storage are the tenant's; what the pool used stays
    // the pool's, in rows of their own (the hourly rows are keyed by sandbox and hour).
    tx.execute(
        "UPDATE usage_meters SET run_at = ?2, storage_at = ?2 WHERE sandbox_id = ?1",
        params![id.as_str(), now],
    )?;
    tx.execute(
        "UPDATE usage_hourly SET sandbox_id = sandbox_id || '@pool' WHERE sandbox_id = ?1",
        params![id.as_str()],
    )?;
    insert_event(tx, &record, "sandbox.created")?;
    insert_event(tx, &record, "sandbox.running")?;
    Ok(Some(record))
}

impl Store {
    pub async fn get_sandbox(
        &self,
        tenant_id: &TenantId,
        id: &SandboxId,
    ) -> Result<SandboxRecord, StoreError> {
        let (tenant, id) = (tenant_id.to_string(), id.to_string());
        self.with(move |conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM sandboxes WHERE id = ?1 AND tenant_id = ?2"),
                [&id, &tenant],
                from_row,
            )
            .optional()?
            .ok_or(StoreError::NotFound("sandbox"))
        })
        .await
    }

    /// A sandbox by ID regardless of tenant: for the node's own bookkeeping only.
    pub async fn get_sandbox_any(&self, id: &SandboxId) -> Result<SandboxRecord, StoreError> {
        let id = id.clone();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            get_tx(&tx, &id)?.ok_or(StoreError::NotFound("sandbox"))
        })
        .await
    }

    /// The live (not destroyed) sandbox of this tenant with this name.
    pub async fn get_sandbox_by_name(
        &self,
        tenant_id: &TenantId,
        name: &str,
    ) -> Result<SandboxRecord, StoreError> {
        let (tenant, name) = (tenant_id.to_string(), name.to_owned());
        self.with(move |conn| {
            conn.query_row(
                &format!(
                    "SELECT {COLUMNS} FROM sandboxes
                     WHERE tenant_id = ?1 AND name = ?2 AND state != 'destroyed'"
                ),
                [&tenant, &name],
                from_row,
            )
            .optional()?
            .ok_or(StoreError::NotFound("sandbox"))
        })
        .await
    }

    pub async fn list_sandboxes(
        &self,
        tenant_id: &TenantId,
        filter: ListFilter,
    ) -> Result<(Vec<SandboxRecord>, u64), StoreError> {
        let tenant = tenant_id.to_string();
        self.with(move |conn| {
            let (where_sql, args) = filter_sql(&tenant, &filter);
            let total: u64 = conn.query_row(
                &format!("SELECT COUNT(*) FROM sandboxes WHERE {where_sql}"),
                rusqlite::params_from_iter(args.iter()),
                |r| r.get(0),
            )?;
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM sandboxes WHERE {where_sql}
                 ORDER BY created_at DESC, id LIMIT {} OFFSET {}",
                filter.limit, filter.offset
            ))?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args.iter()), from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok((rows, total))
        })
        .await
    }

    pub async fn patch_sandbox(
        &self,
        tenant_id: &TenantId,
        id: &SandboxId,
        patch: SandboxPatch,
    ) -> Result<SandboxRecord, StoreError> {
        let (tenant, id) = (tenant_id.clone(), id.clone());
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let mut record = get_tx(&tx, &id)?
                .filter(|r| r.tenant_id == tenant && r.state != SandboxState::Destroyed)
                .ok_or(StoreError::NotFound("sandbox"))?;
            if let Some(name) = patch.name {
                record.name = name;
            }
            if let Some(metadata) = patch.metadata {
                record.metadata = metadata;
            }
            if let Some(tags) = patch.tags {
                record.tags = tags;
            }
            if let Some(timeout) = patch.timeout_sec {
                record.timeout_sec = timeout;
                let mut expires = now_millis() + timeout as i64 * 1000;
                // Never past the user's runtime cap, counted from the sandbox's start.
                let limits = crate::policies::limits_tx(
                    &tx,
                    &tenant,
                    record.external_user_id.as_deref(),
                    record.external_workspace_id.as_deref(),
                )?;
                if let Some(cap) = limits.max_runtime_sec {
                    let start = record.started_at.unwrap_or(record.created_at);
                    let end = start + cap as i64 * 1000;
                    if end <= now_millis() {
                        let refusal = islet_types::policy::Refusal {
                            limit: "max_runtime_sec",
                            max: cap,
                            current: ((now_millis() - start).max(0) / 1000) as u64,
                            requested: timeout,
                        };
                        return Err(StoreError::QuotaExceeded {
                            refusal,
                            external_user_id: record.external_user_id.clone().unwrap_or_default(),
                        });
                    }
                    expires = expires.min(end);
                }
                record.expires_at = Some(expires);
            }
            if let Some(idle) = patch.idle_timeout_sec {
                record.idle_timeout_sec = idle;
            }
            let result = tx.execute(
                "UPDATE sandboxes SET name = ?2, metadata = ?3, tags = ?4, timeout_sec = ?5,
                    expires_at = ?6, idle_timeout_sec = ?7 WHERE id = ?1",
                params![
                    id.as_str(),
                    record.name,
                    serde_json::Value::Object(record.metadata.clone()).to_string(),
                    serde_json::to_string(&record.tags).map_err(StoreError::corrupt)?,
                    record.timeout_sec,
                    record.expires_at,
                    record.idle_timeout_sec,
                ],
            );
            name_unique(result, record.name.as_deref())?;
            tx.commit()?;
            Ok(record)
        })
        .await
    }

    /// Give a sandbox new CPU and memory, admitted as the admission rule says for its end user
    /// (a refusal is [`StoreError::QuotaExceeded`], its `quota.exceeded` event committed). The
    /// caller applies the change on the host.
    pub async fn resize_sandbox(
        &self,
        tenant_id: &TenantId,
        id: &SandboxId,
        resources: islet_types::Resources,
    ) -> Result<SandboxRecord, StoreError> {
        let (tenant, id) = (tenant_id.clone(), id.clone());
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut record = get_tx(&tx, &id)?
                .filter(|r| r.tenant_id == tenant && r.state != SandboxState::Destroyed)
                .ok_or(StoreError::NotFound("sandbox"))?;
            if let Some(user) = record.external_user_id.clone() {
                let way = crate::admission::Way::Resize;
                let workspace = record.external_workspace_id.clone();
                let verdict = crate::admission::admit_tx(
                    &tx,
                    &tenant,
                    &user,
                    workspace.as_deref(),
                    way,
                    &resources,
                    Some(&id),
                )?;
                if let crate::admission::Admission::Refused(refusal) = verdict {
                    tx.commit()?;
                    return Err(StoreError::QuotaExceeded { refusal, external_user_id: user });
                }
            }
            tx.execute(
                "UPDATE sandboxes SET cpu_count = ?2, memory_mb = ?3 WHERE id = ?1",
                params![id.as_str(), resources.cpu_count, resources.memory_mb],
            )?;
            record.resources = resources;
            tx.commit()?;
            Ok(record)
        })
        .await
    }

    /// Put back resources admitted before (undoing a resize the host refused): no admission.
    pub async fn set_resources(
        &self,
        id: &SandboxId,
        resources: islet_types::Resources,
    ) -> Result<(), StoreError> {
        let id = id.clone();
        self.with(move |conn| {
            conn.execute(
                "UPDATE sandboxes SET cpu_count = ?2, memory_mb = ?3 WHERE id = ?1",
                params![id.as_str(), resources.cpu_count, resources.memory_mb],
            )?;
            Ok(())
        })
        .await
    }

    /// Record API or preview activity (for idle timeouts). Cheap and best effort.
    pub async fn touch_sandbox(&self, id: &SandboxId) -> Result<(), StoreError> {
        let id = id.to_string();
        self.with(move |conn| {
            conn.execute(
                "UPDATE sandboxes SET last_activity_at = ?2 WHERE id = ?1",
                params![id, now_millis()],
            )?;
            Ok(())
        })
        .await
    }

    /// Every sandbox that may hold host resources: for reconciliation and timeouts.
    pub async fn sandboxes_not_destroyed(&self) -> Result<Vec<SandboxRecord>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM sandboxes WHERE state != 'destroyed' ORDER BY created_at"
            ))?;
            let rows = stmt.query_map([], from_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

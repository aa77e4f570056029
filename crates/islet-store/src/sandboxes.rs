//! Sandbox rows and every state change, each written with its lifecycle event.

use std::collections::BTreeMap;

use islet_types::sandbox::{Isolation, Transition};
use islet_types::time::{now_millis, UnixMillis};
use islet_types::{CreateSandbox, Resources, SandboxId, SandboxState, TenantId};
use rusqlite::{params, OptionalExtension, Row, Transaction};

use crate::events::insert_event;
use crate::{Store, StoreError};

/// Number of /30 slots a node hands out (10.213.0.0/16 holds 16384; slot 0 is never used).
pub(crate) const NET_SLOTS: i64 = 16_383;

/// A sandbox as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxRecord {
    pub id: SandboxId,
    pub tenant_id: TenantId,
    pub name: Option<String>,
    pub state: SandboxState,
    pub template_id: String,
    pub isolation: Isolation,
    pub external_user_id: Option<String>,
    pub external_workspace_id: Option<String>,
    pub external_project_id: Option<String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub tags: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub resources: Resources,
    pub timeout_sec: u64,
    pub idle_timeout_sec: Option<u64>,
    pub net_index: Option<u32>,
    pub created_at: UnixMillis,
    pub started_at: Option<UnixMillis>,
    pub ready_at: Option<UnixMillis>,
    pub destroyed_at: Option<UnixMillis>,
    pub expires_at: Option<UnixMillis>,
    pub last_activity_at: UnixMillis,
    pub boot_ms: Option<i64>,
    pub error: Option<String>,
}

/// Filters of `GET /sandboxes`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub state: Option<SandboxState>,
    pub external_user_id: Option<String>,
    pub external_workspace_id: Option<String>,
    pub external_project_id: Option<String>,
    /// Every listed tag must be present.
    pub tags: Vec<String>,
    /// Include destroyed sandboxes (off unless asked for by state).
    pub include_destroyed: bool,
    pub limit: u32,
    pub offset: u32,
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

const COLUMNS: &str = "id, tenant_id, name, state, template_id, isolation, external_user_id, \
    external_workspace_id, external_project_id, metadata, tags, env, cpu_count, memory_mb, \
    disk_mb, timeout_sec, idle_timeout_sec, net_index, created_at, started_at, ready_at, \
    destroyed_at, expires_at, last_activity_at, boot_ms, error";

pub(crate) fn parse<T: std::str::FromStr>(s: String) -> rusqlite::Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e: T::Err| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            e.to_string().into(),
        )
    })
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(s: String) -> rusqlite::Result<T> {
    serde_json::from_str(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<SandboxRecord> {
    Ok(SandboxRecord {
        id: parse(r.get(0)?)?,
        tenant_id: parse(r.get(1)?)?,
        name: r.get(2)?,
        state: parse(r.get(3)?)?,
        template_id: r.get(4)?,
        isolation: parse(r.get(5)?)?,
        external_user_id: r.get(6)?,
        external_workspace_id: r.get(7)?,
        external_project_id: r.get(8)?,
        metadata: json(r.get(9)?)?,
        tags: json(r.get(10)?)?,
        env: json(r.get(11)?)?,
        resources: Resources { cpu_count: r.get(12)?, memory_mb: r.get(13)?, disk_mb: r.get(14)? },
        timeout_sec: r.get(15)?,
        idle_timeout_sec: r.get(16)?,
        net_index: r.get(17)?,
        created_at: r.get(18)?,
        started_at: r.get(19)?,
        ready_at: r.get(20)?,
        destroyed_at: r.get(21)?,
        expires_at: r.get(22)?,
        last_activity_at: r.get(23)?,
        boot_ms: r.get(24)?,
        error: r.get(25)?,
    })
}

pub(crate) fn get_tx(tx: &Transaction<'_>, id: &str) -> Result<Option<SandboxRecord>, StoreError> {
    Ok(tx
        .query_row(&format!("SELECT {COLUMNS} FROM sandboxes WHERE id = ?1"), [id], from_row)
        .optional()?)
}

/// How long a released network slot stays out of use: well past the preview edge's route
/// cache lifetime (1 s), so cached routes to a slot die before another sandbox gets it.
pub(crate) const NET_SLOT_HOLD_MS: i64 = 10_000;

/// The lowest network slot neither in use nor recently released, or an error when the node is
/// full.
fn free_net_index(tx: &Transaction<'_>) -> Result<u32, StoreError> {
    let now = now_millis();
    tx.execute("DELETE FROM net_slot_holds WHERE until <= ?1", [now])?;
    let taken = |slot: i64| -> Result<bool, StoreError> {
        Ok(tx
            .query_row(
                "SELECT 1 FROM sandboxes WHERE net_index = ?1
                 UNION ALL SELECT 1 FROM net_slot_holds WHERE net_index = ?1",
                [slot],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    };
    if !taken(1)? {
        return Ok(1);
    }
    let next: Option<i64> = tx.query_row(
        "SELECT MIN(c.slot + 1) FROM (
             SELECT net_index AS slot FROM sandboxes WHERE net_index IS NOT NULL
             UNION ALL SELECT net_index FROM net_slot_holds
         ) c
         WHERE c.slot + 1 <= ?1
           AND NOT EXISTS (SELECT 1 FROM sandboxes t WHERE t.net_index = c.slot + 1)
           AND NOT EXISTS (SELECT 1 FROM net_slot_holds h WHERE h.net_index = c.slot + 1)",
        [NET_SLOTS],
        |r| r.get(0),
    )?;
    next.map(|n| n as u32).ok_or(StoreError::NoNetworkSlot)
}

/// Keep a released slot out of use for [`NET_SLOT_HOLD_MS`].
fn hold_net_index(tx: &Transaction<'_>, slot: u32) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO net_slot_holds (net_index, until) VALUES (?1, ?2)
         ON CONFLICT (net_index) DO UPDATE SET until = ?2",
        params![slot, now_millis() + NET_SLOT_HOLD_MS],
    )?;
    Ok(())
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
    };
    let result = tx.execute(
        &format!("INSERT INTO sandboxes ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
                  ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26)"),
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
        ],
    );
    match result {
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation && record.name.is_some() =>
        {
            return Err(StoreError::NameTaken(record.name.clone().unwrap_or_default()));
        }
        other => other?,
    };
    insert_event(tx, &record, "sandbox.created")?;
    Ok(record)
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
    let now = now_millis();
    let result = tx.execute(
        "UPDATE sandboxes SET tenant_id = ?2, name = ?3, external_user_id = ?4,
            external_workspace_id = ?5, external_project_id = ?6, metadata = ?7, tags = ?8,
            timeout_sec = ?9, idle_timeout_sec = ?10, created_at = ?11, started_at = ?11,
            ready_at = ?11, expires_at = ?12, last_activity_at = ?11, boot_ms = 0
         WHERE id = ?1",
        params![
            id,
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
        ],
    );
    match result {
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            return Err(StoreError::NameTaken(req.name.clone().unwrap_or_default()));
        }
        other => other?,
    };
    let record = get_tx(tx, &id)?.ok_or(StoreError::NotFound("sandbox"))?;
    // From now on its running time and storage are the tenant's; what the pool used stays
    // the pool's, in rows of their own (the hourly rows are keyed by sandbox and hour).
    tx.execute(
        "UPDATE usage_meters SET run_at = ?2, storage_at = ?2 WHERE sandbox_id = ?1",
        params![id, now],
    )?;
    tx.execute(
        "UPDATE usage_hourly SET sandbox_id = sandbox_id || '@pool' WHERE sandbox_id = ?1",
        params![id],
    )?;
    insert_event(tx, &record, "sandbox.created")?;
    insert_event(tx, &record, "sandbox.running")?;
    Ok(Some(record))
}

/// The event a transition emits, if any.
fn event_for(from: SandboxState, t: Transition, timed_out: bool) -> Option<&'static str> {
    Some(match t {
        Transition::Started if from == SandboxState::Creating => "sandbox.running",
        Transition::Started => return None,
        Transition::Failed => "sandbox.error",
        Transition::Pause => "sandbox.paused",
        Transition::Resume => "sandbox.resumed",
        Transition::Stop => "sandbox.stopped",
        Transition::Destroy if timed_out => "sandbox.timeout",
        Transition::Destroy => return None,
        Transition::Destroyed => "sandbox.destroyed",
    })
}

/// Extra facts recorded with a transition.
#[derive(Debug, Clone, Default)]
pub struct TransitionFacts {
    pub boot_ms: Option<i64>,
    pub error: Option<String>,
    /// The destroy was caused by the sandbox's timeout.
    pub timed_out: bool,
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
        let id = id.to_string();
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
            let mut clauses = vec!["tenant_id = ?1".to_owned()];
            let mut args: Vec<String> = vec![tenant];
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
            if let Some(v) = filter.external_user_id {
                push("external_user_id", v);
            }
            if let Some(v) = filter.external_workspace_id {
                push("external_workspace_id", v);
            }
            if let Some(v) = filter.external_project_id {
                push("external_project_id", v);
            }
            for tag in filter.tags {
                args.push(tag);
                clauses.push(format!(
                    "EXISTS (SELECT 1 FROM json_each(sandboxes.tags) WHERE value = ?{})",
                    args.len()
                ));
            }
            let where_sql = clauses.join(" AND ");
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

    /// Apply a lifecycle transition, checked against the state machine, with its event.
    pub async fn transition(
        &self,
        id: &SandboxId,
        t: Transition,
        facts: TransitionFacts,
    ) -> Result<SandboxRecord, StoreError> {
        let id = id.to_string();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let mut record = get_tx(&tx, &id)?.ok_or(StoreError::NotFound("sandbox"))?;
            let from = record.state;
            let next = from.transition(t)?;
            if t == Transition::Resume {
                if let Some(user) = &record.external_user_id {
                    crate::policies::check_not_suspended(&tx, record.tenant_id.as_str(), user)?;
                }
            }
            if from == SandboxState::Stopped && t == Transition::Resume {
                // Resuming takes compute again: the same limits as a create.
                if let Some(user) = record.external_user_id.clone() {
                    let tenant = record.tenant_id.to_string();
                    let limits = crate::policies::limits_tx(&tx, &tenant, Some(&user))?;
                    let held = crate::policies::holding_tx(&tx, &tenant, &user, Some(&id))?;
                    let add = islet_types::policy::Holding {
                        sandboxes: 0,
                        concurrent: 1,
                        cpu: u64::from(record.resources.cpu_count),
                        memory_mb: u64::from(record.resources.memory_mb),
                        storage_mb: 0,
                    };
                    let spend = crate::policies::check_spend(&tx, &tenant, &user, &limits);
                    if let Err(refusal) =
                        spend.and_then(|()| islet_types::policy::admit(&limits, &held, &add))
                    {
                        crate::events::insert_any(
                            &tx,
                            &record.tenant_id,
                            None,
                            "quota.exceeded",
                            crate::policies::refusal_data(&refusal, &user, "resume", Some(&id)),
                        )?;
                        tx.commit()?;
                        return Err(StoreError::QuotaExceeded { refusal, external_user_id: user });
                    }
                }
            }
            let now = now_millis();
            let before_net_index = record.net_index;
            record.state = next;
            match t {
                Transition::Started => {
                    record.started_at.get_or_insert(now);
                    record.ready_at = Some(now);
                    record.boot_ms = facts.boot_ms.or(record.boot_ms);
                    record.last_activity_at = now;
                }
                // The slot stays with a failed sandbox until it is destroyed, so whatever its
                // cleanup left behind can still be found by name.
                Transition::Failed => record.error = facts.error.clone(),
                Transition::Resume => record.last_activity_at = now,
                Transition::Destroyed => {
                    record.destroyed_at = Some(now);
                    record.net_index = None;
                }
                _ => {}
            }
            if t == Transition::Stop {
                // A stopped sandbox gives its address back; resume takes a fresh one.
                record.net_index = None;
            }
            if from == SandboxState::Stopped && t == Transition::Resume {
                record.net_index = Some(free_net_index(&tx)?);
            }
            if let (Some(released), None) = (before_net_index, record.net_index) {
                hold_net_index(&tx, released)?;
            }
            tx.execute(
                "UPDATE sandboxes SET state = ?2, started_at = ?3, ready_at = ?4, boot_ms = ?5,
                    error = ?6, destroyed_at = ?7, net_index = ?8, last_activity_at = ?9
                 WHERE id = ?1",
                params![
                    id,
                    record.state.as_str(),
                    record.started_at,
                    record.ready_at,
                    record.boot_ms,
                    record.error,
                    record.destroyed_at,
                    record.net_index,
                    record.last_activity_at,
                ],
            )?;
            match t {
                Transition::Started => crate::usage::mark_running(&tx, &record, now, true)?,
                Transition::Resume => {
                    crate::usage::mark_running(&tx, &record, now, from == SandboxState::Stopped)?
                }
                Transition::Pause | Transition::Stop | Transition::Failed | Transition::Destroy => {
                    crate::usage::mark_not_running(&tx, &id)?
                }
                Transition::Destroyed => crate::usage::forget_meter(&tx, &id)?,
            }
            if let Some(event) = event_for(from, t, facts.timed_out) {
                insert_event(&tx, &record, event)?;
            }
            tx.commit()?;
            Ok(record)
        })
        .await
    }

    pub async fn patch_sandbox(
        &self,
        tenant_id: &TenantId,
        id: &SandboxId,
        patch: SandboxPatch,
    ) -> Result<SandboxRecord, StoreError> {
        let (tenant, id) = (tenant_id.to_string(), id.to_string());
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let mut record = get_tx(&tx, &id)?
                .filter(|r| r.tenant_id.as_str() == tenant && r.state != SandboxState::Destroyed)
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
                let limits =
                    crate::policies::limits_tx(&tx, &tenant, record.external_user_id.as_deref())?;
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
                    id,
                    record.name,
                    serde_json::Value::Object(record.metadata.clone()).to_string(),
                    serde_json::to_string(&record.tags).map_err(StoreError::corrupt)?,
                    record.timeout_sec,
                    record.expires_at,
                    record.idle_timeout_sec,
                ],
            );
            match result {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    return Err(StoreError::NameTaken(record.name.unwrap_or_default()));
                }
                other => other?,
            };
            tx.commit()?;
            Ok(record)
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

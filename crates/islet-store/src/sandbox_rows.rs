//! A sandbox row: the record as stored, its columns, and reading one. Below every module that
//! reads sandboxes (events, usage, admission, the lifecycle), so none of them needs another.

use std::collections::BTreeMap;

use islet_types::sandbox::Isolation;
use islet_types::time::UnixMillis;
use islet_types::{Resources, SandboxId, SandboxState, TenantId};
use rusqlite::{OptionalExtension, Row, Transaction};

use crate::rows::{json, parse};
use crate::StoreError;

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
    pub slug: Option<String>,
    pub always_on: bool,
}

pub(crate) const COLUMNS: &str =
    "id, tenant_id, name, state, template_id, isolation, external_user_id, \
    external_workspace_id, external_project_id, metadata, tags, env, cpu_count, memory_mb, \
    disk_mb, timeout_sec, idle_timeout_sec, net_index, created_at, started_at, ready_at, \
    destroyed_at, expires_at, last_activity_at, boot_ms, error, slug, always_on";

pub(crate) fn from_row(r: &Row<'_>) -> rusqlite::Result<SandboxRecord> {
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
        slug: r.get(26)?,
        always_on: r.get(27)?,
    })
}

pub(crate) fn get_tx(
    tx: &Transaction<'_>,
    id: &SandboxId,
) -> Result<Option<SandboxRecord>, StoreError> {
    Ok(tx
        .query_row(
            &format!("SELECT {COLUMNS} FROM sandboxes WHERE id = ?1"),
            [id.as_str()],
            from_row,
        )
        .optional()?)
}

/// The states in which a sandbox holds compute (what `SandboxState::is_live` says), as an SQL
/// list: `'creating', 'running', 'paused'`. Every query that counts or finds live sandboxes
/// uses it, so the two can never disagree.
pub(crate) fn live_states() -> &'static str {
    static LIST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LIST.get_or_init(|| {
        SandboxState::ALL
            .iter()
            .filter(|s| s.is_live())
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

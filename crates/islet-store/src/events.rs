//! The lifecycle event outbox. Rows are written inside the transaction of the change they
//! describe; the webhook dispatcher and event streams read them in `seq` order.

use islet_types::time::{now_millis, rfc3339};
use islet_types::{EventId, SandboxState, TenantId};
use rusqlite::{params, Row, Transaction};

use crate::sandbox_rows::SandboxRecord;
use crate::{Store, StoreError};

/// One stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub seq: i64,
    pub id: String,
    pub tenant_id: TenantId,
    pub sandbox_id: Option<String>,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub created_at: i64,
}

/// An event that is not a sandbox transition (`webhook.disabled`, `quota.exceeded`, …).
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub tenant_id: TenantId,
    /// The sandbox it concerns, if any: its events are delivered in order.
    pub sandbox_id: Option<String>,
    pub event_type: String,
    pub data: serde_json::Value,
}

/// The event's `data`: what a tenant needs to attribute it without another lookup.
fn sandbox_payload(
    tx: &Transaction<'_>,
    record: &SandboxRecord,
) -> Result<serde_json::Value, StoreError> {
    // The ports exposed at the time; readers turn them into preview URLs.
    let mut stmt = tx.prepare_cached(
        "SELECT port FROM previews WHERE sandbox_id = ?1 AND deleted_at IS NULL ORDER BY port",
    )?;
    let ports = stmt
        .query_map([record.id.as_str()], |r| r.get::<_, i64>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut data = serde_json::json!({
        "id": record.id,
        "sandbox_id": record.id,
        "state": record.state.as_str(),
        "template_id": record.template_id,
        "name": record.name,
        "external_user_id": record.external_user_id,
        "external_workspace_id": record.external_workspace_id,
        "external_project_id": record.external_project_id,
        "metadata": record.metadata,
        "error": record.error,
        "cpu_count": record.resources.cpu_count,
        "memory_mb": record.resources.memory_mb,
        "created_at": rfc3339(record.created_at),
        "preview_ports": ports,
    });
    if record.state == SandboxState::Destroyed {
        data["usage"] = final_usage(record);
    }
    Ok(data)
}

/// The totals a `sandbox.destroyed` event carries: its lifetime and what was allocated to it
/// for that time.
fn final_usage(record: &SandboxRecord) -> serde_json::Value {
    let end = record.destroyed_at.unwrap_or_else(now_millis);
    let start = record.started_at.unwrap_or(record.created_at);
    let seconds = (end - start).max(0) as f64 / 1000.0;
    serde_json::json!({
        "sandbox_seconds": seconds,
        "vcpu_seconds": seconds * f64::from(record.resources.cpu_count),
        "memory_gib_seconds": seconds * f64::from(record.resources.memory_mb) / 1024.0,
        "started_at": record.started_at.map(rfc3339),
        "destroyed_at": rfc3339(end),
    })
}

pub(crate) fn insert_event(
    tx: &Transaction<'_>,
    record: &SandboxRecord,
    event_type: &str,
) -> Result<(), StoreError> {
    let data = sandbox_payload(tx, record)?;
    insert_any(tx, &record.tenant_id, Some(record.id.as_str()), event_type, data)
}

pub(crate) fn insert_any(
    tx: &Transaction<'_>,
    tenant_id: &TenantId,
    sandbox_id: Option<&str>,
    event_type: &str,
    data: serde_json::Value,
) -> Result<(), StoreError> {
    let id = EventId::generate();
    let now = now_millis();
    let payload = serde_json::json!({
        "id": id,
        "type": event_type,
        "occurred_at": rfc3339(now),
        "tenant_id": tenant_id,
        "data": data,
    });
    let mut stmt = tx.prepare_cached(
        "INSERT INTO events (id, tenant_id, sandbox_id, type, payload, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    stmt.execute(params![
        id.as_str(),
        tenant_id.as_str(),
        sandbox_id,
        event_type,
        payload.to_string(),
        now
    ])?;
    Ok(())
}

const EVENT_COLUMNS: &str = "seq, id, tenant_id, sandbox_id, type, payload, created_at";

fn event_row(r: &Row<'_>) -> rusqlite::Result<Result<EventRow, StoreError>> {
    let tenant: String = r.get(2)?;
    let payload: String = r.get(5)?;
    Ok((|| {
        Ok(EventRow {
            seq: r.get(0)?,
            id: r.get(1)?,
            tenant_id: tenant.parse().map_err(StoreError::corrupt)?,
            sandbox_id: r.get(3)?,
            event_type: r.get(4)?,
            payload: serde_json::from_str(&payload).map_err(StoreError::corrupt)?,
            created_at: r.get(6)?,
        })
    })())
}

impl Store {
    /// Events of a tenant after `after_seq`, oldest first.
    pub async fn events_after(
        &self,
        tenant_id: &TenantId,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<EventRow>, StoreError> {
        let tenant = tenant_id.to_string();
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events
                 WHERE tenant_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![tenant, after_seq, limit], event_row)?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    /// The newest event's position (0 for none): where a reader that wants only new events
    /// starts.
    pub async fn latest_event_seq(&self) -> Result<i64, StoreError> {
        self.with(|conn| {
            Ok(conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?)
        })
        .await
    }

    /// Write events that are not sandbox transitions, in one transaction.
    pub async fn emit_events(&self, events: Vec<NewEvent>) -> Result<(), StoreError> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            for e in &events {
                insert_any(
                    &tx,
                    &e.tenant_id,
                    e.sandbox_id.as_deref(),
                    &e.event_type,
                    e.data.clone(),
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

/// All tenants' events after `after_seq`, oldest first (for outbox readers).
pub(crate) fn outbox_after_tx(
    conn: &rusqlite::Connection,
    after_seq: i64,
    limit: u32,
) -> Result<Vec<EventRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![after_seq, limit], event_row)?;
    rows.map(|row| row?).collect()
}

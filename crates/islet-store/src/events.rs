//! The lifecycle event outbox. Rows are written inside the transaction of the change they
//! describe; the webhook dispatcher and event streams read them in `seq` order.

use islet_types::time::{now_millis, rfc3339};
use islet_types::TenantId;
use rand::Rng;
use rusqlite::{params, Transaction};

use crate::sandboxes::SandboxRecord;
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

fn event_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut rng = rand::thread_rng();
    let body: String = (0..20)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("evt_{body}")
}

/// The event's `data`: what a tenant needs to attribute it without another lookup.
fn sandbox_payload(record: &SandboxRecord) -> serde_json::Value {
    serde_json::json!({
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
    })
}

pub(crate) fn insert_event(
    tx: &Transaction<'_>,
    record: &SandboxRecord,
    event_type: &str,
) -> Result<(), StoreError> {
    let id = event_id();
    let now = now_millis();
    let payload = serde_json::json!({
        "id": id,
        "type": event_type,
        "occurred_at": rfc3339(now),
        "tenant_id": record.tenant_id,
        "data": sandbox_payload(record),
    });
    tx.execute(
        "INSERT INTO events (id, tenant_id, sandbox_id, type, payload, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            id,
            record.tenant_id.as_str(),
            record.id.as_str(),
            event_type,
            payload.to_string(),
            now
        ],
    )?;
    Ok(())
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
            let mut stmt = conn.prepare(
                "SELECT seq, id, tenant_id, sandbox_id, type, payload, created_at FROM events
                 WHERE tenant_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![tenant, after_seq, limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            })?;
            rows.map(|row| {
                let (seq, id, tenant_id, sandbox_id, event_type, payload, created_at) = row?;
                Ok(EventRow {
                    seq,
                    id,
                    tenant_id: tenant_id.parse().map_err(StoreError::corrupt)?,
                    sandbox_id,
                    event_type,
                    payload: serde_json::from_str(&payload).map_err(StoreError::corrupt)?,
                    created_at,
                })
            })
            .collect()
        })
        .await
    }
}

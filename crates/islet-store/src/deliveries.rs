//! Webhook deliveries: fanned out from the outbox, claimed by a dispatcher under a lease,
//! attempted, recorded, retried or given up on. Everything a dispatcher learns is written back
//! here before it moves on, so a restart resumes exactly where the last one stopped.

use std::collections::HashMap;
use std::sync::Arc;

use islet_types::time::{now_millis, UnixMillis};
use islet_types::{DeliveryId, TenantId, WebhookId};
use rusqlite::{params, OptionalExtension, Row, Transaction};

use crate::events::{insert_any, outbox_after_tx, EventRow};
use crate::rows::parse;
use crate::webhooks::{active_for_tenant, WebhookRecord};
use crate::{Store, StoreError};

/// A delivery to write: one event for one endpoint, with its body fixed for every attempt.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: DeliveryId,
    pub webhook_id: WebhookId,
    pub tenant_id: TenantId,
    pub event_id: String,
    pub event_type: String,
    /// Deliveries with the same key to the same endpoint go one at a time, in order.
    pub order_key: Option<String>,
    pub body: String,
    pub max_attempts: u32,
    pub replay_of: Option<DeliveryId>,
    pub replay_id: Option<String>,
}

/// Outbox events after a reader's cursor, with the active endpoints of their tenants.
#[derive(Debug)]
pub struct OutboxBatch {
    pub cursor: i64,
    pub events: Vec<EventRow>,
    pub webhooks: HashMap<TenantId, Vec<WebhookRecord>>,
}

/// A delivery a dispatcher holds the lease of.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: DeliveryId,
    pub webhook: Arc<WebhookRecord>,
    pub event_type: String,
    pub body: String,
    /// This attempt's number, from 1.
    pub attempt: u32,
    pub max_attempts: u32,
    pub created_at: UnixMillis,
    /// The lease this claim holds (its expiry); the attempt is recorded only while it does.
    pub lease: UnixMillis,
}

/// What the dispatcher decided after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    RetryAt(UnixMillis),
    /// No attempts left.
    Exhausted,
    /// The receiver answered 410: the endpoint is disabled.
    EndpointGone,
}

/// One attempt, as the receiver answered it.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_id: DeliveryId,
    pub webhook_id: WebhookId,
    pub attempt: u32,
    /// The claim's lease ([`ClaimedDelivery::lease`]).
    pub lease: UnixMillis,
    pub started_at: UnixMillis,
    pub duration_ms: i64,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub response: Option<String>,
    pub verdict: Verdict,
}

/// A recorded attempt, for `GET /webhooks/{id}/deliveries`.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRow {
    pub attempt: u32,
    pub started_at: UnixMillis,
    pub duration_ms: i64,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub response: Option<String>,
}

/// A delivery as stored, with its attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    pub id: DeliveryId,
    pub webhook_id: WebhookId,
    pub event_id: String,
    pub event_type: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: u32,
    pub max_attempts: u32,
    pub next_attempt_at: Option<UnixMillis>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub replay_of: Option<DeliveryId>,
    pub body: String,
    pub created_at: UnixMillis,
    pub finished_at: Option<UnixMillis>,
    pub attempt_log: Vec<AttemptRow>,
}

/// Why Islet switched an endpoint off.
pub const DISABLED_GONE: &str = "gone";
pub const DISABLED_FAILING: &str = "failing";

fn insert_delivery_tx(
    tx: &Transaction<'_>,
    d: &NewDelivery,
    now: UnixMillis,
) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO webhook_deliveries (id, webhook_id, tenant_id, event_id, event_type,
            order_key, body, state, max_attempts, next_attempt_at, replay_of, replay_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9, ?10, ?11, ?9)",
    )?;
    let result = stmt.execute(params![
        d.id.as_str(),
        d.webhook_id.as_str(),
        d.tenant_id.as_str(),
        d.event_id,
        d.event_type,
        d.order_key,
        d.body,
        d.max_attempts,
        now,
        d.replay_of.as_ref().map(|r| r.as_str()),
        d.replay_id,
    ]);
    match result {
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                && d.replay_id.is_some() =>
        {
            Err(StoreError::Conflict("this replay_id was already used for this webhook".into()))
        }
        // The endpoint was deleted meanwhile.
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
        {
            Err(StoreError::NotFound("webhook"))
        }
        other => other.map(|_| ()).map_err(Into::into),
    }
}

fn cursor_tx(tx: &rusqlite::Connection, name: &str) -> Result<i64, StoreError> {
    Ok(tx
        .query_row("SELECT seq FROM outbox_cursors WHERE name = ?1", [name], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Switch an endpoint off: its pending deliveries fail, and the tenant hears of it through a
/// `webhook.disabled` event (which other endpoints may be subscribed to).
fn disable_tx(
    tx: &Transaction<'_>,
    webhook: &WebhookRecord,
    reason: &str,
    now: UnixMillis,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE webhooks SET active = 0, disabled_reason = ?2, updated_at = ?3 WHERE id = ?1",
        params![webhook.id.as_str(), reason, now],
    )?;
    tx.execute(
        "UPDATE webhook_deliveries SET state = 'failed', finished_at = ?2, lease_until = 0,
            last_error = COALESCE(last_error, 'endpoint disabled')
         WHERE webhook_id = ?1 AND state = 'pending'",
        params![webhook.id.as_str(), now],
    )?;
    let data = serde_json::json!({
        "id": webhook.id,
        "webhook_id": webhook.id,
        "url": webhook.url,
        "reason": reason,
        "failing_since": webhook.failing_since.map(islet_types::time::rfc3339),
    });
    insert_any(tx, &webhook.tenant_id, None, "webhook.disabled", data)
}

fn attempt_row(r: &Row<'_>) -> rusqlite::Result<AttemptRow> {
    Ok(AttemptRow {
        attempt: r.get(0)?,
        started_at: r.get(1)?,
        duration_ms: r.get(2)?,
        status: r.get(3)?,
        error: r.get(4)?,
        response: r.get(5)?,
    })
}

const DELIVERY_COLUMNS: &str = "id, webhook_id, event_id, event_type, state, attempts,
    max_attempts, next_attempt_at, last_status, last_error, replay_of, body, created_at,
    finished_at, seq";

fn delivery_row(r: &Row<'_>) -> rusqlite::Result<(DeliveryRecord, i64)> {
    let state: String = r.get(4)?;
    let replay_of: Option<String> = r.get(10)?;
    Ok((
        DeliveryRecord {
            id: parse(r.get(0)?)?,
            webhook_id: parse(r.get(1)?)?,
            event_id: r.get(2)?,
            event_type: r.get(3)?,
            next_attempt_at: (state == "pending").then(|| r.get(7)).transpose()?,
            state,
            attempts: r.get(5)?,
            max_attempts: r.get(6)?,
            last_status: r.get(8)?,
            last_error: r.get(9)?,
            replay_of: replay_of.map(parse).transpose()?,
            body: r.get(11)?,
            created_at: r.get(12)?,
            finished_at: r.get(13)?,
            attempt_log: Vec::new(),
        },
        r.get(14)?,
    ))
}

fn attempts_of(conn: &rusqlite::Connection, id: &str) -> Result<Vec<AttemptRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT attempt, started_at, duration_ms, status, error, response FROM webhook_attempts
         WHERE delivery_id = ?1 ORDER BY attempt",
    )?;
    let rows = stmt.query_map([id], attempt_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

impl Store {
    /// Up to `limit` outbox events after the `reader`'s cursor, with the active endpoints of
    /// their tenants.
    pub async fn outbox_batch(
        &self,
        reader: &'static str,
        limit: u32,
    ) -> Result<OutboxBatch, StoreError> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let cursor = cursor_tx(&tx, reader)?;
            let events = outbox_after_tx(&tx, cursor, limit)?;
            let mut webhooks = HashMap::new();
            for e in &events {
                if !webhooks.contains_key(&e.tenant_id) {
                    let active = active_for_tenant(&tx, e.tenant_id.as_str())?;
                    webhooks.insert(e.tenant_id.clone(), active);
                }
            }
            tx.commit()?;
            Ok(OutboxBatch { cursor, events, webhooks })
        })
        .await
    }

    /// Write the deliveries fanned out from events `(from, to]` and move the `reader`'s cursor
    /// to `to`, in one transaction. `false` (and nothing written) when the cursor is no longer
    /// at `from`: another reader got there first.
    pub async fn commit_fan_out(
        &self,
        reader: &'static str,
        from: i64,
        to: i64,
        deliveries: Vec<NewDelivery>,
    ) -> Result<bool, StoreError> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            if cursor_tx(&tx, reader)? != from {
                return Ok(false);
            }
            let now = now_millis();
            for d in &deliveries {
                insert_delivery_tx(&tx, d, now)?;
            }
            tx.execute(
                "INSERT INTO outbox_cursors (name, seq) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET seq = excluded.seq",
                params![reader, to],
            )?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    /// Write one delivery outside the fan-out (a replay, a test event).
    pub async fn insert_delivery(&self, delivery: NewDelivery) -> Result<(), StoreError> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            insert_delivery_tx(&tx, &delivery, now_millis())?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Take the leases of up to `limit` deliveries that are due, oldest due first, skipping
    /// endpoints in `busy`. A delivery waits while an earlier one to the same endpoint with
    /// the same order key is still pending.
    pub async fn claim_deliveries(
        &self,
        limit: u32,
        lease_ms: i64,
        busy: Vec<WebhookId>,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let now = now_millis();
            let busy: Vec<String> = busy.iter().map(|b| format!("'{}'", b.as_str())).collect();
            // The ids are typed (`wh_` and base32), so they are safe to inline.
            let exclude = if busy.is_empty() {
                String::new()
            } else {
                format!("AND d.webhook_id NOT IN ({})", busy.join(","))
            };
            let mut rows = Vec::new();
            {
                let mut stmt = tx.prepare(&format!(
                    "SELECT d.seq, d.id, d.webhook_id, d.event_type, d.body, d.attempts,
                        d.max_attempts, d.created_at
                     FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
                     WHERE d.state = 'pending' AND d.next_attempt_at <= ?1
                       AND d.lease_until <= ?1 AND w.active = 1 {exclude}
                       AND (d.order_key IS NULL OR NOT EXISTS (
                           SELECT 1 FROM webhook_deliveries e
                           WHERE e.webhook_id = d.webhook_id AND e.order_key = d.order_key
                             AND e.state = 'pending' AND e.seq < d.seq))
                     ORDER BY d.next_attempt_at, d.seq LIMIT ?2"
                ))?;
                let mapped = stmt.query_map(params![now, limit], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, u32>(5)?,
                        r.get::<_, u32>(6)?,
                        r.get::<_, i64>(7)?,
                    ))
                })?;
                for row in mapped {
                    rows.push(row?);
                }
            }
            let mut webhooks: HashMap<String, Arc<WebhookRecord>> = HashMap::new();
            let mut claimed = Vec::with_capacity(rows.len());
            let mut lease =
                tx.prepare_cached("UPDATE webhook_deliveries SET lease_until = ?2 WHERE seq = ?1")?;
            for (seq, id, webhook_id, event_type, body, attempts, max_attempts, created_at) in rows
            {
                let webhook = match webhooks.get(&webhook_id) {
                    Some(w) => w.clone(),
                    None => {
                        let w: WebhookRecord = tx.query_row(
                            &format!(
                                "SELECT {} FROM webhooks WHERE id = ?1",
                                crate::webhooks::COLUMNS
                            ),
                            [&webhook_id],
                            crate::webhooks::from_row,
                        )?;
                        let w = Arc::new(w);
                        webhooks.insert(webhook_id.clone(), w.clone());
                        w
                    }
                };
                lease.execute(params![seq, now + lease_ms])?;
                claimed.push(ClaimedDelivery {
                    id: id.parse().map_err(StoreError::corrupt)?,
                    webhook,
                    event_type,
                    body,
                    attempt: attempts + 1,
                    max_attempts,
                    created_at,
                    lease: now + lease_ms,
                });
            }
            drop(lease);
            tx.commit()?;
            Ok(claimed)
        })
        .await
    }

    /// Record attempts and apply their verdicts, in one transaction. An endpoint that has
    /// failed for `disable_after_ms` with no success in between is disabled; an endpoint's
    /// first success after failing brings its waiting retries forward. Returns the endpoints
    /// this disabled.
    pub async fn record_attempts(
        &self,
        attempts: Vec<AttemptRecord>,
        disable_after_ms: i64,
    ) -> Result<Vec<WebhookId>, StoreError> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let now = now_millis();
            let mut disabled = Vec::new();
            for a in &attempts {
                let (state, next, finished) = match a.verdict {
                    Verdict::Delivered => ("delivered", now, Some(now)),
                    Verdict::RetryAt(at) => ("pending", at, None),
                    Verdict::Exhausted | Verdict::EndpointGone => ("failed", now, Some(now)),
                };
                let changed = tx
                    .prepare_cached(
                        "UPDATE webhook_deliveries SET state = ?2, attempts = ?3,
                            next_attempt_at = ?4, lease_until = 0, last_status = ?5,
                            last_error = ?6, finished_at = ?7
                         WHERE id = ?1 AND state = 'pending' AND lease_until = ?8",
                    )?
                    .execute(params![
                        a.delivery_id.as_str(),
                        state,
                        a.attempt,
                        next,
                        a.status,
                        a.error,
                        finished,
                        a.lease,
                    ])?;
                if changed == 0 {
                    // Deleted with its endpoint, or its lease was lost (expired and claimed
                    // again, or released at a restart): the holder of the new lease records.
                    continue;
                }
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO webhook_attempts
                        (delivery_id, attempt, started_at, duration_ms, status, error, response)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    a.delivery_id.as_str(),
                    a.attempt,
                    a.started_at,
                    a.duration_ms,
                    a.status,
                    a.error,
                    a.response,
                ])?;
                if a.verdict == Verdict::Delivered {
                    let was_failing: Option<i64> = tx
                        .prepare_cached("SELECT failing_since FROM webhooks WHERE id = ?1")?
                        .query_row([a.webhook_id.as_str()], |r| r.get(0))
                        .optional()?
                        .flatten();
                    tx.prepare_cached(
                        "UPDATE webhooks SET last_success_at = ?2, failing_since = NULL
                         WHERE id = ?1",
                    )?
                    .execute(params![a.webhook_id.as_str(), now])?;
                    if was_failing.is_some() {
                        // The endpoint is back: what waits in back-off goes now rather than
                        // at its next step (hours away, late in the schedule).
                        tx.prepare_cached(
                            "UPDATE webhook_deliveries SET next_attempt_at = ?2
                             WHERE webhook_id = ?1 AND state = 'pending' AND next_attempt_at > ?2",
                        )?
                        .execute(params![a.webhook_id.as_str(), now])?;
                    }
                    continue;
                }
                // The clock runs while failures keep coming: after a day with none (the
                // schedule's longest wait is 10 h), a failure starts it again.
                tx.prepare_cached(
                    "UPDATE webhooks SET
                        failing_since = CASE
                            WHEN failing_since IS NULL OR last_failure_at IS NULL
                                 OR last_failure_at < ?2 - 86400000 THEN ?2
                            ELSE failing_since END,
                        last_failure_at = ?2
                     WHERE id = ?1",
                )?
                .execute(params![a.webhook_id.as_str(), now])?;
                let webhook: Option<WebhookRecord> = tx
                    .query_row(
                        &format!(
                            "SELECT {} FROM webhooks WHERE id = ?1 AND active = 1",
                            crate::webhooks::COLUMNS
                        ),
                        [a.webhook_id.as_str()],
                        crate::webhooks::from_row,
                    )
                    .optional()?;
                let Some(webhook) = webhook else { continue };
                let reason = if a.verdict == Verdict::EndpointGone {
                    Some(DISABLED_GONE)
                } else if webhook.failing_since.is_some_and(|since| now - since >= disable_after_ms)
                {
                    Some(DISABLED_FAILING)
                } else {
                    None
                };
                if let Some(reason) = reason {
                    disable_tx(&tx, &webhook, reason, now)?;
                    disabled.push(webhook.id.clone());
                }
            }
            tx.commit()?;
            Ok(disabled)
        })
        .await
    }

    /// Release every lease (the only dispatcher of this store starting again: nothing else
    /// can be holding one).
    pub async fn release_all_leases(&self) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                "UPDATE webhook_deliveries SET lease_until = 0
                 WHERE state = 'pending' AND lease_until > 0",
                [],
            )?;
            Ok(())
        })
        .await
    }

    /// The endpoint's deliveries, newest first, with their attempts; `before` is the
    /// `next_cursor` of the previous page.
    pub async fn list_deliveries(
        &self,
        tenant_id: &TenantId,
        webhook_id: &WebhookId,
        limit: u32,
        before: Option<i64>,
    ) -> Result<(Vec<DeliveryRecord>, Option<i64>), StoreError> {
        let (tenant, webhook) = (tenant_id.to_string(), webhook_id.to_string());
        self.with(move |conn| {
            crate::webhooks::get_tx(conn, &tenant, &webhook)?;
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
                 WHERE webhook_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
            ))?;
            let rows = stmt
                .query_map(params![webhook, before.unwrap_or(i64::MAX), limit + 1], delivery_row)?
                .collect::<Result<Vec<_>, _>>()?;
            let more = rows.len() > limit as usize;
            let mut out = Vec::with_capacity(rows.len());
            let mut last_seq = None;
            for (mut d, seq) in rows.into_iter().take(limit as usize) {
                d.attempt_log = attempts_of(conn, d.id.as_str())?;
                last_seq = Some(seq);
                out.push(d);
            }
            Ok((out, if more { last_seq } else { None }))
        })
        .await
    }

    /// One delivery of one of the tenant's endpoints.
    pub async fn get_delivery(
        &self,
        tenant_id: &TenantId,
        webhook_id: &WebhookId,
        id: &DeliveryId,
    ) -> Result<DeliveryRecord, StoreError> {
        let (tenant, webhook, id) = (tenant_id.to_string(), webhook_id.to_string(), id.to_string());
        self.with(move |conn| {
            crate::webhooks::get_tx(conn, &tenant, &webhook)?;
            let (mut d, _) = conn
                .query_row(
                    &format!(
                        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
                         WHERE id = ?1 AND webhook_id = ?2"
                    ),
                    params![id, webhook],
                    delivery_row,
                )
                .optional()?
                .ok_or(StoreError::NotFound("delivery"))?;
            d.attempt_log = attempts_of(conn, &id)?;
            Ok(d)
        })
        .await
    }

    /// Forget settled deliveries (with their attempts) that finished before `before`, and
    /// outbox events written before it that every outbox reader has passed; at most `batch`
    /// of each per call, so a large backlog never holds the write lock long. Returns how many
    /// deliveries and events went.
    pub async fn prune_webhook_history(
        &self,
        before: UnixMillis,
        batch: u32,
    ) -> Result<(usize, usize), StoreError> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            // A paused endpoint's deliveries wait for it, but not past the retention.
            tx.execute(
                "UPDATE webhook_deliveries SET state = 'failed', finished_at = ?2, lease_until = 0,
                    last_error = 'expired while the endpoint was not active'
                 WHERE state = 'pending' AND created_at < ?1
                   AND webhook_id IN (SELECT id FROM webhooks WHERE active = 0)",
                params![before, now_millis()],
            )?;
            tx.execute("CREATE TEMP TABLE IF NOT EXISTS prune_ids (id TEXT PRIMARY KEY)", [])?;
            tx.execute("DELETE FROM prune_ids", [])?;
            tx.execute(
                "INSERT INTO prune_ids SELECT id FROM webhook_deliveries
                 WHERE state != 'pending' AND finished_at < ?1 LIMIT ?2",
                params![before, batch],
            )?;
            tx.execute(
                "DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM prune_ids)",
                [],
            )?;
            let deliveries = tx.execute(
                "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM prune_ids)",
                [],
            )?;
            let events = tx.execute(
                "DELETE FROM events WHERE seq IN (
                     SELECT seq FROM events WHERE created_at < ?1
                       AND seq <= (SELECT COALESCE(MIN(seq), 0) FROM outbox_cursors)
                     ORDER BY seq LIMIT ?2)",
                params![before, batch],
            )?;
            tx.commit()?;
            Ok((deliveries, events))
        })
        .await
    }

    /// How many deliveries are still pending (all endpoints): what a drain waits on.
    pub async fn pending_deliveries(&self) -> Result<u64, StoreError> {
        self.with(|conn| {
            Ok(conn.query_row(
                "SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'pending'",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }

    /// When the next pending delivery that is not yet due falls due, if any (an index seek).
    pub async fn next_delivery_due(&self) -> Result<Option<UnixMillis>, StoreError> {
        self.with(|conn| {
            Ok(conn.query_row(
                "SELECT MIN(next_attempt_at) FROM webhook_deliveries
                 WHERE state = 'pending' AND next_attempt_at > ?1",
                [now_millis()],
                |r| r.get(0),
            )?)
        })
        .await
    }
}

//! Webhook endpoints: a tenant's URLs, the events each wants, and the secrets that sign them.

use std::collections::BTreeMap;

use islet_types::time::{now_millis, UnixMillis};
use islet_types::{TenantId, WebhookId};
use rusqlite::{params, OptionalExtension, Row, Transaction};

use crate::rows::{json, parse};
use crate::{Store, StoreError};

/// A webhook endpoint as stored, secrets included (never serialise this to a tenant whole).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRecord {
    pub id: WebhookId,
    pub tenant_id: TenantId,
    pub url: String,
    pub name: Option<String>,
    /// Event names and `x.*` patterns; `*` is every event.
    pub events: Vec<String>,
    /// Extra headers sent with every delivery.
    pub headers: BTreeMap<String, String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Retries after the first attempt.
    pub retry_count: u32,
    pub active: bool,
    /// Why Islet switched it off (`gone`, `failing`), when it did.
    pub disabled_reason: Option<String>,
    pub secret: String,
    /// The secret before the last rotation, still signing until `previous_secret_until`.
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<UnixMillis>,
    pub failing_since: Option<UnixMillis>,
    pub last_success_at: Option<UnixMillis>,
    pub last_failure_at: Option<UnixMillis>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

impl WebhookRecord {
    /// The secrets that sign a delivery at `now`: the current one, and the previous one while
    /// its grace period lasts.
    pub fn signing_secrets(&self, now: UnixMillis) -> Vec<String> {
        let mut secrets = vec![self.secret.clone()];
        if let (Some(previous), Some(until)) = (&self.previous_secret, self.previous_secret_until) {
            if now < until {
                secrets.push(previous.clone());
            }
        }
        secrets
    }
}

/// What `POST /webhooks` stores (already validated).
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub url: String,
    pub name: Option<String>,
    pub events: Vec<String>,
    pub headers: BTreeMap<String, String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub retry_count: u32,
    pub active: bool,
    pub secret: String,
}

/// What `PATCH /webhooks/{id}` changes; `None` keeps the stored value.
#[derive(Debug, Clone, Default)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub name: Option<Option<String>>,
    pub events: Option<Vec<String>>,
    pub headers: Option<BTreeMap<String, String>>,
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    pub retry_count: Option<u32>,
    pub active: Option<bool>,
}

pub(crate) const COLUMNS: &str =
    "id, tenant_id, url, name, events, headers, metadata, retry_count, active,
    disabled_reason, secret, previous_secret, previous_secret_until, failing_since,
    last_success_at, last_failure_at, created_at, updated_at";

pub(crate) fn from_row(r: &Row<'_>) -> rusqlite::Result<WebhookRecord> {
    Ok(WebhookRecord {
        id: parse(r.get(0)?)?,
        tenant_id: parse(r.get(1)?)?,
        url: r.get(2)?,
        name: r.get(3)?,
        events: json(r.get(4)?)?,
        headers: json(r.get(5)?)?,
        metadata: json(r.get(6)?)?,
        retry_count: r.get(7)?,
        active: r.get(8)?,
        disabled_reason: r.get(9)?,
        secret: r.get(10)?,
        previous_secret: r.get(11)?,
        previous_secret_until: r.get(12)?,
        failing_since: r.get(13)?,
        last_success_at: r.get(14)?,
        last_failure_at: r.get(15)?,
        created_at: r.get(16)?,
        updated_at: r.get(17)?,
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(StoreError::corrupt)
}

pub(crate) fn get_tx(
    tx: &rusqlite::Connection,
    tenant: &str,
    id: &str,
) -> Result<WebhookRecord, StoreError> {
    tx.query_row(
        &format!("SELECT {COLUMNS} FROM webhooks WHERE id = ?1 AND tenant_id = ?2"),
        params![id, tenant],
        from_row,
    )
    .optional()?
    .ok_or(StoreError::NotFound("webhook"))
}

/// The tenant's active endpoints (for fanning out its events).
pub(crate) fn active_for_tenant(
    tx: &Transaction<'_>,
    tenant: &str,
) -> Result<Vec<WebhookRecord>, StoreError> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM webhooks WHERE tenant_id = ?1 AND active = 1 ORDER BY created_at"
    ))?;
    let rows = stmt.query_map([tenant], from_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

impl Store {
    /// Store a new endpoint, unless the tenant already has `max` (then `Conflict`).
    pub async fn create_webhook(
        &self,
        tenant_id: &TenantId,
        new: NewWebhook,
        max: usize,
    ) -> Result<WebhookRecord, StoreError> {
        let tenant = tenant_id.to_string();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let count: i64 = tx.query_row(
                "SELECT COUNT(*) FROM webhooks WHERE tenant_id = ?1",
                [&tenant],
                |r| r.get(0),
            )?;
            if count as usize >= max {
                return Err(StoreError::Conflict(format!(
                    "a tenant can have at most {max} webhook endpoints"
                )));
            }
            let id = WebhookId::generate();
            let now = now_millis();
            tx.execute(
                "INSERT INTO webhooks (id, tenant_id, url, name, events, headers, metadata,
                    retry_count, active, secret, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
                params![
                    id.as_str(),
                    tenant,
                    new.url,
                    new.name,
                    to_json(&new.events)?,
                    to_json(&new.headers)?,
                    to_json(&new.metadata)?,
                    new.retry_count,
                    new.active,
                    new.secret,
                    now,
                ],
            )?;
            let created = get_tx(&tx, &tenant, id.as_str())?;
            tx.commit()?;
            Ok(created)
        })
        .await
    }

    pub async fn list_webhooks(
        &self,
        tenant_id: &TenantId,
    ) -> Result<Vec<WebhookRecord>, StoreError> {
        let tenant = tenant_id.to_string();
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM webhooks WHERE tenant_id = ?1 ORDER BY created_at, id"
            ))?;
            let rows = stmt.query_map([tenant], from_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    pub async fn get_webhook(
        &self,
        tenant_id: &TenantId,
        id: &WebhookId,
    ) -> Result<WebhookRecord, StoreError> {
        let (tenant, id) = (tenant_id.to_string(), id.to_string());
        self.with(move |conn| get_tx(conn, &tenant, &id)).await
    }

    /// Apply `patch`. Re-activating an endpoint Islet disabled clears the reason and its
    /// failure clock, so it gets a fresh five days.
    pub async fn update_webhook(
        &self,
        tenant_id: &TenantId,
        id: &WebhookId,
        patch: WebhookPatch,
    ) -> Result<WebhookRecord, StoreError> {
        let (tenant, id) = (tenant_id.to_string(), id.to_string());
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let mut w = get_tx(&tx, &tenant, &id)?;
            if let Some(url) = patch.url {
                w.url = url;
            }
            if let Some(name) = patch.name {
                w.name = name;
            }
            if let Some(events) = patch.events {
                w.events = events;
            }
            if let Some(headers) = patch.headers {
                w.headers = headers;
            }
            if let Some(metadata) = patch.metadata {
                w.metadata = metadata;
            }
            if let Some(retry_count) = patch.retry_count {
                w.retry_count = retry_count;
            }
            if let Some(active) = patch.active {
                if active && !w.active {
                    w.disabled_reason = None;
                    w.failing_since = None;
                }
                w.active = active;
            }
            tx.execute(
                "UPDATE webhooks SET url = ?2, name = ?3, events = ?4, headers = ?5, metadata = ?6,
                    retry_count = ?7, active = ?8, disabled_reason = ?9, failing_since = ?10,
                    updated_at = ?11
                 WHERE id = ?1",
                params![
                    id,
                    w.url,
                    w.name,
                    to_json(&w.events)?,
                    to_json(&w.headers)?,
                    to_json(&w.metadata)?,
                    w.retry_count,
                    w.active,
                    w.disabled_reason,
                    w.failing_since,
                    now_millis(),
                ],
            )?;
            let w = get_tx(&tx, &tenant, &id)?;
            tx.commit()?;
            Ok(w)
        })
        .await
    }

    /// Replace the signing secret. The old one keeps signing (both signatures are sent) until
    /// `grace_until`.
    pub async fn rotate_webhook_secret(
        &self,
        tenant_id: &TenantId,
        id: &WebhookId,
        secret: String,
        grace_until: UnixMillis,
    ) -> Result<WebhookRecord, StoreError> {
        let (tenant, id) = (tenant_id.to_string(), id.to_string());
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let w = get_tx(&tx, &tenant, &id)?;
            tx.execute(
                "UPDATE webhooks SET secret = ?2, previous_secret = ?3, previous_secret_until = ?4,
                    updated_at = ?5 WHERE id = ?1",
                params![id, secret, w.secret, grace_until, now_millis()],
            )?;
            let w = get_tx(&tx, &tenant, &id)?;
            tx.commit()?;
            Ok(w)
        })
        .await
    }

    /// Delete the endpoint with its deliveries and their attempts.
    pub async fn delete_webhook(
        &self,
        tenant_id: &TenantId,
        id: &WebhookId,
    ) -> Result<(), StoreError> {
        let (tenant, id) = (tenant_id.to_string(), id.to_string());
        self.with(move |conn| {
            let tx = conn.transaction()?;
            get_tx(&tx, &tenant, &id)?;
            tx.execute(
                "DELETE FROM webhook_attempts WHERE delivery_id IN
                    (SELECT id FROM webhook_deliveries WHERE webhook_id = ?1)",
                [&id],
            )?;
            tx.execute("DELETE FROM webhook_deliveries WHERE webhook_id = ?1", [&id])?;
            tx.execute("DELETE FROM webhooks WHERE id = ?1", [&id])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

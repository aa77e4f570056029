//! A tenant's own API-key presets (named scope sets) and every key's audit trail.

use islet_types::scope::ScopeSet;
use islet_types::time::{now_millis, UnixMillis};
use islet_types::{ApiKeyId, TenantId};
use rusqlite::{params, OptionalExtension};

use crate::rows::json;
use crate::{Store, StoreError};

/// A tenant's preset.
#[derive(Debug, Clone, PartialEq)]
pub struct PresetRecord {
    pub name: String,
    pub scopes: Vec<String>,
    pub description: Option<String>,
    pub created_at: UnixMillis,
}

/// One change made to a key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyEvent {
    pub seq: i64,
    /// `created`, `updated`, `rotated` or `revoked`.
    pub event_type: String,
    pub at: UnixMillis,
    pub details: serde_json::Value,
}

/// Note a change to a key, in the transaction that makes it.
pub(crate) fn key_event_tx(
    conn: &rusqlite::Connection,
    tenant: &str,
    key: &str,
    event_type: &str,
    details: serde_json::Value,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO key_events (tenant_id, key_id, type, at, details) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![tenant, key, event_type, now_millis(), details.to_string()])?;
    Ok(())
}

impl Store {
    pub async fn key_presets(&self, tenant_id: &TenantId) -> Result<Vec<PresetRecord>, StoreError> {
        let tenant = tenant_id.to_string();
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT name, scopes, description, created_at FROM key_presets
                 WHERE tenant_id = ?1 ORDER BY name",
            )?;
            let rows = stmt
                .query_map([tenant], |r| {
                    Ok(PresetRecord {
                        name: r.get(0)?,
                        scopes: json(r.get(1)?)?,
                        description: r.get(2)?,
                        created_at: r.get(3)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Save a preset; a name in use is [`StoreError::NameTaken`].
    pub async fn create_key_preset(
        &self,
        tenant_id: &TenantId,
        name: String,
        scopes: ScopeSet,
        description: Option<String>,
    ) -> Result<PresetRecord, StoreError> {
        let tenant = tenant_id.to_string();
        self.with(move |conn| {
            let names: Vec<String> = scopes.names().into_iter().map(String::from).collect();
            let created_at = now_millis();
            let result = conn.execute(
                "INSERT INTO key_presets (tenant_id, name, scopes, description, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    tenant,
                    name,
                    serde_json::Value::from(names.clone()).to_string(),
                    description,
                    created_at
                ],
            );
            crate::rows::name_unique(result, Some(&name))?;
            Ok(PresetRecord { name, scopes: names, description, created_at })
        })
        .await
    }

    /// Remove a preset; an unknown one is [`StoreError::NotFound`].
    pub async fn delete_key_preset(
        &self,
        tenant_id: &TenantId,
        name: &str,
    ) -> Result<(), StoreError> {
        let (tenant, name) = (tenant_id.to_string(), name.to_owned());
        self.with(move |conn| {
            let removed = conn.execute(
                "DELETE FROM key_presets WHERE tenant_id = ?1 AND name = ?2",
                params![tenant, name],
            )?;
            if removed == 0 {
                return Err(StoreError::NotFound("preset"));
            }
            Ok(())
        })
        .await
    }

    /// A key's changes, newest first (of one type when `event_type` is given). A key of
    /// another tenant is [`StoreError::NotFound`].
    pub async fn key_events(
        &self,
        tenant_id: &TenantId,
        key_id: &ApiKeyId,
        limit: u32,
        event_type: Option<String>,
    ) -> Result<Vec<KeyEvent>, StoreError> {
        let (tenant, key) = (tenant_id.to_string(), key_id.to_string());
        self.with(move |conn| {
            let known: Option<i64> = conn
                .query_row(
                    "SELECT 1 FROM api_keys WHERE id = ?1 AND tenant_id = ?2",
                    params![key, tenant],
                    |r| r.get(0),
                )
                .optional()?;
            known.ok_or(StoreError::NotFound("api key"))?;
            let mut stmt = conn.prepare_cached(
                "SELECT seq, type, at, details FROM key_events
                 WHERE key_id = ?1 AND tenant_id = ?2 AND (?3 IS NULL OR type = ?3)
                 ORDER BY seq DESC LIMIT ?4",
            )?;
            let rows = stmt
                .query_map(params![key, tenant, event_type, limit], |r| {
                    Ok(KeyEvent {
                        seq: r.get(0)?,
                        event_type: r.get(1)?,
                        at: r.get(2)?,
                        details: json(r.get(3)?)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

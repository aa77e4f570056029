//! API key management (list, create restricted or end-user-bound keys, rename, rescope, rotate,
//! revoke) and browser tokens. Plaintexts are returned once and stored only as SHA-256.

use islet_types::scope::ScopeSet;
use islet_types::time::{now_millis, UnixMillis};
use islet_types::{ApiKeyId, TenantId};
use rusqlite::{params, OptionalExtension, Row};

use crate::key_presets::key_event_tx;
use crate::secrets::{hash_key, new_secret};
use crate::{Store, StoreError};

/// Browser tokens start with this.
pub const BROWSER_TOKEN_PREFIX: &str = "mst_";
/// Keys bound to one end user start with this.
pub const SCOPED_KEY_PREFIX: &str = "msk_l2_";
/// The most live (not revoked, not expired) API keys one tenant holds.
pub const MAX_LIVE_KEYS: u64 = 500;
/// The most live browser tokens one tenant holds.
pub const MAX_LIVE_TOKENS: u64 = 10_000;

const KEY_PREFIX: &str = "msk_live_";

/// A key as listed (never its secret).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub id: ApiKeyId,
    pub name: String,
    pub key_prefix: String,
    pub scopes: ScopeSet,
    /// Whether it was created with every scope (no list).
    pub full: bool,
    pub external_user_id: Option<String>,
    pub description: Option<String>,
    pub expires_at: Option<UnixMillis>,
    pub last_used_at: Option<UnixMillis>,
    pub created_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
}

/// What a new key is.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub name: String,
    /// `None`: every scope.
    pub scopes: Option<ScopeSet>,
    pub external_user_id: Option<String>,
    pub description: Option<String>,
    pub expires_at: Option<UnixMillis>,
}

/// A browser token as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct BrowserTokenRecord {
    pub id: String,
    pub issued_by: ApiKeyId,
    pub external_user_id: String,
    pub workspace_id: Option<String>,
    pub scopes: ScopeSet,
    pub extra: serde_json::Map<String, serde_json::Value>,
    pub expires_at: UnixMillis,
    pub created_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
}

/// What a new browser token is.
#[derive(Debug, Clone)]
pub struct NewBrowserToken {
    pub issued_by: ApiKeyId,
    pub external_user_id: String,
    pub workspace_id: Option<String>,
    pub scopes: ScopeSet,
    pub extra: serde_json::Map<String, serde_json::Value>,
    pub expires_at: UnixMillis,
}

const KEY_COLUMNS: &str = "id, name, key_prefix, scopes, external_user_id, description, expires_at,
    last_used_at, created_at, revoked_at";

fn key_row(r: &Row<'_>) -> rusqlite::Result<(KeyRecord, Option<String>)> {
    let scopes: Option<String> = r.get(3)?;
    Ok((
        KeyRecord {
            id: crate::rows::parse(r.get(0)?)?,
            name: r.get(1)?,
            key_prefix: r.get(2)?,
            scopes: ScopeSet::full(),
            full: scopes.is_none(),
            external_user_id: r.get(4)?,
            description: r.get(5)?,
            expires_at: r.get(6)?,
            last_used_at: r.get(7)?,
            created_at: r.get(8)?,
            revoked_at: r.get(9)?,
        },
        scopes,
    ))
}

fn finish(row: (KeyRecord, Option<String>)) -> Result<KeyRecord, StoreError> {
    let (mut k, scopes) = row;
    if let Some(json) = scopes {
        let names: Vec<String> = serde_json::from_str(&json).map_err(StoreError::corrupt)?;
        k.scopes = ScopeSet::parse(&names).map_err(StoreError::corrupt)?;
    }
    Ok(k)
}

fn get_key_tx(
    conn: &rusqlite::Connection,
    tenant: &str,
    id: &str,
) -> Result<KeyRecord, StoreError> {
    let row = conn
        .query_row(
            &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1 AND tenant_id = ?2"),
            params![id, tenant],
            key_row,
        )
        .optional()?
        .ok_or(StoreError::NotFound("api key"))?;
    finish(row)
}

/// A key's scopes as its answers show them: `["*"]` for every scope.
fn key_scopes(key: &KeyRecord) -> serde_json::Value {
    if key.full {
        serde_json::json!(["*"])
    } else {
        key.scopes.names().into()
    }
}

fn scopes_json(scopes: Option<ScopeSet>) -> Option<String> {
    scopes.map(|s| serde_json::Value::from(s.names()).to_string())
}

/// Refuse to take away `key` when it is the tenant's last live full-access key: that would
/// lock the tenant out of its own account.
fn keep_a_full_key(
    tx: &rusqlite::Connection,
    tenant: &str,
    key: &KeyRecord,
) -> Result<(), StoreError> {
    if !key.full || key.external_user_id.is_some() || key.revoked_at.is_some() {
        return Ok(());
    }
    let others: i64 = tx.query_row(
        "SELECT COUNT(*) FROM api_keys WHERE tenant_id = ?1 AND id != ?2
           AND revoked_at IS NULL AND scopes IS NULL AND external_user_id IS NULL
           AND (expires_at IS NULL OR expires_at > ?3)",
        params![tenant, key.id.as_str(), now_millis()],
        |r| r.get(0),
    )?;
    if others == 0 {
        return Err(StoreError::Conflict(
            "this is the tenant's last full-access key; create another first".into(),
        ));
    }
    Ok(())
}

const TOKEN_COLUMNS: &str =
    "id, issued_by, external_user_id, workspace_id, scopes, extra, expires_at, created_at, revoked_at";

fn token_row(r: &Row<'_>) -> rusqlite::Result<(BrowserTokenRecord, String, String)> {
    Ok((
        BrowserTokenRecord {
            id: r.get(0)?,
            issued_by: crate::rows::parse(r.get(1)?)?,
            external_user_id: r.get(2)?,
            workspace_id: r.get(3)?,
            scopes: ScopeSet::default(),
            extra: Default::default(),
            expires_at: r.get(6)?,
            created_at: r.get(7)?,
            revoked_at: r.get(8)?,
        },
        r.get(4)?,
        r.get(5)?,
    ))
}

fn finish_token(
    row: (BrowserTokenRecord, String, String),
) -> Result<BrowserTokenRecord, StoreError> {
    let (mut t, scopes, extra) = row;
    let names: Vec<String> = serde_json::from_str(&scopes).map_err(StoreError::corrupt)?;
    t.scopes = ScopeSet::parse(&names).map_err(StoreError::corrupt)?;
    t.extra = serde_json::from_str(&extra).map_err(StoreError::corrupt)?;
    Ok(t)
}

impl Store {
    pub async fn list_api_keys(&self, tenant_id: &TenantId) -> Result<Vec<KeyRecord>, StoreError> {
        let tenant = tenant_id.to_string();
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = ?1 ORDER BY created_at, id"
            ))?;
            let rows = stmt.query_map([tenant], key_row)?.collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(finish).collect()
        })
        .await
    }

    pub async fn get_api_key(
        &self,
        tenant_id: &TenantId,
        id: &ApiKeyId,
    ) -> Result<KeyRecord, StoreError> {
        let (tenant, id) = (tenant_id.to_string(), id.to_string());
        self.with(move |conn| get_key_tx(conn, &tenant, &id)).await
    }

    /// Create a key; returns it with its plaintext (shown once).
    pub async fn create_api_key(
        &self,
        tenant_id: &TenantId,
        new: NewKey,
    ) -> Result<(KeyRecord, String), StoreError> {
        let tenant = tenant_id.to_string();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let live: u64 = tx.query_row(
                "SELECT COUNT(*) FROM api_keys WHERE tenant_id = ?1 AND revoked_at IS NULL
                   AND (expires_at IS NULL OR expires_at > ?2)",
                params![tenant, now_millis()],
                |r| r.get(0),
            )?;
            if live >= MAX_LIVE_KEYS {
                return Err(StoreError::Conflict(format!(
                    "an account has at most {MAX_LIVE_KEYS} live API keys; revoke one first"
                )));
            }
            let id = ApiKeyId::generate();
            let prefix = if new.external_user_id.is_some() { SCOPED_KEY_PREFIX } else { KEY_PREFIX };
            let plaintext = new_secret(prefix);
            tx.execute(
                "INSERT INTO api_keys (id, tenant_id, name, key_hash, key_prefix, created_at, scopes,
                    external_user_id, expires_at, description)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    id.as_str(),
                    tenant,
                    new.name,
                    hash_key(&plaintext),
                    &plaintext[..prefix.len() + 4],
                    now_millis(),
                    scopes_json(new.scopes),
                    new.external_user_id,
                    new.expires_at,
                    new.description,
                ],
            )?;
            let key = get_key_tx(&tx, &tenant, id.as_str())?;
            let details = serde_json::json!({ "name": key.name, "scopes": key_scopes(&key) });
            key_event_tx(&tx, &tenant, id.as_str(), "created", details)?;
            tx.commit()?;
            Ok((key, plaintext))
        })
        .await
    }

    /// Rename or rescope a live key.
    pub async fn update_api_key(
        &self,
        tenant_id: &TenantId,
        id: &ApiKeyId,
        name: Option<String>,
        scopes: Option<ScopeSet>,
    ) -> Result<KeyRecord, StoreError> {
        let (tenant, id) = (tenant_id.to_string(), id.to_string());
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let key = get_key_tx(&tx, &tenant, &id)?;
            if key.revoked_at.is_some() {
                return Err(StoreError::Conflict("the key is revoked".into()));
            }
            let mut changed = serde_json::Map::new();
            if let Some(name) = name {
                tx.execute("UPDATE api_keys SET name = ?2 WHERE id = ?1", params![id, name])?;
                changed.insert("name".into(), name.into());
            }
            if let Some(scopes) = scopes {
                if !scopes.is_full() {
                    keep_a_full_key(&tx, &tenant, &key)?;
                }
                let json = if scopes.is_full() { None } else { scopes_json(Some(scopes)) };
                tx.execute("UPDATE api_keys SET scopes = ?2 WHERE id = ?1", params![id, json])?;
            }
            let key = get_key_tx(&tx, &tenant, &id)?;
            if scopes.is_some() {
                changed.insert("scopes".into(), key_scopes(&key));
            }
            if !changed.is_empty() {
                key_event_tx(&tx, &tenant, &id, "updated", changed.into())?;
            }
            tx.commit()?;
            Ok(key)
        })
        .await
    }

    /// Replace a live key's secret: the old plaintext stops working at once.
    pub async fn rotate_api_key(
        &self,
        tenant_id: &TenantId,
        id: &ApiKeyId,
    ) -> Result<(KeyRecord, String), StoreError> {
        let (tenant, id) = (tenant_id.to_string(), id.to_string());
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let key = get_key_tx(&tx, &tenant, &id)?;
            if key.revoked_at.is_some() {
                return Err(StoreError::Conflict("the key is revoked".into()));
            }
            let prefix = if key.external_user_id.is_some() {
                SCOPED_KEY_PREFIX
            } else {
                KEY_PREFIX
            };
            let plaintext = new_secret(prefix);
            tx.execute(
                "UPDATE api_keys SET key_hash = ?2, key_prefix = ?3 WHERE id = ?1",
                params![id, hash_key(&plaintext), &plaintext[..prefix.len() + 4]],
            )?;
            // A rotation answers a leak: what the old secret minted dies with it.
            tx.execute(
                "UPDATE browser_tokens SET revoked_at = ?2 WHERE issued_by = ?1 AND revoked_at IS NULL",
                params![id, now_millis()],
            )?;
            let key = get_key_tx(&tx, &tenant, &id)?;
            key_event_tx(&tx, &tenant, &id, "rotated", serde_json::json!({}))?;
            tx.commit()?;
            Ok((key, plaintext))
        })
        .await
    }

    /// Revoke a key (and every browser token it minted). The tenant's last live full key
    /// cannot be revoked: that would lock the tenant out.
    pub async fn revoke_api_key(
        &self,
        tenant_id: &TenantId,
        id: &ApiKeyId,
    ) -> Result<(), StoreError> {
        let (tenant, id) = (tenant_id.to_string(), id.to_string());
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let key = get_key_tx(&tx, &tenant, &id)?;
            if key.revoked_at.is_some() {
                return Ok(());
            }
            keep_a_full_key(&tx, &tenant, &key)?;
            let now = now_millis();
            tx.execute("UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1", params![id, now])?;
            key_event_tx(&tx, &tenant, &id, "revoked", serde_json::json!({}))?;
            tx.execute(
                "UPDATE browser_tokens SET revoked_at = ?2 WHERE issued_by = ?1 AND revoked_at IS NULL",
                params![id, now],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Mint a browser token; returns it with its plaintext (shown once).
    pub async fn create_browser_token(
        &self,
        tenant_id: &TenantId,
        new: NewBrowserToken,
    ) -> Result<(BrowserTokenRecord, String), StoreError> {
        let tenant = tenant_id.to_string();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let live: u64 = tx.query_row(
                "SELECT COUNT(*) FROM browser_tokens WHERE tenant_id = ?1 AND revoked_at IS NULL
                   AND expires_at > ?2",
                params![tenant, now_millis()],
                |r| r.get(0),
            )?;
            if live >= MAX_LIVE_TOKENS {
                return Err(StoreError::Conflict(format!(
                    "an account has at most {MAX_LIVE_TOKENS} live browser tokens; revoke some or let them expire"
                )));
            }
            let id = format!("tok_{}", &new_secret("")[..20].to_ascii_lowercase());
            let plaintext = new_secret(BROWSER_TOKEN_PREFIX);
            tx.execute(
                "INSERT INTO browser_tokens (id, tenant_id, issued_by, token_hash, external_user_id,
                    workspace_id, scopes, extra, expires_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    id,
                    tenant,
                    new.issued_by.as_str(),
                    hash_key(&plaintext),
                    new.external_user_id,
                    new.workspace_id,
                    serde_json::Value::from(new.scopes.names()).to_string(),
                    serde_json::Value::Object(new.extra.clone()).to_string(),
                    new.expires_at,
                    now_millis(),
                ],
            )?;
            let row = tx.query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM browser_tokens WHERE id = ?1"),
                [&id],
                token_row,
            )?;
            tx.commit()?;
            Ok((finish_token(row)?, plaintext))
        })
        .await
    }

    /// The tenant's live browser tokens (neither revoked nor expired), newest first (optionally
    /// one user's).
    pub async fn list_browser_tokens(
        &self,
        tenant_id: &TenantId,
        external_user_id: Option<String>,
    ) -> Result<Vec<BrowserTokenRecord>, StoreError> {
        let tenant = tenant_id.to_string();
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM browser_tokens
                 WHERE tenant_id = ?1 AND expires_at > ?2 AND revoked_at IS NULL
                   AND (?3 IS NULL OR external_user_id = ?3)
                 ORDER BY created_at DESC LIMIT 1000"
            ))?;
            let rows = stmt
                .query_map(params![tenant, now_millis(), external_user_id], token_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(finish_token).collect()
        })
        .await
    }

    pub async fn revoke_browser_token(
        &self,
        tenant_id: &TenantId,
        id: &str,
    ) -> Result<(), StoreError> {
        let (tenant, id) = (tenant_id.to_string(), id.to_owned());
        self.with(move |conn| {
            let changed = conn.execute(
                "UPDATE browser_tokens SET revoked_at = COALESCE(revoked_at, ?3)
                 WHERE id = ?1 AND tenant_id = ?2",
                params![id, tenant, now_millis()],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound("token"));
            }
            Ok(())
        })
        .await
    }
}

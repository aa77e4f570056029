//! Tenants and their API keys. A key's plaintext is shown once; only its SHA-256 is stored.

use islet_types::sandbox::Isolation;
use islet_types::scope::ScopeSet;
use islet_types::time::now_millis;
use islet_types::{ApiKeyId, TenantId};
use rusqlite::OptionalExtension;

use crate::secrets::{hash_key, new_secret};
use crate::{Store, StoreError};

/// Who is calling: the tenant, the key it used (for a browser token: the key that minted it),
/// the tenant's isolation setting, what the credential may do, and the end user it is bound
/// to (scoped keys and browser tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant_id: TenantId,
    pub key_id: ApiKeyId,
    pub isolation: Option<Isolation>,
    pub scopes: ScopeSet,
    pub external_user_id: Option<String>,
    /// The workspace a browser token was minted for: what it creates is labelled with it.
    pub workspace_id: Option<String>,
    /// The browser token used, when it was one.
    pub token_id: Option<String>,
}

/// One credential row, as `authenticate` reads it.
struct Credential {
    key_id: String,
    tenant_id: String,
    isolation: Option<String>,
    scopes: Option<String>,
    user: Option<String>,
    token_id: Option<String>,
    last_used: Option<i64>,
    key_scopes: Option<String>,
    workspace: Option<String>,
}

impl Principal {
    /// Bound to one end user (a scoped key or a browser token).
    pub fn user_bound(&self) -> bool {
        self.external_user_id.is_some()
    }

    /// Whether this credential may reach `record`: a tenant key, any of its tenant's sandboxes;
    /// one bound to an end user, that user's; and one minted for a workspace (a browser
    /// token), only those in that workspace or in none — a sandbox of another workspace is
    /// not its to see.
    pub fn reaches(&self, record: &crate::SandboxRecord) -> bool {
        if record.tenant_id != self.tenant_id {
            return false;
        }
        let Some(user) = &self.external_user_id else { return true };
        let other_workspace = matches!(
            (&self.workspace_id, &record.external_workspace_id),
            (Some(mine), Some(theirs)) if mine != theirs
        );
        record.external_user_id.as_deref() == Some(user.as_str()) && !other_workspace
    }
}

/// A freshly created key; `plaintext` exists only in this value.
#[derive(Debug, Clone)]
pub struct ApiKeyCreated {
    pub id: ApiKeyId,
    pub tenant_id: TenantId,
    pub plaintext: String,
}

fn new_key_plaintext() -> String {
    new_secret("msk_live_")
}

fn scopes_of(raw: Option<String>) -> Result<ScopeSet, StoreError> {
    match raw {
        None => Ok(ScopeSet::full()),
        Some(json) => {
            let names: Vec<String> = serde_json::from_str(&json).map_err(StoreError::corrupt)?;
            ScopeSet::parse(&names).map_err(StoreError::corrupt)
        }
    }
}

impl Store {
    /// Create a tenant with its first API key.
    pub async fn create_tenant(
        &self,
        name: String,
        isolation: Option<Isolation>,
    ) -> Result<ApiKeyCreated, StoreError> {
        self.with(move |conn| {
            let tenant_id = TenantId::generate();
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO tenants (id, name, isolation, created_at) VALUES (?1, ?2, ?3, ?4)",
                (tenant_id.as_str(), &name, isolation.map(Isolation::as_str), now_millis()),
            )?;
            let key = insert_key(&tx, &tenant_id, "default")?;
            tx.commit()?;
            Ok(key)
        })
        .await
    }

    /// Resolve a presented bearer credential — an API key or a browser token — to its
    /// principal, if it is live (not revoked, not expired).
    pub async fn authenticate(&self, plaintext: &str) -> Result<Option<Principal>, StoreError> {
        let hash = hash_key(plaintext);
        let browser = plaintext.starts_with(crate::keys::BROWSER_TOKEN_PREFIX);
        self.with(move |conn| {
            let now = now_millis();
            // A browser token lives only while the key that minted it does, and never holds
            // more than that key holds now. No credential bound to a suspended user works.
            let sql = if browser {
                "SELECT b.issued_by, b.tenant_id, t.isolation, b.scopes, b.external_user_id, b.id,
                        b.created_at, k.scopes, b.workspace_id FROM browser_tokens b
                 JOIN tenants t ON t.id = b.tenant_id
                 JOIN api_keys k ON k.id = b.issued_by AND k.revoked_at IS NULL
                   AND (k.expires_at IS NULL OR k.expires_at > ?2)
                 WHERE b.token_hash = ?1 AND b.revoked_at IS NULL AND b.expires_at > ?2
                   AND NOT EXISTS (SELECT 1 FROM suspended_users u
                       WHERE u.tenant_id = b.tenant_id AND u.external_user_id = b.external_user_id)"
            } else {
                "SELECT k.id, k.tenant_id, t.isolation, k.scopes, k.external_user_id, NULL,
                        k.last_used_at, k.scopes, NULL FROM api_keys k
                 JOIN tenants t ON t.id = k.tenant_id
                 WHERE k.key_hash = ?1 AND k.revoked_at IS NULL
                   AND (k.expires_at IS NULL OR k.expires_at > ?2)
                   AND NOT EXISTS (SELECT 1 FROM suspended_users u
                       WHERE u.tenant_id = k.tenant_id AND u.external_user_id = k.external_user_id)"
            };
            let row = conn
                .prepare_cached(sql)?
                .query_row(rusqlite::params![&hash, now], |r| {
                    Ok(Credential {
                        key_id: r.get(0)?,
                        tenant_id: r.get(1)?,
                        isolation: r.get(2)?,
                        scopes: r.get(3)?,
                        user: r.get(4)?,
                        token_id: r.get(5)?,
                        last_used: r.get(6)?,
                        key_scopes: r.get(7)?,
                        workspace: r.get(8)?,
                    })
                })
                .optional()?;
            let Some(c) = row else {
                return Ok(None);
            };
            // When a key was last used, to the minute (one write per key per minute at most).
            if !browser && c.last_used.is_none_or(|t| now - t > 60_000) {
                conn.execute(
                    "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1",
                    rusqlite::params![c.key_id, now],
                )?;
            }
            Ok(Some(Principal {
                tenant_id: c.tenant_id.parse().map_err(StoreError::corrupt)?,
                key_id: c.key_id.parse().map_err(StoreError::corrupt)?,
                isolation: c
                    .isolation
                    .map(|i| i.parse().map_err(StoreError::corrupt))
                    .transpose()?,
                scopes: scopes_of(c.scopes)?.intersect(scopes_of(c.key_scopes)?),
                external_user_id: c.user,
                workspace_id: c.workspace,
                token_id: c.token_id,
            }))
        })
        .await
    }

    /// A tenant's name, its isolation level (`None`: the node's default) and when it was made.
    pub async fn tenant(
        &self,
        tenant_id: &TenantId,
    ) -> Result<(String, Option<Isolation>, i64), StoreError> {
        let id = tenant_id.to_string();
        self.with(move |conn| {
            let (name, isolation, created): (String, Option<String>, i64) = conn
                .query_row(
                    "SELECT name, isolation, created_at FROM tenants WHERE id = ?1",
                    [&id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?
                .ok_or(StoreError::NotFound("tenant"))?;
            let isolation =
                isolation.map(|i| i.parse()).transpose().map_err(StoreError::corrupt)?;
            Ok((name, isolation, created))
        })
        .await
    }

    /// The tenant with this ID, or else the one tenant with this name (for operators' tools).
    pub async fn find_tenant(&self, id_or_name: &str) -> Result<Option<TenantId>, StoreError> {
        let key = id_or_name.to_owned();
        self.with(move |conn| {
            let ids: Vec<String> = conn
                .prepare_cached(
                    "SELECT id FROM tenants WHERE id = ?1 OR name = ?1 ORDER BY id = ?1 DESC",
                )?
                .query_map([&key], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            match ids.as_slice() {
                [] => Ok(None),
                [only] => Ok(Some(only.parse().map_err(StoreError::corrupt)?)),
                [first, ..] if *first == key => {
                    Ok(Some(first.parse().map_err(StoreError::corrupt)?))
                }
                _ => Err(StoreError::Conflict(format!(
                    "{} tenants are named `{key}`; name one by its ID",
                    ids.len()
                ))),
            }
        })
        .await
    }

    /// The ID of the tenant named `name`, created without any API key if there is none: for
    /// the platform's own sandboxes (the warm pool), which no key can reach.
    pub async fn system_tenant(&self, name: &str) -> Result<TenantId, StoreError> {
        let name = name.to_owned();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let found: Option<String> = tx
                .query_row("SELECT id FROM tenants WHERE name = ?1", [&name], |r| r.get(0))
                .optional()?;
            let id = match found {
                Some(id) => id.parse().map_err(StoreError::corrupt)?,
                None => {
                    let id = TenantId::generate();
                    tx.execute(
                        "INSERT INTO tenants (id, name, created_at) VALUES (?1, ?2, ?3)",
                        (id.as_str(), &name, now_millis()),
                    )?;
                    id
                }
            };
            tx.commit()?;
            Ok(id)
        })
        .await
    }
}

fn insert_key(
    tx: &rusqlite::Transaction<'_>,
    tenant_id: &TenantId,
    name: &str,
) -> Result<ApiKeyCreated, StoreError> {
    let id = ApiKeyId::generate();
    let plaintext = new_key_plaintext();
    tx.execute(
        "INSERT INTO api_keys (id, tenant_id, name, key_hash, key_prefix, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        (
            id.as_str(),
            tenant_id.as_str(),
            name,
            hash_key(&plaintext),
            &plaintext[..13],
            now_millis(),
        ),
    )?;
    Ok(ApiKeyCreated { id, tenant_id: tenant_id.clone(), plaintext })
}

//! Tenants and their API keys. A key's plaintext is shown once; only its SHA-256 is stored.

use islet_types::sandbox::Isolation;
use islet_types::time::now_millis;
use islet_types::{ApiKeyId, TenantId};
use rand::Rng;
use rusqlite::OptionalExtension;
use sha2::{Digest, Sha256};

use crate::{Store, StoreError};

/// Who is calling: the tenant, the key it used, and the tenant's isolation setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant_id: TenantId,
    pub key_id: ApiKeyId,
    pub isolation: Option<Isolation>,
}

/// A freshly created key; `plaintext` exists only in this value.
#[derive(Debug, Clone)]
pub struct ApiKeyCreated {
    pub id: ApiKeyId,
    pub tenant_id: TenantId,
    pub plaintext: String,
}

fn hash_key(plaintext: &str) -> String {
    hex::encode(Sha256::digest(plaintext.as_bytes()))
}

fn new_key_plaintext() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::thread_rng();
    let body: String = (0..40)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("msk_live_{body}")
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
                (
                    tenant_id.as_str(),
                    &name,
                    isolation.map(Isolation::as_str),
                    now_millis(),
                ),
            )?;
            let key = insert_key(&tx, &tenant_id, "default")?;
            tx.commit()?;
            Ok(key)
        })
        .await
    }

    /// Resolve a presented bearer token to its tenant, if it is a live key.
    pub async fn authenticate(&self, plaintext: &str) -> Result<Option<Principal>, StoreError> {
        let hash = hash_key(plaintext);
        self.with(move |conn| {
            let row: Option<(String, String, Option<String>)> = conn
                .query_row(
                    "SELECT k.id, k.tenant_id, t.isolation FROM api_keys k
                     JOIN tenants t ON t.id = k.tenant_id
                     WHERE k.key_hash = ?1 AND k.revoked_at IS NULL",
                    [&hash],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            row.map(|(key_id, tenant_id, isolation)| {
                Ok(Principal {
                    tenant_id: tenant_id.parse().map_err(StoreError::corrupt)?,
                    key_id: key_id.parse().map_err(StoreError::corrupt)?,
                    isolation: isolation
                        .map(|i| i.parse().map_err(StoreError::corrupt))
                        .transpose()?,
                })
            })
            .transpose()
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
                .query_row("SELECT id FROM tenants WHERE name = ?1", [&name], |r| {
                    r.get(0)
                })
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
    Ok(ApiKeyCreated {
        id,
        tenant_id: tenant_id.clone(),
        plaintext,
    })
}

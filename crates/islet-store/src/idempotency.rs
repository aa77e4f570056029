//! Idempotent sandbox creation: one transaction decides whether a request makes a new sandbox,
//! replays an earlier one, or conflicts with it.

use islet_types::sandbox::Isolation;
use islet_types::time::now_millis;
use islet_types::{CreateSandbox, SandboxId, TenantId};
use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::admission::{admit_tx, Admission, Way};
use crate::sandbox_rows::{get_tx, SandboxRecord};
use crate::sandboxes::{claim_tx, insert_tx};
use crate::{Store, StoreError};

/// Keys are honoured for 24 hours.
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;

/// What a create request turned into.
#[derive(Debug)]
pub enum BeginCreate {
    /// A new sandbox row in `creating`; the caller starts it.
    New(SandboxRecord),
    /// The key was seen before with the same body. `response` is the stored response once the
    /// first request finished; until then the caller waits on the sandbox.
    Replay { sandbox: SandboxRecord, response: Option<(u16, String)> },
    /// The key was seen before with a different body.
    Mismatch,
    /// A pre-started sandbox from the warm pool, now the tenant's and already `running`.
    Claimed(SandboxRecord),
    /// The end user's policy does not allow another sandbox; a `quota.exceeded` event was
    /// written.
    Refused { refusal: islet_types::policy::Refusal, external_user_id: String },
}

/// The warm pool: pre-started sandboxes owned by `tenant_id`, handed to the first eligible
/// create (same isolation and resources, no env: those are fixed when a sandbox starts).
#[derive(Debug, Clone)]
pub struct Pool {
    pub tenant_id: TenantId,
    pub isolation: Isolation,
    pub resources: islet_types::Resources,
}

/// A stable hash of a request body (canonical JSON of the validated request).
pub(crate) fn request_hash(req: &CreateSandbox) -> String {
    let canonical = serde_json::to_vec(req).unwrap_or_default();
    hex::encode(Sha256::digest(&canonical))
}

impl Store {
    /// Admit a create: with a key, dedupe on it; without, always insert.
    pub async fn begin_create(
        &self,
        tenant_id: &TenantId,
        idempotency_key: Option<String>,
        mut req: CreateSandbox,
        isolation: Isolation,
        pool: Option<Pool>,
    ) -> Result<BeginCreate, StoreError> {
        let tenant_id = tenant_id.clone();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let now = now_millis();
            let hash = request_hash(&req);
            if let Some(key) = &idempotency_key {
                tx.execute(
                    "DELETE FROM idempotency_keys WHERE tenant_id = ?1 AND key = ?2 AND created_at < ?3",
                    params![tenant_id.as_str(), key, now - IDEMPOTENCY_TTL_MS],
                )?;
                let seen: Option<(String, SandboxId, Option<String>, Option<u16>)> = tx
                    .query_row(
                        "SELECT request_hash, sandbox_id, response, status FROM idempotency_keys
                         WHERE tenant_id = ?1 AND key = ?2",
                        params![tenant_id.as_str(), key],
                        |r| Ok((r.get(0)?, crate::rows::parse(r.get(1)?)?, r.get(2)?, r.get(3)?)),
                    )
                    .optional()?;
                if let Some((seen_hash, sandbox_id, response, status)) = seen {
                    if seen_hash != hash {
                        return Ok(BeginCreate::Mismatch);
                    }
                    let sandbox = get_tx(&tx, &sandbox_id)?.ok_or(StoreError::NotFound("sandbox"))?;
                    let response = status.zip(response);
                    return Ok(BeginCreate::Replay { sandbox, response });
                }
            }
            // Admission, against what the user holds in this same transaction: concurrent
            // creates are serialised here, so none is admitted past a limit.
            if let Some(user) = req.external_user_id.clone() {
                let workspace = req.external_workspace_id.as_deref();
                match admit_tx(&tx, &tenant_id, &user, workspace, Way::Create, &req.resources, None)? {
                    Admission::Admitted(limits) => {
                        if let Some(cap) = limits.max_runtime_sec {
                            req.timeout_sec = req.timeout_sec.min(cap.max(1));
                        }
                    }
                    Admission::Refused(refusal) => {
                        tx.commit()?;
                        return Ok(BeginCreate::Refused { refusal, external_user_id: user });
                    }
                }
            }
            let eligible = pool.filter(|p| {
                p.tenant_id != tenant_id
                    && p.isolation == isolation
                    && p.resources == req.resources
                    && req.env.is_empty()
            });
            let claimed = match eligible {
                Some(pool) => claim_tx(&tx, &pool.tenant_id, &tenant_id, &req)?,
                None => None,
            };
            let record = match &claimed {
                Some(record) => record.clone(),
                None => insert_tx(&tx, &tenant_id, &req, isolation)?,
            };
            if let Some(key) = &idempotency_key {
                tx.execute(
                    "INSERT INTO idempotency_keys (tenant_id, key, request_hash, sandbox_id, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![tenant_id.as_str(), key, hash, record.id.as_str(), now],
                )?;
            }
            tx.commit()?;
            Ok(match claimed {
                Some(_) => BeginCreate::Claimed(record),
                None => BeginCreate::New(record),
            })
        })
        .await
    }

    /// Store the final response of an idempotent create, for replays.
    pub async fn finish_idempotent(
        &self,
        tenant_id: &TenantId,
        sandbox_id: &SandboxId,
        status: u16,
        response: String,
    ) -> Result<(), StoreError> {
        let (tenant, sandbox) = (tenant_id.to_string(), sandbox_id.to_string());
        self.with(move |conn| {
            conn.execute(
                "UPDATE idempotency_keys SET response = ?3, status = ?4
                 WHERE tenant_id = ?1 AND sandbox_id = ?2",
                params![tenant, sandbox, response, status],
            )?;
            Ok(())
        })
        .await
    }

    /// Drop keys past their 24 h window.
    pub async fn expire_idempotency_keys(&self) -> Result<usize, StoreError> {
        self.with(|conn| {
            Ok(conn.execute(
                "DELETE FROM idempotency_keys WHERE created_at < ?1",
                [now_millis() - IDEMPOTENCY_TTL_MS],
            )?)
        })
        .await
    }
}

//! A tenant's custom domains: more domains its previews answer on (`<label>.<domain>`), beyond
//! its one preview domain (`tenant_settings.rs`). Each is proven by a DNS TXT challenge like
//! the preview domain, and once verified serves that tenant alone: a domain verified by one
//! tenant, as a custom domain or as a preview domain, cannot be verified by another, nor can
//! a domain above or below it.

use islet_types::domain::DomainName;
use islet_types::time::{now_millis, UnixMillis};
use islet_types::{CustomDomainId, TenantId};
use rusqlite::{params, Connection, OptionalExtension};

use crate::rows::parse;
use crate::secrets::challenge;
use crate::{Store, StoreError};

/// The most custom domains one tenant registers.
pub const MAX_CUSTOM_DOMAINS: u64 = 20;

/// One custom domain.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomDomain {
    pub id: CustomDomainId,
    pub tenant_id: TenantId,
    pub domain: DomainName,
    /// What `_preview-verify.<domain>` must hold.
    pub challenge: String,
    pub verified_at: Option<UnixMillis>,
    pub created_at: UnixMillis,
    /// `not_after` of the latest certificate issued under it, if any.
    pub certificate_expires_at: Option<UnixMillis>,
}

const COLUMNS: &str = "d.id, d.tenant_id, d.domain, d.challenge, d.verified_at, d.created_at, \
    (SELECT MAX(c.not_after) FROM certificates c WHERE c.tenant_id = d.tenant_id AND c.domain = d.domain)";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CustomDomain> {
    Ok(CustomDomain {
        id: parse(r.get(0)?)?,
        tenant_id: parse(r.get(1)?)?,
        domain: parse(r.get(2)?)?,
        challenge: r.get(3)?,
        verified_at: r.get(4)?,
        created_at: r.get(5)?,
        certificate_expires_at: r.get(6)?,
    })
}

fn get_tx(conn: &Connection, tenant: &str, id: &str) -> Result<Option<CustomDomain>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM custom_domains d WHERE d.tenant_id = ?1 AND d.id = ?2"
        ))?
        .query_row([tenant, id], row)
        .optional()?)
}

/// Whether the tenant has verified `domain` itself, as either kind of domain.
pub(crate) fn verified_by_tx(
    conn: &Connection,
    tenant: &str,
    domain: &str,
) -> Result<bool, StoreError> {
    let n: i64 = conn.query_row(
        "SELECT (SELECT COUNT(*) FROM tenant_settings WHERE preview_domain = ?1
                   AND preview_domain_verified_at IS NOT NULL AND tenant_id = ?2)
              + (SELECT COUNT(*) FROM custom_domains WHERE domain = ?1
                   AND verified_at IS NOT NULL AND tenant_id = ?2)",
        [domain, tenant],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

/// Whether another tenant has verified `domain`, a domain above it or one below it (as either
/// kind): a tenant below another's domain could set cookies for it, one above could for all of
/// it. (Domain names hold no `%` or `_`, so `LIKE` matches suffixes only.)
pub(crate) fn claimed_elsewhere_tx(
    conn: &Connection,
    tenant: &str,
    domain: &str,
) -> Result<bool, StoreError> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM (
             SELECT preview_domain AS d, tenant_id FROM tenant_settings
              WHERE preview_domain_verified_at IS NOT NULL
             UNION ALL
             SELECT domain, tenant_id FROM custom_domains WHERE verified_at IS NOT NULL)
         WHERE tenant_id != ?2 AND (d = ?1 OR ?1 LIKE '%.' || d OR d LIKE '%.' || ?1)",
        [domain, tenant],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

/// Every verified custom domain and its tenant (for the edge).
pub(crate) fn all_verified_tx(
    conn: &Connection,
) -> Result<Vec<(DomainName, TenantId)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT domain, tenant_id FROM custom_domains WHERE verified_at IS NOT NULL",
    )?;
    let rows = stmt.query_map([], |r| Ok((parse(r.get(0)?)?, parse(r.get(1)?)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl Store {
    /// The tenant's custom domains, oldest first.
    pub async fn custom_domains(
        &self,
        tenant_id: &TenantId,
    ) -> Result<Vec<CustomDomain>, StoreError> {
        let tenant = tenant_id.to_string();
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM custom_domains d WHERE d.tenant_id = ?1
                 ORDER BY d.created_at, d.id"
            ))?;
            let rows = stmt.query_map([&tenant], row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    pub async fn custom_domain(
        &self,
        tenant_id: &TenantId,
        id: &CustomDomainId,
    ) -> Result<CustomDomain, StoreError> {
        let (tenant, id) = (tenant_id.to_string(), id.to_string());
        self.with(move |conn| {
            get_tx(conn, &tenant, &id)?.ok_or(StoreError::NotFound("custom domain"))
        })
        .await
    }

    /// Register a domain, unverified with a fresh challenge. `Conflict` when the tenant has it
    /// already (as a custom domain or as its preview domain) or has [`MAX_CUSTOM_DOMAINS`].
    pub async fn create_custom_domain(
        &self,
        tenant_id: &TenantId,
        domain: DomainName,
    ) -> Result<CustomDomain, StoreError> {
        let tenant = tenant_id.to_string();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let (count, same, preview): (u64, i64, i64) = tx.query_row(
                "SELECT (SELECT COUNT(*) FROM custom_domains WHERE tenant_id = ?1),
                        (SELECT COUNT(*) FROM custom_domains WHERE tenant_id = ?1 AND domain = ?2),
                        (SELECT COUNT(*) FROM tenant_settings WHERE tenant_id = ?1 AND preview_domain = ?2)",
                [&tenant, domain.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            if same > 0 {
                return Err(StoreError::Conflict(format!("{domain} is registered already")));
            }
            if preview > 0 {
                return Err(StoreError::Conflict(format!(
                    "{domain} is this account's preview domain already"
                )));
            }
            if count >= MAX_CUSTOM_DOMAINS {
                return Err(StoreError::Conflict(format!(
                    "an account has at most {MAX_CUSTOM_DOMAINS} custom domains; delete one first"
                )));
            }
            let id = CustomDomainId::generate();
            tx.execute(
                "INSERT INTO custom_domains (id, tenant_id, domain, challenge, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id.as_str(), tenant, domain.as_str(), challenge(), now_millis()],
            )?;
            let record = get_tx(&tx, &tenant, id.as_str())?.ok_or(StoreError::NotFound("custom domain"))?;
            tx.commit()?;
            Ok(record)
        })
        .await
    }

    /// Remove a custom domain and the certificates issued under it: previews stop answering
    /// on it at once.
    pub async fn delete_custom_domain(
        &self,
        tenant_id: &TenantId,
        id: &CustomDomainId,
    ) -> Result<(), StoreError> {
        let (tenant, id) = (tenant_id.to_string(), id.to_string());
        self.with_edge(move |conn| {
            let tx = conn.transaction()?;
            let record = get_tx(&tx, &tenant, &id)?.ok_or(StoreError::NotFound("custom domain"))?;
            tx.execute("DELETE FROM custom_domains WHERE id = ?1", [&id])?;
            // The preview domain may be the same name (registered after this one): its
            // certificates stay.
            let still_preview: i64 = tx.query_row(
                "SELECT COUNT(*) FROM tenant_settings WHERE tenant_id = ?1 AND preview_domain = ?2",
                [&tenant, record.domain.as_str()],
                |r| r.get(0),
            )?;
            if still_preview == 0 {
                tx.execute(
                    "DELETE FROM certificates WHERE tenant_id = ?1 AND domain = ?2",
                    [&tenant, record.domain.as_str()],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Mark a custom domain verified (its TXT record was found). `NameTaken` when another
    /// tenant verified the same domain, or one above or below it, first.
    pub async fn mark_custom_domain_verified(
        &self,
        tenant_id: &TenantId,
        id: &CustomDomainId,
    ) -> Result<CustomDomain, StoreError> {
        let (tenant, id) = (tenant_id.to_string(), id.to_string());
        self.with_edge(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let record = get_tx(&tx, &tenant, &id)?.ok_or(StoreError::NotFound("custom domain"))?;
            if claimed_elsewhere_tx(&tx, &tenant, record.domain.as_str())? {
                return Err(StoreError::NameTaken(record.domain.to_string()));
            }
            tx.execute(
                "UPDATE custom_domains SET verified_at = COALESCE(verified_at, ?2) WHERE id = ?1",
                params![id, now_millis()],
            )?;
            let record = get_tx(&tx, &tenant, &id)?.ok_or(StoreError::NotFound("custom domain"))?;
            tx.commit()?;
            Ok(record)
        })
        .await
    }
}

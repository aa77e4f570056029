//! Per-tenant settings the preview edge serves from: branding, the custom preview domain and its
//! TLS certificate. Plus server-wide secrets (token signing keys).

use islet_types::branding::Branding;
use islet_types::domain::DomainName;
use islet_types::time::{now_millis, UnixMillis};
use islet_types::TenantId;
use rand::RngCore;
use rusqlite::{params, OptionalExtension, Transaction};

use crate::custom_domains::{claimed_elsewhere_tx, verified_by_tx};
use crate::rows::{json, parse};
use crate::{Store, StoreError};

/// A tenant's custom preview domain.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewDomain {
    pub domain: DomainName,
    /// What the domain must serve to prove control (see the control plane's verifier).
    pub challenge: String,
    pub verified_at: Option<UnixMillis>,
    /// `not_after` of the domain's certificate, if it has one.
    pub certificate_expires_at: Option<UnixMillis>,
    pub certificate_source: Option<String>,
}

/// Which names a stored certificate covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateKind {
    /// `*.<domain>`, uploaded by the tenant.
    Wildcard,
    /// One preview host, issued by ACME.
    Host,
}

impl CertificateKind {
    fn as_str(self) -> &'static str {
        match self {
            CertificateKind::Wildcard => "wildcard",
            CertificateKind::Host => "host",
        }
    }
}

/// A certificate on a tenant's preview domain.
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateRow {
    /// The domain for a wildcard, the host for a host certificate.
    pub name: String,
    pub domain: DomainName,
    pub kind: CertificateKind,
    pub tenant_id: TenantId,
    pub cert_pem: String,
    pub key_pem: String,
    pub not_after: UnixMillis,
    pub source: String,
}

/// Everything per tenant the edge needs, loaded in one go (these tables hold a row or two per
/// tenant).
#[derive(Debug, Clone, Default)]
pub struct EdgeSettings {
    /// Verified preview and custom domains and their tenants (unverified claims route nothing).
    pub domains: Vec<(DomainName, TenantId)>,
    pub branding: Vec<(TenantId, Branding)>,
    pub certificates: Vec<CertificateRow>,
}

/// The tenant settings kept as JSON, one column each.
#[derive(Debug, Clone, Copy)]
pub(crate) enum JsonSetting {
    AllowedOrigins,
    Pricing,
    Egress,
}

impl JsonSetting {
    fn column(self) -> &'static str {
        match self {
            JsonSetting::AllowedOrigins => "allowed_origins",
            JsonSetting::Pricing => "pricing",
            JsonSetting::Egress => "egress",
        }
    }
}

/// One of the tenant's JSON settings, parsed, inside a transaction.
pub(crate) fn json_setting_tx<T: serde::de::DeserializeOwned>(
    conn: &rusqlite::Connection,
    tenant: &str,
    which: JsonSetting,
) -> Result<Option<T>, StoreError> {
    let raw: Option<String> = conn
        .prepare_cached(&format!(
            "SELECT {} FROM tenant_settings WHERE tenant_id = ?1",
            which.column()
        ))?
        .query_row([tenant], |r| r.get(0))
        .optional()?
        .flatten();
    raw.map(|r| serde_json::from_str(&r).map_err(StoreError::corrupt)).transpose()
}

pub(crate) fn ensure_row(tx: &Transaction<'_>, tenant: &str) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO tenant_settings (tenant_id, updated_at) VALUES (?1, ?2)
         ON CONFLICT (tenant_id) DO NOTHING",
        params![tenant, now_millis()],
    )?;
    Ok(())
}

/// domain, challenge, verified_at, certificate not_after, certificate source.
type DomainRow = (Option<String>, Option<String>, Option<i64>, Option<i64>, Option<String>);

fn preview_domain_tx(
    tx: &Transaction<'_>,
    tenant: &str,
) -> Result<Option<PreviewDomain>, StoreError> {
    let row: Option<DomainRow> = tx
        .query_row(
            "SELECT s.preview_domain, s.preview_domain_challenge, s.preview_domain_verified_at,
                    c.not_after, c.source
             FROM tenant_settings s
             LEFT JOIN certificates c ON c.name = s.preview_domain AND c.tenant_id = s.tenant_id
             WHERE s.tenant_id = ?1",
            [tenant],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    let Some((Some(domain), Some(challenge), verified_at, not_after, source)) = row else {
        return Ok(None);
    };
    Ok(Some(PreviewDomain {
        domain: parse(domain)?,
        challenge,
        verified_at,
        certificate_expires_at: not_after,
        certificate_source: source,
    }))
}

impl Store {
    pub async fn branding(&self, tenant_id: &TenantId) -> Result<Option<Branding>, StoreError> {
        let tenant = tenant_id.to_string();
        self.with(move |conn| {
            let raw: Option<Option<String>> = conn
                .query_row(
                    "SELECT branding FROM tenant_settings WHERE tenant_id = ?1",
                    [&tenant],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(raw.flatten().map(json).transpose()?)
        })
        .await
    }

    /// The web origins the tenant's browser code calls the API from.
    pub async fn allowed_origins(&self, tenant_id: &TenantId) -> Result<Vec<String>, StoreError> {
        Ok(self.json_setting(tenant_id, JsonSetting::AllowedOrigins).await?.unwrap_or_default())
    }

    /// Replace the tenant's allowed origins (already validated: `scheme://host[:port]`).
    pub async fn set_allowed_origins(
        &self,
        tenant_id: &TenantId,
        origins: Vec<String>,
    ) -> Result<(), StoreError> {
        self.set_json_setting(tenant_id, JsonSetting::AllowedOrigins, Some(&origins)).await
    }

    /// One of the tenant's JSON settings, parsed (`None` when it has none).
    pub(crate) async fn json_setting<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        tenant_id: &TenantId,
        which: JsonSetting,
    ) -> Result<Option<T>, StoreError> {
        let tenant = tenant_id.to_string();
        self.with(move |conn| json_setting_tx(conn, &tenant, which)).await
    }

    /// Replace one of the tenant's JSON settings (`None` clears it).
    pub(crate) async fn set_json_setting<T: serde::Serialize>(
        &self,
        tenant_id: &TenantId,
        which: JsonSetting,
        value: Option<&T>,
    ) -> Result<(), StoreError> {
        let tenant = tenant_id.to_string();
        let raw = value.map(serde_json::to_string).transpose().map_err(StoreError::corrupt)?;
        self.with(move |conn| {
            let tx = conn.transaction()?;
            ensure_row(&tx, &tenant)?;
            tx.execute(
                &format!(
                    "UPDATE tenant_settings SET {} = ?2, updated_at = ?3 WHERE tenant_id = ?1",
                    which.column()
                ),
                params![tenant, raw, now_millis()],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Whether any tenant allows `origin` (for preflights, which carry no credential).
    pub async fn origin_allowed_anywhere(&self, origin: &str) -> Result<bool, StoreError> {
        // Stored origins never contain quotes, so the quoted form matches one entry exactly.
        let needle = format!("\"{origin}\"");
        self.with(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT 1 FROM tenant_settings WHERE instr(allowed_origins, ?1) > 0 LIMIT 1",
                )?
                .query_row([&needle], |_| Ok(()))
                .optional()?
                .is_some())
        })
        .await
    }

    /// Replace (or with `None`, remove) the tenant's branding.
    pub async fn set_branding(
        &self,
        tenant_id: &TenantId,
        branding: Option<Branding>,
    ) -> Result<(), StoreError> {
        let tenant = tenant_id.to_string();
        let raw =
            branding.map(|b| serde_json::to_string(&b)).transpose().map_err(StoreError::corrupt)?;
        self.with_edge(move |conn| {
            let tx = conn.transaction()?;
            ensure_row(&tx, &tenant)?;
            tx.execute(
                "UPDATE tenant_settings SET branding = ?2, updated_at = ?3 WHERE tenant_id = ?1",
                params![tenant, raw, now_millis()],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn preview_domain(
        &self,
        tenant_id: &TenantId,
    ) -> Result<Option<PreviewDomain>, StoreError> {
        let tenant = tenant_id.to_string();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            preview_domain_tx(&tx, &tenant)
        })
        .await
    }

    /// Claim a custom preview domain (unverified, with a fresh challenge), or with `None` drop
    /// the tenant's claim. Setting the domain it already has keeps its state. A certificate of
    /// a domain the tenant no longer claims is deleted.
    pub async fn set_preview_domain(
        &self,
        tenant_id: &TenantId,
        domain: Option<DomainName>,
    ) -> Result<Option<PreviewDomain>, StoreError> {
        let tenant = tenant_id.to_string();
        self.with_edge(move |conn| {
            let tx = conn.transaction()?;
            ensure_row(&tx, &tenant)?;
            let current = preview_domain_tx(&tx, &tenant)?;
            if let Some(d) = &domain {
                let custom: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM custom_domains WHERE tenant_id = ?1 AND domain = ?2",
                    [&tenant, d.as_str()],
                    |r| r.get(0),
                )?;
                if custom > 0 {
                    return Err(StoreError::Conflict(format!(
                        "{d} is one of this account's custom domains; delete it there first"
                    )));
                }
            }
            if current.as_ref().map(|c| &c.domain) != domain.as_ref() {
                tx.execute(
                    "UPDATE tenant_settings SET preview_domain = ?2,
                         preview_domain_challenge = ?3, preview_domain_verified_at = NULL,
                         updated_at = ?4
                     WHERE tenant_id = ?1",
                    params![
                        tenant,
                        domain.as_ref().map(DomainName::as_str),
                        domain.as_ref().map(|_| crate::secrets::challenge()),
                        now_millis()
                    ],
                )?;
                if let Some(old) = &current {
                    tx.execute(
                        "DELETE FROM certificates WHERE tenant_id = ?1 AND domain = ?2",
                        [&tenant, old.domain.as_str()],
                    )?;
                }
            }
            let now = preview_domain_tx(&tx, &tenant)?;
            tx.commit()?;
            Ok(now)
        })
        .await
    }

    /// Mark the tenant's claim verified. `NameTaken` if another tenant verified it, or a
    /// domain above or below it, first.
    pub async fn mark_preview_domain_verified(
        &self,
        tenant_id: &TenantId,
        domain: &DomainName,
    ) -> Result<PreviewDomain, StoreError> {
        let (tenant, domain) = (tenant_id.to_string(), domain.to_string());
        self.with_edge(move |conn| {
            let tx = conn.transaction()?;
            if claimed_elsewhere_tx(&tx, &tenant, &domain)? {
                return Err(StoreError::NameTaken(domain));
            }
            let changed = tx.execute(
                "UPDATE tenant_settings SET
                     preview_domain_verified_at = COALESCE(preview_domain_verified_at, ?3),
                     updated_at = ?3
                 WHERE tenant_id = ?1 AND preview_domain = ?2",
                params![tenant, domain, now_millis()],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound("preview domain"));
            }
            let record =
                preview_domain_tx(&tx, &tenant)?.ok_or(StoreError::NotFound("preview domain"))?;
            tx.commit()?;
            Ok(record)
        })
        .await
    }

    /// Store a certificate under one of the tenant's verified domains, its preview domain or a
    /// custom one (`NotFound` otherwise). A certificate of the same name held by another tenant
    /// is never replaced (`NameTaken`).
    pub async fn put_certificate(&self, row: CertificateRow) -> Result<(), StoreError> {
        self.with_edge(move |conn| {
            let tx = conn.transaction()?;
            if !verified_by_tx(&tx, row.tenant_id.as_str(), row.domain.as_str())? {
                return Err(StoreError::NotFound("preview domain"));
            }
            let changed = tx.execute(
                "INSERT INTO certificates (name, domain, tenant_id, kind, cert_pem, key_pem,
                     not_after, source, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (name) DO UPDATE SET domain = ?2, kind = ?4, cert_pem = ?5,
                     key_pem = ?6, not_after = ?7, source = ?8, updated_at = ?9
                 WHERE certificates.tenant_id = ?3",
                params![
                    row.name,
                    row.domain.as_str(),
                    row.tenant_id.as_str(),
                    row.kind.as_str(),
                    row.cert_pem,
                    row.key_pem,
                    row.not_after,
                    row.source,
                    now_millis()
                ],
            )?;
            if changed == 0 {
                return Err(StoreError::NameTaken(row.name));
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Remove the tenant's uploaded (wildcard) certificate.
    pub async fn delete_certificate(&self, tenant_id: &TenantId) -> Result<(), StoreError> {
        let tenant = tenant_id.to_string();
        self.with_edge(move |conn| {
            conn.execute(
                "DELETE FROM certificates WHERE tenant_id = ?1 AND kind = 'wildcard'",
                [&tenant],
            )?;
            Ok(())
        })
        .await
    }

    /// Saved ACME account credentials for a directory.
    pub async fn acme_account(&self, directory: &str) -> Result<Option<String>, StoreError> {
        let directory = directory.to_owned();
        self.with(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT credentials FROM acme_accounts WHERE directory = ?1",
                    [&directory],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }

    pub async fn save_acme_account(
        &self,
        directory: &str,
        credentials: String,
    ) -> Result<(), StoreError> {
        let directory = directory.to_owned();
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO acme_accounts (directory, credentials, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (directory) DO UPDATE SET credentials = ?2",
                params![directory, credentials, now_millis()],
            )?;
            Ok(())
        })
        .await
    }

    /// Changes whenever any certificate is stored or removed: the edge reloads certificates
    /// only when it does.
    pub async fn certificates_version(&self) -> Result<(i64, i64), StoreError> {
        self.with(|conn| {
            Ok(conn.query_row(
                "SELECT COUNT(*), COALESCE(MAX(updated_at), 0) FROM certificates",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
        .await
    }

    /// Domains, branding and certificates of every tenant: what the preview edge keeps in memory.
    pub async fn edge_settings(&self) -> Result<EdgeSettings, StoreError> {
        self.with(|conn| {
            let mut settings = EdgeSettings::default();
            let mut stmt = conn.prepare_cached(
                "SELECT tenant_id, branding,
                        CASE WHEN preview_domain_verified_at IS NOT NULL THEN preview_domain END
                 FROM tenant_settings",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })?;
            for row in rows {
                let (tenant, branding, verified_domain) = row?;
                let tenant: TenantId = parse(tenant)?;
                if let Some(b) = branding {
                    settings.branding.push((tenant.clone(), json(b)?));
                }
                if let Some(d) = verified_domain {
                    settings.domains.push((parse(d)?, tenant));
                }
            }
            settings.domains.extend(crate::custom_domains::all_verified_tx(conn)?);
            let mut stmt = conn.prepare_cached(
                "SELECT c.name, c.domain, c.kind, c.tenant_id, c.cert_pem, c.key_pem, c.not_after,
                        c.source
                 FROM certificates c
                 WHERE EXISTS (SELECT 1 FROM tenant_settings s
                               WHERE s.tenant_id = c.tenant_id AND s.preview_domain = c.domain
                                 AND s.preview_domain_verified_at IS NOT NULL)
                    OR EXISTS (SELECT 1 FROM custom_domains d
                               WHERE d.tenant_id = c.tenant_id AND d.domain = c.domain
                                 AND d.verified_at IS NOT NULL)",
            )?;
            let rows = stmt.query_map([], |r| {
                let kind: String = r.get(2)?;
                Ok(CertificateRow {
                    name: r.get(0)?,
                    domain: parse(r.get(1)?)?,
                    kind: if kind == "host" {
                        CertificateKind::Host
                    } else {
                        CertificateKind::Wildcard
                    },
                    tenant_id: parse(r.get(3)?)?,
                    cert_pem: r.get(4)?,
                    key_pem: r.get(5)?,
                    not_after: r.get(6)?,
                    source: r.get(7)?,
                })
            })?;
            for row in rows {
                settings.certificates.push(row?);
            }
            Ok(settings)
        })
        .await
    }

    /// A server-wide secret of 32 random bytes, created on first use and the same ever after
    /// (for every process sharing this store).
    pub async fn secret(&self, name: &'static str) -> Result<Vec<u8>, StoreError> {
        self.with(move |conn| {
            let mut fresh = vec![0u8; 32];
            rand::thread_rng().fill_bytes(&mut fresh);
            conn.execute(
                "INSERT INTO server_secrets (name, value, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO NOTHING",
                params![name, fresh, now_millis()],
            )?;
            Ok(conn.query_row("SELECT value FROM server_secrets WHERE name = ?1", [name], |r| {
                r.get(0)
            })?)
        })
        .await
    }
}

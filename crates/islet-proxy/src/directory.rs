//! What the edge knows without asking the store on every request: tenants' domains, branding
//! and certificates, the revocation list (all refreshed every second), and a short-lived cache
//! of sandbox routes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use islet_store::{CertificateKind, EdgeRoute, Store, StoreError};
use islet_tls::SniResolver;
use islet_types::branding::Branding;
use islet_types::domain::DomainName;
use islet_types::time::now_millis;
use islet_types::{PreviewTokenId, SandboxId, TenantId};

/// A tenant's custom preview domain as the edge sees it.
#[derive(Debug, Clone)]
pub struct DomainEntry {
    pub tenant_id: TenantId,
    pub challenge: String,
    pub verified: bool,
}

#[derive(Debug, Default)]
struct Settings {
    /// Every claim of a domain: several tenants may claim one, at most one has verified it.
    domains: HashMap<DomainName, Vec<DomainEntry>>,
    branding: HashMap<TenantId, Arc<Branding>>,
}

#[derive(Debug, Default)]
struct Revoked {
    after_seq: i64,
    /// Token id → its expiry (after which it cannot verify anyway and is dropped).
    ids: HashMap<PreviewTokenId, i64>,
}

/// A route and when it was looked up (`None`: the sandbox does not exist).
type CachedRoute = (Instant, Option<Arc<EdgeRoute>>);

pub struct Directory {
    store: Store,
    route_ttl: Duration,
    settings: RwLock<Arc<Settings>>,
    revoked: RwLock<Revoked>,
    routes: Mutex<HashMap<SandboxId, CachedRoute>>,
    certificates: Arc<SniResolver>,
    /// Fingerprint of the certificates last loaded, so the resolver is rebuilt only on change.
    certificate_version: Mutex<Vec<(String, i64, usize)>>,
    /// ACME-issued host certificates and when each expires.
    host_expiry: Mutex<Vec<HostCertificate>>,
}

/// An issued host certificate, for renewal.
#[derive(Debug, Clone)]
pub struct HostCertificate {
    pub host: String,
    pub domain: DomainName,
    pub tenant_id: TenantId,
    pub not_after: i64,
}

impl Directory {
    pub fn new(store: Store, route_ttl: Duration, certificates: Arc<SniResolver>) -> Self {
        Self {
            store,
            route_ttl,
            settings: RwLock::default(),
            revoked: RwLock::default(),
            routes: Mutex::default(),
            certificates,
            certificate_version: Mutex::default(),
            host_expiry: Mutex::default(),
        }
    }

    /// Reload settings and certificates and follow the revocation log.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let after = self.revoked.read().map(|r| r.after_seq).unwrap_or(0);
        let revocations = self.store.revocations_after(after).await?;
        if let Ok(mut revoked) = self.revoked.write() {
            let now = now_millis();
            revoked.ids.retain(|_, expires| *expires > now);
            for r in revocations {
                revoked.after_seq = revoked.after_seq.max(r.seq);
                revoked.ids.insert(r.token_id, r.expires_at);
            }
        }
        let loaded = self.store.edge_settings().await?;
        let mut domains: HashMap<DomainName, Vec<DomainEntry>> = HashMap::new();
        for (domain, tenant_id, challenge, verified) in loaded.domains {
            domains.entry(domain).or_default().push(DomainEntry {
                tenant_id,
                challenge,
                verified,
            });
        }
        let settings = Settings {
            domains,
            branding: loaded
                .branding
                .into_iter()
                .map(|(tenant, b)| (tenant, Arc::new(b)))
                .collect(),
        };
        if let Ok(mut slot) = self.settings.write() {
            *slot = Arc::new(settings);
        }
        let version: Vec<(String, i64, usize)> = loaded
            .certificates
            .iter()
            .map(|c| {
                (
                    c.domain.to_string(),
                    c.not_after,
                    c.cert_pem.len() + c.key_pem.len(),
                )
            })
            .collect();
        let changed = self
            .certificate_version
            .lock()
            .map(|mut v| {
                let changed = *v != version;
                *v = version;
                changed
            })
            .unwrap_or(true);
        if changed {
            let expiry = loaded
                .certificates
                .iter()
                .filter(|c| c.kind == CertificateKind::Host)
                .map(|c| HostCertificate {
                    host: c.name.clone(),
                    domain: c.domain.clone(),
                    tenant_id: c.tenant_id.clone(),
                    not_after: c.not_after,
                })
                .collect();
            if let Ok(mut slot) = self.host_expiry.lock() {
                *slot = expiry;
            }
            let (mut domains, mut hosts) = (HashMap::new(), HashMap::new());
            for cert in loaded.certificates {
                let (name, map) = match cert.kind {
                    CertificateKind::Wildcard => (format!("*.{}", cert.domain), &mut domains),
                    CertificateKind::Host => (cert.name.clone(), &mut hosts),
                };
                match islet_tls::parse_for(&cert.cert_pem, &cert.key_pem, &name, now_millis()) {
                    Ok(parsed) => {
                        map.insert(cert.name, parsed.key);
                    }
                    Err(error) => {
                        tracing::warn!(name = %cert.name, %error, "stored certificate not loaded");
                    }
                }
            }
            self.certificates.set_domains(domains);
            self.certificates.set_hosts(hosts);
        }
        Ok(())
    }

    /// Issued host certificates expiring before `deadline` (Unix ms).
    pub fn hosts_expiring_before(&self, deadline: i64) -> Vec<HostCertificate> {
        self.host_expiry
            .lock()
            .map(|v| {
                v.iter()
                    .filter(|c| c.not_after < deadline)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The claims of `domain`, if any tenant claims it.
    pub fn domain(&self, domain: &str) -> Option<(DomainName, Vec<DomainEntry>)> {
        let settings = self.settings.read().ok()?.clone();
        let name: DomainName = domain.parse().ok()?;
        settings.domains.get(&name).map(|e| (name, e.clone()))
    }

    pub fn branding(&self, tenant: &TenantId) -> Option<Arc<Branding>> {
        self.settings.read().ok()?.branding.get(tenant).cloned()
    }

    pub fn is_revoked(&self, token: &PreviewTokenId) -> bool {
        // A poisoned lock fails closed.
        self.revoked
            .read()
            .map(|r| r.ids.contains_key(token))
            .unwrap_or(true)
    }

    /// The sandbox's route, from the cache when fresh.
    pub async fn route(&self, sandbox: &SandboxId) -> Result<Option<Arc<EdgeRoute>>, StoreError> {
        if let Ok(routes) = self.routes.lock() {
            if let Some((at, route)) = routes.get(sandbox) {
                if at.elapsed() < self.route_ttl {
                    return Ok(route.clone());
                }
            }
        }
        let route = self.store.edge_route(sandbox).await?.map(Arc::new);
        if let Ok(mut routes) = self.routes.lock() {
            if routes.len() > 100_000 {
                let ttl = self.route_ttl;
                routes.retain(|_, (at, _)| at.elapsed() < ttl);
            }
            routes.insert(sandbox.clone(), (Instant::now(), route.clone()));
        }
        Ok(route)
    }
}

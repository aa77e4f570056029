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

#[derive(Debug, Default)]
struct Settings {
    /// Verified tenant domains and their tenants.
    domains: HashMap<DomainName, TenantId>,
    branding: HashMap<TenantId, Arc<Branding>>,
}

#[derive(Debug)]
struct Revoked {
    after_seq: i64,
    /// Token id → its expiry (after which it cannot verify anyway and is dropped).
    ids: HashMap<PreviewTokenId, i64>,
    /// When the list was last brought up to date.
    synced_at: Instant,
}

/// A route and when it was looked up (`None`: the sandbox does not exist).
struct CachedRoute {
    at: Instant,
    /// The store's edge version it was read at: a later change makes it stale at once.
    version: u64,
    route: Option<Arc<EdgeRoute>>,
    /// A request is reloading it; others keep using this copy meanwhile.
    refreshing: bool,
}

pub(crate) struct Directory {
    store: Store,
    route_ttl: Duration,
    settings: RwLock<Arc<Settings>>,
    revoked: RwLock<Revoked>,
    routes: Mutex<HashMap<SandboxId, CachedRoute>>,
    certificates: Arc<SniResolver>,
    /// The store's certificate version last loaded, so certificates are read and the resolver
    /// rebuilt only on change.
    certificate_version: Mutex<Option<(i64, i64)>>,
    /// ACME-issued host certificates and when each expires.
    host_expiry: Mutex<Vec<HostCertificate>>,
    /// The store's edge version the settings and revocations were last loaded at.
    synced_version: std::sync::atomic::AtomicU64,
    /// One catch-up at a time; the others wait for it rather than load the same again.
    catching_up: tokio::sync::Mutex<()>,
}

/// The revocation list is too old to trust.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stale;

/// An issued host certificate, for renewal.
#[derive(Debug, Clone)]
pub(crate) struct HostCertificate {
    pub host: String,
    pub domain: DomainName,
    pub tenant_id: TenantId,
    pub not_after: i64,
}

impl Directory {
    pub(crate) fn new(store: Store, route_ttl: Duration, certificates: Arc<SniResolver>) -> Self {
        Self {
            store,
            route_ttl,
            settings: RwLock::default(),
            revoked: RwLock::new(Revoked {
                after_seq: 0,
                ids: HashMap::new(),
                // Not synced yet: `refresh` runs before the edge serves.
                synced_at: Instant::now() - Duration::from_secs(3600),
            }),
            routes: Mutex::default(),
            certificates,
            synced_version: std::sync::atomic::AtomicU64::new(u64::MAX),
            catching_up: tokio::sync::Mutex::new(()),
            certificate_version: Mutex::default(),
            host_expiry: Mutex::default(),
        }
    }

    /// Load what changed in the store since the last load, when something did: a change the
    /// API committed (a grant, a revocation, a domain, a sandbox's state) is served from the
    /// next request on, not after the next periodic refresh. Nothing changed costs one atomic
    /// read.
    pub(crate) async fn catch_up(&self) {
        use std::sync::atomic::Ordering;
        let current = self.store.edge_version();
        if self.synced_version.load(Ordering::Acquire) == current {
            return;
        }
        let _one = self.catching_up.lock().await;
        let current = self.store.edge_version();
        if self.synced_version.load(Ordering::Acquire) == current {
            return;
        }
        // A failed load is not tried again by every request: the periodic refresh retries it.
        if let Err(error) = self.refresh().await {
            tracing::warn!(%error, "preview edge could not catch up with a change");
        }
        self.synced_version.store(current, Ordering::Release);
    }

    /// Follow the revocation log, then reload settings and (when changed) certificates. Each
    /// part fails on its own: a bad settings row never holds revocations back.
    pub(crate) async fn refresh(&self) -> Result<(), StoreError> {
        let after = self.revoked.read().map(|r| r.after_seq).unwrap_or(0);
        let revocations = self.store.revocations_after(after).await?;
        if let Ok(mut revoked) = self.revoked.write() {
            let now = now_millis();
            revoked.ids.retain(|_, expires| *expires > now);
            for r in revocations {
                revoked.after_seq = revoked.after_seq.max(r.seq);
                revoked.ids.insert(r.token_id, r.expires_at);
            }
            revoked.synced_at = Instant::now();
        }
        let loaded = self.store.edge_settings().await?;
        let settings = Settings {
            domains: loaded.domains.into_iter().collect(),
            branding: loaded
                .branding
                .into_iter()
                .map(|(tenant, b)| (tenant, Arc::new(b)))
                .collect(),
        };
        if let Ok(mut slot) = self.settings.write() {
            *slot = Arc::new(settings);
        }
        let version = self.store.certificates_version().await?;
        let changed = self.certificate_version.lock().map(|v| *v != Some(version)).unwrap_or(true);
        if changed {
            self.load_certificates(loaded.certificates);
            if let Ok(mut v) = self.certificate_version.lock() {
                *v = Some(version);
            }
        }
        Ok(())
    }

    fn load_certificates(&self, certificates: Vec<islet_store::CertificateRow>) {
        let expiry = certificates
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
        for cert in certificates {
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

    /// Issued host certificates expiring before `deadline` (Unix ms).
    pub(crate) fn hosts_expiring_before(&self, deadline: i64) -> Vec<HostCertificate> {
        self.host_expiry
            .lock()
            .map(|v| v.iter().filter(|c| c.not_after < deadline).cloned().collect())
            .unwrap_or_default()
    }

    /// The verified tenant domain `domain` is, and its tenant.
    pub(crate) fn domain(&self, domain: &str) -> Option<(DomainName, TenantId)> {
        let settings = self.settings.read().ok()?.clone();
        let name: DomainName = domain.parse().ok()?;
        settings.domains.get(&name).map(|t| (name, t.clone()))
    }

    pub(crate) fn branding(&self, tenant: &TenantId) -> Option<Arc<Branding>> {
        self.settings.read().ok()?.branding.get(tenant).cloned()
    }

    /// Whether the token must be refused as revoked. Fails closed: a poisoned lock, or a list
    /// not synced for longer than `max_age`, refuses every token.
    pub(crate) fn is_revoked(
        &self,
        token: &PreviewTokenId,
        max_age: Duration,
    ) -> Result<bool, Stale> {
        let revoked = self.revoked.read().map_err(|_| Stale)?;
        if revoked.synced_at.elapsed() > max_age {
            return Err(Stale);
        }
        Ok(revoked.ids.contains_key(token))
    }

    /// The sandbox's route, from the cache when fresh.
    /// The sandbox's route, from the cache when fresh. Once it is older than `route_ttl`, one
    /// request reloads it while the others go on with the old copy (for at most another
    /// `route_ttl`), so a busy sandbox never sends a burst of requests to the store at once.
    pub(crate) async fn route(
        &self,
        sandbox: &SandboxId,
    ) -> Result<Option<Arc<EdgeRoute>>, StoreError> {
        let version = self.store.edge_version();
        if let Ok(mut routes) = self.routes.lock() {
            if let Some(cached) = routes.get_mut(sandbox).filter(|c| c.version == version) {
                let age = cached.at.elapsed();
                if age < self.route_ttl {
                    return Ok(cached.route.clone());
                }
                if age < 2 * self.route_ttl {
                    if cached.refreshing {
                        return Ok(cached.route.clone());
                    }
                    cached.refreshing = true;
                }
            }
        }
        let loaded = self.store.edge_route(sandbox).await;
        let Ok(mut routes) = self.routes.lock() else {
            return loaded.map(|r| r.map(Arc::new));
        };
        let route = match loaded {
            Ok(route) => route.map(Arc::new),
            Err(error) => {
                if let Some(cached) = routes.get_mut(sandbox) {
                    cached.refreshing = false;
                }
                return Err(error);
            }
        };
        if routes.len() > 100_000 {
            let keep = 2 * self.route_ttl;
            routes.retain(|_, cached| cached.at.elapsed() < keep);
        }
        routes.insert(
            sandbox.clone(),
            CachedRoute { at: Instant::now(), version, route: route.clone(), refreshing: false },
        );
        Ok(route)
    }
}

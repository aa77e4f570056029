//! The edge's state: settings, caches, the upstream client; refreshing them; certificates.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use islet_store::{Store, StoreError};
use islet_tls::SniResolver;
use islet_tokens::Signer;
use islet_types::domain::DomainName;
use islet_types::SandboxState;

use crate::acme::{AcmeConfig, Issuer};
use crate::activity::Activity;
use crate::directory::Directory;
use crate::host;
use crate::limit::RateLimiter;
use crate::upstream;

/// Edge settings (filled in by the binary).
#[derive(Debug, Clone)]
pub struct Config {
    /// The platform's preview domain (`<port>-sbx-<id>.<domain>`).
    pub domain: DomainName,
    /// Requests per second per sandbox (0 = unlimited) and the burst above it.
    pub rate_limit_per_sec: u32,
    pub rate_limit_burst: u32,
    pub connect_timeout: Duration,
    /// How long the app may take to start answering.
    pub response_timeout: Duration,
    /// How long a client may take to send a request head, and a TLS handshake (certificate
    /// issuance aside).
    pub header_timeout: Duration,
    /// Open connections the edge accepts at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// How long a sandbox's route is cached; it may be served up to twice this old while one
    /// request reloads it (bounds how late the edge notices a state change).
    pub route_ttl: Duration,
    /// How often revocations, domains, branding and certificates are reloaded.
    pub refresh_interval: Duration,
    /// Token-authenticated requests are refused (503) when the revocation list is older than
    /// this, so a revocation is never missed for longer.
    pub revocation_max_age: Duration,
    /// Preview traffic touches a sandbox's activity at most this often.
    pub activity_interval: Duration,
    /// Issue certificates for previews on tenants' domains (off when `None`).
    pub acme: Option<AcmeConfig>,
    /// With a TLS listener on this public port, plain-HTTP requests are redirected there, so
    /// tokens and cookies never travel in the clear (ACME HTTP-01 probes excepted).
    pub https_redirect_port: Option<u16>,
}

impl Config {
    pub fn new(domain: DomainName) -> Self {
        Self {
            domain,
            rate_limit_per_sec: 0,
            rate_limit_burst: 0,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(300),
            header_timeout: Duration::from_secs(30),
            max_connections: 20_000,
            route_ttl: Duration::from_secs(1),
            refresh_interval: Duration::from_secs(1),
            revocation_max_age: Duration::from_secs(5),
            activity_interval: Duration::from_secs(5),
            acme: None,
            https_redirect_port: None,
        }
    }
}

/// Where a sandbox's network slot lives (the node runtime knows).
pub type Upstream = Arc<dyn Fn(u32) -> IpAddr + Send + Sync>;

pub struct Edge {
    pub(crate) config: Config,
    pub(crate) signer: Signer,
    pub(crate) directory: Directory,
    pub(crate) activity: Arc<Activity>,
    pub(crate) limiter: RateLimiter,
    pub(crate) upstream: Upstream,
    pub(crate) pool: upstream::Pool,
    certificates: Arc<SniResolver>,
    pub(crate) acme: Option<Issuer>,
    /// When each host's certificate was last renewed (so a renewal is not started twice while
    /// the store catches up).
    renewals: Mutex<HashMap<String, Instant>>,
}

/// The connection a request arrived on.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    pub peer: SocketAddr,
    pub tls: bool,
    pub local_port: u16,
    /// Set by the connection's framing guard when a request head was ambiguous.
    pub ambiguous: Arc<AtomicBool>,
    /// This connection's own upstream connection (used for HTTP/1 visitors).
    pub pinned: Arc<upstream::Pinned>,
}

impl Edge {
    /// An edge over `store`. Loads the signing key and the first snapshot of settings.
    pub async fn new(
        store: Store,
        config: Config,
        upstream: Upstream,
        platform_certificate: Option<Arc<rustls::sign::CertifiedKey>>,
    ) -> Result<Arc<Self>, StoreError> {
        let signer = Signer::new(&store.secret(islet_tokens::SECRET_NAME).await?);
        let certificates = Arc::new(SniResolver::default());
        if let Some(key) = platform_certificate {
            certificates.set_platform(key);
        }
        let directory = Directory::new(store.clone(), config.route_ttl, certificates.clone());
        directory.refresh().await?;
        Ok(Arc::new(Self {
            acme: config.acme.clone().map(|acme| Issuer::new(acme, store.clone())),
            renewals: Mutex::default(),
            activity: Arc::new(Activity::new(store, config.activity_interval)),
            limiter: RateLimiter::new(config.rate_limit_per_sec, config.rate_limit_burst),
            pool: upstream::pool(config.connect_timeout),
            signer,
            directory,
            upstream,
            certificates,
            config,
        }))
    }

    pub fn certificates(&self) -> Arc<SniResolver> {
        self.certificates.clone()
    }

    /// Reload what the edge keeps in memory (called every `refresh_interval`), and start
    /// renewing certificates that expire soon.
    pub async fn refresh(self: &Arc<Self>) {
        if let Err(error) = self.directory.refresh().await {
            tracing::warn!(%error, "preview edge could not refresh its settings");
        }
        let Some(acme) = &self.acme else {
            return;
        };
        let deadline = islet_types::time::now_millis()
            + i64::try_from(acme.renew_before().as_millis()).unwrap_or(i64::MAX);
        for due in self.directory.hosts_expiring_before(deadline) {
            let start = self.renewals.lock().is_ok_and(|mut r| {
                let recent =
                    r.get(&due.host).is_some_and(|at| at.elapsed() < Duration::from_secs(300));
                if !recent {
                    r.insert(due.host.clone(), Instant::now());
                }
                !recent
            });
            if !start {
                continue;
            }
            let edge = self.clone();
            tokio::spawn(async move {
                let Some(acme) = &edge.acme else { return };
                match acme.issue(&due.host, &due.domain, &due.tenant_id, || None).await {
                    Ok(key) => edge.certificates.set_host(&due.host, key),
                    Err(error) => {
                        tracing::warn!(host = %due.host, %error, "certificate renewal failed")
                    }
                }
            });
        }
    }

    /// Make sure a tenant preview host named in a TLS handshake has a certificate, issuing one
    /// by ACME if needed and allowed: only for a host naming an existing sandbox of the
    /// domain's tenant. Returns quietly otherwise; the handshake then gets what the resolver
    /// has.
    pub(crate) async fn ensure_certificate(&self, server_name: &str) {
        let Some(acme) = &self.acme else { return };
        if self.certificates.for_name(server_name).is_some() {
            return;
        }
        let Some(host) = host::normalise(server_name) else {
            return;
        };
        let Some((first, rest)) = host.split_once('.') else {
            return;
        };
        let (Some((domain, tenant)), Ok(label)) =
            (self.directory.domain(rest), first.parse::<islet_types::preview::PreviewLabel>())
        else {
            return;
        };
        let exists = match self.directory.route(&label.sandbox_id).await {
            Ok(Some(route)) => route.tenant_id == tenant && serves(route.state),
            _ => false,
        };
        if !exists {
            return;
        }
        let fresh = || self.certificates.for_name(&host);
        match acme.issue(&host, &domain, &tenant, fresh).await {
            Ok(key) => self.certificates.set_host(&host, key),
            Err(error) => tracing::warn!(%host, %error, "certificate issuance failed"),
        }
    }
}

/// Whether a route may be served at all (a sandbox on its way out is gone for the edge).
pub(crate) fn serves(state: SandboxState) -> bool {
    !matches!(state, SandboxState::Destroyed | SandboxState::Destroying)
}

//! The edge's state and its request handler.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use islet_store::{EdgeRoute, Store, StoreError};
use islet_tls::SniResolver;
use islet_tokens::{Claims, Signer};
use islet_types::branding::Branding;
use islet_types::domain::DomainName;
use islet_types::preview::{PreviewLabel, Scope};
use islet_types::SandboxState;

use crate::acme::{AcmeConfig, Issuer};
use crate::activity::Activity;
use crate::credentials::{self, Presented};
use crate::directory::Directory;
use crate::forward::{self, Forwarded};
use crate::host::{self, Site};
use crate::limit::RateLimiter;
use crate::pages::{self, Failure, PageContext};
use crate::Body;

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
    /// How long a sandbox's route is cached (bounds how late the edge notices a state change).
    pub route_ttl: Duration,
    /// How often revocations, domains, branding and certificates are reloaded.
    pub refresh_interval: Duration,
    /// Preview traffic touches a sandbox's activity at most this often.
    pub activity_interval: Duration,
    /// Issue certificates for previews on tenants' domains (off when `None`).
    pub acme: Option<AcmeConfig>,
}

impl Config {
    pub fn new(domain: DomainName) -> Self {
        Self {
            domain,
            rate_limit_per_sec: 0,
            rate_limit_burst: 0,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(300),
            route_ttl: Duration::from_secs(1),
            refresh_interval: Duration::from_secs(1),
            activity_interval: Duration::from_secs(5),
            acme: None,
        }
    }
}

/// Where a sandbox's network slot lives (the node runtime knows).
pub type Upstream = Arc<dyn Fn(u32) -> IpAddr + Send + Sync>;

pub struct Edge {
    pub(crate) config: Config,
    signer: Signer,
    pub(crate) directory: Directory,
    activity: Arc<Activity>,
    limiter: RateLimiter,
    upstream: Upstream,
    client: forward::Client,
    certificates: Arc<SniResolver>,
    pub(crate) acme: Option<Issuer>,
    /// When each host's certificate was last renewed (so a renewal is not started twice while
    /// the store catches up).
    renewals: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// The connection a request arrived on.
#[derive(Debug, Clone)]
pub struct Connection {
    pub peer: SocketAddr,
    pub tls: bool,
    pub local_port: u16,
    /// Set by the connection's framing guard when a request head was ambiguous.
    pub ambiguous: Arc<std::sync::atomic::AtomicBool>,
}

fn now_secs() -> u64 {
    u64::try_from(islet_types::time::now_millis() / 1000).unwrap_or(0)
}

fn request_id() -> String {
    format!("req_{:016x}", rand::random::<u64>())
}

fn wants_html(request: &Request<hyper::body::Incoming>) -> bool {
    request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// Ambiguous message framing is refused rather than guessed at (request smuggling): seen by
/// the connection's framing guard for HTTP/1, or in the headers for HTTP/2.
fn ambiguous_framing(request: &Request<hyper::body::Incoming>, conn: &Connection) -> bool {
    let headers = request.headers();
    let lengths = headers.get_all(header::CONTENT_LENGTH).iter().count();
    conn.ambiguous.load(std::sync::atomic::Ordering::SeqCst)
        || lengths > 1
        || (lengths == 1 && headers.contains_key(header::TRANSFER_ENCODING))
}

/// What is known about the request when it is refused, for the page.
struct Refusal<'a> {
    branding: Option<Arc<Branding>>,
    label: Option<&'a PreviewLabel>,
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
            acme: config
                .acme
                .clone()
                .map(|acme| Issuer::new(acme, store.clone())),
            renewals: std::sync::Mutex::default(),
            activity: Arc::new(Activity::new(store, config.activity_interval)),
            limiter: RateLimiter::new(config.rate_limit_per_sec, config.rate_limit_burst),
            client: forward::client(config.connect_timeout),
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
                let recent = r
                    .get(&due.host)
                    .is_some_and(|at| at.elapsed() < Duration::from_secs(300));
                if !recent {
                    r.insert(due.host.clone(), std::time::Instant::now());
                }
                !recent
            });
            if !start {
                continue;
            }
            let edge = self.clone();
            tokio::spawn(async move {
                let Some(acme) = &edge.acme else { return };
                match acme
                    .issue(&due.host, &due.domain, &due.tenant_id, || None)
                    .await
                {
                    Ok(key) => edge.certificates.set_host(&due.host, key),
                    Err(error) => {
                        tracing::warn!(host = %due.host, %error, "certificate renewal failed")
                    }
                }
            });
        }
    }

    /// Make sure a tenant preview host named in a TLS handshake has a certificate, issuing one
    /// by ACME if needed (and allowed). Returns quietly otherwise: the handshake then gets
    /// whatever the resolver has.
    pub(crate) async fn ensure_certificate(&self, server_name: &str) {
        let Some(acme) = &self.acme else { return };
        if self.certificates.for_name(server_name).is_some() {
            return;
        }
        let Some(host) = host::normalise(server_name) else {
            return;
        };
        let Some((first, rest)) = host::first_label(&host) else {
            return;
        };
        let Some((domain, claims)) = self.directory.domain(rest) else {
            return;
        };
        let Some(owner) = claims.into_iter().find(|c| c.verified) else {
            return;
        };
        let Some(label) = host::label(first) else {
            return;
        };
        let exists = match self.directory.route(&label.sandbox_id).await {
            Ok(Some(route)) => {
                route.tenant_id == owner.tenant_id && route.state != SandboxState::Destroyed
            }
            _ => false,
        };
        if !exists {
            return;
        }
        let fresh = || self.certificates.for_name(&host);
        match acme.issue(&host, &domain, &owner.tenant_id, fresh).await {
            Ok(key) => self.certificates.set_host(&host, key),
            Err(error) => tracing::warn!(%host, %error, "certificate issuance failed"),
        }
    }

    pub async fn handle(
        self: Arc<Self>,
        request: Request<hyper::body::Incoming>,
        conn: Connection,
    ) -> Response<Body> {
        let request_id = request_id();
        let html = wants_html(&request);
        let http1 = request.version() < http::Version::HTTP_2;
        let mut refusal = Refusal {
            branding: None,
            label: None,
        };
        let label_slot;
        if let Some(response) = self.acme_http01(&request) {
            return response;
        }
        let outcome = if ambiguous_framing(&request, &conn) {
            Err(Failure::BadRequest)
        } else {
            match self.resolve(&request) {
                Err(failure) => Err(failure),
                Ok(Resolved::Challenge(body)) => {
                    let mut response = Response::new(crate::full(Bytes::from(body)));
                    response
                        .headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                    return response;
                }
                Ok(Resolved::Preview { site, label, host }) => {
                    label_slot = label;
                    refusal.label = Some(&label_slot);
                    self.serve(request, conn, site, &label_slot, &host, &mut refusal)
                        .await
                }
            }
        };
        match outcome {
            Ok(response) => response,
            Err(failure) => {
                if failure.fault() != pages::Fault::Client {
                    tracing::debug!(%request_id, ?failure, "preview request failed");
                }
                let mut response = pages::render(
                    failure,
                    &PageContext {
                        branding: refusal.branding.as_deref(),
                        label: refusal.label,
                        wants_html: html,
                        request_id: &request_id,
                    },
                );
                if failure == Failure::BadRequest && http1 {
                    // Where one message's end is in doubt, so is the next one's start.
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                response
            }
        }
    }

    /// The answer to an ACME HTTP-01 validation request, on any host.
    fn acme_http01(&self, request: &Request<hyper::body::Incoming>) -> Option<Response<Body>> {
        let acme = self.acme.as_ref()?;
        let token = request
            .uri()
            .path()
            .strip_prefix("/.well-known/acme-challenge/")?;
        let body = acme.http_response(token)?;
        let mut response = Response::new(crate::full(Bytes::from(body)));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        Some(response)
    }

    fn resolve(&self, request: &Request<hyper::body::Incoming>) -> Result<Resolved, Failure> {
        let raw_host = request
            .uri()
            .host()
            .map(str::to_owned)
            .or_else(|| {
                request
                    .headers()
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .ok_or(Failure::UnknownHost)?;
        let host = host::normalise(&raw_host).ok_or(Failure::UnknownHost)?;
        let (first, rest) = host::first_label(&host).ok_or(Failure::UnknownHost)?;
        let site = if rest == self.config.domain.as_str() {
            Site::Platform
        } else {
            let (domain, claims) = self.directory.domain(rest).ok_or(Failure::UnknownHost)?;
            if let Some(token) = request
                .uri()
                .path()
                .strip_prefix(islet_types::domain::CHALLENGE_PATH)
            {
                // Proves the domain reaches this edge: answered for claimed, unverified domains
                // too, and only with a challenge a claimant was given.
                return claims
                    .into_iter()
                    .find(|c| c.challenge == token)
                    .map(|c| Resolved::Challenge(c.challenge))
                    .ok_or(Failure::UnknownHost);
            }
            // Only a verified claim routes (and brands) anything.
            let verified = claims
                .into_iter()
                .find(|c| c.verified)
                .ok_or(Failure::NotFound)?;
            Site::Tenant {
                domain,
                tenant_id: verified.tenant_id,
            }
        };
        let label = host::label(first).ok_or(Failure::NotFound)?;
        Ok(Resolved::Preview {
            site,
            label,
            host: raw_host,
        })
    }

    async fn serve(
        &self,
        mut request: Request<hyper::body::Incoming>,
        conn: Connection,
        site: Site,
        label: &PreviewLabel,
        public_host: &str,
        refusal: &mut Refusal<'_>,
    ) -> Result<Response<Body>, Failure> {
        if let Site::Tenant { tenant_id, .. } = &site {
            refusal.branding = self.directory.branding(tenant_id);
        }
        let route = self
            .directory
            .route(&label.sandbox_id)
            .await
            .map_err(|error| {
                tracing::warn!(%error, "preview route lookup failed");
                Failure::PortClosed
            })?
            .ok_or(Failure::NotFound)?;
        if let Site::Tenant { tenant_id, .. } = &site {
            if *tenant_id != route.tenant_id {
                return Err(Failure::NotFound);
            }
        } else {
            refusal.branding = self.directory.branding(&route.tenant_id);
        }
        if route.state == SandboxState::Destroyed {
            return Err(Failure::NotFound);
        }

        let (query_token, kept_query) = credentials::split_query(request.uri().query());
        let from_query = query_token.is_some();
        let presented = credentials::presented(request.headers(), query_token);
        let public = route.public_ports.contains(&label.port);
        let scope = if public {
            Scope::Interact
        } else {
            let claims = match &presented {
                Presented::Nothing => return Err(Failure::TokenMissing),
                Presented::Query(t) | Presented::Header(t) | Presented::Cookie(t) => {
                    self.check(t, label, &route)?
                }
            };
            if let (Presented::Query(token), true) = (&presented, from_query) {
                if matches!(*request.method(), Method::GET | Method::HEAD) {
                    return Ok(exchange(
                        token,
                        &claims,
                        request.uri().path(),
                        kept_query.as_deref(),
                        conn.tls,
                    ));
                }
            }
            claims.scope
        };
        if scope == Scope::Read
            && !matches!(
                *request.method(),
                Method::GET | Method::HEAD | Method::OPTIONS
            )
        {
            return Err(Failure::ReadOnly);
        }
        match route.state {
            SandboxState::Running => {}
            SandboxState::Creating => return Err(Failure::NotRunning { starting: true }),
            _ => return Err(Failure::NotRunning { starting: false }),
        }
        if !self.limiter.allow(&label.sandbox_id) {
            return Err(Failure::TooManyRequests);
        }
        let net_index = route
            .net_index
            .ok_or(Failure::NotRunning { starting: false })?;
        self.activity.touch(&label.sandbox_id);

        credentials::strip(request.headers_mut());
        let path_and_query = match &kept_query {
            Some(q) => format!("{}?{q}", request.uri().path()),
            None => request.uri().path().to_owned(),
        };
        let websocket = request.headers().contains_key(header::UPGRADE);
        let response = forward::forward(
            &self.client,
            request,
            (self.upstream)(net_index),
            label.port,
            &path_and_query,
            Forwarded {
                peer: conn.peer,
                tls: conn.tls,
                public_host,
                public_port: conn.local_port,
            },
            self.config.response_timeout,
        )
        .await?;
        if websocket && response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let hold = self.activity.hold(label.sandbox_id.clone());
            // The hold ends with the edge's interest: a bounded lease, renewed by new traffic.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                hold.abort();
            });
        }
        Ok(response)
    }

    /// Verify a presented token for this request's target. Every way of failing is the same
    /// refusal.
    fn check(
        &self,
        token: &str,
        label: &PreviewLabel,
        route: &EdgeRoute,
    ) -> Result<Claims, Failure> {
        let claims = self
            .signer
            .verify(token, now_secs())
            .map_err(|_| Failure::TokenRejected)?;
        let fits = claims.sandbox_id == label.sandbox_id
            && claims.port.is_none_or(|p| p == label.port)
            && claims.tenant_id == route.tenant_id
            && !self.directory.is_revoked(&claims.id);
        if fits {
            Ok(claims)
        } else {
            Err(Failure::TokenRejected)
        }
    }
}

enum Resolved {
    Challenge(String),
    Preview {
        site: Site,
        label: PreviewLabel,
        host: String,
    },
}

/// The answer to a URL carrying a valid token: the same URL without it, and a cookie.
fn exchange(
    token: &str,
    claims: &Claims,
    path: &str,
    kept_query: Option<&str>,
    tls: bool,
) -> Response<Body> {
    let location = match kept_query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let max_age = claims.expires_at.saturating_sub(now_secs());
    let mut response = Response::new(crate::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&credentials::set_cookie(token, max_age, tls)) {
        headers.insert(header::SET_COOKIE, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

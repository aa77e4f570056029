//! One preview request, in order: ACME probe → framing → plain-to-TLS redirect → host → site
//! → route → token → scope → running → rate → forward. Every refusal is a [`Failure`] with
//! the page of whichever tenant is known by then.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use islet_store::EdgeRoute;
use islet_tokens::Claims;
use islet_types::preview::{PreviewLabel, Scope};
use islet_types::{SandboxState, TenantId};

use crate::credentials::{self, Presented};
use crate::edge::{serves, Connection, Edge};
use crate::forward::{self, Forwarded};
use crate::host;
use crate::pages::{self, Failure, PageContext};
use crate::Body;

type Incoming = Request<hyper::body::Incoming>;

fn now_secs() -> u64 {
    u64::try_from(islet_types::time::now_millis() / 1000).unwrap_or(0)
}

fn request_id() -> String {
    format!("req_{:016x}", rand::random::<u64>())
}

fn wants_html(request: &Incoming) -> bool {
    request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// Ambiguous message framing is refused rather than guessed at (request smuggling): seen by
/// the connection's framing guard for HTTP/1, or in the headers for HTTP/2.
fn ambiguous_framing(request: &Incoming, conn: &Connection) -> bool {
    let headers = request.headers();
    let lengths = headers.get_all(header::CONTENT_LENGTH).iter().count();
    conn.ambiguous.load(Ordering::SeqCst)
        || lengths > 1
        || (lengths == 1 && headers.contains_key(header::TRANSFER_ENCODING))
}

/// The authority the client addressed (with its port), from the URI (HTTP/2) or `Host`.
fn authority(request: &Incoming) -> Option<String> {
    request.uri().authority().map(|a| a.as_str().to_owned()).or_else(|| {
        request.headers().get(header::HOST).and_then(|v| v.to_str().ok()).map(str::to_owned)
    })
}

/// Which domain the request came in on.
enum Site {
    Platform,
    /// A tenant's verified preview domain.
    Tenant(TenantId),
}

/// Who a refusal page is for, once known. Only the tenant is noted on the way: its branding is
/// looked up when a page is rendered, never for a request that succeeds.
#[derive(Default)]
struct Known {
    tenant: Option<TenantId>,
    label: Option<PreviewLabel>,
}

impl Edge {
    pub(crate) async fn handle(
        self: Arc<Self>,
        request: Incoming,
        conn: Connection,
    ) -> Response<Body> {
        if let Some(response) = self.acme_http01(&request) {
            return response;
        }
        let html = wants_html(&request);
        let http1 = request.version() < http::Version::HTTP_2;
        let mut known = Known::default();
        let outcome = if ambiguous_framing(&request, &conn) {
            Err(Failure::BadRequest)
        } else if let Some(response) = self.https_redirect(&request, &conn) {
            Ok(response)
        } else {
            self.serve(request, &conn, &mut known).await
        };
        let failure = match outcome {
            Ok(response) => return response,
            Err(failure) => failure,
        };
        let request_id = request_id();
        let branding = known.tenant.and_then(|t| self.directory.branding(&t));
        if failure.fault() != pages::Fault::Client {
            tracing::debug!(%request_id, ?failure, "preview request failed");
        }
        let mut response = pages::render(
            failure,
            &PageContext {
                branding: branding.as_deref(),
                label: known.label.as_ref(),
                wants_html: html,
                request_id: &request_id,
            },
        );
        if failure == Failure::BadRequest && http1 {
            // Where one message's end is in doubt, so is the next one's start.
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    /// The answer to an ACME HTTP-01 validation request, on any host.
    fn acme_http01(&self, request: &Incoming) -> Option<Response<Body>> {
        let acme = self.acme.as_ref()?;
        let token = request.uri().path().strip_prefix("/.well-known/acme-challenge/")?;
        let body = acme.http_response(token)?;
        let mut response = Response::new(crate::full(Bytes::from(body)));
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        Some(response)
    }

    /// Behind TLS, plain-HTTP requests go to https (before any token or cookie is looked at).
    fn https_redirect(&self, request: &Incoming, conn: &Connection) -> Option<Response<Body>> {
        let port = self.config.https_redirect_port.filter(|_| !conn.tls)?;
        let host = host::normalise(&authority(request)?)?;
        let authority = if port == 443 { host } else { format!("{host}:{port}") };
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        let mut response = Response::new(crate::empty());
        *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
        let location = HeaderValue::from_str(&format!("https://{authority}{path}")).ok()?;
        response.headers_mut().insert(header::LOCATION, location);
        Some(response)
    }

    /// Host → site and label.
    fn site(&self, host: &str) -> Result<(Site, PreviewLabel), Failure> {
        let (first, rest) = host.split_once('.').ok_or(Failure::UnknownHost)?;
        let site = if rest == self.config.domain.as_str() {
            Site::Platform
        } else {
            let (_, tenant) = self.directory.domain(rest).ok_or(Failure::UnknownHost)?;
            Site::Tenant(tenant)
        };
        let label = first.parse().map_err(|()| Failure::NotFound)?;
        Ok((site, label))
    }

    async fn serve(
        &self,
        mut request: Incoming,
        conn: &Connection,
        known: &mut Known,
    ) -> Result<Response<Body>, Failure> {
        let public_authority = authority(&request).ok_or(Failure::UnknownHost)?;
        let host = host::normalise(&public_authority).ok_or(Failure::UnknownHost)?;
        self.directory.catch_up().await;
        let (site, label) = self.site(&host)?;
        known.label = Some(label.clone());
        if let Site::Tenant(tenant) = &site {
            known.tenant = Some(tenant.clone());
        }
        let route = self
            .directory
            .route(&label.sandbox_id)
            .await
            .map_err(|error| {
                tracing::warn!(%error, "preview route lookup failed");
                Failure::Unavailable
            })?
            .ok_or(Failure::NotFound)?;
        match &site {
            Site::Tenant(tenant) if *tenant != route.tenant_id => return Err(Failure::NotFound),
            Site::Tenant(_) => {}
            Site::Platform => known.tenant = Some(route.tenant_id.clone()),
        }
        if !serves(route.state) {
            return Err(Failure::NotFound);
        }

        let (query_token, kept_query) = credentials::split_query(request.uri().query());
        let upgrade = forward::is_upgrade(request.headers());
        // A token in the URL of a page load is swapped for a cookie and removed from the URL
        // the page (and its scripts, and its Referer headers) will see.
        let navigation = matches!(*request.method(), Method::GET | Method::HEAD) && !upgrade;
        let public = route.public_ports.contains(&label.port);
        let scope = if public {
            if let (Some(token), true) = (&query_token, navigation) {
                let claims = self.check(token, &label, &route).ok();
                return Ok(exchange(
                    conn.tls,
                    &request,
                    kept_query.as_deref(),
                    token,
                    claims.as_ref(),
                ));
            }
            Scope::Interact
        } else {
            let claims = match credentials::presented(request.headers(), query_token) {
                Presented::Nothing => return Err(Failure::TokenMissing),
                Presented::Query(token) => {
                    let claims = self.check(&token, &label, &route)?;
                    if navigation {
                        return Ok(exchange(
                            conn.tls,
                            &request,
                            kept_query.as_deref(),
                            &token,
                            Some(&claims),
                        ));
                    }
                    claims
                }
                Presented::Header(token) => self.check(&token, &label, &route)?,
                Presented::Cookies(tokens) => {
                    let mut verdict = Err(Failure::TokenRejected);
                    for token in &tokens {
                        verdict = self.check(token, &label, &route);
                        if verdict.is_ok() || verdict == Err(Failure::Unavailable) {
                            break;
                        }
                    }
                    verdict?
                }
            };
            claims.scope
        };
        // Read-only: no method that changes things, and no WebSocket (a channel for input).
        let safe_method = matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        if scope == Scope::Read && (!safe_method || upgrade) {
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
        let net_index = route.net_index.ok_or(Failure::NotRunning { starting: false })?;
        self.activity.touch(&label.sandbox_id);

        credentials::strip(request.headers_mut());
        let path_and_query = match &kept_query {
            Some(q) => format!("{}?{q}", request.uri().path()),
            None => request.uri().path().to_owned(),
        };
        let activity = self.activity.clone();
        let sandbox = label.sandbox_id.clone();
        let pinned = (request.version() < http::Version::HTTP_2).then_some(&*conn.pinned);
        forward::forward(
            forward::Upstreams {
                pool: &self.pool,
                pinned,
                connect_timeout: self.config.connect_timeout,
            },
            request,
            (self.upstream)(net_index),
            label.port,
            &path_and_query,
            Forwarded {
                peer: conn.peer,
                tls: conn.tls,
                public_host: &public_authority,
                public_port: conn.local_port,
            },
            self.config.response_timeout,
            move || activity.hold(sandbox),
        )
        .await
    }

    /// Verify a presented token for this request's target. Every way of failing is the same
    /// refusal, except a revocation list too stale to trust (the edge's fault, not the token's).
    fn check(
        &self,
        token: &str,
        label: &PreviewLabel,
        route: &EdgeRoute,
    ) -> Result<Claims, Failure> {
        let claims = self.signer.verify(token, now_secs()).map_err(|_| Failure::TokenRejected)?;
        let fits = claims.sandbox_id == label.sandbox_id
            && claims.port.is_none_or(|p| p == label.port)
            && claims.tenant_id == route.tenant_id;
        if !fits {
            return Err(Failure::TokenRejected);
        }
        match self.directory.is_revoked(&claims.id, self.config.revocation_max_age) {
            Ok(false) => Ok(claims),
            Ok(true) => Err(Failure::TokenRejected),
            Err(_stale) => Err(Failure::Unavailable),
        }
    }
}

/// The answer to a page load whose URL carries a token: the same URL without it, with the
/// token as a cookie when it is valid. The `Location` is a path on this host: leading slashes
/// and backslashes are folded into one, so it can never be read as another host
/// (`//evil.example`).
fn exchange(
    tls: bool,
    request: &Incoming,
    kept_query: Option<&str>,
    token: &str,
    claims: Option<&Claims>,
) -> Response<Body> {
    let path = request.uri().path().trim_start_matches(['/', '\\']);
    let location = match kept_query {
        Some(q) => format!("/{path}?{q}"),
        None => format!("/{path}"),
    };
    let mut response = Response::new(crate::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, v);
    }
    if let Some(claims) = claims {
        let max_age = claims.expires_at.saturating_sub(now_secs());
        if let Ok(v) = HeaderValue::from_str(&credentials::set_cookie(token, max_age, tls)) {
            headers.insert(header::SET_COOKIE, v);
        }
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

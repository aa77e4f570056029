//! Passing a request to the app inside the sandbox and its answer back: hop-by-hop headers
//! dropped, `X-Forwarded-*` set by us alone, bodies streamed, WebSocket upgrades spliced.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;

use crate::activity::Hold;
use crate::pages::Failure;
use crate::upstream::{Pinned, Pool, UpstreamError};
use crate::Body;

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Headers about the client or the original request that proxies set and apps trust: a
/// client may not forge them (every `x-forwarded-*` goes too). The edge sets its own.
const FORWARDING: [&str; 6] =
    ["forwarded", "x-real-ip", "x-client-ip", "true-client-ip", "x-original-url", "x-rewrite-url"];

fn forged_forwarding(name: &HeaderName) -> bool {
    name.as_str().starts_with("x-forwarded-") || FORWARDING.contains(&name.as_str())
}

pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
        && headers.contains_key(header::UPGRADE)
}

/// Remove hop-by-hop headers, including those the `Connection` header names. An upgrade keeps
/// its `Connection: upgrade` and `Upgrade` pair.
fn drop_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| !(keep_upgrade && n == header::UPGRADE))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Where upstream requests go: the visitor connection's own upstream connection (HTTP/1
/// visitors) or the shared pool.
pub(crate) struct Upstreams<'a> {
    pub pool: &'a Pool,
    pub pinned: Option<&'a Pinned>,
    pub connect_timeout: std::time::Duration,
}

/// Facts about the visitor's connection that the app may learn.
pub(crate) struct Forwarded<'a> {
    pub peer: SocketAddr,
    pub tls: bool,
    pub public_host: &'a str,
    pub public_port: u16,
}

/// Send `request` (already stripped of credentials, `path_and_query` without tokens) to
/// `ip:port` and stream the answer back. `hold` keeps the sandbox active for as long as a
/// WebSocket or an event stream lasts.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn forward(
    upstreams: Upstreams<'_>,
    mut request: Request<hyper::body::Incoming>,
    ip: IpAddr,
    port: u16,
    path_and_query: &str,
    facts: Forwarded<'_>,
    response_timeout: std::time::Duration,
    hold: impl FnOnce() -> Hold,
) -> Result<Response<Body>, Failure> {
    let upgrade = is_upgrade(request.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    let headers = &mut parts.headers;
    drop_hop_by_hop(headers, upgrade);
    let forged: Vec<HeaderName> =
        headers.keys().filter(|n| forged_forwarding(n)).cloned().collect();
    for name in forged {
        headers.remove(name);
    }
    let insert = |headers: &mut HeaderMap, name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    insert(headers, "x-forwarded-for", facts.peer.ip().to_string());
    insert(headers, "x-forwarded-proto", if facts.tls { "https" } else { "http" }.into());
    insert(headers, "x-forwarded-host", facts.public_host.to_owned());
    insert(headers, "x-forwarded-port", facts.public_port.to_string());
    // Dev servers (Vite and others) only answer hosts they know; the public name travels in
    // X-Forwarded-Host.
    insert(headers, "host", format!("localhost:{port}"));

    let address = SocketAddr::new(ip, port);
    parts.version = http::Version::HTTP_11;
    let exchange = async {
        match upstreams.pinned {
            Some(pinned) => {
                parts.uri = path_and_query.parse().map_err(|_| Failure::BadRequest)?;
                let upstream = Request::from_parts(parts, body.boxed());
                pinned.send(address, upstream, upstreams.connect_timeout).await.map_err(|error| {
                    match error {
                        UpstreamError::Connect => Failure::PortClosed,
                        UpstreamError::Exchange(error) => {
                            tracing::debug!(%error, "upstream exchange failed");
                            Failure::UpstreamFailed
                        }
                    }
                })
            }
            None => {
                parts.uri = format!("http://{address}{path_and_query}")
                    .parse()
                    .map_err(|_| Failure::BadRequest)?;
                let upstream = Request::from_parts(parts, body.boxed());
                upstreams.pool.request(upstream).await.map_err(|error| {
                    tracing::debug!(%error, "upstream request failed");
                    if error.is_connect() {
                        Failure::PortClosed
                    } else {
                        Failure::UpstreamFailed
                    }
                })
            }
        }
    };
    let mut response =
        tokio::time::timeout(response_timeout, exchange).await.map_err(|_| Failure::Timeout)??;

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(Failure::PortClosed);
        };
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        let hold = hold();
        tokio::spawn(async move {
            let _hold = hold;
            let (Ok(client), Ok(upstream)) = (client_upgrade.await, upstream_upgrade.await) else {
                return;
            };
            let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
        let (mut parts, _) = response.into_parts();
        drop_edge_cookie(&mut parts.headers);
        return Ok(Response::from_parts(parts, crate::empty()));
    }

    let (mut parts, body) = response.into_parts();
    drop_hop_by_hop(&mut parts.headers, false);
    drop_edge_cookie(&mut parts.headers);
    let streaming = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if streaming {
        let held = HeldBody { inner: body, _hold: hold() };
        return Ok(Response::from_parts(parts, held.boxed()));
    }
    Ok(Response::from_parts(parts, body.boxed()))
}

/// A streamed body that keeps its sandbox active until it ends.
struct HeldBody {
    inner: hyper::body::Incoming,
    _hold: Hold,
}

impl hyper::body::Body for HeldBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The app may not set (or clear) the edge's own cookie.
fn drop_edge_cookie(headers: &mut HeaderMap) {
    if !headers.contains_key(header::SET_COOKIE) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| !v.to_str().is_ok_and(crate::credentials::sets_edge_cookie))
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for value in kept {
        headers.append(header::SET_COOKIE, value);
    }
}

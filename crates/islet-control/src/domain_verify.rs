//! Proving a tenant controls its preview domain: the edge answers
//! `/.well-known/preview-domain-verification/<challenge>` for a claimed domain, so fetching that
//! through the domain (`preview-verify.<domain>`) shows its wildcard DNS reaches this edge.
//!
//! Where the probe connects is pluggable ([`VerifyTarget`]): the domain's own DNS in production,
//! a fixed address in tests or behind a load balancer.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use islet_types::domain::{DomainName, CHALLENGE_PATH};

/// Label the probe uses under the tenant's domain.
pub const PROBE_LABEL: &str = "preview-verify";
const MAX_BODY: usize = 1024;

/// Where verification probes connect.
#[derive(Debug, Clone)]
pub enum VerifyTarget {
    /// Resolve `preview-verify.<domain>` and connect to it on this port (80 in production).
    Dns { port: u16 },
    /// Connect here whatever the domain resolves to.
    Fixed(SocketAddr),
}

/// Why verification did not succeed, in words for the tenant.
pub type Failure = String;

pub async fn verify(
    target: &VerifyTarget,
    domain: &DomainName,
    challenge: &str,
) -> Result<(), Failure> {
    let host = format!("{PROBE_LABEL}.{domain}");
    let addresses: Vec<SocketAddr> = match target {
        VerifyTarget::Fixed(addr) => vec![*addr],
        VerifyTarget::Dns { port } => tokio::net::lookup_host((host.as_str(), *port))
            .await
            .map_err(|_| format!("{host} does not resolve: create the DNS records shown"))?
            .collect(),
    };
    let address = addresses
        .first()
        .ok_or_else(|| format!("{host} has no address"))?;
    let probe = async {
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|_| format!("could not connect to {host}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| format!("{host} did not speak HTTP"))?;
        tokio::spawn(connection);
        let request = http::Request::get(format!("{CHALLENGE_PATH}{challenge}"))
            .header(http::header::HOST, &host)
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|_| format!("{host} did not answer"))?;
        if !response.status().is_success() {
            return Err(format!(
                "{host} answered {} instead of the challenge",
                response.status()
            ));
        }
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|_| format!("{host} answered with something else"))?
            .to_bytes();
        if body.as_ref() == challenge.as_bytes() {
            Ok(())
        } else {
            Err(format!(
                "{host} answered with something else than the challenge"
            ))
        }
    };
    tokio::time::timeout(Duration::from_secs(5), probe)
        .await
        .map_err(|_| format!("{host} timed out"))?
}

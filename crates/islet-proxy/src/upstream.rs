//! Connections to apps inside sandboxes.
//!
//! Requests on an HTTP/1 visitor connection are sequential, so each such connection keeps one
//! upstream connection of its own ([`Pinned`]): the common case takes no shared lock and needs
//! no pool bookkeeping. HTTP/2 visitors (concurrent streams on one connection) use the shared
//! pool. A pinned connection the app closed while idle is replaced, and the request resent,
//! as long as none of it was sent.

use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use crate::Body;

pub(crate) type Pool =
    hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Body>;

pub(crate) fn pool(connect_timeout: Duration) -> Pool {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build(connector)
}

/// Why an upstream exchange failed.
#[derive(Debug)]
pub(crate) enum UpstreamError {
    /// Nothing accepted the connection.
    Connect,
    /// The exchange broke off.
    Exchange(hyper::Error),
}

/// One visitor connection's own upstream connection.
#[derive(Default)]
pub(crate) struct Pinned(tokio::sync::Mutex<Option<(SocketAddr, http1::SendRequest<Body>)>>);

impl std::fmt::Debug for Pinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pinned(..)")
    }
}

async fn connect(
    address: SocketAddr,
    timeout: Duration,
) -> Result<http1::SendRequest<Body>, UpstreamError> {
    let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address))
        .await
        .map_err(|_| UpstreamError::Connect)?
        .map_err(|_| UpstreamError::Connect)?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) =
        http1::handshake(TokioIo::new(stream)).await.map_err(UpstreamError::Exchange)?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%error, "upstream connection ended");
        }
    });
    Ok(sender)
}

impl Pinned {
    /// Send `request` (origin-form URI, `Host` set) to `address` on this connection's own
    /// upstream connection.
    pub(crate) async fn send(
        &self,
        address: SocketAddr,
        mut request: Request<Body>,
        connect_timeout: Duration,
    ) -> Result<Response<hyper::body::Incoming>, UpstreamError> {
        let mut slot = self.0.lock().await;
        for attempt in 0..2 {
            let reusable = match slot.as_mut() {
                Some((a, sender)) if *a == address && !sender.is_closed() => {
                    sender.ready().await.is_ok()
                }
                _ => false,
            };
            if !reusable {
                *slot = Some((address, connect(address, connect_timeout).await?));
            }
            let Some((_, sender)) = slot.as_mut() else {
                return Err(UpstreamError::Connect);
            };
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(response),
                Err(mut failed) => match failed.take_message() {
                    // Nothing was sent: a fresh connection may carry it.
                    Some(unsent) if attempt == 0 => {
                        *slot = None;
                        request = unsent;
                    }
                    _ => {
                        *slot = None;
                        return Err(UpstreamError::Exchange(failed.into_error()));
                    }
                },
            }
        }
        Err(UpstreamError::Connect)
    }
}

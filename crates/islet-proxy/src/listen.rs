//! Accepting connections: plain HTTP (HTTP/1.1 and h2c) and TLS (ALPN h2 or HTTP/1.1) with the
//! certificate picked by SNI.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::edge::{Connection, Edge};
use crate::framing::Guarded;

/// Serve previews on `http` and/or `https` until `shutdown` fires; refreshes the edge's
/// in-memory settings meanwhile.
pub async fn run(
    edge: Arc<Edge>,
    http: Option<TcpListener>,
    https: Option<TcpListener>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let refresher = {
        let (edge, shutdown) = (edge.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(edge.config.refresh_interval);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => edge.refresh().await,
                }
            }
        })
    };
    let tls = match https {
        Some(listener) => {
            let config =
                islet_tls::server_config(edge.certificates()).map_err(std::io::Error::other)?;
            Some(tokio::spawn(accept(
                edge.clone(),
                listener,
                Some(Arc::new(config)),
                shutdown.clone(),
            )))
        }
        None => None,
    };
    if let Some(listener) = http {
        accept(edge, listener, None, shutdown.clone()).await;
    } else {
        shutdown.cancelled().await;
    }
    if let Some(task) = tls {
        let _ = task.await;
    }
    let _ = refresher.await;
    Ok(())
}

async fn accept(
    edge: Arc<Edge>,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) {
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let slots = Arc::new(tokio::sync::Semaphore::new(edge.config.max_connections));
    loop {
        // At the cap, stop accepting: further clients wait in the kernel's backlog.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "preview accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let edge = edge.clone();
        let edge_for_tls = edge.clone();
        let tls = tls.clone();
        let ambiguous = Arc::new(AtomicBool::new(false));
        let conn = Connection {
            peer,
            tls: tls.is_some(),
            local_port,
            ambiguous: ambiguous.clone(),
            pinned: Arc::default(),
        };
        let header_timeout = edge.config.header_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |request| {
                let (edge, conn) = (edge.clone(), conn.clone());
                async move { Ok::<_, std::convert::Infallible>(edge.handle(request, conn).await) }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(crate::framing::MAX_HEAD);
            builder.http2().timer(TokioTimer::new());
            let result = match tls {
                Some(config) => {
                    match handshake(&edge_for_tls, stream, config, header_timeout).await {
                        Some(stream) => {
                            builder
                                .serve_connection_with_upgrades(
                                    TokioIo::new(Guarded::new(stream, ambiguous)),
                                    service,
                                )
                                .await
                        }
                        None => return,
                    }
                }
                None => {
                    builder
                        .serve_connection_with_upgrades(
                            TokioIo::new(Guarded::new(stream, ambiguous)),
                            service,
                        )
                        .await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, "preview connection ended with an error");
            }
        });
    }
}

/// The TLS handshake, with a look at the ClientHello first: a CA's TLS-ALPN-01 probe gets its
/// challenge certificate (and nothing else), and a tenant preview host without a certificate
/// gets one issued before the handshake goes on.
async fn handshake(
    edge: &Edge,
    stream: tokio::net::TcpStream,
    config: Arc<rustls::ServerConfig>,
    timeout: std::time::Duration,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let hello = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream);
    let start = tokio::time::timeout(timeout, hello)
        .await
        .ok()?
        .map_err(|error| tracing::debug!(%error, "TLS ClientHello unreadable"))
        .ok()?;
    let hello = start.client_hello();
    let name = hello.server_name().map(str::to_owned);
    let acme_probe = hello
        .alpn()
        .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
    if acme_probe {
        let key = edge.acme.as_ref()?.alpn_certificate(name.as_deref()?)?;
        let config = islet_tls::single_certificate_config(key, ACME_TLS_ALPN).ok()?;
        // The CA only completes the handshake; the connection then closes.
        let _ = tokio::time::timeout(timeout, start.into_stream(Arc::new(config))).await;
        return None;
    }
    if let Some(name) = &name {
        edge.ensure_certificate(name).await;
    }
    tokio::time::timeout(timeout, start.into_stream(config))
        .await
        .ok()?
        .map_err(|error| tracing::debug!(%error, "TLS handshake failed"))
        .ok()
}

/// The ALPN protocol of ACME's TLS-ALPN-01 challenge (RFC 8737).
const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

//! Accepting connections: plain HTTP (HTTP/1.1 and h2c) and TLS (ALPN h2 or HTTP/1.1) with the
//! certificate picked by SNI.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
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
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
            Some(tokio::spawn(accept(
                edge.clone(),
                listener,
                Some(acceptor),
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
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: CancellationToken,
) {
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
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
        let tls = tls.clone();
        let ambiguous = Arc::new(AtomicBool::new(false));
        let conn = Connection {
            peer,
            tls: tls.is_some(),
            local_port,
            ambiguous: ambiguous.clone(),
        };
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let (edge, conn) = (edge.clone(), conn.clone());
                async move { Ok::<_, std::convert::Infallible>(edge.handle(request, conn).await) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let result = match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => {
                        builder
                            .serve_connection_with_upgrades(
                                TokioIo::new(Guarded::new(stream, ambiguous)),
                                service,
                            )
                            .await
                    }
                    Err(error) => {
                        tracing::debug!(%error, "TLS handshake failed");
                        return;
                    }
                },
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

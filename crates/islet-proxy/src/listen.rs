//! Accepting connections: plain HTTP (HTTP/1.1 and h2c) and TLS (ALPN h2 or HTTP/1.1) with the
//! certificate picked by SNI.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    let workers = Workers::start(&edge)?;
    let tls = match https {
        Some(listener) => {
            let config =
                islet_tls::server_config(edge.certificates()).map_err(std::io::Error::other)?;
            Some(tokio::spawn(accept(
                edge.clone(),
                listener,
                Some(Arc::new(config)),
                workers.clone(),
                shutdown.clone(),
            )))
        }
        None => None,
    };
    if let Some(listener) = http {
        accept(edge, listener, None, workers, shutdown.clone()).await;
    } else {
        shutdown.cancelled().await;
    }
    if let Some(task) = tls {
        let _ = task.await;
    }
    let _ = refresher.await;
    Ok(())
}

/// An accepted connection on its way to a worker.
struct Accepted {
    stream: std::net::TcpStream,
    peer: std::net::SocketAddr,
    local_port: u16,
    tls: Option<Arc<rustls::ServerConfig>>,
    slot: tokio::sync::OwnedSemaphorePermit,
}

/// Connections are served by one single-threaded runtime per core, as nginx's workers are: a
/// connection, its upstream connection and all their tasks stay on one thread, with no
/// cross-thread wake-ups on the hot path. Acceptors hand connections out in turn.
#[derive(Clone)]
struct Workers(Arc<Vec<tokio::sync::mpsc::UnboundedSender<Accepted>>>, Arc<AtomicUsize>);

impl Workers {
    fn start(edge: &Arc<Edge>) -> std::io::Result<Self> {
        let count = std::thread::available_parallelism().map_or(1, usize::from);
        let mut senders = Vec::with_capacity(count);
        for n in 0..count {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Accepted>();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let edge = edge.clone();
            std::thread::Builder::new().name(format!("preview-{n}")).spawn(move || {
                runtime.block_on(async move {
                    while let Some(accepted) = rx.recv().await {
                        tokio::spawn(serve_connection(edge.clone(), accepted));
                    }
                })
            })?;
            senders.push(tx);
        }
        Ok(Self(Arc::new(senders), Arc::default()))
    }

    fn dispatch(&self, accepted: Accepted) {
        let n = self.1.fetch_add(1, Ordering::Relaxed) % self.0.len();
        let _ = self.0[n].send(accepted);
    }
}

async fn accept(
    edge: Arc<Edge>,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    workers: Workers,
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
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        workers.dispatch(Accepted { stream, peer, local_port, tls: tls.clone(), slot });
    }
}

/// One visitor connection, on a worker's runtime.
async fn serve_connection(edge: Arc<Edge>, accepted: Accepted) {
    let Accepted { stream, peer, local_port, tls, slot } = accepted;
    let _slot = slot;
    let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
        return;
    };
    let ambiguous = Arc::new(AtomicBool::new(false));
    let conn = Connection {
        peer,
        tls: tls.is_some(),
        local_port,
        ambiguous: ambiguous.clone(),
        pinned: Arc::default(),
    };
    let header_timeout = edge.config.header_timeout;
    let edge_for_tls = edge.clone();
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
        Some(config) => match handshake(&edge_for_tls, stream, config, header_timeout).await {
            Some(stream) => {
                builder
                    .serve_connection_with_upgrades(
                        TokioIo::new(Guarded::new(stream, ambiguous)),
                        service,
                    )
                    .await
            }
            None => return,
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
    let acme_probe =
        hello.alpn().is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
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

//! Islet's control plane: the MIOSA-compatible HTTP API under `/api/v1`, the sandbox lifecycle
//! (admission, idempotency, start, stop, destroy), timeouts and reconciliation after restarts,
//! and the webhook dispatcher's place in the process.
//!
//! Handlers translate HTTP into calls of [`lifecycle`]; the lifecycle talks to the store and the
//! node runtime. Requests for a sandbox's processes, files and terminals are forwarded to the
//! agent inside it ([`api::resources::forward`]).

pub mod api;
mod bulk_worker;
mod config;
pub mod domain_verify;
mod error;
pub mod lifecycle;
mod metering;
mod metrics;
pub mod origins;
mod pool;
mod preview_urls;
mod reaper;
mod reconcile;
pub mod request_id;
mod serve_api;
mod state;
mod webhook_links;

pub use config::Config;
pub use error::{ApiError, ErrorBody, ErrorDetails, ErrorObject};
pub use state::AppState;

use tokio_util::sync::CancellationToken;

/// Serve the API on `listener` until `shutdown` fires. Starts the background reaper (timeouts)
/// and runs reconciliation first.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    reconcile::reconcile(&state).await;
    // Event streams watch the state's token; it follows this one.
    let streams_end = {
        let (outer, inner) = (shutdown.clone(), state.shutdown.clone());
        tokio::spawn(async move {
            outer.cancelled().await;
            inner.cancel();
        })
    };
    let reaper = tokio::spawn(reaper::run(state.clone(), shutdown.clone()));
    let pool = tokio::spawn(pool::run(state.clone(), shutdown.clone()));
    let meter = tokio::spawn(metering::run(state.clone(), shutdown.clone()));
    let bulk = tokio::spawn(bulk_worker::run(state.clone(), shutdown.clone()));
    let dispatcher = islet_webhooks::Dispatcher::new(
        state.store.clone(),
        state.config.webhooks.clone(),
        std::sync::Arc::new(webhook_links::ControlLinks(state.clone())),
        state.webhooks.clone(),
    )
    .map_err(std::io::Error::other)?;
    let dispatcher = tokio::spawn(dispatcher.run(shutdown.clone()));
    let (header_timeout, max_connections) =
        (state.config.api_header_timeout, state.config.api_max_connections);
    let app = api::app(state);
    let served =
        serve_api::serve(listener, app, header_timeout, max_connections, shutdown.clone()).await;
    shutdown.cancel();
    let _ = reaper.await;
    let _ = pool.await;
    let _ = meter.await;
    let _ = bulk.await;
    let _ = dispatcher.await;
    let _ = streams_end.await;
    served
}

//! The HTTP surface: routes, authentication, request IDs, and the translation between HTTP and
//! lifecycle commands.

mod access;
mod auth;
mod body;
pub mod cors;
mod create_body;
mod event_stream;
pub mod forward;
mod keys;
mod policy;
mod preview_tokens;
mod previews;
mod readiness;
pub mod request_id;
pub mod routes;
mod sandboxes;
mod settings;
mod tenant;
mod terminal;
mod usage;
pub mod view;
mod webhooks;

use axum::Router;

use crate::state::AppState;

pub use auth::Caller;
pub use create_body::MAX_TIMEOUT_SEC;

/// The whole API: `/api/v1/...`, every route from [`routes`].
pub fn app(state: AppState) -> Router {
    let api = routes::router()
        // Every route: authenticated, scope-checked, end-user-bound credentials kept to
        // their user's sandboxes. The fallback's 404 needs no credential.
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), access::layer))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), cors::layer));
    Router::new()
        .nest("/api/v1", api)
        .fallback(not_found)
        .layer(axum::middleware::from_fn(request_id::layer))
        .with_state(state)
}

async fn not_found() -> crate::ApiError {
    crate::ApiError::NotFound("route")
}

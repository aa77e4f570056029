//! The HTTP surface, in layers a request passes through in order:
//! - `middleware/`: request IDs, CORS, then `access` (authentication, the route's scope,
//!   end-user binding, rate limits);
//! - `routes.rs`: every route declared once, from which the router and the access table come;
//! - `extract/`: the caller, bodies and typed path parameters, each refusal already the API's;
//! - `resources/`: one file of handlers per resource; they translate HTTP into store and
//!   lifecycle calls and render the answers.

pub mod extract;
pub mod middleware;
pub mod resources;
pub mod routes;
mod wire;

use axum::Router;

use crate::state::AppState;

pub use extract::Caller;
pub use resources::create_body::MAX_TIMEOUT_SEC;
pub(crate) use resources::sandboxes::create_answer;

/// The whole API: `/api/v1/...`, every route from [`routes`].
pub fn app(state: AppState) -> Router {
    let api = routes::router()
        // A method a path does not declare: the envelope, not the framework's empty 405.
        .method_not_allowed_fallback(method_not_allowed)
        // Every route: authenticated, scope-checked, end-user-bound credentials kept to
        // their user's sandboxes. The fallback's 404 needs no credential.
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), middleware::access::layer))
        .layer(axum::extract::DefaultBodyLimit::max(extract::BODY_LIMIT))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::cors::layer));
    Router::new()
        .nest("/api/v1", api)
        .fallback(not_found)
        .layer(axum::middleware::from_fn(middleware::request_id::layer))
        .with_state(state)
}

async fn not_found() -> crate::ApiError {
    crate::ApiError::NotFound("route")
}

async fn method_not_allowed() -> crate::ApiError {
    crate::ApiError::MethodNotAllowed
}

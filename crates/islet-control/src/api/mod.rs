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
mod sandboxes;
mod settings;
mod tenant;
mod terminal;
mod usage;
pub mod view;
mod webhooks;

use axum::routing::{any, delete, get, post, put};
use axum::Router;

use crate::state::AppState;

pub use auth::Caller;
pub use create_body::MAX_TIMEOUT_SEC;

/// The whole API: `/api/v1/...`.
pub fn app(state: AppState) -> Router {
    let sandbox_routes = Router::new()
        .route("/", post(sandboxes::create).get(sandboxes::list))
        .route("/by-name/{name}", get(sandboxes::get_by_name))
        .route("/{id}", get(sandboxes::get).patch(sandboxes::patch).delete(sandboxes::delete))
        .route("/{id}/stop", post(sandboxes::stop))
        .route("/{id}/pause", post(sandboxes::pause))
        .route("/{id}/resume", post(sandboxes::resume))
        .route("/{id}/extend", post(sandboxes::extend))
        .route("/{id}/tags", axum::routing::patch(sandboxes::set_tags))
        .route("/{id}/readiness", get(readiness::readiness))
        .route("/{id}/usage", get(usage::sandbox_usage))
        .route("/{id}/readiness/stream", get(readiness::stream))
        .route("/{id}/terminal/stream", get(terminal::stream))
        .route("/{id}/exec", any(forward::forward))
        .route("/{id}/exec/{*rest}", any(forward::forward))
        .route("/{id}/fs/{*rest}", any(forward::forward))
        .route("/{id}/files", any(forward::forward))
        .route("/{id}/files/{*rest}", any(forward::forward))
        .route("/{id}/processes", any(forward::forward))
        .route("/{id}/processes/{*rest}", any(forward::forward))
        .route("/{id}/terminal", any(forward::forward))
        .route("/{id}/terminal/{*rest}", any(forward::forward))
        .route("/{id}/expose", post(previews::expose))
        .route("/{id}/previews", get(previews::list).post(previews::create))
        .route("/{id}/previews/{pid}", get(previews::get).delete(previews::delete))
        .route("/{id}/previews/{pid}/share", post(previews::share).delete(previews::revoke_share))
        .route("/{id}/preview-token", post(preview_tokens::create))
        .route("/{id}/preview-tokens", get(preview_tokens::list))
        .route("/{id}/preview-tokens/{token_id}", delete(preview_tokens::revoke_token))
        .route("/{id}/shares", get(preview_tokens::list_shares).post(preview_tokens::create_share))
        .route("/{id}/shares/{share_id}", delete(preview_tokens::revoke_share));
    let tenant_routes = Router::new()
        .route(
            "/branding",
            get(tenant::get_branding).put(tenant::put_branding).delete(tenant::delete_branding),
        )
        .route(
            "/preview-domain",
            get(tenant::get_domain).put(tenant::put_domain).delete(tenant::delete_domain),
        )
        .route("/preview-domain/verify", post(tenant::verify_domain))
        .route("/events/stream", get(event_stream::stream))
        .route(
            "/policy",
            get(policy::get_tenant_policy)
                .put(policy::put_tenant_policy)
                .delete(policy::delete_tenant_policy),
        )
        .route(
            "/preview-domain/certificate",
            put(tenant::put_certificate).delete(tenant::delete_certificate),
        );
    let webhook_routes = Router::new()
        .route("/", post(webhooks::create).get(webhooks::list))
        // Before `/{id}`: `events` is not an id.
        .route("/events", get(webhooks::catalogue))
        .route("/{id}", get(webhooks::get).patch(webhooks::update).delete(webhooks::delete))
        .route("/{id}/test", post(webhooks::test))
        .route("/{id}/rotate-secret", post(webhooks::rotate_secret))
        .route("/{id}/deliveries", get(webhooks::deliveries))
        .route("/{id}/deliveries/{delivery}", get(webhooks::get_delivery))
        .route("/{id}/deliveries/{delivery}/replay", post(webhooks::replay));
    let api = Router::new()
        .route("/health", get(health))
        .nest("/webhooks", webhook_routes)
        .route("/usage", get(usage::usage))
        .route("/usage/summary", get(usage::summary))
        .route("/usage/sessions", get(usage::sessions))
        .route("/usage/export.csv", get(usage::export_csv))
        .route("/api-keys", get(keys::list).post(keys::create))
        // Before `/{id}`: `scoped` is not an id.
        .route("/api-keys/scoped", post(keys::create_scoped))
        .route("/api-keys/{id}", get(keys::get).patch(keys::update).delete(keys::revoke))
        .route("/api-keys/{id}/rotate", post(keys::rotate))
        .route("/tokens/scoped", get(keys::list_tokens).post(keys::create_token))
        .route("/tokens/scoped/{id}", delete(keys::revoke_token))
        .route(
            "/quotas/external/{uid}",
            get(policy::get_quota).put(policy::put_quota).delete(policy::delete_quota),
        )
        .route(
            "/external-users/{uid}/policy",
            get(policy::get_user_policy)
                .put(policy::put_user_policy)
                .delete(policy::delete_user_policy),
        )
        .route("/external-users/{uid}/effective-policy", get(policy::effective_policy))
        .route("/external-users/{uid}", get(policy::get_user))
        .route("/external-users/{uid}/suspend", post(policy::suspend))
        .route("/external-users/{uid}/unsuspend", post(policy::unsuspend))
        .route("/events/stream", get(event_stream::stream))
        .nest("/sandboxes", sandbox_routes)
        .nest("/tenant", tenant_routes)
        .route("/settings", get(settings::get).put(settings::put))
        .route("/settings/branding", get(tenant::get_branding).put(tenant::put_branding_flat))
        // Every route above: authenticated, scope-checked, end-user-bound credentials kept to
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

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "data": { "status": "ok" } }))
}

async fn not_found() -> crate::ApiError {
    crate::ApiError::NotFound("route")
}

//! Who may call what: the scope each route declares (`routes.rs`), checked by one layer that
//! authenticates the caller first. Credentials bound to one end user (scoped keys, browser
//! tokens) reach only routes that make sense for that user, and only that user's sandboxes:
//! any other sandbox is 404, as if it did not exist.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use islet_store::Principal;

use crate::api::routes::{self, Access};
use crate::error::ApiError;
use crate::state::AppState;

fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The sandbox ID a `/sandboxes/{id}/…` request names (the raw segment).
fn sandbox_segment(path: &str) -> Option<&str> {
    let rest = path.split("/sandboxes/").nth(1)?;
    rest.split('/').next().filter(|s| !s.is_empty())
}

/// The tenant a response was for, once its credential was known (for CORS, which answers
/// with the tenant's own allowed origins).
#[derive(Debug, Clone)]
pub(crate) struct AnsweredFor(pub islet_types::TenantId);

/// The layer: authenticate, look the route up, check the scope, and for end-user-bound
/// credentials check the sandbox belongs to their user. The principal is left in the request
/// for the handler ([`crate::api::extract::Caller`]); the response, refusals included, notes the
/// tenant.
pub(crate) async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut tenant = None;
    let mut response = match check(&state, req, next, &mut tenant).await {
        Ok(r) => r,
        Err(e) => axum::response::IntoResponse::into_response(e),
    };
    if let Some(t) = tenant {
        response.extensions_mut().insert(AnsweredFor(t));
    }
    response
}

async fn check(
    state: &AppState,
    mut req: Request,
    next: Next,
    tenant: &mut Option<islet_types::TenantId>,
) -> Result<Response, ApiError> {
    let pattern =
        req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_default();
    let pattern = pattern.strip_prefix("/api/v1").unwrap_or(&pattern).to_owned();
    // Every request reaching this layer matched a declared path (the router and this table
    // are one list, `routes.rs`); a method the path does not declare is checked as the path's
    // changing method is, then answered 405 by the router.
    let need = routes::need(req.method(), &pattern);
    if need.is_some_and(|n| n.access == Access::Public) {
        return Ok(next.run(req).await);
    }
    let token = bearer(&req).ok_or(ApiError::Unauthenticated)?;
    let principal: Principal =
        state.store.authenticate(token).await?.ok_or(ApiError::Unauthenticated)?;
    *tenant = Some(principal.tenant_id.clone());
    let need = need
        .ok_or_else(|| ApiError::Forbidden("this route is not open to API credentials".into()))?;
    if let Access::Scope(scope) = need.access {
        if !principal.scopes.allows(scope) {
            return Err(ApiError::Forbidden(format!("this needs the `{scope}` scope")));
        }
    }
    // Rate limits: the credential's own, and its end user's (shared by all their tokens).
    let key = principal.token_id.clone().unwrap_or_else(|| principal.key_id.to_string());
    let mut decision = state.key_limiter.check(&key);
    let mut limit = state.key_limiter.limit().0;
    let mut what = "API key";
    if decision.allowed {
        let by_tenant = state.tenant_limiter.check(&principal.tenant_id.to_string());
        if !by_tenant.allowed {
            decision = by_tenant;
            limit = state.tenant_limiter.limit().0;
            what = "account";
        }
    }
    if decision.allowed {
        if let Some(user) = &principal.external_user_id {
            let by_user = state.user_limiter.check(&format!("{}/{user}", principal.tenant_id));
            if !by_user.allowed || by_user.remaining < decision.remaining {
                decision = by_user;
                limit = state.user_limiter.limit().0;
                what = "end user";
            }
        }
    }
    if !decision.allowed {
        return Err(ApiError::Throttled { what, retry_after: decision.retry_after, limit });
    }
    if principal.user_bound() {
        if !need.user_bound_ok {
            return Err(ApiError::Forbidden(
                "a credential bound to one end user cannot use this route".into(),
            ));
        }
        if pattern.starts_with("/sandboxes/{id}") {
            let raw = sandbox_segment(req.uri().path()).unwrap_or_default();
            let id = raw.parse().map_err(|_| ApiError::NotFound("sandbox"))?;
            let record = state.store.get_sandbox(&principal.tenant_id, &id).await?;
            if !principal.reaches(&record) {
                return Err(ApiError::NotFound("sandbox"));
            }
        }
    }
    req.extensions_mut().insert(principal);
    let mut response = next.run(req).await;
    if state.key_limiter.enabled() {
        let headers = response.headers_mut();
        for (name, value) in [
            ("x-ratelimit-limit", limit.to_string()),
            ("x-ratelimit-remaining", decision.remaining.to_string()),
            ("x-ratelimit-reset", decision.reset.as_secs_f64().ceil().to_string()),
        ] {
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_segment_is_read_from_the_path() {
        assert_eq!(sandbox_segment("/api/v1/sandboxes/sbx_x/exec"), Some("sbx_x"));
        assert_eq!(sandbox_segment("/api/v1/sandboxes/"), None);
    }
}

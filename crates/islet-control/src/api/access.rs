//! Who may call what: every API route's required scope in one table, checked by one layer that
//! authenticates the caller first. Credentials bound to one end user (scoped keys, browser
//! tokens) reach only routes that make sense for that user, and only that user's sandboxes:
//! any other sandbox is 404, as if it did not exist.

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use islet_store::Principal;
use islet_types::scope::Scope;

use crate::error::ApiError;
use crate::state::AppState;

/// What a route needs: a scope (`None`: any credential of the tenant), and whether
/// end-user-bound credentials may call it at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Need {
    pub scope: Option<Scope>,
    pub user_bound_ok: bool,
}

const fn need(scope: Scope, user_bound_ok: bool) -> Option<Need> {
    Some(Need { scope: Some(scope), user_bound_ok })
}

/// The table. `path` is the route pattern under `/api/v1`. `None`: no such route is known
/// to this table, which refuses it (a new route must be added here to be reachable).
pub(super) fn requirement(method: &Method, path: &str) -> Option<Need> {
    use Scope::*;
    let read = *method == Method::GET || *method == Method::HEAD;
    let sandbox_sub = path.strip_prefix("/sandboxes/{id}");
    match (path, sandbox_sub) {
        ("/sandboxes", _) if read => need(SandboxesRead, true),
        ("/sandboxes", _) if *method == Method::POST => need(SandboxesCreate, true),
        ("/sandboxes/by-name/{name}", _) => need(SandboxesRead, true),
        (_, Some("")) if read => need(SandboxesRead, true),
        (_, Some("")) => need(SandboxesWrite, true),
        (_, Some("/stop" | "/pause" | "/resume" | "/extend" | "/tags")) => {
            need(SandboxesWrite, true)
        }
        (_, Some("/readiness" | "/readiness/stream" | "/usage")) => need(SandboxesRead, true),
        (_, Some(rest))
            if rest.starts_with("/exec")
                || rest.starts_with("/fs")
                || rest.starts_with("/files")
                || rest.starts_with("/processes")
                || rest.starts_with("/terminal") =>
        {
            // Reading files is reading; everything else runs something inside.
            if read && (rest.starts_with("/fs") || rest.starts_with("/files")) {
                need(SandboxesRead, true)
            } else {
                need(SandboxesExec, true)
            }
        }
        (_, Some(rest))
            if rest.starts_with("/expose")
                || rest.starts_with("/previews")
                || rest.starts_with("/preview-token")
                || rest.starts_with("/shares") =>
        {
            if read {
                need(SandboxesRead, true)
            } else {
                need(PreviewsWrite, true)
            }
        }
        (_, Some(_)) => None,
        ("/usage" | "/usage/summary" | "/usage/sessions" | "/usage/export.csv", _) => {
            need(UsageRead, true)
        }
        (p, _) if p.starts_with("/webhooks") => {
            if read {
                need(WebhooksRead, false)
            } else {
                need(WebhooksWrite, false)
            }
        }
        ("/events/stream" | "/tenant/events/stream", _) => need(WebhooksRead, false),
        (p, _)
            if p.starts_with("/quotas/")
                || p.starts_with("/external-users/")
                || p == "/tenant/policy" =>
        {
            if read {
                need(UsageRead, false)
            } else {
                need(PolicyWrite, false)
            }
        }
        (p, _) if p.starts_with("/tenant/preview-domain") => {
            if read {
                Some(Need { scope: None, user_bound_ok: false })
            } else {
                need(DomainsWrite, false)
            }
        }
        ("/tenant/branding" | "/settings/branding" | "/settings", _) => {
            if read {
                Some(Need { scope: None, user_bound_ok: false })
            } else {
                need(SettingsWrite, false)
            }
        }
        (p, _) if p.starts_with("/api-keys") => {
            if read {
                need(KeysRead, false)
            } else {
                need(KeysWrite, false)
            }
        }
        (p, _) if p.starts_with("/tokens/scoped") => need(TokensWrite, false),
        _ => None,
    }
}

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
pub(super) struct AnsweredFor(pub islet_types::TenantId);

/// The layer: authenticate, look the route up, check the scope, and for end-user-bound
/// credentials check the sandbox belongs to their user. The principal is left in the request
/// for the handler ([`super::auth::Caller`]); the response, refusals included, notes the
/// tenant.
pub(super) async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
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
    if pattern == "/health" {
        return Ok(next.run(req).await);
    }
    let token = bearer(&req).ok_or(ApiError::Unauthenticated)?;
    let principal: Principal =
        state.store.authenticate(token).await?.ok_or(ApiError::Unauthenticated)?;
    *tenant = Some(principal.tenant_id.clone());
    let need = requirement(req.method(), &pattern)
        .ok_or_else(|| ApiError::Forbidden("this route is not open to API credentials".into()))?;
    if let Some(scope) = need.scope {
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
    if let Some(user) = &principal.external_user_id {
        if !need.user_bound_ok {
            return Err(ApiError::Forbidden(
                "a credential bound to one end user cannot use this route".into(),
            ));
        }
        if pattern.starts_with("/sandboxes/{id}") {
            let raw = sandbox_segment(req.uri().path()).unwrap_or_default();
            let id = raw.parse().map_err(|_| ApiError::NotFound("sandbox"))?;
            let record = state.store.get_sandbox(&principal.tenant_id, &id).await?;
            if record.external_user_id.as_deref() != Some(user.as_str()) {
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
    fn routes_map_to_the_scopes_they_need() {
        let cases = [
            (Method::GET, "/sandboxes", Some(Scope::SandboxesRead), true),
            (Method::POST, "/sandboxes", Some(Scope::SandboxesCreate), true),
            (Method::DELETE, "/sandboxes/{id}", Some(Scope::SandboxesWrite), true),
            (Method::POST, "/sandboxes/{id}/exec", Some(Scope::SandboxesExec), true),
            (Method::GET, "/sandboxes/{id}/fs/{*rest}", Some(Scope::SandboxesRead), true),
            (Method::PUT, "/sandboxes/{id}/files/{*rest}", Some(Scope::SandboxesExec), true),
            (Method::POST, "/sandboxes/{id}/preview-token", Some(Scope::PreviewsWrite), true),
            (Method::GET, "/sandboxes/{id}/previews", Some(Scope::SandboxesRead), true),
            (Method::GET, "/usage", Some(Scope::UsageRead), true),
            (Method::POST, "/webhooks", Some(Scope::WebhooksWrite), false),
            (Method::PUT, "/quotas/external/{uid}", Some(Scope::PolicyWrite), false),
            (Method::PUT, "/tenant/preview-domain", Some(Scope::DomainsWrite), false),
            (Method::POST, "/api-keys", Some(Scope::KeysWrite), false),
            (Method::POST, "/tokens/scoped", Some(Scope::TokensWrite), false),
        ];
        for (method, path, scope, user_ok) in cases {
            let need = requirement(&method, path).unwrap_or_else(|| panic!("{method} {path}"));
            assert_eq!((need.scope, need.user_bound_ok), (scope, user_ok), "{method} {path}");
        }
        assert_eq!(requirement(&Method::GET, "/sandboxes/{id}/unknown"), None);
        assert_eq!(requirement(&Method::GET, "/nowhere"), None);
    }

    #[test]
    fn the_sandbox_segment_is_read_from_the_path() {
        assert_eq!(sandbox_segment("/api/v1/sandboxes/sbx_x/exec"), Some("sbx_x"));
        assert_eq!(sandbox_segment("/api/v1/sandboxes/"), None);
    }
}

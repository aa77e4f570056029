//! CORS for the tenant's own web origins, so a browser holding a browser token (`mst_…`) can
//! call the API directly. A preflight carries no credential, so it is answered for an origin
//! that any tenant allows; the real request is answered with CORS headers only when the
//! credential's own tenant allows the origin (`PUT /settings {"allowed_origins": [...]}`).

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::access::AnsweredFor;
use crate::state::AppState;

const ALLOW_HEADERS: &str = "authorization, content-type, idempotency-key, x-request-id";
const EXPOSE_HEADERS: &str =
    "x-request-id, retry-after, x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset";
const ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";

fn set(response: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, v);
    }
}

pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let origin =
        req.headers().get(http::header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let Some(origin) = origin else {
        return next.run(req).await;
    };
    let preflight = req.method() == Method::OPTIONS
        && req.headers().contains_key("access-control-request-method");
    if preflight {
        let mut response = StatusCode::NO_CONTENT.into_response();
        set(&mut response, "vary", "Origin");
        if state.origins.anyone_allows(&state.store, &origin).await {
            set(&mut response, "access-control-allow-origin", &origin);
            set(&mut response, "access-control-allow-methods", ALLOW_METHODS);
            set(&mut response, "access-control-allow-headers", ALLOW_HEADERS);
            set(&mut response, "access-control-max-age", "600");
        }
        return response;
    }
    let mut response = next.run(req).await;
    set(&mut response, "vary", "Origin");
    let tenant = response.extensions().get::<AnsweredFor>().map(|a| a.0.clone());
    if let Some(tenant) = tenant {
        if state.origins.tenant_allows(&state.store, &tenant, &origin).await {
            set(&mut response, "access-control-allow-origin", &origin);
            set(&mut response, "access-control-expose-headers", EXPOSE_HEADERS);
        }
    }
    response
}

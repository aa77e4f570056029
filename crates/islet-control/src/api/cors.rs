//! CORS for the tenant's own web origins, so a browser holding a browser token (`mst_…`) can
//! call the API directly. A preflight carries no credential, so it is answered for an origin
//! that any tenant allows; the real request is answered with CORS headers only when the
//! credential's own tenant allows the origin (`PUT /settings {"allowed_origins": [...]}`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use islet_store::Store;
use islet_types::TenantId;

use super::access::AnsweredFor;
use crate::state::AppState;

/// How long an answer from the store is used before it is read again (changes made through
/// this server's API apply at once: they clear what they change).
const TTL: Duration = Duration::from_secs(5);
/// Preflight answers remembered, at most (origins are the caller's to choose).
const MAX_REMEMBERED: usize = 10_000;

/// The tenants' allowed origins, kept in memory so that requests with an `Origin` do not each
/// read the store.
#[derive(Default)]
pub struct OriginCache {
    inner: std::sync::Mutex<Remembered>,
}

#[derive(Default)]
struct Remembered {
    by_tenant: HashMap<TenantId, (Instant, Vec<String>)>,
    anywhere: HashMap<String, (Instant, bool)>,
    /// Moves on every change: a read from the store that began before a change is not kept.
    generation: u64,
}

impl OriginCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Remembered> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `tenant` allows `origin`.
    pub async fn tenant_allows(&self, store: &Store, tenant: &TenantId, origin: &str) -> bool {
        let generation = {
            let remembered = self.lock();
            if let Some((at, origins)) = remembered.by_tenant.get(tenant) {
                if at.elapsed() < TTL {
                    return origins.iter().any(|o| o == origin);
                }
            }
            remembered.generation
        };
        let Ok(origins) = store.allowed_origins(tenant).await else {
            return false;
        };
        let allowed = origins.iter().any(|o| o == origin);
        let mut remembered = self.lock();
        if remembered.generation == generation {
            remembered.by_tenant.insert(tenant.clone(), (Instant::now(), origins));
        }
        allowed
    }

    /// Whether any tenant allows `origin` (for preflights).
    pub async fn anyone_allows(&self, store: &Store, origin: &str) -> bool {
        let generation = {
            let remembered = self.lock();
            if let Some((at, allowed)) = remembered.anywhere.get(origin) {
                if at.elapsed() < TTL {
                    return *allowed;
                }
            }
            remembered.generation
        };
        let Ok(allowed) = store.origin_allowed_anywhere(origin).await else {
            return false;
        };
        let mut remembered = self.lock();
        if remembered.generation == generation {
            if remembered.anywhere.len() >= MAX_REMEMBERED {
                remembered.anywhere.clear();
            }
            remembered.anywhere.insert(origin.to_owned(), (Instant::now(), allowed));
        }
        allowed
    }

    /// `tenant` changed its origins.
    pub fn forget(&self, tenant: &TenantId) {
        let mut remembered = self.lock();
        remembered.generation += 1;
        remembered.by_tenant.remove(tenant);
        remembered.anywhere.clear();
    }
}

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

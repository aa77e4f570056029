//! The tenants' allowed web origins (CORS), kept in memory: a request with an `Origin` does
//! not read the store each time, and a change made through this server's API applies at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use islet_store::Store;
use islet_types::TenantId;

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

use std::sync::{Arc, OnceLock};

use islet_runtime::Runtime;
use islet_store::Store;

use crate::config::Config;

/// Everything a request handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub runtime: Arc<Runtime>,
    pub config: Arc<Config>,
    /// Signs preview tokens (the edge verifies them with the same store secret).
    pub signer: islet_tokens::Signer,
    /// The warm pool, once `run` has set it up (only with `Config::warm_pool` > 0).
    pub pool: Arc<OnceLock<islet_store::Pool>>,
    /// Wakes the webhook dispatcher when a delivery is written outside the outbox.
    pub webhooks: islet_webhooks::DispatchHandle,
    /// Fires when the server shuts down: long-lived responses (event streams) end with it.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Requests per API key (or browser token), and per end user for credentials bound to one.
    pub key_limiter: Arc<islet_types::rate::RateLimiter<String>>,
    pub user_limiter: Arc<islet_types::rate::RateLimiter<String>>,
    /// Requests per tenant, across all its credentials.
    pub tenant_limiter: Arc<islet_types::rate::RateLimiter<String>>,
    /// Open event streams per tenant.
    pub streams: Arc<std::sync::Mutex<std::collections::HashMap<islet_types::TenantId, usize>>>,
    /// The tenants' allowed web origins (CORS), remembered for a few seconds.
    pub origins: Arc<crate::origins::OriginCache>,
    /// Held while a tenant's settings change (`PUT /settings`).
    pub settings_lock: Arc<tokio::sync::Mutex<()>>,
    /// Each sandbox's recent metrics, from the meter's samples.
    pub(crate) metrics: Arc<crate::metrics::MetricsRing>,
    /// Wakes the bulk-job worker when a job is accepted.
    pub(crate) bulk_wake: Arc<tokio::sync::Notify>,
}

impl AppState {
    /// State over `store`; loads (or creates) the token signing secret.
    pub async fn new(
        store: Store,
        runtime: Runtime,
        config: Config,
    ) -> Result<Self, islet_store::StoreError> {
        let signer = islet_tokens::Signer::new(&store.secret(islet_tokens::SECRET_NAME).await?);
        let limiter =
            |rate: u32| Arc::new(islet_types::rate::RateLimiter::new(rate, rate.saturating_mul(2)));
        let (key_limiter, user_limiter) =
            (limiter(config.api_rate_limit), limiter(config.api_user_rate_limit));
        let tenant_limiter = limiter(config.api_tenant_rate_limit);
        Ok(Self {
            signer,
            store,
            runtime: Arc::new(runtime),
            config: Arc::new(config),
            pool: Arc::default(),
            webhooks: islet_webhooks::DispatchHandle::default(),
            shutdown: tokio_util::sync::CancellationToken::new(),
            key_limiter,
            user_limiter,
            tenant_limiter,
            streams: Arc::default(),
            origins: Arc::default(),
            settings_lock: Arc::default(),
            metrics: Arc::default(),
            bulk_wake: Arc::default(),
        })
    }
}

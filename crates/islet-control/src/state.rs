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
    /// The warm pool, once `run` has set it up (only with `Config::warm_pool` > 0).
    pub pool: Arc<OnceLock<islet_store::Pool>>,
}

impl AppState {
    pub fn new(store: Store, runtime: Runtime, config: Config) -> Self {
        Self {
            store,
            runtime: Arc::new(runtime),
            config: Arc::new(config),
            pool: Arc::default(),
        }
    }
}

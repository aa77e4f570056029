use std::sync::Arc;

use islet_runtime::Runtime;
use islet_store::Store;

use crate::config::Config;

/// Everything a request handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub runtime: Arc<Runtime>,
    pub config: Arc<Config>,
}

impl AppState {
    pub fn new(store: Store, runtime: Runtime, config: Config) -> Self {
        Self {
            store,
            runtime: Arc::new(runtime),
            config: Arc::new(config),
        }
    }
}

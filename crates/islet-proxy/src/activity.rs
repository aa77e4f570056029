//! Preview traffic counts as activity for idle timeouts. Writes are coalesced: a sandbox is
//! touched at most once per interval however many requests it serves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use islet_store::Store;
use islet_types::SandboxId;

pub(crate) struct Activity {
    store: Store,
    interval: Duration,
    last: Mutex<HashMap<SandboxId, Instant>>,
}

impl Activity {
    pub(crate) fn new(store: Store, interval: Duration) -> Self {
        Self { store, interval, last: Mutex::default() }
    }

    pub(crate) fn touch(self: &Arc<Self>, sandbox: &SandboxId) {
        let due = self
            .last
            .lock()
            .map(|mut last| {
                let now = Instant::now();
                if last.len() > 100_000 {
                    let interval = self.interval;
                    last.retain(|_, at| now.duration_since(*at) < interval);
                }
                match last.get(sandbox) {
                    Some(at) if now.duration_since(*at) < self.interval => false,
                    _ => {
                        last.insert(sandbox.clone(), now);
                        true
                    }
                }
            })
            .unwrap_or(false);
        if due {
            let store = self.store.clone();
            let sandbox = sandbox.clone();
            tokio::spawn(async move {
                if let Err(error) = store.touch_sandbox(&sandbox).await {
                    tracing::warn!(sandbox_id = %sandbox, %error, "recording preview activity");
                }
            });
        }
    }

    /// Keep touching while a long-lived exchange (WebSocket, event stream) lasts: until the
    /// returned guard is dropped.
    pub(crate) fn hold(self: &Arc<Self>, sandbox: SandboxId) -> Hold {
        let activity = self.clone();
        Hold(tokio::spawn(async move {
            loop {
                activity.touch(&sandbox);
                tokio::time::sleep(activity.interval).await;
            }
        }))
    }
}

/// Ends a [`Activity::hold`] when dropped.
pub(crate) struct Hold(tokio::task::JoinHandle<()>);

impl Drop for Hold {
    fn drop(&mut self) {
        self.0.abort();
    }
}

//! The dispatcher against a real store (a SQLite file) and real HTTP receivers on loopback.

mod behaviour;
mod outage;

use std::sync::Arc;
use std::time::{Duration, Instant};

use islet_store::{NewEvent, NewWebhook, Store, WebhookRecord};
use islet_types::TenantId;
use islet_webhooks::payload::NoLinks;
use islet_webhooks::schedule::{RetrySchedule, DEFAULT_RETRIES};
use islet_webhooks::signing::Secret;
use islet_webhooks::{DispatchHandle, Dispatcher, DispatcherConfig, TargetPolicy};
use tokio_util::sync::CancellationToken;

pub struct Harness {
    pub store: Store,
    pub handle: DispatchHandle,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// Local receivers allowed, a 2 s attempt timeout, and the published schedule a thousand
/// times faster (5 ms, 300 ms, 1.8 s, 7.2 s, 18 s, 36 s, 36 s).
pub fn config() -> DispatcherConfig {
    DispatcherConfig {
        policy: TargetPolicy { allow_private: true, sandbox_net: None },
        timeout: Duration::from_secs(2),
        schedule: RetrySchedule::scaled(0.001),
        poll: Duration::from_millis(100),
        ..DispatcherConfig::default()
    }
}

impl Harness {
    pub async fn start(config: DispatcherConfig) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("islet.db")).expect("store");
        let handle = DispatchHandle::default();
        let dispatcher = Dispatcher::new(store.clone(), config, Arc::new(NoLinks), handle.clone())
            .expect("dispatcher");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(dispatcher.run(shutdown.clone()));
        Self { store, handle, shutdown, task: Some(task), _dir: dir }
    }

    pub async fn tenant(&self) -> TenantId {
        self.store.create_tenant("t".into(), None).await.expect("tenant").tenant_id
    }

    pub async fn webhook(&self, tenant: &TenantId, url: String, events: &[&str]) -> WebhookRecord {
        self.store
            .create_webhook(
                tenant,
                NewWebhook {
                    url,
                    name: None,
                    events: events.iter().map(|e| e.to_string()).collect(),
                    headers: Default::default(),
                    metadata: Default::default(),
                    retry_count: DEFAULT_RETRIES,
                    active: true,
                    secret: Secret::generate().expose().to_owned(),
                },
                100,
            )
            .await
            .expect("webhook")
    }

    /// `n` events of `event_type` about `sandbox`, each carrying its index as `data.n`.
    pub async fn emit(
        &self,
        tenant: &TenantId,
        sandbox: Option<&str>,
        event_type: &str,
        range: std::ops::Range<usize>,
    ) {
        let events = range
            .map(|n| NewEvent {
                tenant_id: tenant.clone(),
                sandbox_id: sandbox.map(str::to_owned),
                event_type: event_type.into(),
                data: serde_json::json!({ "id": sandbox, "n": n }),
            })
            .collect();
        self.store.emit_events(events).await.expect("emit");
    }

    /// Wait until no delivery is pending, up to `timeout`; returns whether it drained.
    pub async fn drained(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            // The outbox must be fanned out too, not only the deliveries settled.
            let fanned = self.store.outbox_batch("webhooks", 1).await.map(|b| b.events.is_empty());
            if fanned.unwrap_or(false) && self.store.pending_deliveries().await.unwrap_or(1) == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

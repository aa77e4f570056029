//! The dispatcher: fans outbox events out to the endpoints subscribed to them, then delivers.
//!
//! Three tasks share the work:
//! - **fan-out** follows the outbox with a cursor. For each batch of events it writes one
//!   delivery per (event, endpoint) with its final body and moves the cursor, in one
//!   transaction: an event is fanned out exactly once, crash or not.
//! - **claims** take leases on due deliveries (oldest first, one at a time per sandbox and
//!   endpoint, a bounded number per endpoint) and start an attempt for each.
//! - **the recorder** writes attempts back in batches and applies each verdict: delivered,
//!   retry at a time from the schedule, given up, or endpoint disabled.
//!
//! A delivery is only settled once its attempt is recorded; until then its lease holds it. A
//! process that dies mid-attempt leaves leases that expire (or, for the only dispatcher of a
//! store, are released when it starts again), so the attempt is made again under the same
//! delivery id: at least once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use islet_store::{AttemptRecord, ClaimedDelivery, NewDelivery, Store, StoreError, Verdict};
use islet_types::time::now_millis;
use islet_types::{DeliveryId, TenantId, WebhookId};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::catalogue::delivered_as;
use crate::deliver::{Deliverer, Outcome};
use crate::payload::{event_body, PreviewLinks, UrlFn};
use crate::schedule::RetrySchedule;
use crate::target::TargetPolicy;

/// The outbox cursor of webhook fan-out.
pub const READER: &str = "webhooks";

/// How the dispatcher behaves; the defaults are the published ones.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    pub policy: TargetPolicy,
    /// One attempt's limit, connect to last byte read.
    pub timeout: Duration,
    pub schedule: RetrySchedule,
    /// An endpoint failing this long with no success is disabled.
    pub disable_after: Duration,
    /// Attempts in flight at once, over all endpoints.
    pub max_in_flight: usize,
    /// Attempts in flight at once to one endpoint.
    pub per_endpoint: usize,
    /// How often to look for work when nothing signalled any.
    pub poll: Duration,
    /// Events read per fan-out transaction.
    pub fan_out_batch: u32,
    /// This is the store's only dispatcher (one-process mode): leases left by a previous run
    /// are released at start rather than waited out.
    pub sole_dispatcher: bool,
    /// PEM certificates trusted besides the system's.
    pub extra_roots: Vec<Vec<u8>>,
    /// Settled deliveries and fanned-out events older than this are forgotten.
    pub retention: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            policy: TargetPolicy::default(),
            timeout: Duration::from_secs(10),
            schedule: RetrySchedule::default(),
            disable_after: Duration::from_secs(5 * 24 * 3600),
            max_in_flight: 512,
            per_endpoint: 64,
            poll: Duration::from_millis(500),
            fan_out_batch: 1000,
            sole_dispatcher: true,
            extra_roots: Vec::new(),
            retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

impl DispatcherConfig {
    /// How long a claim holds a delivery: one attempt plus a margin for recording it that is
    /// longer than the recorder's retries (10 s) and the store's busy timeout (10 s). A lease
    /// left by a dead process costs nothing in one-process mode: it is released at start.
    fn lease(&self) -> Duration {
        self.timeout + Duration::from_secs(60)
    }
}

/// A handle to wake the dispatcher when a delivery was written outside the outbox (a test
/// event, a replay).
#[derive(Clone, Default)]
pub struct DispatchHandle {
    wake: Arc<Notify>,
}

impl DispatchHandle {
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

pub struct Dispatcher {
    store: Store,
    config: Arc<DispatcherConfig>,
    links: Arc<dyn PreviewLinks>,
    deliverer: Deliverer,
    handle: DispatchHandle,
}

/// Attempts in flight, per endpoint.
type InFlight = Arc<Mutex<HashMap<WebhookId, usize>>>;

impl Dispatcher {
    pub fn new(
        store: Store,
        config: DispatcherConfig,
        links: Arc<dyn PreviewLinks>,
        handle: DispatchHandle,
    ) -> reqwest::Result<Self> {
        let deliverer = Deliverer::new(config.policy, config.timeout, &config.extra_roots)?;
        Ok(Self { store, config: Arc::new(config), links, deliverer, handle })
    }

    pub fn handle(&self) -> DispatchHandle {
        self.handle.clone()
    }

    /// Run until `shutdown`; attempts in flight are finished and recorded before returning.
    pub async fn run(self, shutdown: CancellationToken) {
        if self.config.sole_dispatcher {
            if let Err(e) = self.store.release_all_leases().await {
                tracing::warn!(error = %e, "could not release old webhook leases");
            }
        }
        let fan_out = tokio::spawn(fan_out_loop(
            self.store.clone(),
            self.config.clone(),
            self.links.clone(),
            self.handle.clone(),
            shutdown.clone(),
        ));
        let pruner =
            tokio::spawn(prune_loop(self.store.clone(), self.config.retention, shutdown.clone()));
        let in_flight: InFlight = Arc::default();
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let recorder = tokio::spawn(record_loop(
            self.store.clone(),
            self.config.clone(),
            in_flight.clone(),
            self.handle.clone(),
            done_rx,
        ));
        claim_loop(&self, &in_flight, done_tx, &shutdown).await;
        // `claim_loop` dropped its sender; the recorder ends once every attempt has reported.
        let _ = recorder.await;
        let _ = fan_out.await;
        let _ = pruner.await;
    }
}

/// Once an hour (and at start), forget history older than the retention, a batch at a time.
async fn prune_loop(store: Store, retention: Duration, shutdown: CancellationToken) {
    loop {
        let before = now_millis() - retention.as_millis() as i64;
        loop {
            match store.prune_webhook_history(before, 5000).await {
                Ok((0, 0)) => break,
                Ok((deliveries, events)) => {
                    tracing::debug!(deliveries, events, "pruned webhook history");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pruning webhook history failed");
                    break;
                }
            }
            if shutdown.is_cancelled() {
                return;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}

/// Follow the outbox and write deliveries, waking the claims whenever some were written.
async fn fan_out_loop(
    store: Store,
    config: Arc<DispatcherConfig>,
    links: Arc<dyn PreviewLinks>,
    handle: DispatchHandle,
    shutdown: CancellationToken,
) {
    let mut signal = store.event_signal();
    loop {
        signal.borrow_and_update();
        match fan_out_once(&store, &config, links.as_ref()).await {
            Ok(0) => {}
            Ok(_) => {
                handle.wake();
                continue;
            }
            Err(e) => tracing::warn!(error = %e, "webhook fan-out failed; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = signal.changed() => {}
            _ = tokio::time::sleep(config.poll) => {}
        }
    }
}

/// Fan out one batch; returns how many events it covered.
pub async fn fan_out_once(
    store: &Store,
    config: &DispatcherConfig,
    links: &dyn PreviewLinks,
) -> Result<usize, StoreError> {
    let batch = store.outbox_batch(READER, config.fan_out_batch).await?;
    let Some(last) = batch.events.last().map(|e| e.seq) else {
        return Ok(0);
    };
    let mut urls: HashMap<TenantId, Option<UrlFn>> = HashMap::new();
    let mut deliveries = Vec::new();
    for event in &batch.events {
        let Some(webhooks) = batch.webhooks.get(&event.tenant_id) else {
            continue;
        };
        for webhook in webhooks {
            for name in delivered_as(&webhook.events, &event.event_type) {
                if !urls.contains_key(&event.tenant_id) {
                    let made = links.for_tenant(&event.tenant_id).await;
                    urls.insert(event.tenant_id.clone(), made);
                }
                let tenant_urls = urls.get(&event.tenant_id).and_then(Option::as_ref);
                let id = DeliveryId::generate();
                let body = event_body(event, name, Some(&id), tenant_urls);
                deliveries.push(NewDelivery {
                    id,
                    webhook_id: webhook.id.clone(),
                    tenant_id: event.tenant_id.clone(),
                    event_id: event.id.clone(),
                    event_type: name.to_owned(),
                    order_key: event.sandbox_id.clone(),
                    body: body.to_string(),
                    max_attempts: webhook.retry_count + 1,
                    replay_of: None,
                    replay_id: None,
                });
            }
        }
    }
    store.commit_fan_out(READER, batch.cursor, last, deliveries).await?;
    Ok(batch.events.len())
}

async fn claim_loop(
    dispatcher: &Dispatcher,
    in_flight: &InFlight,
    done: mpsc::UnboundedSender<AttemptRecord>,
    shutdown: &CancellationToken,
) {
    let config = &dispatcher.config;
    let lease_ms = config.lease().as_millis() as i64;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let (total, busy) = {
            let map = in_flight.lock().unwrap_or_else(|p| p.into_inner());
            let busy: Vec<WebhookId> = map
                .iter()
                .filter(|(_, n)| **n >= config.per_endpoint)
                .map(|(w, _)| w.clone())
                .collect();
            (map.values().sum::<usize>(), busy)
        };
        let free = config.max_in_flight.saturating_sub(total).min(256) as u32;
        let mut claimed_full = false;
        if free > 0 {
            match dispatcher.store.claim_deliveries(free, lease_ms, busy).await {
                Ok(claimed) => {
                    claimed_full = claimed.len() as u32 == free;
                    for delivery in claimed {
                        start_attempt(dispatcher, in_flight, delivery, done.clone());
                    }
                }
                Err(e) => tracing::warn!(error = %e, "claiming webhook deliveries failed"),
            }
        }
        if claimed_full {
            continue;
        }
        // Work that is due but blocked (behind an earlier delivery of its sandbox, on a busy or
        // paused endpoint) becomes claimable only when an attempt is recorded, and the recorder
        // wakes this loop then; so only future retries set a deadline, never past ones.
        let wait = match dispatcher.store.next_delivery_due().await {
            Ok(Some(at)) => Duration::from_millis((at - now_millis()).max(1) as u64),
            _ => config.poll,
        }
        .min(config.poll);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = dispatcher.handle.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn start_attempt(
    dispatcher: &Dispatcher,
    in_flight: &InFlight,
    delivery: ClaimedDelivery,
    done: mpsc::UnboundedSender<AttemptRecord>,
) {
    *in_flight
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(delivery.webhook.id.clone())
        .or_default() += 1;
    let deliverer = dispatcher.deliverer.clone();
    let schedule = dispatcher.config.schedule.clone();
    tokio::spawn(async move {
        let outcome = deliverer.attempt(&delivery).await;
        let verdict = verdict(&outcome, &delivery, &schedule);
        let _ = done.send(AttemptRecord {
            delivery_id: delivery.id.clone(),
            webhook_id: delivery.webhook.id.clone(),
            attempt: delivery.attempt,
            lease: delivery.lease,
            started_at: outcome.started_at_ms,
            duration_ms: outcome.duration.as_millis() as i64,
            status: outcome.status,
            error: outcome.error,
            response: outcome.response,
            verdict,
        });
    });
}

/// 2xx delivers; 410 disables the endpoint; anything else (3xx included: redirects are not
/// followed) is retried on the schedule until the attempts run out.
pub fn verdict(outcome: &Outcome, delivery: &ClaimedDelivery, schedule: &RetrySchedule) -> Verdict {
    if outcome.success() {
        return Verdict::Delivered;
    }
    if outcome.status == Some(410) {
        return Verdict::EndpointGone;
    }
    if delivery.attempt >= delivery.max_attempts {
        return Verdict::Exhausted;
    }
    let delay = schedule.delay(delivery.attempt, outcome.retry_after);
    Verdict::RetryAt(now_millis() + delay.as_millis() as i64)
}

/// Write attempts back in batches; free their endpoints' slots once recorded.
async fn record_loop(
    store: Store,
    config: Arc<DispatcherConfig>,
    in_flight: InFlight,
    handle: DispatchHandle,
    mut done: mpsc::UnboundedReceiver<AttemptRecord>,
) {
    let disable_after = config.disable_after.as_millis() as i64;
    let mut batch = Vec::new();
    while done.recv_many(&mut batch, 1024).await > 0 {
        // A store error leaves the leases in place: the deliveries are attempted again when
        // they expire, so nothing is lost, at worst sent twice.
        for tries in 1.. {
            match store.record_attempts(batch.clone(), disable_after).await {
                Ok(disabled) => {
                    for id in disabled {
                        tracing::info!(webhook = %id, "webhook endpoint disabled");
                    }
                    break;
                }
                Err(e) if tries < 50 => {
                    tracing::warn!(error = %e, "recording webhook attempts failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "giving up recording webhook attempts; their leases will expire and they will be sent again");
                    break;
                }
            }
        }
        {
            let mut map = in_flight.lock().unwrap_or_else(|p| p.into_inner());
            for a in batch.drain(..) {
                if let Some(n) = map.get_mut(&a.webhook_id) {
                    *n -= 1;
                    if *n == 0 {
                        map.remove(&a.webhook_id);
                    }
                }
            }
        }
        handle.wake();
    }
}

//! `cargo bench -p islet-webhooks --bench dispatch [-- --quick]`: signed deliveries per second
//! and event-to-delivery lag, next to a bare HTTP client posting the same bodies to the same
//! receiver in the same run.
//!
//! - **Receiver**: a minimal HTTP/1.1 server on loopback, on its own thread and runtime; it
//!   answers 204 and notes when each event arrived.
//! - **Baseline**: `reqwest` (the dispatcher's client, same settings) posting N bodies of the
//!   same size, 512 at a time: no store, no signing, no retries.
//! - **Drain**: N events written to the outbox first (20 tenants, one endpoint each, 1,000
//!   sandboxes), then the dispatcher starts; time until every one is delivered and recorded.
//!   Everything is on: fan-out, claims, three signatures, the HTTP POST, attempt records.
//! - **Lag**: events written at a fixed rate for 10 s, in batches every 10 ms, as state changes
//!   would; lag = arrival at the receiver − the time the event was written.
//!
//! Prints a table and writes `target/bench/webhooks.json`. Timing is reported, never asserted.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use islet_store::{NewEvent, NewWebhook, Store};
use islet_types::TenantId;
use islet_webhooks::payload::NoLinks;
use islet_webhooks::signing::Secret;
use islet_webhooks::{DispatchHandle, Dispatcher, DispatcherConfig, TargetPolicy};
use tokio_util::sync::CancellationToken;

const TENANTS: usize = 20;
const SANDBOXES: usize = 1000;

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64
}

/// What the receiver has seen: delivered event numbers and lags (µs), and request count.
#[derive(Default)]
struct Seen {
    requests: AtomicUsize,
    events: Mutex<HashSet<u64>>,
    lags_us: Mutex<Vec<u64>>,
}

fn start_receiver(seen: Arc<Seen>) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("receiver runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send addr");
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let at = now_micros();
                            seen.requests.fetch_add(1, Ordering::Relaxed);
                            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                                if let Some(n) = v["data"]["n"].as_u64() {
                                    seen.events.lock().unwrap_or_else(|p| p.into_inner()).insert(n);
                                }
                                if let Some(t) = v["data"]["t"].as_u64() {
                                    seen.lags_us
                                        .lock()
                                        .unwrap_or_else(|p| p.into_inner())
                                        .push(at.saturating_sub(t));
                                }
                            }
                            let mut r = hyper::Response::new(Empty::<Bytes>::new());
                            *r.status_mut() = hyper::StatusCode::NO_CONTENT;
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    rx.recv().expect("receiver address")
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// A body the size of a real delivery.
fn sample_body(n: u64) -> String {
    serde_json::json!({
        "id": "dlv_aaaaaaaaaaaaaaaaaaaa", "delivery_id": "dlv_aaaaaaaaaaaaaaaaaaaa",
        "event_id": "evt_aaaaaaaaaaaaaaaaaaaa", "type": "sandbox.running", "event": "sandbox.running",
        "occurred_at": "2026-11-28T10:00:00.000000Z", "created_at": "2026-11-28T10:00:00.000000Z",
        "timestamp": "2026-11-28T10:00:00.000000Z", "tenant_id": "ten_aaaaaaaaaaaaaaaaaaaa",
        "data": {"id": "sbx_aaaaaaaaaaaaaaaaaaaa", "state": "running", "external_user_id": "user_42",
                 "external_workspace_id": null, "external_project_id": null, "metadata": {},
                 "preview_url": null, "preview_urls": {}, "n": n}
    })
    .to_string()
}

async fn baseline(addr: SocketAddr, n: usize, concurrency: usize) -> f64 {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");
    let url = format!("http://{addr}/hook");
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, next) = (client.clone(), url.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    let _ = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(sample_body(i as u64 + 10_000_000))
                        .send()
                        .await;
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

struct Setup {
    store: Store,
    tenants: Vec<TenantId>,
    _dir: tempfile::TempDir,
}

async fn setup(addr: SocketAddr) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("islet.db")).expect("store");
    let mut tenants = Vec::new();
    for i in 0..TENANTS {
        let tenant = store.create_tenant(format!("t{i}"), None).await.expect("tenant").tenant_id;
        store
            .create_webhook(
                &tenant,
                NewWebhook {
                    url: format!("http://{addr}/t{i}"),
                    name: None,
                    events: vec!["sandbox.*".into()],
                    headers: Default::default(),
                    metadata: Default::default(),
                    retry_count: 7,
                    active: true,
                    secret: Secret::generate().expose().into(),
                },
                100,
            )
            .await
            .expect("webhook");
        tenants.push(tenant);
    }
    Setup { store, tenants, _dir: dir }
}

fn events(tenants: &[TenantId], range: std::ops::Range<u64>, stamp: bool) -> Vec<NewEvent> {
    range
        .map(|n| NewEvent {
            tenant_id: tenants[n as usize % tenants.len()].clone(),
            sandbox_id: Some(format!("sandbox-{}", n as usize % SANDBOXES)),
            event_type: "sandbox.running".into(),
            data: if stamp {
                serde_json::json!({"n": n, "t": now_micros()})
            } else {
                serde_json::json!({"n": n})
            },
        })
        .collect()
}

fn dispatcher(store: &Store) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let config = DispatcherConfig {
        policy: TargetPolicy { allow_private: true, sandbox_net: None },
        ..DispatcherConfig::default()
    };
    let d = Dispatcher::new(store.clone(), config, Arc::new(NoLinks), DispatchHandle::default())
        .expect("dispatcher");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(d.run(shutdown.clone()));
    (shutdown, task)
}

async fn wait_delivered(seen: &Seen, want: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if seen.events.lock().unwrap_or_else(|p| p.into_inner()).len() >= want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

async fn drain(n: u64) -> (f64, f64) {
    let seen = Arc::new(Seen::default());
    let addr = start_receiver(seen.clone());
    let bare = baseline(addr, n as usize, 512).await;
    let s = setup(addr).await;
    for chunk in (0..n).step_by(1000) {
        s.store
            .emit_events(events(&s.tenants, chunk..(chunk + 1000).min(n), false))
            .await
            .expect("emit");
    }
    seen.events.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let start = Instant::now();
    let (shutdown, task) = dispatcher(&s.store);
    let ok = wait_delivered(&seen, n as usize, Duration::from_secs(600)).await;
    // Delivered is not done until every attempt is recorded.
    while s.store.pending_deliveries().await.unwrap_or(1) > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    assert!(ok, "not every event was delivered");
    shutdown.cancel();
    let _ = task.await;
    (rate, bare)
}

async fn lag(rate: u64, seconds: u64) -> (f64, f64, f64, usize) {
    let seen = Arc::new(Seen::default());
    let addr = start_receiver(seen.clone());
    let s = setup(addr).await;
    let (shutdown, task) = dispatcher(&s.store);
    let per_tick = (rate / 100).max(1);
    let total = per_tick * 100 * seconds;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut n = 0;
    while n < total {
        tick.tick().await;
        s.store.emit_events(events(&s.tenants, n..n + per_tick, true)).await.expect("emit");
        n += per_tick;
    }
    let ok = wait_delivered(&seen, total as usize, Duration::from_secs(120)).await;
    assert!(ok, "not every event was delivered");
    shutdown.cancel();
    let _ = task.await;
    let mut lags = seen.lags_us.lock().unwrap_or_else(|p| p.into_inner()).clone();
    lags.sort_unstable();
    (percentile(&lags, 0.5), percentile(&lags, 0.99), percentile(&lags, 1.0), lags.len())
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let n = if quick { 5_000 } else { 50_000 };
        let (rate, bare) = drain(n).await;
        println!("webhook dispatch, {n} events, {TENANTS} endpoints, {SANDBOXES} sandboxes (2-core host, receiver and dispatcher share it)");
        println!("| measure | islet | bare reqwest POST | ratio | target |");
        println!("|---|---|---|---|---|");
        println!(
            "| drain throughput (deliveries/s) | {rate:.0} | {bare:.0} | {:.2} | >= 5000/s |",
            rate / bare
        );
        let mut report = serde_json::json!({
            "events": n, "endpoints": TENANTS, "sandboxes": SANDBOXES,
            "drain_per_sec": rate, "bare_post_per_sec": bare, "ratio": rate / bare,
            "lag": [],
        });
        let seconds = if quick { 3 } else { 10 };
        for offered in [1000u64, 2000, 5000] {
            let (p50, p99, max, count) = lag(offered, seconds).await;
            println!(
                "| lag at {offered}/s for {seconds} s ({count} events): p50 / p99 / max ms | {p50:.1} / {p99:.1} / {max:.1} | | | p99 <= 1000 ms |"
            );
            if let Some(list) = report["lag"].as_array_mut() {
                list.push(serde_json::json!({"rate": offered, "seconds": seconds, "events": count,
                    "p50_ms": p50, "p99_ms": p99, "max_ms": max}));
            }
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("webhooks.json"), serde_json::to_vec_pretty(&report).unwrap_or_default());
    });
}

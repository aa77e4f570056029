//! Battery W2: 10,000 events to 50 endpoints while a third answer 503, a third refuse
//! connections and a third hang, for 60 s; then they recover. Nothing may be lost, and every
//! attempt of an event carries the same delivery id.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::{config, Harness};
use islet_testkit::receiver::{Mode, Receiver};

const ENDPOINTS: usize = 50;
const EVENTS: usize = 10_000;
const OUTAGE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_survive_a_sixty_second_outage() {
    let h = Harness::start(config()).await;
    let mut endpoints = Vec::new();
    for i in 0..ENDPOINTS {
        let rx = Receiver::start().await;
        let tenant = h.tenant().await;
        h.webhook(&tenant, rx.url("/"), &["sandbox.*"]).await;
        endpoints.push((i, rx, tenant));
    }
    let outage_started = Instant::now();
    for (i, rx, _) in &endpoints {
        rx.set(match i % 3 {
            0 => Mode::Status(503),
            1 => Mode::Refuse,
            _ => Mode::Hang,
        })
        .await;
    }
    // The events arrive during the first 20 s of the outage, 200 per endpoint, spread over
    // 10 sandboxes each.
    let per_endpoint = EVENTS / ENDPOINTS;
    for round in 0..20 {
        for (i, _, tenant) in &endpoints {
            let start = round * per_endpoint / 20;
            let end = (round + 1) * per_endpoint / 20;
            let sandbox = format!("sandbox-{i}-{}", round % 10);
            h.emit(tenant, Some(&sandbox), "sandbox.running", start..end).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let remaining = OUTAGE.saturating_sub(outage_started.elapsed());
    tokio::time::sleep(remaining).await;
    let recovered_at = Instant::now();
    for (_, rx, _) in &endpoints {
        rx.set(Mode::Ok).await;
    }
    let drained = h.drained(Duration::from_secs(180)).await;
    let drain_time = recovered_at.elapsed();

    // Every event delivered (answered 200) at least once per endpoint; one delivery id each.
    let mut lost = 0;
    let mut duplicates = 0;
    let mut ids_per_event: HashMap<String, HashSet<String>> = HashMap::new();
    let mut lags = Vec::new();
    let mut attempts = 0;
    for (_, rx, _) in &endpoints {
        let hits = rx.hits();
        attempts += hits.len();
        let mut delivered: HashMap<i64, usize> = HashMap::new();
        for hit in &hits {
            let body = hit.json();
            ids_per_event
                .entry(body["event_id"].as_str().unwrap_or("").to_owned())
                .or_default()
                .insert(hit.header("x-miosa-delivery"));
            assert_eq!(body["id"].as_str(), Some(hit.header("x-miosa-delivery").as_str()));
            if hit.answered == 200 {
                *delivered.entry(body["data"]["n"].as_i64().unwrap_or(-1)).or_default() += 1;
                if hit.at > recovered_at {
                    lags.push(hit.at.duration_since(recovered_at));
                }
            }
        }
        lost += (0..per_endpoint as i64).filter(|n| !delivered.contains_key(n)).count();
        duplicates += delivered.values().map(|c| c - 1).sum::<usize>();
    }
    lags.sort();
    let p99 = lags.get(lags.len() * 99 / 100).copied().unwrap_or_default();
    println!(
        "W2: {EVENTS} events, {ENDPOINTS} endpoints, {attempts} attempts; lost {lost}, \
         duplicates {duplicates} ({:.3} %), drained {drain_time:.1?} after recovery, \
         recovery-to-delivery p99 {p99:.1?}",
        duplicates as f64 * 100.0 / EVENTS as f64
    );
    assert!(drained, "the outbox did not drain within 180 s of recovery");
    assert_eq!(lost, 0, "events lost");
    assert!(
        ids_per_event.values().all(|ids| ids.len() == 1),
        "an event changed delivery id between attempts"
    );
    assert_eq!(ids_per_event.len(), EVENTS);
    h.stop().await;
}

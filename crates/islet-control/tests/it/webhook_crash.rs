//! Battery W3: `islet serve` is killed with SIGKILL 20 times at random moments while it
//! delivers 10,000 events; after the last restart every event has arrived and the outbox has
//! drained. Duplicates are allowed (at least once) and counted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use islet_store::{NewEvent, NewWebhook, Store};
use islet_testkit::receiver::Receiver;
use islet_testkit::{data_dir, network_identity};
use rand::Rng;

use super::crash::spawn_with;

const EVENTS: usize = 10_000;
const KILLS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_twenty_times_during_ten_thousand_deliveries_loses_nothing() {
    let (prefix, octet) = network_identity();
    let data = data_dir(&format!("whcrash-{prefix}"));
    let rx = Receiver::start().await;
    // This process writes the events, as state changes would, into the server's own store.
    let store = Store::open(&data.join("islet.db")).unwrap();
    let tenant = store.create_tenant("w3".into(), None).await.unwrap().tenant_id;
    store
        .create_webhook(
            &tenant,
            NewWebhook {
                url: rx.url("/"),
                name: None,
                events: vec!["sandbox.*".into()],
                headers: Default::default(),
                metadata: Default::default(),
                retry_count: 7,
                active: true,
                secret: islet_webhooks::signing::Secret::generate().expose().into(),
            },
            100,
        )
        .await
        .unwrap();
    let flags =
        ["--webhook-allow-private", "--webhook-timeout", "2", "--webhook-retry-scale", "0.001"];
    let started = Instant::now();
    let mut server = spawn_with(&data, &prefix, octet, &flags);
    let mut emitted = 0;
    for _ in 0..KILLS {
        // Emit a share of the events, then kill at a random moment while they are delivered.
        let share = EVENTS / KILLS;
        for batch in 0..share / 50 {
            let events = (0..50)
                .map(|i| {
                    let n = emitted + batch * 50 + i;
                    NewEvent {
                        tenant_id: tenant.clone(),
                        sandbox_id: Some(format!("sandbox-{}", n % 97)),
                        event_type: "sandbox.running".into(),
                        data: serde_json::json!({"n": n}),
                    }
                })
                .collect();
            store.emit_events(events).await.unwrap();
        }
        emitted += share;
        let wait = rand::thread_rng().gen_range(50..600);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        server = spawn_with(&data, &prefix, octet, &flags);
    }
    assert_eq!(emitted, EVENTS);
    let drained_by = Instant::now() + Duration::from_secs(120);
    let complete = |hits: &[islet_testkit::receiver::Hit]| {
        let mut seen = std::collections::HashSet::new();
        for h in hits.iter().filter(|h| h.answered == 200) {
            seen.insert(h.json()["data"]["n"].as_i64().unwrap_or(-1));
        }
        seen.len() >= EVENTS
    };
    rx.wait_for(drained_by.saturating_duration_since(Instant::now()), complete).await;
    while store.pending_deliveries().await.unwrap() > 0 && Instant::now() < drained_by {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drain = started.elapsed();
    let mut per_event: HashMap<i64, usize> = HashMap::new();
    let mut ids: HashMap<i64, std::collections::HashSet<String>> = HashMap::new();
    for h in rx.hits().iter().filter(|h| h.answered == 200) {
        let n = h.json()["data"]["n"].as_i64().unwrap_or(-1);
        *per_event.entry(n).or_default() += 1;
        ids.entry(n).or_default().insert(h.header("x-miosa-delivery"));
    }
    let lost = (0..EVENTS as i64).filter(|n| !per_event.contains_key(n)).count();
    let duplicates: usize = per_event.values().map(|c| c - 1).sum();
    println!(
        "W3: {EVENTS} events, {KILLS} SIGKILLs; lost {lost}, duplicates {duplicates}, \
         all delivered and drained {drain:.1?} after the first start"
    );
    assert_eq!(lost, 0, "events lost");
    assert_eq!(store.pending_deliveries().await.unwrap(), 0, "the outbox did not drain");
    assert!(ids.values().all(|s| s.len() == 1), "a redelivery changed its delivery id");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

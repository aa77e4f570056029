//! What receivers see and how the dispatcher treats what they answer (battery W4), plus
//! signatures, ordering, and SSRF at delivery time.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use islet_store::{WebhookPatch, DISABLED_FAILING, DISABLED_GONE};
use islet_webhooks::{DispatcherConfig, TargetPolicy};
use sha2::Sha256;

use crate::{config, Harness};
use islet_testkit::receiver::{Mode, Receiver};

const WAIT: Duration = Duration::from_secs(15);

fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("key");
    m.update(msg);
    hex::encode(m.finalize().into_bytes())
}

#[tokio::test]
async fn deliveries_carry_both_signature_schemes_and_custom_headers() {
    let h = Harness::start(config()).await;
    let rx = Receiver::start().await;
    let tenant = h.tenant().await;
    let w = h.webhook(&tenant, rx.url("/hook"), &["sandbox.*"]).await;
    let mut headers = std::collections::BTreeMap::new();
    headers.insert("x-tenant-route".to_string(), "blue".to_string());
    h.store
        .update_webhook(
            &tenant,
            &w.id,
            WebhookPatch { headers: Some(headers), ..Default::default() },
        )
        .await
        .expect("headers");
    h.emit(&tenant, Some("sbx_aaaaaaaaaaaaaaaaaaaa"), "sandbox.running", 0..1).await;
    let hits = rx.wait_for(WAIT, |h| !h.is_empty()).await;
    let hit = hits.first().expect("a delivery");
    let body = hit.json();
    assert_eq!(hit.header("content-type"), "application/json");
    assert_eq!(hit.header("x-miosa-event"), "sandbox.running");
    assert_eq!(hit.header("x-miosa-delivery"), body["id"].as_str().unwrap_or("-"));
    assert_eq!(body["delivery_id"], body["id"]);
    assert_eq!(hit.header("x-tenant-route"), "blue");
    // MIOSA: HMAC-SHA256 keyed with the secret string itself, lower-case hex.
    assert_eq!(
        hit.header("x-miosa-signature"),
        format!("sha256={}", hmac_hex(w.secret.as_bytes(), &hit.body))
    );
    // Standard Webhooks: keyed with the decoded secret, over id.timestamp.body.
    let key = STANDARD.decode(w.secret.trim_start_matches("whsec_")).expect("base64");
    let signed = [
        hit.header("webhook-id").as_bytes(),
        b".",
        hit.header("webhook-timestamp").as_bytes(),
        b".",
        &hit.body,
    ]
    .concat();
    let mut m = Hmac::<Sha256>::new_from_slice(&key).expect("key");
    m.update(&signed);
    assert_eq!(
        hit.header("webhook-signature"),
        format!("v1,{}", STANDARD.encode(m.finalize().into_bytes()))
    );
    assert_eq!(hit.header("webhook-id"), hit.header("x-miosa-delivery"));
    let ts: u64 = hit.header("webhook-timestamp").parse().expect("timestamp");
    let t = hit.header("miosa-signature");
    assert!(t.starts_with(&format!("t={ts},v1=")), "{t}");
    assert!(islet_webhooks::verify::verify_miosa(&hit.body, &t, &w.secret, ts));
    h.stop().await;
}

#[tokio::test]
async fn rotation_signs_with_both_secrets_during_grace() {
    let h = Harness::start(config()).await;
    let rx = Receiver::start().await;
    let tenant = h.tenant().await;
    let w = h.webhook(&tenant, rx.url("/"), &["*"]).await;
    let new = islet_webhooks::signing::Secret::generate();
    let until = islet_types::time::now_millis() + 60_000;
    h.store
        .rotate_webhook_secret(&tenant, &w.id, new.expose().into(), until)
        .await
        .expect("rotate");
    h.emit(&tenant, None, "quota.exceeded", 0..1).await;
    let hits = rx.wait_for(WAIT, |h| !h.is_empty()).await;
    let hit = hits.first().expect("a delivery");
    assert_eq!(
        hit.header("x-miosa-signature"),
        format!("sha256={}", hmac_hex(new.expose().as_bytes(), &hit.body))
    );
    assert_eq!(
        hit.header("x-miosa-signature-previous"),
        format!("sha256={}", hmac_hex(w.secret.as_bytes(), &hit.body))
    );
    let (id, ts, sig) = (
        hit.header("webhook-id"),
        hit.header("webhook-timestamp"),
        hit.header("webhook-signature"),
    );
    let now: u64 = ts.parse().expect("ts");
    assert_eq!(sig.split(' ').count(), 2);
    for secret in [new.expose(), w.secret.as_str()] {
        assert!(islet_webhooks::verify::verify_standard(secret, &id, &ts, &sig, &hit.body, now));
    }
    h.stop().await;
}

#[tokio::test]
async fn retries_keep_the_delivery_id_and_body_and_follow_the_schedule() {
    let h = Harness::start(config()).await;
    let rx = Receiver::start().await;
    rx.script(vec![Mode::Status(500), Mode::Status(503), Mode::Status(404)]);
    let tenant = h.tenant().await;
    let w = h.webhook(&tenant, rx.url("/"), &["*"]).await;
    h.emit(&tenant, None, "usage.reported", 0..1).await;
    let hits = rx.wait_for(WAIT, |h| h.iter().any(|x| x.answered == 200)).await;
    assert_eq!(hits.len(), 4, "three failures then a success");
    let id = hits[0].header("x-miosa-delivery");
    assert!(hits.iter().all(|x| x.header("x-miosa-delivery") == id && x.body == hits[0].body));
    // Gaps: at least the scaled steps 5 ms, 300 ms, 1.8 s, less 10 % jitter.
    for (i, step) in [5u64, 300, 1800].iter().enumerate() {
        let gap = hits[i + 1].at.duration_since(hits[i].at);
        assert!(gap >= Duration::from_millis(step * 9 / 10), "gap {i} {gap:?}");
        assert!(gap <= Duration::from_millis(step * 11 / 10 + 400), "gap {i} {gap:?}");
    }
    let (log, _) = h.store.list_deliveries(&tenant, &w.id, 10, None).await.expect("log");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].state, "delivered");
    let statuses: Vec<Option<u16>> = log[0].attempt_log.iter().map(|a| a.status).collect();
    assert_eq!(statuses, vec![Some(500), Some(503), Some(404), Some(200)]);
    h.stop().await;
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let h = Harness::start(config()).await;
    let rx = Receiver::start().await;
    rx.set(Mode::Redirect).await;
    let tenant = h.tenant().await;
    let w = h.webhook(&tenant, rx.url("/hook"), &["*"]).await;
    h.emit(&tenant, None, "quota.exceeded", 0..1).await;
    rx.wait_for(WAIT, |h| h.len() >= 2).await;
    let hits = rx.hits();
    assert!(hits.len() >= 2, "retried");
    assert!(hits.iter().all(|x| x.path == "/hook"), "a redirect was followed");
    let (log, _) = h.store.list_deliveries(&tenant, &w.id, 10, None).await.expect("log");
    let first = &log[0].attempt_log[0];
    assert_eq!(first.status, Some(302));
    assert_eq!(first.error.as_deref(), Some("redirect not followed"));
    h.stop().await;
}

#[tokio::test]
async fn gone_disables_the_endpoint_and_tells_the_others() {
    let h = Harness::start(config()).await;
    let (gone, watcher) = (Receiver::start().await, Receiver::start().await);
    gone.set(Mode::Status(410)).await;
    let tenant = h.tenant().await;
    let w = h.webhook(&tenant, gone.url("/"), &["sandbox.*"]).await;
    h.webhook(&tenant, watcher.url("/"), &["webhook.*"]).await;
    h.emit(&tenant, Some("sbx_bbbbbbbbbbbbbbbbbbbb"), "sandbox.created", 0..5).await;
    let seen = watcher
        .wait_for(WAIT, |h| h.iter().any(|x| x.header("x-miosa-event") == "webhook.disabled"))
        .await;
    let note = seen
        .iter()
        .find(|x| x.header("x-miosa-event") == "webhook.disabled")
        .expect("webhook.disabled");
    assert_eq!(note.json()["data"]["webhook_id"], w.id.as_str());
    assert_eq!(note.json()["data"]["reason"], DISABLED_GONE);
    let after = h.store.get_webhook(&tenant, &w.id).await.expect("webhook");
    assert!(!after.active);
    assert_eq!(after.disabled_reason.as_deref(), Some(DISABLED_GONE));
    // One attempt, then nothing: the four queued behind it failed with the endpoint.
    assert_eq!(gone.hits().len(), 1);
    assert!(h.drained(WAIT).await);
    let (log, _) = h.store.list_deliveries(&tenant, &w.id, 10, None).await.expect("log");
    assert!(log.iter().all(|d| d.state == "failed"));
    h.stop().await;
}

#[tokio::test]
async fn retry_after_defers_the_next_attempt() {
    let h = Harness::start(config()).await;
    let rx = Receiver::start().await;
    rx.script(vec![Mode::RetryAfter(503, "2".into())]);
    let tenant = h.tenant().await;
    h.webhook(&tenant, rx.url("/"), &["*"]).await;
    h.emit(&tenant, None, "quota.exceeded", 0..1).await;
    let hits = rx.wait_for(WAIT, |h| h.len() >= 2).await;
    assert_eq!(hits.len(), 2);
    let gap = hits[1].at.duration_since(hits[0].at);
    // The schedule alone would have retried after 5 ms.
    assert!(gap >= Duration::from_secs(2), "retried after {gap:?}");
    assert!(gap < Duration::from_secs(4), "retried after {gap:?}");
    h.stop().await;
}

#[tokio::test]
async fn hanging_receivers_time_out_and_endless_answers_are_cut() {
    let h = Harness::start(DispatcherConfig { timeout: Duration::from_secs(1), ..config() }).await;
    let (hang, endless) = (Receiver::start().await, Receiver::start().await);
    hang.set(Mode::Hang).await;
    endless.set(Mode::Endless).await;
    let tenant = h.tenant().await;
    let w_hang = h.webhook(&tenant, hang.url("/"), &["*"]).await;
    let w_endless = h.webhook(&tenant, endless.url("/"), &["*"]).await;
    h.emit(&tenant, None, "quota.exceeded", 0..1).await;
    hang.wait_for(WAIT, |h| h.len() >= 2).await;
    let (log, _) = h.store.list_deliveries(&tenant, &w_hang.id, 10, None).await.expect("log");
    let first = &log[0].attempt_log[0];
    assert_eq!(first.status, None);
    assert!(first.error.as_deref().unwrap_or("").contains("timed out"), "{first:?}");
    assert!((900..2000).contains(&first.duration_ms), "{}", first.duration_ms);
    // The endless body: 200 is success; at most the kept prefix is stored, well inside the timeout.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (log, _) =
            h.store.list_deliveries(&tenant, &w_endless.id, 10, None).await.expect("log");
        if let Some(a) = log.first().and_then(|d| d.attempt_log.first()) {
            assert_eq!(log[0].state, "delivered");
            assert_eq!(a.status, Some(200));
            assert!(
                a.response.as_deref().unwrap_or("").len() <= islet_webhooks::deliver::RESPONSE_KEEP
            );
            assert!(a.duration_ms < 900, "read took {} ms", a.duration_ms);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no attempt recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.stop().await;
}

#[tokio::test]
async fn an_endpoint_failing_past_the_limit_is_disabled() {
    let h = Harness::start(DispatcherConfig { disable_after: Duration::from_secs(2), ..config() })
        .await;
    let rx = Receiver::start().await;
    rx.set(Mode::Status(500)).await;
    let tenant = h.tenant().await;
    let w = h.webhook(&tenant, rx.url("/"), &["*"]).await;
    // A steady trickle of events keeps attempts coming until the clock runs out.
    let deadline = std::time::Instant::now() + WAIT;
    let disabled = loop {
        h.emit(&tenant, None, "quota.exceeded", 0..1).await;
        let now = h.store.get_webhook(&tenant, &w.id).await.expect("webhook");
        if !now.active {
            break now;
        }
        assert!(std::time::Instant::now() < deadline, "never disabled");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(disabled.disabled_reason.as_deref(), Some(DISABLED_FAILING));
    let since = disabled.failing_since.expect("failing since");
    let last = disabled.last_failure_at.expect("last failure");
    assert!(last - since >= 2000);
    // Re-activating gives it a fresh clock.
    let back = h
        .store
        .update_webhook(&tenant, &w.id, WebhookPatch { active: Some(true), ..Default::default() })
        .await
        .expect("reactivate");
    assert!(back.active && back.disabled_reason.is_none() && back.failing_since.is_none());
    h.stop().await;
}

#[tokio::test]
async fn a_sandbox_s_events_arrive_in_order() {
    let h = Harness::start(config()).await;
    let rx = Receiver::start().await;
    // Early failures must not let later events overtake.
    rx.script(vec![Mode::Status(500), Mode::Ok, Mode::Status(503)]);
    let tenant = h.tenant().await;
    h.webhook(&tenant, rx.url("/"), &["*"]).await;
    let (a, b) = ("sbx_cccccccccccccccccccc", "sbx_dddddddddddddddddddd");
    for chunk in 0..5 {
        h.emit(&tenant, Some(a), "sandbox.paused", chunk * 20..chunk * 20 + 20).await;
        h.emit(&tenant, Some(b), "sandbox.resumed", chunk * 20..chunk * 20 + 20).await;
    }
    assert!(h.drained(Duration::from_secs(30)).await);
    let hits = rx.hits();
    for sandbox in [a, b] {
        let delivered: Vec<i64> = hits
            .iter()
            .filter(|x| x.answered == 200 && x.json()["data"]["id"] == sandbox)
            .map(|x| x.json()["data"]["n"].as_i64().unwrap_or(-1))
            .collect();
        assert_eq!(delivered, (0..100).collect::<Vec<i64>>(), "{sandbox} out of order");
    }
    h.stop().await;
}

#[tokio::test]
async fn private_targets_are_refused_at_delivery_time() {
    let h = Harness::start(DispatcherConfig {
        policy: TargetPolicy { allow_private: false, sandbox_net: None },
        ..config()
    })
    .await;
    let rx = Receiver::start().await;
    let tenant = h.tenant().await;
    // Stored directly (the API would refuse them); the dispatcher must refuse them too.
    let by_name =
        h.webhook(&tenant, format!("https://localhost:{}/", rx.addr.port()), &["*"]).await;
    let by_ip = h.webhook(&tenant, format!("https://127.0.0.1:{}/", rx.addr.port()), &["*"]).await;
    let mapped =
        h.webhook(&tenant, format!("https://[::ffff:7f00:1]:{}/", rx.addr.port()), &["*"]).await;
    h.emit(&tenant, None, "quota.exceeded", 0..1).await;
    for w in [&by_name, &by_ip, &mapped] {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let (log, _) = h.store.list_deliveries(&tenant, &w.id, 1, None).await.expect("log");
            if let Some(a) = log.first().and_then(|d| d.attempt_log.first()) {
                let error = a.error.clone().unwrap_or_default();
                assert!(
                    error.contains("private") || error.contains("loopback"),
                    "{}: {error}",
                    w.url
                );
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no attempt for {}", w.url);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(rx.hits().is_empty(), "a private target was reached");
    h.stop().await;
}

#[tokio::test]
async fn history_is_pruned_but_nothing_pending_is() {
    let h = Harness::start(config()).await;
    let (ok, down) = (Receiver::start().await, Receiver::start().await);
    down.set(Mode::Status(503)).await;
    let tenant = h.tenant().await;
    let w_ok = h.webhook(&tenant, ok.url("/"), &["*"]).await;
    let w_down = h.webhook(&tenant, down.url("/"), &["*"]).await;
    h.emit(&tenant, None, "quota.exceeded", 0..10).await;
    ok.wait_for(WAIT, |h| h.len() >= 10).await;
    // Wait until the healthy endpoint's deliveries are recorded.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (log, _) = h.store.list_deliveries(&tenant, &w_ok.id, 100, None).await.expect("log");
        if log.len() == 10 && log.iter().all(|d| d.state == "delivered") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let future = islet_types::time::now_millis() + 60_000;
    let (deliveries, events) = h.store.prune_webhook_history(future, 5000).await.expect("prune");
    assert_eq!(deliveries, 10, "the ten delivered ones go");
    assert_eq!(events, 10, "fanned-out events go");
    let (kept, _) = h.store.list_deliveries(&tenant, &w_down.id, 100, None).await.expect("log");
    assert_eq!(kept.len(), 10, "pending deliveries stay");
    assert!(kept.iter().all(|d| d.state == "pending"));
    h.stop().await;
}

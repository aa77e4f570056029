//! Webhooks through the API: management, real sandbox lifecycle events delivered to a local
//! receiver, test deliveries, the delivery log, replays, event streams, and tenancy.

use std::time::Duration;

use futures::StreamExt;
use islet_control::Config;
use islet_testkit::receiver::{Mode, Receiver};
use islet_testkit::TestServer;
use islet_webhooks::{DispatcherConfig, TargetPolicy};
use serde_json::{json, Value};

fn config() -> Config {
    Config {
        webhooks: DispatcherConfig {
            policy: TargetPolicy { allow_private: true, sandbox_net: None },
            timeout: Duration::from_secs(2),
            schedule: islet_webhooks::schedule::RetrySchedule::scaled(0.001),
            poll: Duration::from_millis(100),
            ..DispatcherConfig::default()
        },
        ..Config::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_api_validates_and_hides_the_secret() {
    let server = TestServer::builder().control(config()).start().await;
    let tenant = server.tenant(None).await;
    let rx = Receiver::start().await;
    let created = tenant
        .call(
            "POST",
            "/webhooks",
            Some(json!({"url": rx.url("/hook"), "events": ["sandbox.*"], "name": "main",
                        "headers": {"X-Route": "blue"}, "metadata": {"team": "a"}})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(created.data()["secret"], secret.as_str());
    let id = created.id();
    assert!(id.starts_with("wh_"));
    assert_eq!(created.data()["retry_count"], 7);
    assert_eq!(created.data()["headers"]["x-route"], "blue");
    let got = tenant.call("GET", &format!("/webhooks/{id}"), None).await;
    assert_eq!(got.status, 200);
    assert!(!got.bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "secret shown again");
    assert!(got.text("/data/secret_preview").starts_with("whsec_"));
    let listed = tenant.call("GET", "/webhooks", None).await;
    assert_eq!(listed.data().as_array().unwrap().len(), 1);
    assert!(!listed.bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));

    let bad: Vec<(Value, &str)> = vec![
        (json!({"events": ["*"]}), "url"),
        (json!({"url": "https://169.254.169.254/", "events": ["*"]}), "url"),
        (json!({"url": "https://2852039166/", "events": ["*"]}), "url"),
        (json!({"url": "https://[::ffff:169.254.169.254]/", "events": ["*"]}), "url"),
        (json!({"url": "ftp://example.com/", "events": ["*"]}), "url"),
        (json!({"url": "not a url", "events": ["*"]}), "url"),
        (json!({"url": rx.url("/"), "events": ["sandbox.exploded"]}), "events"),
        (json!({"url": rx.url("/"), "events": []}), "events"),
        (json!({"url": rx.url("/"), "events": ["*"], "retry_count": 11}), "retry_count"),
        (json!({"url": rx.url("/"), "events": ["*"], "retry_count": -1}), "retry_count"),
        (
            json!({"url": rx.url("/"), "events": ["*"], "headers": {"X-Miosa-Signature": "x"}}),
            "headers",
        ),
        (json!({"url": rx.url("/"), "events": ["*"], "headers": {"Host": "x"}}), "headers"),
        (json!({"url": rx.url("/"), "events": ["*"], "headers": {"bad header": "x"}}), "headers"),
    ];
    for (body, field) in bad {
        let reply = tenant.call("POST", "/webhooks", Some(body.clone())).await;
        assert_eq!(reply.status, 400, "{body}: {:?}", reply.body);
        assert_eq!(reply.body["error"]["code"], "VALIDATION_FAILED");
        assert_eq!(reply.body["error"]["details"]["field"], field, "{body}");
    }

    let patched = tenant
        .call(
            "PATCH",
            &format!("/webhooks/{id}"),
            Some(json!({"active": false, "events": ["sandbox.ready"], "name": null})),
        )
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    assert_eq!(patched.data()["active"], false);
    assert_eq!(patched.data()["status"], "paused");
    assert_eq!(patched.data()["events"], json!(["sandbox.ready"]));
    assert!(patched.data()["name"].is_null());
    let test = tenant.call("POST", &format!("/webhooks/{id}/test"), None).await;
    assert_eq!(test.status, 409, "a paused endpoint cannot be tested");
    for field in ["url", "events", "headers", "metadata", "retry_count", "active"] {
        let reply =
            tenant.call("PATCH", &format!("/webhooks/{id}"), Some(json!({ field: null }))).await;
        assert_eq!(reply.status, 400, "{field}: null accepted");
        assert_eq!(reply.body["error"]["details"]["field"], field);
    }

    let catalogue = tenant.call("GET", "/webhooks/events", None).await;
    assert_eq!(catalogue.status, 200);
    assert_eq!(catalogue.body["signing"]["format"], "sha256=<hex>");
    assert!(catalogue.body["events"].as_array().unwrap().contains(&json!("sandbox.running")));
    assert!(catalogue.data()["sandbox"].as_array().unwrap().contains(&json!("sandbox.destroyed")));

    let rotated = tenant
        .call(
            "POST",
            &format!("/webhooks/{id}/rotate-secret"),
            Some(json!({"grace_period_sec": 60})),
        )
        .await;
    assert_eq!(rotated.status, 200);
    assert_ne!(rotated.body["secret"], secret.as_str());
    assert!(rotated.data()["previous_secret_expires_at"].is_string());

    let deleted = tenant.call("DELETE", &format!("/webhooks/{id}"), None).await;
    assert_eq!(deleted.status, 204);
    assert_eq!(tenant.status("GET", &format!("/webhooks/{id}"), None).await, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_events_reach_the_receiver_in_order_with_their_attribution() {
    let server = TestServer::builder().control(config()).start().await;
    let tenant = server.tenant(None).await;
    let rx = Receiver::start().await;
    let created = tenant
        .call(
            "POST",
            "/webhooks",
            Some(json!({"url": rx.url("/"), "events": ["sandbox.*", "sandbox.ready"]})),
        )
        .await;
    let wh = created.id();
    let id = tenant
        .sandbox(json!({"external_user_id": "user_42", "external_workspace_id": "ws_1",
                        "external_project_id": "proj_9", "metadata": {"plan": "pro"}}))
        .await;
    tenant.call("POST", &format!("/sandboxes/{id}/expose"), Some(json!({"port": 5173}))).await;
    tenant.destroy(&id).await;
    let hits = rx
        .wait_for(Duration::from_secs(30), |h| {
            h.iter().any(|x| x.header("x-miosa-event") == "sandbox.destroyed")
        })
        .await;
    let types: Vec<String> = hits.iter().map(|x| x.header("x-miosa-event")).collect();
    let position = |t: &str| {
        types.iter().position(|x| x == t).unwrap_or_else(|| panic!("no {t} in {types:?}"))
    };
    assert!(position("sandbox.created") < position("sandbox.running"));
    assert!(position("sandbox.running") < position("sandbox.destroyed"));
    assert!(types.contains(&"sandbox.ready".to_owned()), "the alias was asked for: {types:?}");
    let running = hits[position("sandbox.running")].json();
    assert_eq!(running["type"], "sandbox.running");
    assert_eq!(running["event"], "sandbox.running");
    assert_eq!(running["id"], running["delivery_id"]);
    assert_eq!(running["data"]["id"], id.as_str());
    assert_eq!(running["data"]["external_user_id"], "user_42");
    assert_eq!(running["data"]["external_workspace_id"], "ws_1");
    assert_eq!(running["data"]["external_project_id"], "proj_9");
    assert_eq!(running["data"]["metadata"]["plan"], "pro");
    let destroyed = hits[position("sandbox.destroyed")].json();
    let url = destroyed["data"]["preview_url"].as_str().unwrap_or_default();
    assert!(url.starts_with("http://5173-sbx-"), "{destroyed}");
    assert!(destroyed["data"]["usage"]["sandbox_seconds"].as_f64().unwrap() > 0.0);
    assert!(destroyed["data"]["usage"]["vcpu_seconds"].as_f64().unwrap() > 0.0);

    // The log has every delivery with its attempt.
    let log = tenant.call("GET", &format!("/webhooks/{wh}/deliveries"), None).await;
    let rows = log.data().as_array().unwrap();
    assert!(rows.len() >= 4, "{rows:?}");
    assert!(rows
        .iter()
        .all(|d| d["status"] == "delivered" && d["attempt_log"][0]["status_code"] == 200));

    // Replay: a new delivery naming the original; a reused replay_id is a conflict.
    let original = rows.iter().find(|d| d["event_type"] == "sandbox.created").unwrap();
    let did = original["id"].as_str().unwrap();
    let replay = tenant
        .call(
            "POST",
            &format!("/webhooks/{wh}/deliveries/{did}/replay"),
            Some(json!({"replay_id": "r-1"})),
        )
        .await;
    assert_eq!(replay.status, 202, "{:?}", replay.body);
    let new_id = replay.id();
    let again = tenant
        .call(
            "POST",
            &format!("/webhooks/{wh}/deliveries/{did}/replay"),
            Some(json!({"replay_id": "r-1"})),
        )
        .await;
    assert_eq!(again.status, 409);
    let hits = rx
        .wait_for(Duration::from_secs(10), |h| {
            h.iter().any(|x| x.header("x-miosa-delivery") == new_id)
        })
        .await;
    let replayed = hits
        .iter()
        .find(|x| x.header("x-miosa-delivery") == new_id)
        .expect("replay delivered")
        .json();
    assert_eq!(replayed["replay_of"], did);
    assert_eq!(replayed["event_id"], original["event_id"]);

    // No replays to an endpoint that is paused.
    tenant.call("PATCH", &format!("/webhooks/{wh}"), Some(json!({"active": false}))).await;
    let paused =
        tenant.call("POST", &format!("/webhooks/{wh}/deliveries/{did}/replay"), None).await;
    assert_eq!(paused.status, 409);
    tenant.call("PATCH", &format!("/webhooks/{wh}"), Some(json!({"active": true}))).await;

    // A test event, attempted once, answered synchronously.
    let test = tenant.call("POST", &format!("/webhooks/{wh}/test"), None).await;
    assert_eq!(test.data()["delivered"], true, "{:?}", test.body);
    rx.set(Mode::Status(500)).await;
    let failed = tenant.call("POST", &format!("/webhooks/{wh}/test"), None).await;
    assert_eq!(failed.data()["delivered"], false);
    assert_eq!(failed.data()["status_code"], 500);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_filter_by_type_and_external_user() {
    let server = TestServer::builder().control(config()).start().await;
    let tenant = server.tenant(None).await;
    let open = |path: String| {
        let http = tenant.http.clone();
        let url = format!("{}{path}", tenant.base);
        let key = tenant.key.clone();
        async move { http.get(url).bearer_auth(key).send().await.unwrap() }
    };
    let all = open("/events/stream?types=sandbox.running".into()).await;
    assert_eq!(all.status(), 200);
    assert!(all.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mine = open("/tenant/events/stream?scope=external_user:alice".into()).await;
    assert_eq!(open("/events/stream?types=NOPE!".into()).await.status(), 400);
    assert_eq!(open("/tenant/events/stream?scope=galaxy".into()).await.status(), 400);
    let bob = tenant.sandbox(json!({"external_user_id": "bob"})).await;
    let alice = tenant.sandbox(json!({"external_user_id": "alice"})).await;

    let read = |response: reqwest::Response, want: usize| async move {
        let mut stream = response.bytes_stream();
        let mut text = String::new();
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while events.len() < want {
            let chunk =
                tokio::time::timeout_at(deadline, stream.next()).await.expect("stream timed out");
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap().unwrap()));
            while let Some(end) = text.find("\n\n") {
                let frame: String = text.drain(..end + 2).collect();
                if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                    events.push(serde_json::from_str::<Value>(data).unwrap());
                }
            }
        }
        events
    };
    let running = read(all, 2).await;
    assert!(running.iter().all(|e| e["type"] == "sandbox.running"));
    let ids: Vec<&str> = running.iter().map(|e| e["data"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![bob.as_str(), alice.as_str()]);
    let alice_events = read(mine, 2).await;
    assert!(alice_events.iter().all(|e| e["data"]["external_user_id"] == "alice"));
    assert_eq!(alice_events[0]["type"], "sandbox.created");

    // A tenant holds at most 20 streams at once; closing one frees its slot.
    let mut held = Vec::new();
    for _ in 0..20 {
        let r = open("/events/stream".into()).await;
        assert_eq!(r.status(), 200);
        held.push(r);
    }
    let over = open("/events/stream".into()).await;
    assert_eq!(over.status(), 429);
    held.pop();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let again = open("/events/stream".into()).await;
        if again.status() == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_gets_404_on_every_webhook_route() {
    let server = TestServer::builder().control(config()).start().await;
    let owner = server.tenant(None).await;
    let intruder = server.tenant(None).await;
    let rx = Receiver::start().await;
    let created =
        owner.call("POST", "/webhooks", Some(json!({"url": rx.url("/"), "events": ["*"]}))).await;
    let wh = created.id();
    assert_eq!(
        owner.call("POST", &format!("/webhooks/{wh}/test"), None).await.data()["delivered"],
        true
    );
    let log = owner.call("GET", &format!("/webhooks/{wh}/deliveries"), None).await;
    let did = log.data()[0]["id"].as_str().unwrap().to_owned();
    let routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/webhooks/{wh}"), None),
        ("PATCH", format!("/webhooks/{wh}"), Some(json!({"active": false}))),
        ("POST", format!("/webhooks/{wh}/test"), None),
        ("POST", format!("/webhooks/{wh}/rotate-secret"), None),
        ("GET", format!("/webhooks/{wh}/deliveries"), None),
        ("GET", format!("/webhooks/{wh}/deliveries/{did}"), None),
        ("POST", format!("/webhooks/{wh}/deliveries/{did}/replay"), None),
        ("DELETE", format!("/webhooks/{wh}"), None),
    ];
    for (method, path, body) in &routes {
        let reply = intruder.call(method, path, body.clone()).await;
        assert_eq!(reply.status, 404, "{method} {path}: {:?}", reply.body);
        assert_eq!(reply.body["error"]["code"], "NOT_FOUND");
    }
    assert!(intruder.call("GET", "/webhooks", None).await.data().as_array().unwrap().is_empty());
    let still = owner.call("GET", &format!("/webhooks/{wh}"), None).await;
    assert_eq!(still.data()["active"], true);
    server.stop().await;
}

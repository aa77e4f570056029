//! Per-user quotas and policy (contract §11): limits hold under any concurrency, refusals say
//! which limit, runtime caps stop sandboxes on time, and the policy documents merge.

use std::time::{Duration, Instant};

use islet_testkit::{Client, TestServer};
use serde_json::{json, Value};

async fn tenant_id(server: &TestServer, client: &Client) -> islet_types::TenantId {
    server.state.store.authenticate(&client.key).await.unwrap().unwrap().tenant_id
}

async fn quota_events(server: &TestServer, client: &Client) -> Vec<Value> {
    let tenant = tenant_id(server, client).await;
    let events = server.state.store.events_after(&tenant, 0, 10_000).await.unwrap();
    events.into_iter().filter(|e| e.event_type == "quota.exceeded").map(|e| e.payload).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_parallel_creates_against_a_limit_of_five_admit_exactly_five() {
    // Rate limits off: all 500 must reach admission at once.
    let server = TestServer::builder()
        .control(islet_control::Config { api_rate_limit: 0, ..islet_control::Config::default() })
        .start()
        .await;
    let tenant = server.tenant(None).await;
    let set = tenant.call("PUT", "/quotas/external/racer", Some(json!({"max_sandboxes": 5}))).await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    assert_eq!(set.data()["max_sandboxes"], 5);
    assert_eq!(set.data()["limits"]["max_sandboxes"], 5);
    assert!(set.data()["limits"]["max_concurrent"].is_null());
    let requests = (0..500).map(|_| {
        tenant.call("POST", "/sandboxes?wait=false", Some(json!({"external_user_id": "racer"})))
    });
    let replies = futures::future::join_all(requests).await;
    let admitted: Vec<&str> = replies
        .iter()
        .filter(|r| r.status == 201 || r.status == 202)
        .map(|r| r.text("/data/id"))
        .collect();
    let refused: Vec<_> = replies.iter().filter(|r| r.status == 403).collect();
    assert_eq!(admitted.len(), 5, "admitted {}", admitted.len());
    assert_eq!(refused.len(), 495);
    for r in &refused {
        assert_eq!(r.body["error"]["code"], "QUOTA_EXCEEDED");
        assert_eq!(r.body["error"]["retryable"], false);
        let d = &r.body["error"]["details"];
        assert_eq!(
            (d["limit"].as_str(), d["max"].as_u64(), d["current"].as_u64()),
            (Some("max_sandboxes"), Some(5), Some(5))
        );
        assert_eq!(d["external_user_id"], "racer");
    }
    let events = quota_events(&server, &tenant).await;
    assert_eq!(events.len(), 495, "one quota.exceeded per refusal");
    assert_eq!(events[0]["data"]["limit"], "max_sandboxes");
    assert_eq!(events[0]["data"]["action"], "create");
    // Another user is not affected; the quota's usage counts what exists.
    assert_eq!(
        tenant
            .status("POST", "/sandboxes?wait=false", Some(json!({"external_user_id": "other"})))
            .await,
        202
    );
    let got = tenant.call("GET", "/quotas/external/racer", None).await;
    assert_eq!(got.data()["usage"]["total_sandboxes"], 5);
    assert_eq!(got.data()["sources"]["max_sandboxes"], "user");
    // Deleting the quota lifts it.
    assert_eq!(tenant.status("DELETE", "/quotas/external/racer", None).await, 204);
    assert_eq!(
        tenant
            .status("POST", "/sandboxes?wait=false", Some(json!({"external_user_id": "racer"})))
            .await,
        202
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_counts_what_holds_compute_and_resume_is_admitted_too() {
    let server = TestServer::start().await;
    let tenant = server.tenant(None).await;
    tenant
        .call("PUT", "/tenant/policy", Some(json!({"quotas": {"max_concurrent": 1, "max_cpu": 4}})))
        .await;
    let a = tenant.sandbox(json!({"external_user_id": "u1"})).await;
    let second = tenant.call("POST", "/sandboxes", Some(json!({"external_user_id": "u1"}))).await;
    assert_eq!(second.status, 403);
    assert_eq!(second.body["error"]["details"]["limit"], "max_concurrent");
    // A stopped sandbox holds no compute: the next one fits, and then `a` cannot resume.
    assert_eq!(tenant.status("POST", &format!("/sandboxes/{a}/stop"), Some(json!({}))).await, 200);
    let b = tenant.sandbox(json!({"external_user_id": "u1"})).await;
    let resume = tenant.call("POST", &format!("/sandboxes/{a}/resume"), Some(json!({}))).await;
    assert_eq!(resume.status, 403, "{:?}", resume.body);
    assert_eq!(resume.body["error"]["code"], "QUOTA_EXCEEDED");
    let events = quota_events(&server, &tenant).await;
    assert_eq!(events.last().unwrap()["data"]["action"], "resume");
    // The user's own document overrides the tenant default, field by field.
    tenant
        .call("PUT", "/external-users/u1/policy", Some(json!({"quotas": {"max_concurrent": 2}})))
        .await;
    let effective = tenant.call("GET", "/external-users/u1/effective-policy", None).await;
    assert_eq!(effective.data()["quotas"]["max_concurrent"], json!({"value": 2, "source": "user"}));
    assert_eq!(effective.data()["quotas"]["max_cpu"], json!({"value": 4, "source": "tenant"}));
    assert_eq!(
        effective.data()["quotas"]["max_sandboxes"],
        json!({"value": null, "source": "platform"})
    );
    assert_eq!(
        tenant.status("POST", &format!("/sandboxes/{a}/resume"), Some(json!({}))).await,
        200
    );
    for id in [&a, &b] {
        tenant.destroy(id).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_documents_validate_merge_and_set_defaults() {
    let server = TestServer::start().await;
    let tenant = server.tenant(None).await;
    let bad: Vec<(&str, &str, Value)> = vec![
        ("PUT", "/quotas/external/u", json!({"max_sandboxes": -1})),
        ("PUT", "/quotas/external/u", json!({"max_sandboxes": "5"})),
        ("PUT", "/quotas/external/u", json!({"max_rockets": 5})),
        ("PUT", "/tenant/policy", json!({"quotas": 5})),
        ("PUT", "/tenant/policy", json!({"quotas": {"max_cpu": 1.5}})),
        ("PUT", "/tenant/policy", json!({"quotas": {"max_sandbox": 3}})),
        ("PUT", "/external-users/u/policy", json!([1, 2])),
        (
            "PUT",
            "/external-users/u/policy",
            json!({"lifecycle": {"default_timeout_sec": {"x": 1}}}),
        ),
    ];
    for (method, path, body) in bad {
        let r = tenant.call(method, path, Some(body.clone())).await;
        assert_eq!(r.status, 400, "{path} {body}: {:?}", r.body);
        assert_eq!(r.body["error"]["code"], "VALIDATION_FAILED");
    }
    // Quotas are the user's `quotas` section; other sections stay.
    let set = tenant
        .call("PUT", "/external-users/u/policy", Some(json!({"lifecycle": {"default_timeout_sec": 120, "default_idle_timeout_sec": 60}, "billing": {"tier": "gold"}})))
        .await;
    assert_eq!(set.status, 200);
    tenant
        .call("PUT", "/quotas/external/u", Some(json!({"max_sandboxes": 3, "max_concurrent": 2})))
        .await;
    let doc = tenant.call("GET", "/external-users/u/policy", None).await;
    assert_eq!(doc.data()["quotas"], json!({"max_sandboxes": 3, "max_concurrent": 2}));
    assert_eq!(doc.data()["billing"]["tier"], "gold");
    // PUT replaces: a field left out is no longer capped for the user.
    tenant.call("PUT", "/quotas/external/u", Some(json!({"max_sandboxes": 4}))).await;
    let q = tenant.call("GET", "/quotas/external/u", None).await;
    assert_eq!(q.data()["max_sandboxes"], 4);
    assert!(q.data()["max_concurrent"].is_null());
    // Lifecycle defaults apply to a create that leaves them out, not one that sets them.
    let id = tenant.sandbox(json!({"external_user_id": "u"})).await;
    let got = tenant.call("GET", &format!("/sandboxes/{id}"), None).await;
    assert_eq!(got.data()["timeout_sec"], 120, "{:?}", got.body);
    let own = tenant.sandbox(json!({"external_user_id": "u", "timeout_sec": 900})).await;
    let got = tenant.call("GET", &format!("/sandboxes/{own}"), None).await;
    assert_eq!(got.data()["timeout_sec"], 900);
    // Another tenant's documents are its own.
    let other = server.tenant(None).await;
    let theirs = other.call("GET", "/external-users/u/policy", None).await;
    assert_eq!(theirs.data(), &json!({}));
    assert!(other.call("GET", "/quotas/external/u", None).await.data()["max_sandboxes"].is_null());
    assert_eq!(tenant.status("DELETE", "/external-users/u/policy", None).await, 204);
    assert_eq!(tenant.call("GET", "/external-users/u/policy", None).await.data(), &json!({}));
    for id in [&id, &own] {
        tenant.destroy(id).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sixty_second_runtime_cap_stops_the_sandbox_on_time_with_one_event() {
    let server = TestServer::start().await;
    let tenant = server.tenant(None).await;
    tenant.call("PUT", "/tenant/policy", Some(json!({"quotas": {"max_runtime_sec": 60}}))).await;
    let created = Instant::now();
    let id = tenant.sandbox(json!({"external_user_id": "capped", "timeout_sec": 3600})).await;
    let got = tenant.call("GET", &format!("/sandboxes/{id}"), None).await;
    assert_eq!(got.data()["timeout_sec"], 60, "the timeout is capped");
    // Extending cannot pass the cap either.
    let extended = tenant
        .call("POST", &format!("/sandboxes/{id}/extend"), Some(json!({"timeout_sec": 3600})))
        .await;
    assert_eq!(extended.status, 200, "{:?}", extended.body);
    let state = tenant.wait_for_state(&id, "destroyed", 90).await;
    let lived = created.elapsed();
    assert_eq!(state, "destroyed");
    assert!(
        lived >= Duration::from_secs(59) && lived <= Duration::from_secs(62),
        "stopped after {lived:?}"
    );
    let types = server.event_types(&id).await;
    assert_eq!(types.iter().filter(|t| *t == "sandbox.timeout").count(), 1, "{types:?}");
    println!("runtime cap 60 s: destroyed after {lived:.2?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_user_stops_loses_their_tokens_and_is_not_admitted() {
    let server = TestServer::start().await;
    let tenant = server.tenant(None).await;
    let running = tenant.sandbox(json!({"external_user_id": "mallory"})).await;
    let other = tenant.sandbox(json!({"external_user_id": "trent"})).await;
    let token = tenant
        .call("POST", "/tokens/scoped", Some(json!({"user_id": "mallory", "workspace_id": "w"})))
        .await;
    let browser = Client::new(&tenant.base, token.text("/data/token"));
    assert_eq!(browser.status("GET", "/sandboxes", None).await, 200);
    let suspended = tenant
        .call("POST", "/external-users/mallory/suspend", Some(json!({"reason": "crypto mining"})))
        .await;
    assert_eq!(suspended.status, 200, "{:?}", suspended.body);
    assert_eq!(suspended.data()["stopped"], json!([running]));
    assert_eq!(tenant.state(&running).await, "stopped");
    assert_eq!(tenant.state(&other).await, "running", "other users are untouched");
    assert_eq!(browser.status("GET", "/sandboxes", None).await, 401, "their tokens die");
    let create =
        tenant.call("POST", "/sandboxes", Some(json!({"external_user_id": "mallory"}))).await;
    assert_eq!(create.status, 403);
    assert_eq!(create.body["error"]["code"], "USER_SUSPENDED");
    let mint = tenant
        .call("POST", "/tokens/scoped", Some(json!({"user_id": "mallory", "workspace_id": "w"})))
        .await;
    assert_eq!(mint.status, 403, "no new credentials for a suspended user");
    assert_eq!(mint.body["error"]["code"], "USER_SUSPENDED");
    let resume =
        tenant.call("POST", &format!("/sandboxes/{running}/resume"), Some(json!({}))).await;
    assert_eq!(resume.status, 403);
    let user = tenant.call("GET", "/external-users/mallory", None).await;
    assert_eq!(user.data()["suspended"], true);
    assert_eq!(user.data()["suspension_reason"], "crypto mining");
    let tenant_id = tenant_id(&server, &tenant).await;
    let events = server.state.store.events_after(&tenant_id, 0, 1000).await.unwrap();
    assert!(events.iter().any(|e| e.event_type == "user.suspended"));
    // Lifted: admitted again.
    let lifted = tenant.call("POST", "/external-users/mallory/unsuspend", None).await;
    assert_eq!(lifted.data()["was_suspended"], true);
    assert_eq!(
        tenant.status("POST", &format!("/sandboxes/{running}/resume"), Some(json!({}))).await,
        200
    );
    for id in [&running, &other] {
        tenant.destroy(id).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_running_time_stops_the_user_and_refuses_more() {
    let server = TestServer::builder()
        .control(islet_control::Config {
            meter_interval: Duration::from_millis(300),
            ..islet_control::Config::default()
        })
        .start()
        .await;
    let tenant = server.tenant(None).await;
    tenant
        .call("PUT", "/quotas/external/hasty", Some(json!({"max_sandbox_seconds_per_day": 3})))
        .await;
    let id = tenant.sandbox(json!({"external_user_id": "hasty"})).await;
    let started = Instant::now();
    let state = tenant.wait_for_state(&id, "stopped", 20).await;
    assert_eq!(state, "stopped", "stopped after {:?}", started.elapsed());
    assert!(started.elapsed() >= Duration::from_secs(3));
    println!("daily cap 3 s: stopped after {:.2?}", started.elapsed());
    let create =
        tenant.call("POST", "/sandboxes", Some(json!({"external_user_id": "hasty"}))).await;
    assert_eq!(create.status, 403);
    assert_eq!(create.body["error"]["details"]["limit"], "max_sandbox_seconds_per_day");
    let events = quota_events(&server, &tenant).await;
    assert!(events.iter().any(|e| e["data"]["action"] == "stop"));
    let sessions = tenant.call("GET", "/usage/sessions?external_user_id=hasty", None).await;
    assert_eq!(sessions.data()[0]["sandbox_id"], id.as_str());
    assert!(sessions.data()[0]["sandbox_seconds"].as_f64().unwrap() >= 3.0);
    tenant.destroy(&id).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monthly_credit_cap_prices_usage_stops_the_user_and_refuses_with_402() {
    let server = TestServer::builder()
        .control(islet_control::Config {
            meter_interval: Duration::from_millis(300),
            ..islet_control::Config::default()
        })
        .start()
        .await;
    let tenant = server.tenant(None).await;
    // Bad price lists are refused whole, and change nothing.
    for bad in [
        json!({"pricing": {"sandbox_hour_cents": -1}}),
        json!({"pricing": {"sandbox_hour_cents": 1e9}}),
        json!({"pricing": {"gold_bars": 1}}),
        json!({"pricing": {"vcpu_hour_cents": 1}, "allowed_origins": ["nope"]}),
    ] {
        let r = tenant.call("PUT", "/settings", Some(bad.clone())).await;
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
    }
    let settings = tenant.call("GET", "/settings", None).await;
    assert_eq!(settings.data()["pricing"]["vcpu_hour_cents"], 0.0);
    // A cent per second of running, and 2 cents per GiB-hour of disk.
    let set = tenant
        .call(
            "PUT",
            "/settings",
            Some(json!({"pricing": {"sandbox_hour_cents": 3600, "storage_gib_hour_cents": 2}})),
        )
        .await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    assert_eq!(set.data()["pricing"]["sandbox_hour_cents"], 3600.0);
    tenant.call("PUT", "/quotas/external/spender", Some(json!({"max_credit_cents": 3}))).await;
    let id = tenant.sandbox(json!({"external_user_id": "spender"})).await;
    let started = Instant::now();
    let state = tenant.wait_for_state(&id, "stopped", 20).await;
    assert_eq!(state, "stopped", "stopped after {:?}", started.elapsed());
    println!("credit cap 3 cents at 1 cent/s: stopped after {:.2?}", started.elapsed());
    let create =
        tenant.call("POST", "/sandboxes", Some(json!({"external_user_id": "spender"}))).await;
    assert_eq!(create.status, 402, "{:?}", create.body);
    assert_eq!(create.body["error"]["code"], "INSUFFICIENT_CREDITS");
    assert_eq!(create.body["error"]["details"]["limit"], "max_credit_cents");
    // Resuming is refused the same way.
    let resume = tenant.call("POST", &format!("/sandboxes/{id}/resume"), Some(json!({}))).await;
    assert_eq!(resume.status, 402, "{:?}", resume.body);
    let events = quota_events(&server, &tenant).await;
    assert!(events
        .iter()
        .any(|e| e["data"]["action"] == "stop" && e["data"]["limit"] == "max_credit_cents"));
    // The usage reports price what was used: seconds × 1 cent + GiB-hours × 2 cents.
    let usage = tenant.call("GET", "/usage?external_user_id=spender&period=mtd", None).await;
    let row = &usage.data()["results"][0];
    let expected =
        row["sandbox_seconds"].as_f64().unwrap() + 2.0 * row["storage_gib_hours"].as_f64().unwrap();
    assert!((row["credit_cents_exact"].as_f64().unwrap() - expected).abs() < 1e-6, "{row}");
    assert!(row["credit_cents"].as_u64().unwrap() >= 3, "{row}");
    let own = tenant.call("GET", &format!("/sandboxes/{id}/usage"), None).await;
    assert!(own.data()["estimated_cost_cents"].as_f64().unwrap() >= 3.0);
    // Another user of the same tenant is untouched by this one's cap.
    let other = tenant.call("POST", "/sandboxes", Some(json!({"external_user_id": "saver"}))).await;
    assert_eq!(other.status, 201, "{:?}", other.body);
    // Raising the cap lets the user back in.
    tenant.call("PUT", "/quotas/external/spender", Some(json!({"max_credit_cents": 100000}))).await;
    let resume = tenant.call("POST", &format!("/sandboxes/{id}/resume"), Some(json!({}))).await;
    assert_eq!(resume.status, 200, "{:?}", resume.body);
    for id in [id.as_str(), other.text("/data/id")] {
        tenant.destroy(id).await;
    }
    server.stop().await;
}

/// `islet user suspend|unsuspend`, run by the operator against a live server's data.
fn operator(data: &std::path::Path, args: &[&str]) -> (bool, Value, String) {
    let out = std::process::Command::new(islet_testkit::bin_dir().join("islet"))
        .arg("user")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), json, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_suspends_and_reinstates_a_user_from_the_command_line() {
    use super::crash::{spawn_with, tenant_key};
    let (prefix, octet) = islet_testkit::network_identity();
    let data = islet_testkit::data_dir(&format!("operator-{prefix}"));
    let key = tenant_key(&data, "acme-operator");
    let mut server = spawn_with(&data, &prefix, octet, &[]);
    let tenant = Client::new(&server.base, &key);
    let id = tenant.sandbox(json!({"external_user_id": "rogue"})).await;
    let bystander = tenant.sandbox(json!({"external_user_id": "fine"})).await;
    let token = tenant
        .call("POST", "/tokens/scoped", Some(json!({"user_id": "rogue", "workspace_id": "w"})))
        .await;
    let browser = Client::new(&server.base, token.text("/data/token"));
    assert_eq!(browser.status("GET", "/sandboxes", None).await, 200);

    // Bad input changes nothing.
    let (ok, _, err) = operator(&data, &["suspend", "--tenant", "nobody", "--user", "rogue"]);
    assert!(!ok && err.contains("no tenant"), "{err}");
    let (ok, _, err) = operator(&data, &["suspend", "--tenant", "acme-operator", "--user", ""]);
    assert!(!ok && err.contains("--user"), "{err}");

    let started = Instant::now();
    let (ok, said, err) = operator(
        &data,
        &["suspend", "--tenant", "acme-operator", "--user", "rogue", "--reason", "abuse"],
    );
    assert!(ok, "{err}");
    assert_eq!(said["suspended"], true);
    // At once: the user's token is dead and nothing of theirs is admitted.
    assert_eq!(browser.status("GET", "/sandboxes", None).await, 401);
    let create =
        tenant.call("POST", "/sandboxes", Some(json!({"external_user_id": "rogue"}))).await;
    assert_eq!(create.status, 403, "{:?}", create.body);
    assert_eq!(create.body["error"]["code"], "USER_SUSPENDED");
    // Within the server's sweep: their sandbox stops; nobody else's does.
    assert_eq!(tenant.wait_for_state(&id, "stopped", 20).await, "stopped");
    println!("operator suspension: sandbox stopped {:.2?} after the command", started.elapsed());
    assert_eq!(tenant.state(&bystander).await, "running");
    let user = tenant.call("GET", "/external-users/rogue", None).await;
    assert_eq!(user.data()["suspended"], true, "{:?}", user.body);
    assert_eq!(user.data()["suspended_by"], "operator");
    // The tenant cannot lift the operator's suspension, nor overwrite its reason.
    let lift = tenant.call("POST", "/external-users/rogue/unsuspend", Some(json!({}))).await;
    assert_eq!(lift.status, 409, "{:?}", lift.body);
    let again =
        tenant.call("POST", "/external-users/rogue/suspend", Some(json!({"reason": "mine"}))).await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    let user = tenant.call("GET", "/external-users/rogue", None).await;
    assert_eq!(user.data()["suspended_by"], "operator");
    assert_eq!(user.data()["suspension_reason"], "abuse");

    let (ok, said, err) =
        operator(&data, &["unsuspend", "--tenant", "acme-operator", "--user", "rogue"]);
    assert!(ok, "{err}");
    assert_eq!(said["was_suspended"], true);
    // The tenant's own suspension (made while the operator's stood) outlives the operator's.
    assert_eq!(said["suspended"], true);
    let user = tenant.call("GET", "/external-users/rogue", None).await;
    assert_eq!(user.data()["suspended_by"], "tenant");
    assert_eq!(user.data()["suspension_reason"], "mine");
    let lift = tenant.call("POST", "/external-users/rogue/unsuspend", Some(json!({}))).await;
    assert_eq!(lift.status, 200, "{:?}", lift.body);
    assert_eq!(lift.data()["was_suspended"], true);
    let again = tenant.call("POST", "/sandboxes", Some(json!({"external_user_id": "rogue"}))).await;
    assert_eq!(again.status, 201, "{:?}", again.body);
    for id in [id.as_str(), bystander.as_str(), again.text("/data/id")] {
        tenant.destroy(id).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

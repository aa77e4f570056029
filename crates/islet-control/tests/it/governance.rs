//! Governance beyond one user: workspace policy between the tenant's and the user's, bulk jobs
//! over many sandboxes, who pays (`bill-to`, `limits`) and per-member caps.

use std::time::Duration;

use islet_testkit::{eventually, Client, TestServer};
use serde_json::{json, Value};

async fn finished_job(client: &Client, job: &str) -> Value {
    eventually("the bulk job finishes", Duration::from_secs(60), || async {
        let reply = client.call("GET", &format!("/bulk/jobs/{job}"), None).await;
        (reply.data()["status"] == "finished").then(|| reply.data().clone())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_policy_sits_between_tenant_and_user() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let put = client
        .call(
            "PUT",
            "/workspaces/team-a/policy",
            Some(json!({"quotas": {"max_concurrent": 1}, "lifecycle": {"default_idle_timeout_sec": 120}})),
        )
        .await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    assert_eq!(
        client.call("GET", "/workspaces/team-a/policy", None).await.data()["quotas"]
            ["max_concurrent"],
        1
    );
    // Bad documents and ids are refused like the user's.
    let bad = client
        .call("PUT", "/workspaces/team-a/policy", Some(json!({"quotas": {"max_cpu": -1}})))
        .await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    let long = "w".repeat(300);
    assert_eq!(client.call("GET", &format!("/workspaces/{long}/policy"), None).await.status, 400);

    // In the workspace: its default applies and its limit holds; outside it, neither.
    let first = client
        .call(
            "POST",
            "/sandboxes",
            Some(json!({"external_user_id": "u1", "external_workspace_id": "team-a"})),
        )
        .await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    assert_eq!(first.data()["idle_timeout_sec"], 120, "{:?}", first.body);
    let second = client
        .call(
            "POST",
            "/sandboxes",
            Some(json!({"external_user_id": "u1", "external_workspace_id": "team-a"})),
        )
        .await;
    assert_eq!(second.status, 403, "{:?}", second.body);
    assert_eq!(second.body["error"]["details"]["limit"], "max_concurrent");
    let elsewhere = client
        .call(
            "POST",
            "/sandboxes",
            Some(json!({"external_user_id": "u1", "external_workspace_id": "team-b"})),
        )
        .await;
    assert_eq!(elsewhere.status, 201, "{:?}", elsewhere.body);
    assert_ne!(elsewhere.data()["idle_timeout_sec"], 120);

    // The effective policy says where each value comes from.
    client
        .call("PUT", "/external-users/u1/policy", Some(json!({"quotas": {"max_sandboxes": 9}})))
        .await;
    let eff =
        client.call("GET", "/external-users/u1/effective-policy?workspace_id=team-a", None).await;
    let quotas = &eff.data()["quotas"];
    assert_eq!(
        quotas["max_concurrent"],
        json!({"value": 1, "source": "workspace"}),
        "{:?}",
        eff.body
    );
    assert_eq!(quotas["max_sandboxes"], json!({"value": 9, "source": "user"}));
    let outside = client.call("GET", "/external-users/u1/effective-policy", None).await;
    assert_eq!(outside.data()["quotas"]["max_concurrent"]["source"], "platform");
    let unknown =
        client.call("GET", "/external-users/u1/effective-policy?workspace=team-a", None).await;
    assert_eq!(unknown.status, 400, "{:?}", unknown.body);

    // Removed, the workspace limit no longer holds; another tenant never saw it.
    let other = server.tenant(None).await;
    assert!(other
        .call("GET", "/workspaces/team-a/policy", None)
        .await
        .data()
        .as_object()
        .unwrap()
        .is_empty());
    assert_eq!(client.call("DELETE", "/workspaces/team-a/policy", None).await.status, 204);
    let third = client
        .call(
            "POST",
            "/sandboxes",
            Some(json!({"external_user_id": "u1", "external_workspace_id": "team-a"})),
        )
        .await;
    assert_eq!(third.status, 201, "{:?}", third.body);
    for id in [first.id(), elsewhere.id(), third.id()] {
        client.destroy(&id).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_jobs_apply_to_each_sandbox_and_report_each_outcome() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let other = server.tenant(None).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(client.sandbox(json!({"tags": ["batch"], "external_user_id": "u1"})).await);
    }
    let spare = client.sandbox(json!({"tags": ["keep"]})).await;
    let foreign = other.sandbox(json!({"tags": ["batch"]})).await;

    // Bad requests are refused whole.
    for (op, body, status) in [
        ("explode", json!({"ids": [ids[0]]}), 404),
        ("pause", json!({}), 400),
        ("pause", json!({"filter": {}}), 400),
        ("pause", json!({"ids": []}), 400),
        ("pause", json!({"ids": [ids[0]], "filter": {"tags": ["batch"]}}), 400),
        ("pause", json!({"filter": {"state": "dreaming"}}), 400),
        ("pause", json!({"filter": {"owner": "u1"}}), 400),
    ] {
        let reply = client.call("POST", &format!("/bulk/sandboxes/{op}"), Some(body.clone())).await;
        assert_eq!(reply.status, status, "{op} {body}: {:?}", reply.body);
    }

    // By filter: the tenant's three tagged sandboxes, not the other tenant's.
    let accepted = client
        .call("POST", "/bulk/sandboxes/pause", Some(json!({"filter": {"tags": ["batch"]}})))
        .await;
    assert_eq!(accepted.status, 202, "{:?}", accepted.body);
    assert_eq!(accepted.body["queued"], 3);
    let job = accepted.body["job_id"].as_str().unwrap().to_owned();
    let done = finished_job(&client, &job).await;
    assert_eq!((done["succeeded"].as_u64(), done["failed"].as_u64()), (Some(3), Some(0)), "{done}");
    for id in &ids {
        assert_eq!(
            client.call("GET", &format!("/sandboxes/{id}"), None).await.data()["state"],
            "paused"
        );
    }
    assert_eq!(
        other.call("GET", &format!("/sandboxes/{foreign}"), None).await.data()["state"],
        "running"
    );

    // By ids: a paused one stays paused (pausing is idempotent), a foreign or made-up id is
    // skipped as not found, the spare is paused; nothing of the other tenant's moves.
    let accepted = client
        .call(
            "POST",
            "/bulk/sandboxes/pause",
            Some(json!({"ids": [ids[0], foreign, "sbx_nope", spare]})),
        )
        .await;
    let job = accepted.body["job_id"].as_str().unwrap().to_owned();
    let done = finished_job(&client, &job).await;
    let items = done["items"].as_array().unwrap();
    let status: Vec<&str> = items.iter().map(|i| i["status"].as_str().unwrap()).collect();
    assert_eq!(status, ["succeeded", "skipped", "skipped", "succeeded"], "{done}");
    assert_eq!(items[1]["error"]["code"], "NOT_FOUND");
    assert_eq!(items[2]["error"]["code"], "NOT_FOUND");
    assert_eq!(
        items[1]["error"]["message"], items[2]["error"]["message"],
        "a foreign id reads as a made-up one"
    );
    assert_eq!(
        other.call("GET", &format!("/sandboxes/{foreign}"), None).await.data()["state"],
        "running"
    );
    assert_eq!(other.call("GET", &format!("/bulk/jobs/{job}"), None).await.status, 404);

    // Resume by user, then destroy by tag.
    let accepted = client
        .call("POST", "/bulk/sandboxes/resume", Some(json!({"filter": {"external_user_id": "u1"}})))
        .await;
    let done = finished_job(&client, accepted.body["job_id"].as_str().unwrap()).await;
    assert_eq!(done["succeeded"], 3, "{done}");
    let accepted = client
        .call("POST", "/bulk/sandboxes/destroy", Some(json!({"filter": {"tags": ["batch"]}})))
        .await;
    let done = finished_job(&client, accepted.body["job_id"].as_str().unwrap()).await;
    assert_eq!(done["succeeded"], 3, "{done}");
    for id in &ids {
        assert_eq!(
            client.call("GET", &format!("/sandboxes/{id}"), None).await.data()["state"],
            "destroyed"
        );
    }
    client.destroy(&spare).await;
    other.destroy(&foreign).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bill_to_is_the_own_organization_and_member_caps_are_quotas() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let other = server.tenant(None).await;
    let plan = client.call("GET", "/tenant/plan", None).await;
    let (tenant, name) =
        (plan.text("/data/tenant_id").to_owned(), plan.text("/data/name").to_owned());
    let other_tenant =
        other.call("GET", "/tenant/plan", None).await.text("/data/tenant_id").to_owned();

    let shown = client.call("GET", "/bill-to", None).await;
    assert_eq!(
        (shown.data()["org"]["id"].as_str(), shown.data()["source"].as_str()),
        (Some(tenant.as_str()), Some("credential"))
    );
    let with_header = |value: &str| {
        let request = client.http.get(format!("{}/bill-to", client.base)).bearer_auth(&client.key);
        request.header("x-miosa-bill-to", value)
    };
    let own = with_header(&name.to_uppercase()).send().await.unwrap();
    assert_eq!(own.status(), 200);
    assert_eq!(own.json::<Value>().await.unwrap()["data"]["source"], "override");
    let theirs = with_header(&other_tenant).send().await.unwrap();
    assert_eq!(theirs.status(), 404);
    assert_eq!(theirs.json::<Value>().await.unwrap()["error"]["code"], "ORG_NOT_FOUND");
    // A create meant for another organization is refused, not billed here.
    let create = client
        .http
        .post(format!("{}/sandboxes", client.base))
        .bearer_auth(&client.key)
        .header("x-miosa-bill-to", &other_tenant)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), 404);
    let listed = client.call("GET", "/sandboxes", None).await;
    assert!(listed.data().as_array().unwrap().is_empty(), "{:?}", listed.body);
    assert_eq!(client.call("PUT", "/bill-to", Some(json!({"org": tenant}))).await.status, 200);
    let pin = client.call("PUT", "/bill-to", Some(json!({"org": other_tenant}))).await;
    assert_eq!((pin.status, pin.body["error"]["code"].as_str()), (404, Some("ORG_NOT_FOUND")));
    assert_eq!(client.call("PUT", "/bill-to", Some(json!({}))).await.status, 400);
    assert_eq!(client.call("DELETE", "/bill-to", None).await.status, 204);
    let limits = client.call("GET", "/limits", None).await;
    assert_eq!(limits.data()["org"]["id"], tenant.as_str(), "{:?}", limits.body);
    assert!(limits.data()["limits"]["max_timeout_sec"].as_u64().is_some());

    // Member caps are the end user's quotas, read and written in place.
    let caps = format!("/tenants/{tenant}/member-caps");
    let set = client
        .call(
            "PUT",
            &format!("{caps}/u1"),
            Some(json!({"usage_cap_cents": 500, "max_concurrent_sandboxes": 1})),
        )
        .await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    let quota = client.call("GET", "/quotas/external/u1", None).await;
    assert_eq!(
        (quota.data()["max_credit_cents"].as_u64(), quota.data()["max_concurrent"].as_u64()),
        (Some(500), Some(1))
    );
    let id = client.sandbox(json!({"external_user_id": "u1"})).await;
    let over = client.call("POST", "/sandboxes", Some(json!({"external_user_id": "u1"}))).await;
    assert_eq!(over.status, 403, "{:?}", over.body);
    let listed = client.call("GET", &caps, None).await;
    let members = listed.data()["members"].as_array().unwrap().clone();
    assert_eq!(members.len(), 1, "{:?}", listed.body);
    assert_eq!(members[0]["user_id"], "u1");
    assert_eq!(members[0]["usage"]["concurrent_sandboxes"], 1);
    // null clears one cap, leaving the other; the rest of the user's quotas are untouched.
    client.call("PUT", "/quotas/external/u2", Some(json!({"max_sandboxes": 4}))).await;
    let cleared =
        client.call("PUT", &format!("{caps}/u1"), Some(json!({"usage_cap_cents": null}))).await;
    assert_eq!(cleared.data()["usage_cap_cents"], Value::Null);
    assert_eq!(cleared.data()["max_concurrent_sandboxes"], 1);
    for bad in [
        json!({"usage_cap_cents": -5}),
        json!({"caps": 1}),
        json!({"max_concurrent_sandboxes": "2"}),
    ] {
        assert_eq!(
            client.call("PUT", &format!("{caps}/u1"), Some(bad.clone())).await.status,
            400,
            "{bad}"
        );
    }
    // Another organization's caps are not found, whoever asks.
    let foreign = client.call("GET", &format!("/tenants/{other_tenant}/member-caps"), None).await;
    assert_eq!(
        (foreign.status, foreign.body["error"]["code"].as_str()),
        (404, Some("ORG_NOT_FOUND"))
    );
    let foreign =
        other.call("PUT", &format!("{caps}/u1"), Some(json!({"usage_cap_cents": 1}))).await;
    assert_eq!(foreign.status, 404);
    assert_eq!(client.call("DELETE", &format!("{caps}/u1"), None).await.status, 204);
    assert!(client.call("GET", &caps, None).await.data()["members"].as_array().unwrap().is_empty());
    assert_eq!(client.call("GET", "/quotas/external/u2", None).await.data()["max_sandboxes"], 4);
    client.destroy(&id).await;
    server.stop().await;
}

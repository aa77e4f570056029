//! Tenants never see each other's sandboxes: every route answers 404 for a foreign ID.

use islet_testkit::TestServer;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_tenant_gets_404_on_every_route() {
    let server = TestServer::start().await;
    let owner = server.tenant(None).await;
    let intruder = server.tenant(None).await;
    let id = owner.sandbox(json!({"name": "mine"})).await;
    // The owner's preview objects, which the intruder must not find either.
    let preview =
        owner.call("POST", &format!("/sandboxes/{id}/expose"), Some(json!({"port": 8000}))).await;
    let pid = preview.id();
    let token =
        owner.call("POST", &format!("/sandboxes/{id}/preview-token"), Some(json!({}))).await;
    let tid = token.id();
    let share = owner.call("POST", &format!("/sandboxes/{id}/shares"), Some(json!({}))).await;
    let sid = share.text("/data/share_id").to_owned();
    // Every declared `/sandboxes/{id}…` route, with every kind of method it answers: a route
    // added later is covered without touching this test.
    let mut tried = 0;
    for route in islet_control::api::routes::table() {
        if !route.path.starts_with("/sandboxes/{id}") {
            continue;
        }
        let path = route
            .path
            .replace("{id}", &id)
            .replace("{pid}", &pid)
            .replace("{token_id}", &tid)
            .replace("{share_id}", &sid)
            .replace("{*rest}", "stat");
        for method in route.methods.examples() {
            let body = (method != "GET" && method != "DELETE").then(|| valid_body(route.path));
            let reply = intruder.call(method, &path, body).await;
            assert_eq!(reply.status, 404, "{method} {path}: {:?}", reply.body);
            assert_eq!(reply.body["error"]["code"], "NOT_FOUND", "{method} {path}");
            tried += 1;
        }
    }
    eprintln!("cross-tenant walk: {tried} requests, each 404");
    assert!(tried >= 50, "only {tried} sandbox routes were tried");
    let by_name = intruder.call("GET", "/sandboxes/by-name/mine", None).await;
    assert_eq!(by_name.status, 404, "{:?}", by_name.body);
    let listed = intruder.call("GET", "/sandboxes", None).await;
    assert!(listed.data().as_array().unwrap().is_empty());
    // The owner's preview objects are untouched.
    let previews = owner.call("GET", &format!("/sandboxes/{id}/previews"), None).await;
    assert_eq!(previews.data().as_array().unwrap().len(), 1, "{:?}", previews.body);
    let tokens = owner.call("GET", &format!("/sandboxes/{id}/preview-tokens"), None).await;
    assert_eq!(tokens.data()[0]["id"], tid.as_str());
    let shares = owner.call("GET", &format!("/sandboxes/{id}/shares"), None).await;
    assert_eq!(shares.data()[0]["share_id"], sid.as_str());
    // The owner's sandbox is untouched.
    let mine = owner.call("GET", &format!("/sandboxes/{id}"), None).await;
    assert_eq!(mine.data()["state"], "running");
    assert!(mine.data()["metadata"].as_object().unwrap().is_empty());
    // The owner may spell its ID percent-encoded; the agent still gets the right path.
    let encoded = id.replace('_', "%5F");
    let reply = owner
        .call("POST", &format!("/sandboxes/{encoded}/exec"), Some(json!({"command": "echo ok"})))
        .await;
    assert_eq!(reply.data()["stdout"], "ok\n", "{:?}", reply.body);
    // Without a key: 401 with the error envelope and a request id.
    let anonymous = islet_testkit::Client::new(&server.base, "msk_live_nope")
        .call("GET", "/sandboxes", None)
        .await;
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.body["request_id"].as_str().unwrap().starts_with("req_"));
    server.stop().await;
}

/// A body the route would accept from its owner, so a refusal is about the sandbox, not the
/// body.
fn valid_body(pattern: &str) -> serde_json::Value {
    match pattern.trim_start_matches("/sandboxes/{id}") {
        "" => json!({"metadata": {"x": 1}}),
        "/tags" => json!({"tags": ["x"]}),
        "/extend" => json!({"timeout_sec": 60}),
        "/expose" | "/previews" => json!({"port": 9000}),
        "/exec" | "/exec/{*rest}" | "/processes" => json!({"command": "id"}),
        "/fs/{*rest}" => json!({"path": "/tmp/x", "content": "x"}),
        _ => json!({}),
    }
}

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
    let pid = preview.body["data"]["id"].as_str().unwrap().to_owned();
    let token =
        owner.call("POST", &format!("/sandboxes/{id}/preview-token"), Some(json!({}))).await;
    let tid = token.body["data"]["id"].as_str().unwrap().to_owned();
    let share = owner.call("POST", &format!("/sandboxes/{id}/shares"), Some(json!({}))).await;
    let sid = share.body["data"]["share_id"].as_str().unwrap().to_owned();
    let routes: Vec<(&str, String, Option<serde_json::Value>)> = vec![
        ("POST", format!("/sandboxes/{id}/expose"), Some(json!({"port": 8000}))),
        ("GET", format!("/sandboxes/{id}/previews"), None),
        ("POST", format!("/sandboxes/{id}/previews"), Some(json!({"port": 9000}))),
        ("GET", format!("/sandboxes/{id}/previews/{pid}"), None),
        ("POST", format!("/sandboxes/{id}/previews/{pid}/share"), Some(json!({}))),
        ("DELETE", format!("/sandboxes/{id}/previews/{pid}/share"), None),
        ("DELETE", format!("/sandboxes/{id}/previews/{pid}"), None),
        ("POST", format!("/sandboxes/{id}/preview-token"), Some(json!({}))),
        ("GET", format!("/sandboxes/{id}/preview-tokens"), None),
        ("DELETE", format!("/sandboxes/{id}/preview-tokens/{tid}"), None),
        ("GET", format!("/sandboxes/{id}/shares"), None),
        ("POST", format!("/sandboxes/{id}/shares"), Some(json!({}))),
        ("DELETE", format!("/sandboxes/{id}/shares/{sid}"), None),
        ("GET", format!("/sandboxes/{id}"), None),
        ("PATCH", format!("/sandboxes/{id}"), Some(json!({"metadata": {"x": 1}}))),
        ("PATCH", format!("/sandboxes/{id}/tags"), Some(json!({"tags": ["x"]}))),
        ("POST", format!("/sandboxes/{id}/stop"), Some(json!({}))),
        ("POST", format!("/sandboxes/{id}/pause"), Some(json!({}))),
        ("POST", format!("/sandboxes/{id}/resume"), Some(json!({}))),
        ("POST", format!("/sandboxes/{id}/extend"), Some(json!({"timeout_sec": 60}))),
        ("GET", format!("/sandboxes/{id}/readiness"), None),
        ("GET", format!("/sandboxes/{id}/readiness/stream"), None),
        ("POST", format!("/sandboxes/{id}/exec"), Some(json!({"command": "id"}))),
        ("POST", format!("/sandboxes/{id}/exec/stream"), Some(json!({"command": "id"}))),
        (
            "POST",
            format!("/sandboxes/{id}/fs/write"),
            Some(json!({"path": "/tmp/x", "content": "x"})),
        ),
        ("GET", format!("/sandboxes/{id}/fs/download?path=/etc/hostname"), None),
        ("POST", format!("/sandboxes/{id}/fs/stat"), Some(json!({"path": "/"}))),
        ("GET", format!("/sandboxes/{id}/files?path=/"), None),
        ("GET", format!("/sandboxes/{id}/files/tree?path=/"), None),
        ("GET", format!("/sandboxes/{id}/files/etc/hostname"), None),
        ("GET", format!("/sandboxes/{id}/processes"), None),
        ("POST", format!("/sandboxes/{id}/processes"), Some(json!({"command": "sleep 1"}))),
        ("DELETE", format!("/sandboxes/{id}/processes/1"), None),
        ("POST", format!("/sandboxes/{id}/terminal"), Some(json!({}))),
        ("GET", format!("/sandboxes/{id}/terminal/stream"), None),
        ("GET", "/sandboxes/by-name/mine".to_owned(), None),
        ("DELETE", format!("/sandboxes/{id}"), None),
    ];
    for (method, path, body) in &routes {
        let reply = intruder.call(method, path, body.clone()).await;
        assert_eq!(reply.status, 404, "{method} {path}: {:?}", reply.body);
        assert_eq!(reply.body["error"]["code"], "NOT_FOUND", "{method} {path}");
    }
    let listed = intruder.call("GET", "/sandboxes", None).await;
    assert!(listed.body["data"].as_array().unwrap().is_empty());
    // The owner's preview objects are untouched.
    let previews = owner.call("GET", &format!("/sandboxes/{id}/previews"), None).await;
    assert_eq!(previews.body["data"].as_array().unwrap().len(), 1, "{:?}", previews.body);
    let tokens = owner.call("GET", &format!("/sandboxes/{id}/preview-tokens"), None).await;
    assert_eq!(tokens.body["data"][0]["id"], tid.as_str());
    let shares = owner.call("GET", &format!("/sandboxes/{id}/shares"), None).await;
    assert_eq!(shares.body["data"][0]["share_id"], sid.as_str());
    // The owner's sandbox is untouched.
    let mine = owner.call("GET", &format!("/sandboxes/{id}"), None).await;
    assert_eq!(mine.body["data"]["state"], "running");
    assert!(mine.body["data"]["metadata"].as_object().unwrap().is_empty());
    // The owner may spell its ID percent-encoded; the agent still gets the right path.
    let encoded = id.replace('_', "%5F");
    let reply = owner
        .call("POST", &format!("/sandboxes/{encoded}/exec"), Some(json!({"command": "echo ok"})))
        .await;
    assert_eq!(reply.body["data"]["stdout"], "ok\n", "{:?}", reply.body);
    // Without a key: 401 with the error envelope and a request id.
    let anonymous = islet_testkit::Client::new(&server.base, "msk_live_nope")
        .call("GET", "/sandboxes", None)
        .await;
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.body["request_id"].as_str().unwrap().starts_with("req_"));
    server.stop().await;
}

//! Every error is the envelope, whoever raised it (the API, the framework's extractors, the
//! sandbox's agent): one walk over every declared route with malformed path parameters,
//! malformed queries, malformed and oversized bodies and undeclared methods.

use std::time::Duration;

use islet_control::api::routes::{table, Methods};
use islet_testkit::{Client, TestServer};
use serde_json::{json, Value};

/// One request: its status, and the body when it is not a stream.
async fn send(
    client: &Client,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> (u16, String, Value) {
    // A connection per request: a refusal of an oversized body closes its connection early.
    static HTTP: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let http =
        HTTP.get_or_init(|| reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap());
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = http
        .request(method, format!("{}{path}", client.base))
        .bearer_auth(&client.key)
        .timeout(Duration::from_secs(30));
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if kind.starts_with("text/event-stream") {
        return (status, kind, Value::Null);
    }
    let bytes = response.bytes().await.unwrap_or_default();
    (
        status,
        kind,
        serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into())),
    )
}

/// A refusal must be the envelope: JSON, a code, a message, whether to retry, the request id.
fn assert_envelope(what: &str, (status, kind, body): &(u16, String, Value)) -> bool {
    if *status < 400 {
        return false;
    }
    assert!(kind.starts_with("application/json"), "{what}: {status} answered {kind}: {body}");
    let error = &body["error"];
    let code = error["code"].as_str().unwrap_or_default();
    assert!(
        !code.is_empty() && code.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
        "{what}: {status} without a code: {body}"
    );
    assert!(error["message"].is_string(), "{what}: no message: {body}");
    assert!(error["retryable"].is_boolean(), "{what}: no retryable: {body}");
    assert!(
        body["request_id"].as_str().is_some_and(|r| r.starts_with("req_")),
        "{what}: no request_id: {body}"
    );
    true
}

/// A method no declaration of the path answers.
fn undeclared(path: &str) -> Option<&'static str> {
    ["PATCH", "PUT", "DELETE", "POST", "GET"].into_iter().find(|m| {
        let method = reqwest::Method::from_bytes(m.as_bytes()).unwrap();
        !table().iter().any(|r| r.path == path && r.methods.matches(&method))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_errors_in_the_envelope() {
    // Hundreds of requests in a second or two: no rate limit in the way.
    let control = islet_control::Config {
        api_rate_limit: 1_000_000,
        api_user_rate_limit: 1_000_000,
        ..Default::default()
    };
    let server = TestServer::builder().control(control).start().await;
    let client = server.tenant(None).await;
    let id = client.sandbox(json!({"name": "envelopes"})).await;
    let pid = client
        .call("POST", &format!("/sandboxes/{id}/expose"), Some(json!({"port": 8000})))
        .await
        .id();
    let hook = client
        .call(
            "POST",
            "/webhooks",
            Some(json!({"url": "https://hooks.example.com/x", "events": ["sandbox.*"]})),
        )
        .await
        .id();
    let key = client
        .call("POST", "/api-keys", Some(json!({"name": "k", "scopes": ["sandboxes:read"]})))
        .await
        .id();
    let real = |path: &str| {
        path.replace(
            "{id}",
            if path.starts_with("/webhooks") {
                &hook
            } else if path.starts_with("/api-keys") {
                &key
            } else {
                &id
            },
        )
        .replace("{pid}", &pid)
        .replace("{uid}", "u1")
        .replace("{name}", "envelopes")
        .replace("{delivery}", "dlv_aaaaaaaaaaaaaaaaaaaa")
        .replace("{token_id}", "pvt_aaaaaaaaaaaaaaaaaaaa")
        .replace("{share_id}", "pvt_aaaaaaaaaaaaaaaaaaaa")
        .replace("{*rest}", "stat")
    };
    // The sandbox's own lifecycle is left alone, so the routes after these still reach it.
    let changes_lifecycle =
        |path: &str| ["/stop", "/pause", "/resume"].iter().any(|s| path.ends_with(s));
    // Past the 2 MiB limit, small enough that the refusal comes after the whole body is sent.
    let oversized = vec![b' '; 2 * 1024 * 1024 + 64 * 1024];
    let (mut routes, mut cases, mut refusals) = (0, 0, 0);
    for route in table() {
        routes += 1;
        for method in route.methods.examples() {
            let what = format!("{method} {}", route.path);
            // Every parameter malformed (not UTF-8).
            if route.path.contains('{') {
                let path = route
                    .path
                    .split('/')
                    .map(|s| if s.starts_with('{') { "%ff" } else { s })
                    .collect::<Vec<_>>()
                    .join("/");
                let reply = send(&client, method, &path, None).await;
                refusals += usize::from(assert_envelope(&format!("{what} (path)"), &reply));
                cases += 1;
            }
            if method == "DELETE" || changes_lifecycle(route.path) {
                continue;
            }
            let path = real(route.path);
            // A query of wrong types.
            let query = format!("{path}?limit=abc&offset=-1&period=%zz&wait=maybe&since=x&cursor=%ff&granularity=week");
            let reply = send(&client, method, &query, None).await;
            refusals += usize::from(assert_envelope(&format!("{what} (query)"), &reply));
            cases += 1;
            if method != "GET" {
                let reply = send(&client, method, &path, Some(b"{\"not json".to_vec())).await;
                refusals += usize::from(assert_envelope(&format!("{what} (body)"), &reply));
                let reply = send(&client, method, &path, Some(oversized.clone())).await;
                refusals += usize::from(assert_envelope(&format!("{what} (oversized)"), &reply));
                cases += 2;
            }
        }
        if let Some(method) = undeclared(route.path).filter(|_| route.methods != Methods::Any) {
            let reply = send(&client, method, &real(route.path), None).await;
            assert_eq!(reply.0, 405, "{method} {}: {:?}", route.path, reply.2);
            refusals +=
                usize::from(assert_envelope(&format!("{method} {} (method)", route.path), &reply));
            cases += 1;
        }
    }
    eprintln!("envelope walk: {routes} routes, {cases} cases, {refusals} refusals checked");
    assert!(routes >= 90 && refusals >= 250, "{routes} routes, {refusals} refusals");
    // The framework's own rejections named by the issue.
    let reply = send(&client, "GET", "/sandboxes?limit=abc", None).await;
    assert!(assert_envelope("a bad limit", &reply));
    assert_eq!((reply.0, reply.2["error"]["code"].as_str()), (400, Some("VALIDATION_FAILED")));
    let reply = send(&client, "GET", "/sandboxes/%ff", None).await;
    assert_eq!((reply.0, reply.2["error"]["code"].as_str()), (404, Some("NOT_FOUND")));
    let reply = send(&client, "POST", "/sandboxes", Some(oversized)).await;
    assert_eq!(
        (reply.0, reply.2["error"]["code"].as_str()),
        (413, Some("TOO_LARGE")),
        "{:?}",
        reply.2
    );
    // The agent's refusals carry the request id too.
    let reply =
        send(&client, "GET", &format!("/sandboxes/{id}/fs/download?path=/nope"), None).await;
    assert!(assert_envelope("a missing file", &reply));
    assert_eq!(reply.2["error"]["code"], "NOT_FOUND");
    client.destroy(&id).await;
    server.stop().await;
}

//! Idempotent creation under concurrency.

use islet_testkit::TestServer;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_parallel_creates_with_one_key_make_one_sandbox() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let body = json!({"external_user_id": "u-idem", "metadata": {"k": "v"}});
    let requests = (0..100).map(|_| client.create_with_key("key-one", &body));
    let replies = futures::future::join_all(requests).await;
    let ids: std::collections::BTreeSet<String> = replies
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 201, "{body}");
            assert_eq!(body["data"]["state"], "running", "{body}");
            body["data"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one sandbox for one key: {ids:?}");
    let listed = client.call("GET", "/sandboxes?external_user_id=u-idem", None).await;
    assert_eq!(listed.data().as_array().unwrap().len(), 1);

    // Same key, different body: refused. Another tenant's identical key is independent.
    let (status, error) =
        client.create_with_key("key-one", &json!({"external_user_id": "someone-else"})).await;
    assert_eq!(status, 422);
    assert_eq!(error["error"]["code"], "IDEMPOTENCY_KEY_REUSED");
    let second_tenant = server.tenant(None).await;
    let (_, theirs) = second_tenant.create_with_key("key-one", &body).await;
    assert!(!ids.contains(theirs["data"]["id"].as_str().unwrap()), "keys are scoped per tenant");
    server.stop().await;
}

//! Idempotent creation under concurrency.

use islet_testkit::TestServer;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_parallel_creates_with_one_key_make_one_sandbox() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let body = json!({"external_user_id": "u-idem", "metadata": {"k": "v"}});
    let requests = (0..100).map(|_| {
        let client = client.clone();
        let body = body.clone();
        async move {
            let response = client
                .http
                .post(format!("{}/sandboxes", client.base))
                .bearer_auth(&client.key)
                .header("Idempotency-Key", "key-one")
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let json: serde_json::Value = response.json().await.unwrap();
            (status, json)
        }
    });
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
    let listed = client
        .call("GET", "/sandboxes?external_user_id=u-idem", None)
        .await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);

    // Same key, different body: refused. Another tenant's identical key is independent.
    let other_body = client
        .http
        .post(format!("{}/sandboxes", client.base))
        .bearer_auth(&client.key)
        .header("Idempotency-Key", "key-one")
        .json(&json!({"external_user_id": "someone-else"}))
        .send()
        .await
        .unwrap();
    assert_eq!(other_body.status().as_u16(), 422);
    let error: serde_json::Value = other_body.json().await.unwrap();
    assert_eq!(error["error"]["code"], "IDEMPOTENCY_KEY_REUSED");
    let second_tenant = server.tenant(None).await;
    let theirs = second_tenant
        .http
        .post(format!("{}/sandboxes", second_tenant.base))
        .bearer_auth(&second_tenant.key)
        .header("Idempotency-Key", "key-one")
        .json(&body)
        .send()
        .await
        .unwrap();
    let theirs: serde_json::Value = theirs.json().await.unwrap();
    assert!(
        !ids.contains(theirs["data"]["id"].as_str().unwrap()),
        "keys are scoped per tenant"
    );
    server.stop().await;
}

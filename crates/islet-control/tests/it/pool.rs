//! The warm pool: a fitting create takes a pre-started sandbox, which becomes wholly the
//! tenant's; anything that does not fit starts a sandbox of its own; the pool refills.

use std::time::Duration;

use islet_control::Config;
use islet_store::ListFilter;
use islet_testkit::TestServer;
use serde_json::json;

async fn pool_members(server: &TestServer) -> usize {
    let Some(pool) = server.state.pool.get() else {
        return 0;
    };
    let filter = ListFilter {
        state: Some(islet_types::SandboxState::Running),
        limit: 100,
        ..Default::default()
    };
    server.state.store.list_sandboxes(&pool.tenant_id, filter).await.unwrap().0.len()
}

async fn wait_for_pool(server: &TestServer, size: usize) {
    let what = format!("the pool reaching {size}");
    islet_testkit::eventually(&what, Duration::from_secs(30), || async {
        (pool_members(server).await >= size).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fitting_create_takes_a_warm_sandbox_and_the_pool_refills() {
    let server =
        TestServer::builder().control(Config { warm_pool: 2, ..Config::default() }).start().await;
    let client = server.tenant(None).await;
    let other = server.tenant(None).await;
    wait_for_pool(&server, 2).await;

    let reply = client
        .call("POST", "/sandboxes", Some(json!({"external_user_id": "u1", "metadata": {"k": 1}})))
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let data = reply.data();
    let id = data["id"].as_str().unwrap().to_owned();
    assert_eq!(data["boot_ms"], 0, "taken from the pool, not started: {data}");
    assert_eq!(data["state"], "running");
    assert_eq!(data["external_user_id"], "u1");
    assert_eq!(
        data["tenant_id"],
        client.call("GET", &format!("/sandboxes/{id}"), None).await.data()["tenant_id"]
    );
    assert_eq!(data["timeout_sec"], 1800, "the tenant's timeout, not the pool's");
    let (code, out, _) = client.exec(&id, "hostname").await;
    assert_eq!((code, out.trim()), (0, id.replace('_', "-").as_str()));
    assert_eq!(other.status("GET", &format!("/sandboxes/{id}"), None).await, 404);

    // The tenant sees it created and running, like any other.
    assert_eq!(server.event_types(&id).await, ["sandbox.created", "sandbox.running"]);

    // With env it cannot come from the pool: it starts on its own.
    let reply = client.call("POST", "/sandboxes", Some(json!({"env": {"A": "b"}}))).await;
    assert_eq!(reply.status, 201);
    assert_ne!(reply.data()["boot_ms"], 0);

    wait_for_pool(&server, 2).await;
    server.stop().await;
}

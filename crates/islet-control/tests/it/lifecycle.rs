//! The lifecycle through the API: validation, stop/resume, pause, timeouts, events.

use islet_testkit::TestServer;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_creates_nothing() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    for (body, field) in [
        (json!({"template_id": "nope"}), "template_id"),
        (json!({"size": "huge"}), "size"),
        (json!({"timeout_sec": 0}), "timeout_sec"),
        (json!({"env": {"1X": "y"}}), "env"),
    ] {
        let reply = client.call("POST", "/sandboxes", Some(body)).await;
        assert_eq!(reply.status, 400);
        assert_eq!(reply.body["error"]["code"], "VALIDATION_FAILED");
        assert_eq!(reply.body["error"]["details"]["field"], field);
    }
    let raw = client
        .http
        .post(format!("{}/sandboxes", client.base))
        .bearer_auth(&client.key)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    assert_eq!(client.status("GET", "/sandboxes/sbx_not_an_id", None).await, 404);
    let listed = client.call("GET", "/sandboxes", None).await;
    assert!(listed.data().as_array().unwrap().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_keeps_files_and_resume_brings_them_back() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let id = client.sandbox(json!({"name": "keeper"})).await;
    client.exec(&id, "echo kept > /root/note").await;
    let stopped = client.call("POST", &format!("/sandboxes/{id}/stop"), Some(json!({}))).await;
    assert_eq!(stopped.data()["state"], "stopped");
    let refused = client
        .call("POST", &format!("/sandboxes/{id}/exec"), Some(json!({"command": "true"})))
        .await;
    assert_eq!(refused.status, 409);
    assert_eq!(refused.body["error"]["code"], "SANDBOX_NOT_RUNNING");
    let resumed = client.call("POST", &format!("/sandboxes/{id}/resume"), Some(json!({}))).await;
    assert_eq!(resumed.data()["state"], "running", "{:?}", resumed.body);
    assert_eq!(client.exec(&id, "cat /root/note").await.1, "kept\n");

    let paused = client.call("POST", &format!("/sandboxes/{id}/pause"), Some(json!({}))).await;
    assert_eq!(paused.data()["state"], "paused");
    let resumed = client.call("POST", &format!("/sandboxes/{id}/resume"), Some(json!({}))).await;
    assert_eq!(resumed.data()["state"], "running");
    assert_eq!(client.exec(&id, "echo awake").await.1, "awake\n");
    let by_name = client.call("GET", "/sandboxes/by-name/keeper", None).await;
    assert_eq!(by_name.data()["id"], id.as_str());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeout_destroys_unless_extended_and_events_record_it() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let short = client.sandbox(json!({"timeout_sec": 2})).await;
    let extended = client.sandbox(json!({"timeout_sec": 2})).await;
    let reply = client
        .call("POST", &format!("/sandboxes/{extended}/extend"), Some(json!({"timeout_sec": 600})))
        .await;
    assert_eq!(reply.data()["timeout_sec"], 600);
    assert_eq!(
        client.wait_for_state(&short, "destroyed", 10).await,
        "destroyed",
        "timed out sandbox is destroyed"
    );
    assert_eq!(client.state(&extended).await, "running");
    assert_eq!(
        server.event_types(&short).await,
        ["sandbox.created", "sandbox.running", "sandbox.timeout", "sandbox.destroyed"]
    );
    let payload = &server.events(&short).await[0].payload;
    assert_eq!(payload["type"], "sandbox.created");
    assert_eq!(payload["data"]["id"], short.as_str());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sandboxes_stop_unless_a_terminal_is_open() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let idle = client.sandbox(json!({"idle_timeout_sec": 3})).await;
    let watched = client.sandbox(json!({"idle_timeout_sec": 3})).await;
    let url =
        format!("{}/sandboxes/{watched}/terminal/stream", client.base.replace("http://", "ws://"));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {}", client.key).parse().unwrap());
    let (mut terminal, _) = tokio_tungstenite::connect_async(request).await.unwrap();

    assert_eq!(
        client.wait_for_state(&idle, "stopped", 10).await,
        "stopped",
        "no activity for 3 s stops the sandbox"
    );
    assert_eq!(client.state(&watched).await, "running", "an open terminal is activity");
    terminal.close(None).await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_task_died_is_started_by_the_reaper() {
    let config = islet_control::Config {
        stuck_create_after: std::time::Duration::from_secs(1),
        ..Default::default()
    };
    let server = TestServer::builder().control(config).start().await;
    let client = server.tenant(None).await;
    // Admitted, then nothing: as if the task that was starting it had died.
    let principal = server.state.store.authenticate(&client.key).await.unwrap().unwrap();
    let body: islet_types::CreateSandbox = serde_json::from_value(json!({
        "template_id": "miosa-sandbox", "name": null, "external_user_id": "stuck",
        "external_workspace_id": null, "external_project_id": null, "metadata": {},
        "tags": [], "env": {}, "resources": {"cpu_count": 1, "memory_mb": 512, "disk_mb": 1024},
        "timeout_sec": 600, "idle_timeout_sec": null, "isolation": null
    }))
    .unwrap();
    let admitted = server
        .state
        .store
        .begin_create(&principal.tenant_id, None, body, Default::default(), None)
        .await
        .unwrap();
    let islet_store::BeginCreate::New(record) = admitted else { panic!("expected a new sandbox") };
    let id = record.id.to_string();
    assert_eq!(client.wait_for_state(&id, "running", 15).await, "running", "the reaper started it");
    assert_eq!(client.exec(&id, "echo up").await.1, "up\n");
    server.stop().await;
}

/// Whether the OCI runtime still knows the container.
fn runtime_knows(runtime: &str, id: &str) -> bool {
    std::process::Command::new(runtime)
        .args([&format!("--root=/run/islet/{runtime}"), "state", id])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_sandbox_is_destroyed_whole_on_both_levels() {
    let server = TestServer::start().await;
    for (isolation, runtime) in [
        (islet_types::sandbox::Isolation::Container, "runc"),
        (islet_types::sandbox::Isolation::Gvisor, "runsc"),
    ] {
        let client = server.tenant(Some(isolation)).await;
        let id = client.sandbox(json!({})).await;
        assert_eq!(client.status("POST", &format!("/sandboxes/{id}/pause"), None).await, 200);
        assert!(runtime_knows(runtime, &id), "{runtime} runs it");
        assert_eq!(client.status("DELETE", &format!("/sandboxes/{id}"), None).await, 204);
        let state = client.call("GET", &format!("/sandboxes/{id}"), None).await;
        assert_eq!(state.data()["state"], "destroyed", "{runtime}: {:?}", state.body);
        // Nothing is left behind: not the container (runsc cannot delete it frozen), nor
        // its directory.
        assert!(!runtime_knows(runtime, &id), "{runtime} still has the paused container");
        assert!(!server.data_dir.join("sandboxes").join(&id).exists(), "{runtime}: files left");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_resume_never_unfreezes_the_sandbox() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let id = client.sandbox(json!({"external_user_id": "frozen"})).await;
    assert_eq!(client.status("POST", &format!("/sandboxes/{id}/pause"), None).await, 200);
    // Suspended in the store alone, so the paused sandbox is still there to be resumed.
    let tenant = server.state.store.get_sandbox_any(&id.parse().unwrap()).await.unwrap().tenant_id;
    server
        .state
        .store
        .suspend_user(&tenant, "frozen", None, islet_store::SuspendedBy::Tenant)
        .await
        .unwrap();
    let reply = client.call("POST", &format!("/sandboxes/{id}/resume"), None).await;
    assert_eq!((reply.status, reply.body["error"]["code"].as_str()), (403, Some("USER_SUSPENDED")));
    let out = std::process::Command::new("runc")
        .args(["--root=/run/islet/runc", "state", &id])
        .output()
        .unwrap();
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["status"], "paused", "the refused resume thawed it");
    assert_eq!(
        client.call("GET", &format!("/sandboxes/{id}"), None).await.data()["state"],
        "paused"
    );
    client.destroy(&id).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_is_held_to_the_create_bounds() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let id = client.sandbox(json!({})).await;
    let path = format!("/sandboxes/{id}");
    for (body, field) in [
        (json!({"metadata": {"x": "y".repeat(20 * 1024)}}), "metadata"),
        (json!({"idle_timeout_sec": 10_000_000_000_000_000u64}), "idle_timeout_sec"),
        (json!({"timeout_sec": 0}), "timeout_sec"),
        (json!({"tags": [""]}), "tags"),
        (json!({"name": ""}), "name"),
    ] {
        let reply = client.call("PATCH", &path, Some(body.clone())).await;
        assert_eq!(reply.status, 400, "{body}: {:?}", reply.body);
        assert_eq!(reply.body["error"]["details"]["field"], field, "{body}");
    }
    let ok = client
        .call("PATCH", &path, Some(json!({"metadata": {"k": "v"}, "idle_timeout_sec": 600})))
        .await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(
        (ok.data()["metadata"]["k"].as_str(), ok.data()["idle_timeout_sec"].as_u64()),
        (Some("v"), Some(600))
    );
    // The reaper keeps working (an unbounded idle timeout once overflowed it).
    assert_eq!(client.call("GET", &path, None).await.data()["state"], "running");
    client.destroy(&id).await;
    server.stop().await;
}

//! Resource limits hold inside one sandbox while the host and its neighbours carry on.

use islet_testkit::TestServer;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_hog_is_oom_killed_inside_its_sandbox() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let hog = client.sandbox(json!({"memory_mb": 128})).await;
    let neighbour = client.sandbox(json!({"memory_mb": 256})).await;
    let (code, _, _) =
        client.exec(&hog, "python3 -c 'x = bytearray(512 * 1024 * 1024); print(len(x))'").await;
    assert_eq!(code, 137, "killed by SIGKILL (the OOM killer)");
    // The hog's sandbox survives (its agent is unharmed) and so does the neighbour.
    assert_eq!(client.exec(&hog, "echo alive").await.1, "alive\n");
    assert_eq!(client.exec(&neighbour, "echo fine").await.1, "fine\n");
    let (code, out, _) = client
        .exec(&neighbour, "python3 -c 'x = bytearray(64 * 1024 * 1024); print(len(x))'")
        .await;
    assert_eq!((code, out.trim()), (0, "67108864"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_stops_at_the_pids_limit() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let id = client.sandbox(json!({})).await;
    // Try to fork far more processes than the limit; forks fail once it is reached.
    let bomb = r#"import glob, os, time
made = failed = 0
for _ in range(3000):
    try:
        pid = os.fork()
    except OSError:
        failed += 1
        continue
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    made += 1
print(len(glob.glob('/proc/[0-9]*')), made, failed, flush=True)
os.killpg(0, 9)
"#;
    client
        .call(
            "POST",
            &format!("/sandboxes/{id}/fs/write"),
            Some(json!({"path": "/tmp/bomb.py", "content": bomb})),
        )
        .await;
    let (_, out, _) = client.exec(&id, "python3 /tmp/bomb.py").await;
    let fields: Vec<u32> = out.split_whitespace().map(|f| f.parse().unwrap()).collect();
    assert_eq!(fields.len(), 3, "unexpected output {out:?}");
    let (count, made, failed) = (fields[0], fields[1], fields[2]);
    assert!(failed > 0, "forks were refused ({made} made, {failed} failed)");
    assert!(count <= 1024, "the sandbox holds at most 1024 tasks, saw {count}");
    assert!(count > 500, "and the limit, not something else, stopped it: {count}");
    // The agent still answers and the host is fine.
    let (code, out, _) = client.exec(&id, "echo recovered").await;
    assert_eq!((code, out.as_str()), (0, "recovered\n"));
    assert!(std::process::Command::new("true").status().unwrap().success());
    server.stop().await;
}

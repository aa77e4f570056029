//! A sandbox's root cannot use the paths the host touches on its behalf to reach outside.

use islet_testkit::TestServer;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlinked_agent_socket_does_not_reach_another_sandbox() {
    let server = TestServer::start().await;
    let attacker = server.tenant(None).await;
    let victim = server.tenant(None).await;
    let a = attacker.sandbox(json!({})).await;
    let b = victim.sandbox(json!({})).await;
    let b_socket = server.data_dir.join("sandboxes").join(&b).join("disk/agent/agent.sock");
    assert!(b_socket.exists());
    // From inside A, put a symlink to B's agent socket where A's socket is.
    let (code, _, err) = attacker
        .exec(
            &a,
            &format!(
                "ln -s {} /run/islet/evil && mv -f /run/islet/evil /run/islet/agent.sock",
                b_socket.display()
            ),
        )
        .await;
    assert_eq!(code, 0, "{err}");
    let reply = attacker
        .call("POST", &format!("/sandboxes/{a}/exec"), Some(json!({"command": "hostname"})))
        .await;
    assert_eq!(reply.status, 502, "A's own agent is unreachable now: {:?}", reply.body);
    assert!(!String::from_utf8_lossy(&reply.bytes).contains(&b.replace('_', "-")));
    // B is untouched.
    assert_eq!(victim.exec(&b, "hostname").await.1.trim(), b.replace('_', "-"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlinked_etc_does_not_make_the_host_write_its_own_files() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let id = client.sandbox(json!({})).await;
    let host_dir = server.data_dir.join("host-etc");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("hosts"), "original\n").unwrap();
    let (code, _, err) = client
        .exec(
            &id,
            &format!("cp -a /etc /etc.orig && rm -rf /etc; ln -s {} /etc", host_dir.display()),
        )
        .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(client.status("POST", &format!("/sandboxes/{id}/stop"), Some(json!({}))).await, 200);
    // Whether or not the sandbox comes back with its /etc replaced, the host's files stay.
    let _ = client.call("POST", &format!("/sandboxes/{id}/resume"), Some(json!({}))).await;
    assert_eq!(std::fs::read_to_string(host_dir.join("hosts")).unwrap(), "original\n");
    assert!(!host_dir.join("resolv.conf").exists());
    assert!(!host_dir.join("hostname").exists());
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(host_dir.join("hosts")).unwrap().uid(), 0, "not re-owned");
    server.stop().await;
}

//! Isolation asserted from the inside, by the checker binary running in the sandbox.

use std::io::Read;

use islet_testkit::{bin_dir, TestServer};
use islet_types::sandbox::Isolation;
use serde_json::{json, Value};

async fn check(client: &islet_testkit::Client, id: &str, args: &str) -> Value {
    let (code, out, err) = client.exec(id, &format!("/tmp/islet-checker {args}")).await;
    assert_eq!(code, 0, "checker failed: {err}");
    serde_json::from_str(&out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_sandbox_sees_only_itself() {
    sees_only_itself(Isolation::Container).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gvisor_sandbox_sees_only_itself() {
    sees_only_itself(Isolation::Gvisor).await;
}

async fn sees_only_itself(isolation: Isolation) {
    let server = TestServer::start().await;
    let client = server.tenant(Some(isolation)).await;
    let a = client.sandbox(json!({"external_user_id": "u1"})).await;
    let b = client.sandbox(json!({"external_user_id": "u2"})).await;
    for id in [&a, &b] {
        client.upload(id, &bin_dir().join("islet-checker"), "/tmp/islet-checker").await;
    }

    // A host service on every address, a host file and a host process with a marker.
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let marker_file =
        std::env::temp_dir().join(format!("islet-host-marker-{}", std::process::id()));
    std::fs::write(&marker_file, "host").unwrap();
    let mut host_process = std::process::Command::new("sleep").arg("3600.4242").spawn().unwrap();

    // B serves on 8000 inside; the host can reach it, A must not.
    let b_record = server.state.store.get_sandbox_any(&b.parse().unwrap()).await.unwrap();
    let b_ip = server.state.runtime.sandbox_ip(b_record.net_index.unwrap());
    let a_record = server.state.store.get_sandbox_any(&a.parse().unwrap()).await.unwrap();
    let a_gateway = {
        let ip = server.state.runtime.sandbox_ip(a_record.net_index.unwrap());
        std::net::Ipv4Addr::from(u32::from(ip) - 1)
    };
    let started = client
        .call(
            "POST",
            &format!("/sandboxes/{b}/processes"),
            Some(json!({"command": "python3 -m http.server 8000 --bind 0.0.0.0"})),
        )
        .await;
    assert_eq!(started.status, 201, "{:?}", started.body);
    // The host reaches a sandbox's server (as the preview proxy will).
    islet_testkit::eventually(
        "the host reaching b's server",
        std::time::Duration::from_secs(10),
        || async { std::net::TcpStream::connect((b_ip, 8000)).ok().map(drop) },
    )
    .await;

    let report = check(
        &client,
        &a,
        &format!(
            "--own {a} --process-marker 3600.4242 --absent {} --connect 127.0.0.1:{port} --connect {a_gateway}:{port} --connect {b_ip}:8000 --connect 169.254.169.254:80",
            marker_file.display()
        ),
    )
    .await;
    assert_eq!(report["hostname"], a.replace('_', "-"), "own hostname");
    assert!(report["pid1"].as_str().unwrap().contains("islet-agent"), "own pid 1: {report}");
    assert_eq!(report["host_process_visible"], false, "no host processes: {report}");
    assert!(report["process_count"].as_u64().unwrap() < 10, "only its own processes: {report}");
    assert_eq!(report["absent"][marker_file.to_str().unwrap()], true, "no host files");
    if isolation == Isolation::Container {
        // (gVisor's user-space kernel reports its own identity map.)
        assert_eq!(report["uid_map"][1], "100000", "root inside is uid 100000 outside: {report}");
    }
    // Sockets of the four families a sandbox needs, none of the others; no 32-bit calls.
    let sockets = &report["sockets"];
    for family in ["unix", "inet", "inet6", "netlink"] {
        assert_eq!(sockets[family], "ok", "{family}: {report}");
    }
    for family in ["packet", "vsock", "tipc", "rds", "bluetooth", "alg"] {
        assert_ne!(sockets[family], "ok", "{family} sockets open: {report}");
    }
    assert_ne!(report["compat_syscall"], "allowed", "a 32-bit system call ran: {report}");
    // Nothing under /sys names another sandbox (b runs beside it), nor lists the host's links.
    assert_eq!(report["foreign_sandboxes"], json!([]), "other sandboxes seen: {report}");
    let links: Vec<&str> =
        report["net_links"].as_array().unwrap().iter().filter_map(|l| l.as_str()).collect();
    assert!(links.iter().all(|l| ["lo", "eth0"].contains(l)), "host links seen: {links:?}");
    let connect = &report["connect"];
    assert_eq!(connect[format!("127.0.0.1:{port}")], "refused", "loopback is the sandbox's own");
    assert_ne!(connect[format!("{a_gateway}:{port}")], "connected", "no route to host services");
    assert_ne!(connect[format!("{b_ip}:8000")], "connected", "no route to another sandbox");
    assert_ne!(connect["169.254.169.254:80"], "connected", "no metadata address");

    // The host service was really up all along (the refusals are the firewall's).
    let mut probe = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _ = probe.set_read_timeout(Some(std::time::Duration::from_millis(10)));
    let _ = probe.read(&mut [0u8; 1]);
    drop(listener);
    host_process.kill().unwrap();
    let _ = host_process.wait();
    let _ = std::fs::remove_file(&marker_file);

    // Its own name resolves at once (servers that look up their hostname start fast).
    let (code, out, _) = client.exec(&a, "getent hosts $(hostname)").await;
    assert_eq!(code, 0);
    assert!(out.contains(&a.replace('_', "-")));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_leaves_nothing_behind() {
    let server = TestServer::start().await;
    let client = server.tenant(None).await;
    let id = client.sandbox(json!({})).await;
    let record = server.state.store.get_sandbox_any(&id.parse().unwrap()).await.unwrap();
    let link = server.state.runtime.link_name(record.net_index.unwrap());
    let dir = server.data_dir.join("sandboxes").join(&id);
    assert!(dir.exists());
    assert!(std::path::Path::new(&format!("/sys/class/net/{link}")).exists());
    let reply = client.call("DELETE", &format!("/sandboxes/{id}"), None).await;
    assert_eq!(reply.status, 204);
    assert!(!dir.exists(), "files removed");
    assert!(!std::path::Path::new(&format!("/sys/class/net/{link}")).exists(), "veth removed");
    assert!(!std::path::Path::new(&format!("/run/islet/netns/{id}")).exists(), "netns removed");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&id), "no mount left");
    let runc = std::process::Command::new("runc")
        .args(["--root=/run/islet/runc", "list", "-q"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&runc.stdout).contains(&id), "no container left");
    let cgroups = std::process::Command::new("sh")
        .args(["-c", &format!("find /sys/fs/cgroup -maxdepth 6 -name {id}")])
        .output()
        .unwrap();
    assert!(
        cgroups.stdout.is_empty(),
        "no cgroup left: {}",
        String::from_utf8_lossy(&cgroups.stdout)
    );
    // A second delete is harmless.
    client.destroy(&id).await;
    server.stop().await;
}

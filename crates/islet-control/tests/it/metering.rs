//! Metering (contract §11): CPU time metered from the sandbox's cgroup matches the cgroup's own
//! counter within 1 % across a `kill -9` and restart of the server; rollups, buckets, the
//! summary and the CSV export agree with the per-sandbox meter.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use islet_control::Config;
use islet_testkit::{data_dir, network_identity, Client, TestServer};
use islet_types::sandbox::Isolation;
use serde_json::json;

use super::crash::{spawn_with, tenant_key};

/// A file of the sandbox's cgroup, read the way an operator would: the server's own cgroup
/// (per `/proc/<pid>/cgroup`) + `islet/<id>`; `v1` names the controller and file on cgroup v1.
pub(super) fn cgroup_read(
    server_pid: u32,
    sandbox: &str,
    v1: (&str, &str),
    v2_file: &str,
) -> String {
    let own = std::fs::read_to_string(format!("/proc/{server_pid}/cgroup")).unwrap();
    let dir = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        let path = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        Path::new("/sys/fs/cgroup")
            .join(path.trim_start_matches('/'))
            .join("islet")
            .join(sandbox)
            .join(v2_file)
    } else {
        let path = own
            .lines()
            .find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                controllers.split(',').any(|c| c == v1.0).then(|| path.to_owned())
            })
            .unwrap();
        PathBuf::from(format!("/sys/fs/cgroup/{}", v1.0))
            .join(path.trim_start_matches('/'))
            .join("islet")
            .join(sandbox)
            .join(v1.1)
    };
    std::fs::read_to_string(dir).unwrap()
}

/// The sandbox's cumulative CPU time, µs, from its cgroup.
fn cgroup_cpu_usec(server_pid: u32, sandbox: &str) -> u64 {
    let text = cgroup_read(server_pid, sandbox, ("cpuacct", "cpuacct.usage"), "cpu.stat");
    match text.lines().find_map(|l| l.strip_prefix("usage_usec ")) {
        Some(usec) => usec.trim().parse().unwrap(),
        None => text.trim().parse::<u64>().unwrap() / 1000,
    }
}

/// The memory the sandbox's cgroup holds now, bytes.
fn cgroup_memory_bytes(server_pid: u32, sandbox: &str) -> u64 {
    cgroup_read(server_pid, sandbox, ("memory", "memory.usage_in_bytes"), "memory.current")
        .trim()
        .parse()
        .unwrap()
}

async fn burn(client: &Client, id: &str, seconds: u32) {
    let (code, _, err) =
        client.exec(id, &format!("timeout {seconds} sh -c 'while :; do :; done'; true")).await;
    assert_eq!(code, 0, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metered_cpu_matches_the_cgroup_within_one_percent_across_a_restart() {
    let (prefix, octet) = network_identity();
    let data = data_dir(&format!("meter-{prefix}"));
    let key = tenant_key(&data, "meter");
    let flags = ["--meter-interval", "1"];
    let mut server = spawn_with(&data, &prefix, octet, &flags);
    let client = Client::new(&server.base, &key);
    let started = Instant::now();
    let id =
        client.sandbox(json!({"external_user_id": "metered", "external_project_id": "p1"})).await;
    // A steady 256 MiB: the memory side of the workload.
    let holder = client
        .call(
            "POST",
            &format!("/sandboxes/{id}/processes"),
            Some(json!({"command": "python3 -c \"import time; b = b'x' * (256 << 20); time.sleep(3600)\""})),
        )
        .await;
    assert_eq!(holder.status, 201, "{:?}", holder.body);
    // The workload holds its memory.
    islet_testkit::eventually("256 MiB held in the cgroup", Duration::from_secs(10), || async {
        (cgroup_memory_bytes(server.child.id(), &id) >= 256 << 20).then_some(())
    })
    .await;
    // Two meter intervals with it in place, then the meter's totals so far.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let before = client.call("GET", &format!("/sandboxes/{id}/usage"), None).await;
    let memory_at_start = cgroup_memory_bytes(server.child.id(), &id) as f64;
    burn(&client, &id, 2).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.child.kill().unwrap(); // SIGKILL: no last sample, nothing flushed
    server.child.wait().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    server = spawn_with(&data, &prefix, octet, &flags);
    let client = Client::new(&server.base, &key);
    assert_eq!(client.state(&id).await, "running", "the sandbox survived the restart");
    burn(&client, &id, 2).await;
    let truth = cgroup_cpu_usec(server.child.id(), &id) as f64 / 1e6;
    let memory_at_end = cgroup_memory_bytes(server.child.id(), &id) as f64;
    assert_eq!(client.status("POST", &format!("/sandboxes/{id}/stop"), Some(json!({}))).await, 200);
    let wall = started.elapsed().as_secs_f64();
    let usage = client.call("GET", &format!("/sandboxes/{id}/usage"), None).await;
    let u = usage.data();
    let metered = u["cpu_seconds"].as_f64().unwrap();
    println!("metering: cgroup {truth:.4} s, metered {metered:.4} s, running {:.2} s of {wall:.2} s wall", u["sandbox_seconds"]);
    assert!(truth > 3.0, "the workload burned {truth} s");
    assert!((metered - truth).abs() <= truth * 0.01, "metered {metered} vs cgroup {truth}");
    let running = u["sandbox_seconds"].as_f64().unwrap();
    assert!(running > 4.0 && running <= wall + 0.5, "running {running} s of {wall} s");
    // Memory: what the meter integrated between the two readings, per running second, against
    // what the cgroup held (steady: the holder's 256 MiB and little else), across the restart.
    let b = before.data();
    let gib_seconds =
        u["memory_gib_seconds"].as_f64().unwrap() - b["memory_gib_seconds"].as_f64().unwrap();
    let seconds = running - b["sandbox_seconds"].as_f64().unwrap();
    let metered_gib = gib_seconds / seconds;
    let truth_gib = (memory_at_start + memory_at_end) / 2.0 / (1u64 << 30) as f64;
    println!(
        "metering: memory {gib_seconds:.4} GiB-s over {seconds:.2} s = {metered_gib:.4} GiB; cgroup {truth_gib:.4} GiB ({:.4} .. {:.4})",
        memory_at_start / (1u64 << 30) as f64,
        memory_at_end / (1u64 << 30) as f64
    );
    assert!(seconds > 4.0, "{seconds}");
    assert!(
        (metered_gib - truth_gib).abs() <= truth_gib * 0.01,
        "metered {metered_gib} GiB vs cgroup {truth_gib} GiB"
    );
    assert_eq!(u["active_cpu_ms"].as_u64().unwrap(), (metered * 1000.0).round() as u64);
    // Stopped: running time no longer accrues.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let later = client.call("GET", &format!("/sandboxes/{id}/usage"), None).await;
    assert_eq!(later.data()["sandbox_seconds"].as_f64().unwrap(), running);
    // The rollup by user carries the same totals.
    let rollup = client.call("GET", "/usage?external_user_id=metered&period=7d", None).await;
    let row = &rollup.data()["results"][0];
    assert_eq!(row["external_user_id"], "metered");
    assert!((row["cpu_seconds"].as_f64().unwrap() - metered).abs() < 1e-9);
    client.destroy(&id).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_group_bucket_summarise_and_export() {
    let server = TestServer::builder()
        .control(Config { meter_interval: Duration::from_millis(300), ..Config::default() })
        .start()
        .await;
    let tenant = server.tenant(None).await;
    let a = tenant
        .sandbox(json!({"external_user_id": "ann", "external_project_id": "alpha", "external_workspace_id": "w1"}))
        .await;
    let b = tenant
        .sandbox(json!({"external_user_id": "bob", "external_project_id": "alpha", "external_workspace_id": "w1"}))
        .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for id in [&a, &b] {
        tenant.destroy(id).await;
    }
    let by_user = tenant.call("GET", "/usage", None).await;
    assert_eq!(by_user.status, 200, "{:?}", by_user.body);
    let results = by_user.data()["results"].as_array().unwrap().clone();
    let users: Vec<&str> =
        results.iter().map(|r| r["external_user_id"].as_str().unwrap()).collect();
    assert_eq!(users.len(), 2, "{results:?}");
    assert!(users.contains(&"ann") && users.contains(&"bob"));
    for r in &results {
        assert!(r["sandbox_seconds"].as_f64().unwrap() > 1.0, "{r}");
        assert!(r["storage_gib_hours"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(r["credit_cents"], 0);
    }
    let ann_meter = tenant.call("GET", &format!("/sandboxes/{a}/usage"), None).await;
    let ann_row = results.iter().find(|r| r["external_user_id"] == "ann").unwrap();
    assert!(
        (ann_row["sandbox_seconds"].as_f64().unwrap()
            - ann_meter.data()["sandbox_seconds"].as_f64().unwrap())
        .abs()
            < 1e-9
    );
    let by_project =
        tenant.call("GET", "/usage?group_by=external_project_id&period=mtd", None).await;
    let rows = by_project.data()["results"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["external_project_id"], "alpha");
    let by_ws = tenant.call("GET", "/usage?group_by=workspace_id&granularity=hour", None).await;
    assert_eq!(by_ws.data()["results"][0]["workspace_id"], "w1");
    assert!(!by_ws.data()["buckets"].as_array().unwrap().is_empty());
    let summary = tenant.call("GET", "/usage/summary", None).await;
    let total: f64 = results.iter().map(|r| r["sandbox_seconds"].as_f64().unwrap()).sum();
    assert!((summary.data()["sandbox_seconds"].as_f64().unwrap() - total).abs() < 1e-6);
    assert_eq!(summary.data()["external_users"], 2);
    let csv = tenant.call("GET", "/usage/export.csv", None).await;
    let text = String::from_utf8(csv.bytes).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0]
        .starts_with("period_start,period_end,bucket_start,external_user_id,sandbox_seconds"));
    assert_eq!(lines.len(), 3, "{text}");
    for (query, field) in [
        ("period=fortnight", "period"),
        ("group_by=planet", "group_by"),
        ("period=custom", "start"),
        ("start=2026-01-02&end=2026-01-01", "end"),
        ("start=2020-01-01&end=2026-01-01", "start"),
        ("granularity=minute", "granularity"),
        ("start=yesterday", "start"),
    ] {
        let r = tenant.call("GET", &format!("/usage?{query}"), None).await;
        assert_eq!(r.status, 400, "{query}: {:?}", r.body);
        assert_eq!(r.body["error"]["details"]["field"], field, "{query}");
    }
    // Another tenant sees none of it.
    let other = server.tenant(None).await;
    assert!(other.call("GET", "/usage", None).await.data()["results"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(other.status("GET", &format!("/sandboxes/{a}/usage"), None).await, 404);
    server.stop().await;
}

/// A pump inside the sandbox: per connection it reads an 8-byte upload size and an 8-byte
/// download size, swallows the upload, then sends the download.
const PUMP: &str = r#"
import socket, struct
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 9000))
s.listen()
while True:
    c, _ = s.accept()
    head = b""
    while len(head) < 16:
        head += c.recv(16 - len(head))
    up, down = struct.unpack(">QQ", head)
    while up > 0:
        up -= len(c.recv(min(up, 1 << 16)))
    c.sendall(b"x" * down)
    c.close()
"#;

/// Send `up` bytes to the pump and take `down` back, from the host.
async fn pump(ip: std::net::Ipv4Addr, up: u64, down: u64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn =
        islet_testkit::eventually("the pump listening", Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect((ip, 9000)).await.ok()
        })
        .await;
    let mut head = up.to_be_bytes().to_vec();
    head.extend(down.to_be_bytes());
    conn.write_all(&head).await.unwrap();
    conn.write_all(&vec![b'y'; up as usize]).await.unwrap();
    let mut got = Vec::new();
    conn.read_to_end(&mut got).await.unwrap();
    assert_eq!(got.len() as u64, down);
}

/// The link's counters as the kernel keeps them (host end: rx is what the sandbox sent).
fn link_counters(link: &str) -> (u64, u64) {
    let read = |name: &str| -> u64 {
        std::fs::read_to_string(format!("/sys/class/net/{link}/statistics/{name}"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    (read("tx_bytes"), read("rx_bytes"))
}

async fn start_pump(
    server: &TestServer,
    client: &Client,
    id: &str,
) -> (std::net::Ipv4Addr, String) {
    let script = std::env::temp_dir().join(format!("islet-pump-{}.py", std::process::id()));
    std::fs::write(&script, PUMP).unwrap();
    client.upload(id, &script, "/tmp/pump.py").await;
    let started = client
        .call(
            "POST",
            &format!("/sandboxes/{id}/processes"),
            Some(json!({"command": "python3 /tmp/pump.py"})),
        )
        .await;
    assert_eq!(started.status, 201, "{:?}", started.body);
    let record = server.state.store.get_sandbox_any(&id.parse().unwrap()).await.unwrap();
    let index = record.net_index.unwrap();
    (server.state.runtime.sandbox_ip(index), server.state.runtime.link_name(index))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_bytes_are_metered_per_sandbox_across_a_stop_and_resume() {
    network_bytes_are_metered(Isolation::Container).await;
}

/// gVisor's own network stack sends through the same link: the same meter applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_bytes_of_a_gvisor_sandbox_are_metered_too() {
    network_bytes_are_metered(Isolation::Gvisor).await;
}

async fn network_bytes_are_metered(isolation: Isolation) {
    let server = TestServer::builder()
        .control(Config { meter_interval: Duration::from_millis(300), ..Config::default() })
        .start()
        .await;
    let tenant = server.tenant(Some(isolation)).await;
    let id = tenant.sandbox(json!({"external_user_id": "netty"})).await;
    const MIB: u64 = 1024 * 1024;

    // First life: 3 MiB in, 5 MiB out.
    let (ip, link) = start_pump(&server, &tenant, &id).await;
    pump(ip, 3 * MIB, 5 * MIB).await;
    let first = link_counters(&link);
    let stop = tenant.call("POST", &format!("/sandboxes/{id}/stop"), Some(json!({}))).await;
    assert_eq!(stop.status, 200, "{:?}", stop.body);
    // Second life, on a new link whose counters start again from zero: 1 MiB in, 2 MiB out.
    let resume = tenant.call("POST", &format!("/sandboxes/{id}/resume"), Some(json!({}))).await;
    assert_eq!(resume.status, 200, "{:?}", resume.body);
    let (ip, link) = start_pump(&server, &tenant, &id).await;
    pump(ip, MIB, 2 * MIB).await;
    let second = link_counters(&link);
    tenant.destroy(&id).await;

    let usage = tenant.call("GET", &format!("/sandboxes/{id}/usage"), None).await;
    let data = usage.data();
    assert_eq!(data["measurement_status"]["network"], "measured");
    let metered_in = data["network_ingress_bytes"].as_u64().unwrap();
    let metered_out = data["network_egress_bytes"].as_u64().unwrap();
    let truth_in = first.0 + second.0;
    let truth_out = first.1 + second.1;
    println!(
        "network: metered in {metered_in} / out {metered_out} bytes; link counters {truth_in} / {truth_out}"
    );
    // Everything sent is there (frames carry headers too), nothing is counted twice.
    assert!(metered_in >= 4 * MIB && metered_out >= 7 * MIB, "{data}");
    for (metered, truth) in [(metered_in, truth_in), (metered_out, truth_out)] {
        let off = (metered as f64 - truth as f64).abs() / truth as f64;
        assert!(off < 0.01, "metered {metered} vs link {truth}");
    }
    // The rollup for the user carries the same bytes.
    let rollup = tenant.call("GET", "/usage?external_user_id=netty", None).await;
    let row = &rollup.data()["results"][0];
    assert_eq!(row["network_ingress_bytes"], metered_in, "{row}");
    assert_eq!(row["network_egress_bytes"], metered_out, "{row}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_sandboxs_usage_is_current_when_asked() {
    // A meter that never ticks during the test: only the call itself can sample.
    let control = Config { meter_interval: Duration::from_secs(3600), ..Config::default() };
    let server = TestServer::builder().control(control).start().await;
    let client = server.tenant(None).await;
    let id = client.sandbox(json!({})).await;
    burn(&client, &id, 1).await;
    let usage = client.call("GET", &format!("/sandboxes/{id}/usage"), None).await;
    let cpu = usage.data()["cpu_seconds"].as_f64().unwrap();
    assert!(cpu >= 0.5, "a second of CPU shows at once: {:?}", usage.body);
    assert!(usage.data()["sandbox_seconds"].as_f64().unwrap() > 0.0, "{:?}", usage.body);
    client.destroy(&id).await;
    server.stop().await;
}

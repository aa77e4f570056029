//! Egress controls: the platform's per-sandbox connection cap, and a tenant's own deny-list and
//! lower cap, which apply to its sandboxes only (running ones at once, new ones before they
//! run) and cannot reopen anything the platform refuses.
//!
//! The destination is a stand-in for the internet: a network namespace on a documentation
//! address (in 203.0.113.0/24, routed through the host like any public address), with a
//! server that holds every connection open until its client closes it.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use islet_testkit::{data_dir, eventually, network_identity, Client, TestServer};
use serde_json::{json, Value};

use super::crash::{spawn_with, tenant_key};

const OUTSIDE_PORT: u16 = 7000;

/// Holds connections until the peer closes them (so they count while open, and stop counting
/// once closed).
const HOLDER: &str = r#"
import selectors, socket
sel = selectors.DefaultSelector()
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 7000))
srv.listen(4096)
sel.register(srv, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        if key.fileobj is srv:
            c, _ = srv.accept()
            sel.register(c, selectors.EVENT_READ)
        else:
            try:
                data = key.fileobj.recv(4096)
            except OSError:
                data = b""
            if not data:
                sel.unregister(key.fileobj)
                key.fileobj.close()
"#;

/// Opens N connections one after another, holding each, then reports how they went; with a
/// fourth argument `hold`, also writes the report to /tmp/held.json and keeps them open until
/// killed.
const OPENER: &str = r#"
import json, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held, out = [], {"connected": 0, "refused": 0, "other": []}
for _ in range(n):
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((host, port))
        out["connected"] += 1
        held.append(s)
    except ConnectionRefusedError:
        out["refused"] += 1
        s.close()
    except OSError as e:
        out["other"].append(str(e))
        s.close()
print(json.dumps(out), flush=True)
if len(sys.argv) > 4 and sys.argv[4] == "hold":
    with open("/tmp/held.json.part", "w") as f:
        f.write(json.dumps(out))
    import os
    os.rename("/tmp/held.json.part", "/tmp/held.json")
    while True:
        time.sleep(60)
for s in held:
    s.close()
"#;

/// The stand-in for the internet: a namespace behind a veth, with the holder running in it.
struct Outside {
    /// Where the holder listens.
    ip: String,
    netns: String,
    link: String,
    holder: std::process::Child,
}

fn run_ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Outside {
    fn start() -> Self {
        // Tests run side by side: each outside gets its own names and its own /30.
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < 60, "out of test /30s");
        let tag = format!("{}{n}", std::process::id() % 10_000);
        let (netns, link) = (format!("islx{tag}"), format!("ixh{tag}"));
        let (host_ip, ip) =
            (format!("203.0.113.{}", 4 * n + 1), format!("203.0.113.{}", 4 * n + 2));
        // A leftover from a killed run is replaced.
        let _ = Command::new("ip").args(["netns", "del", &netns]).output();
        let _ = Command::new("ip").args(["link", "del", &link]).output();
        run_ip(&["netns", "add", &netns]);
        run_ip(&["link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns", &netns]);
        run_ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &link]);
        run_ip(&["link", "set", &link, "up"]);
        let own = format!("{ip}/30");
        for args in [
            vec!["addr", "add", own.as_str(), "dev", "eth0"],
            vec!["link", "set", "eth0", "up"],
            vec!["link", "set", "lo", "up"],
            vec!["route", "add", "default", "via", host_ip.as_str()],
        ] {
            let mut full = vec!["-n", netns.as_str()];
            full.extend(args);
            run_ip(&full);
        }
        let script = std::env::temp_dir().join(format!("islet-holder-{tag}.py"));
        std::fs::write(&script, HOLDER).unwrap();
        let holder = Command::new("ip")
            .args(["netns", "exec", &netns, "python3"])
            .arg(&script)
            .spawn()
            .unwrap();
        // Listening before anyone connects.
        let probe = format!("import socket; socket.create_connection(('{ip}', {OUTSIDE_PORT}), 1)");
        for _ in 0..50 {
            let ok = Command::new("ip")
                .args(["netns", "exec", &netns, "python3", "-c", &probe])
                .output()
                .unwrap()
                .status
                .success();
            if ok {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Self { ip, netns, link, holder }
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        let _ = Command::new("ip").args(["link", "del", &self.link]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).output();
    }
}

/// Open `n` connections to `to` from `id`; (connected, refused), nothing else allowed.
async fn open(client: &Client, id: &str, to: &Outside, n: u32) -> (u64, u64) {
    let (code, out, err) =
        client.exec(id, &format!("python3 /tmp/opener.py {} {OUTSIDE_PORT} {n}", to.ip)).await;
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["other"], json!([]), "only connects and refusals: {report}");
    (report["connected"].as_u64().unwrap(), report["refused"].as_u64().unwrap())
}

async fn sandbox_with_opener(client: &Client, body: Value) -> String {
    let id = client.sandbox(body).await;
    let script = std::env::temp_dir().join(format!("islet-opener-{}.py", std::process::id()));
    std::fs::write(&script, OPENER).unwrap();
    client.upload(&id, &script, "/tmp/opener.py").await;
    id
}

async fn set_egress(client: &Client, egress: Value) -> Value {
    let r = client.call("PUT", "/settings", Some(json!({ "egress": egress }))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.data()["egress"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_and_tenant_deny_lists_hold_per_sandbox_and_per_tenant() {
    let server = TestServer::builder()
        .runtime(|runtime| runtime.max_egress_connections = Some(40))
        .start()
        .await;
    let out = Outside::start();
    let acme = server.tenant(None).await;
    let other = server.tenant(None).await;
    let a1 = sandbox_with_opener(&acme, json!({"external_user_id": "u1"})).await;
    let b1 = sandbox_with_opener(&other, json!({"external_user_id": "u1"})).await;

    // The outside is reachable, up to the platform's cap of 40 held connections.
    assert_eq!(open(&acme, &a1, &out, 1).await, (1, 0));
    assert_eq!(open(&acme, &a1, &out, 60).await, (40, 20));
    // Closed connections stop counting.
    assert_eq!(open(&acme, &a1, &out, 40).await, (40, 0));

    // The tenant's lower cap applies to its sandboxes only.
    let set = set_egress(&acme, json!({"max_connections_per_sandbox": 10})).await;
    assert_eq!(set["max_connections_per_sandbox"], 10);
    assert_eq!(open(&acme, &a1, &out, 30).await, (10, 20));
    assert_eq!(open(&other, &b1, &out, 30).await, (30, 0));
    // Held connections go on counting when the rules are rewritten for other sandboxes (a
    // chain whose rules did not change is left alone).
    let holder = acme
        .call(
            "POST",
            &format!("/sandboxes/{a1}/processes"),
            Some(json!({"command": format!("python3 /tmp/opener.py {} {OUTSIDE_PORT} 10 hold", out.ip)})),
        )
        .await;
    assert_eq!(holder.status, 201, "{:?}", holder.body);
    // Nothing else connects until the holder has opened all it could (its report is written).
    let held: Value =
        eventually("the holder's report", std::time::Duration::from_secs(10), || async {
            let (code, report, _) = acme.exec(&a1, "cat /tmp/held.json").await;
            (code == 0).then(|| serde_json::from_str(report.trim()).unwrap())
        })
        .await;
    assert_eq!(held["connected"], 10, "the holder fills the cap: {held}");
    assert_eq!(open(&acme, &a1, &out, 1).await, (0, 1));
    let rewrite = acme.sandbox(json!({"external_user_id": "u9"})).await;
    assert_eq!(open(&acme, &a1, &out, 1).await, (0, 1), "the count survived the rewrite");
    let (code, _, err) = acme.exec(&a1, "pkill -f 'opener[.]py .* hold'; true").await;
    assert_eq!(code, 0, "{err}");
    acme.destroy(&rewrite).await;
    // A cap above the platform's does not lift it.
    set_egress(&acme, json!({"max_connections_per_sandbox": 1000})).await;
    assert_eq!(open(&acme, &a1, &out, 50).await, (40, 10));

    // A deny-list reaches the running sandbox at once, new ones (runc and gVisor) before they
    // run, and no other tenant's.
    let set = set_egress(&acme, json!({"deny": ["203.0.113.0/24", "198.51.100.7"]})).await;
    assert!(out.ip.starts_with("203.0.113."));
    assert_eq!(set["deny"], json!(["198.51.100.7/32", "203.0.113.0/24"]));
    assert_eq!(set["max_connections_per_sandbox"], Value::Null);
    assert_eq!(open(&acme, &a1, &out, 1).await, (0, 1));
    let a2 = sandbox_with_opener(&acme, json!({"external_user_id": "u2"})).await;
    assert_eq!(open(&acme, &a2, &out, 1).await, (0, 1));
    let a3 =
        sandbox_with_opener(&acme, json!({"external_user_id": "u3", "isolation": "gvisor"})).await;
    assert_eq!(open(&acme, &a3, &out, 1).await, (0, 1));
    assert_eq!(open(&other, &b1, &out, 1).await, (1, 0));
    // Across a stop and resume (a new link, maybe a new address) the rule holds.
    for step in ["stop", "resume"] {
        let r = acme.call("POST", &format!("/sandboxes/{a1}/{step}"), Some(json!({}))).await;
        assert_eq!(r.status, 200, "{step}: {:?}", r.body);
    }
    assert_eq!(open(&acme, &a1, &out, 1).await, (0, 1));

    // Bad rules are refused whole, saying what is wrong; there is no way to allow anything.
    for (bad, says) in [
        (json!({"deny": ["203.0.113.5/24"]}), "the network is 203.0.113.0/24"),
        (json!({"deny": ["::1/128"]}), "not an IPv4 address"),
        (json!({"deny": ["10.0.0.0/40"]}), "prefix length"),
        (json!({"max_connections_per_sandbox": 0}), "1 to 65536"),
        (json!({"allow": ["10.0.0.0/8"]}), "unknown field `allow`"),
    ] {
        let r = acme.call("PUT", "/settings", Some(json!({ "egress": bad }))).await;
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
        assert_eq!(r.body["error"]["code"], "VALIDATION_FAILED");
        assert!(r.body["error"]["message"].as_str().unwrap().contains(says), "{bad}: {:?}", r.body);
    }
    let many: Vec<String> = (0..65).map(|i| format!("192.0.2.{i}")).collect();
    let r = acme.call("PUT", "/settings", Some(json!({"egress": {"deny": many}}))).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"]["details"]["field"], "egress.deny");
    let kept = acme.call("GET", "/settings", None).await;
    assert_eq!(kept.data()["egress"]["deny"], json!(["198.51.100.7/32", "203.0.113.0/24"]));

    // Cleared: reachable again.
    let cleared = set_egress(&acme, Value::Null).await;
    assert_eq!(cleared["deny"], json!([]));
    assert_eq!(open(&acme, &a1, &out, 1).await, (1, 0));
    for (client, id) in [(&acme, &a1), (&acme, &a2), (&acme, &a3), (&other, &b1)] {
        client.destroy(id).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_rules_hold_across_a_server_crash() {
    let (prefix, octet) = network_identity();
    let data = data_dir(&format!("egress-{prefix}"));
    let key = tenant_key(&data, "walled");
    let mut server = spawn_with(&data, &prefix, octet, &[]);
    let client = Client::new(&server.base, &key);
    let out = Outside::start();
    let id = sandbox_with_opener(&client, json!({})).await;
    assert_eq!(open(&client, &id, &out, 1).await, (1, 0));
    set_egress(&client, json!({"deny": [format!("{}/32", out.ip)]})).await;
    assert_eq!(open(&client, &id, &out, 1).await, (0, 1));

    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    // While nothing runs the control plane, the kernel still holds the sandbox to the rule.
    let chain = format!("{}-EGRESS", prefix.to_uppercase());
    let rules = Command::new("iptables").args(["-w", "-S", &chain]).output().unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout).into_owned();
    assert!(rules.contains(&format!("-i {prefix}")), "{rules}");

    server = spawn_with(&data, &prefix, octet, &[]);
    let client = Client::new(&server.base, &key);
    assert_eq!(client.state(&id).await, "running");
    assert_eq!(open(&client, &id, &out, 1).await, (0, 1));
    // The restarted server knows the rules (not only the kernel): a new sandbox gets them.
    let fresh = sandbox_with_opener(&client, json!({})).await;
    assert_eq!(open(&client, &fresh, &out, 1).await, (0, 1));
    client.destroy(&fresh).await;
    // The restarted server owns the rules: clearing them works.
    set_egress(&client, Value::Null).await;
    assert_eq!(open(&client, &id, &out, 1).await, (1, 0));
    let rules = Command::new("iptables").args(["-w", "-S", &chain]).output().unwrap();
    assert!(!String::from_utf8_lossy(&rules.stdout).contains(&format!("-i {prefix}")));
    client.destroy(&id).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_sandbox_handed_to_a_tenant_gets_its_rules() {
    let server = TestServer::builder()
        .control(islet_control::Config { warm_pool: 1, ..islet_control::Config::default() })
        .start()
        .await;
    let out = Outside::start();
    let acme = server.tenant(None).await;
    set_egress(&acme, json!({"deny": [format!("{}/32", out.ip)]})).await;
    // Wait for the pool's sandbox, then take it.
    let mut pooled = 0;
    for _ in 0..300 {
        if let Some(pool) = server.state.pool.get() {
            let filter = islet_store::ListFilter {
                state: Some(islet_types::SandboxState::Running),
                limit: 10,
                ..Default::default()
            };
            pooled =
                server.state.store.list_sandboxes(&pool.tenant_id, filter).await.unwrap().0.len();
            if pooled > 0 {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(pooled, 1, "the pool filled");
    let created = acme.call("POST", "/sandboxes", Some(json!({"external_user_id": "u1"}))).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.id();
    let record = server.state.store.get_sandbox_any(&id.parse().unwrap()).await.unwrap();
    assert_eq!(record.boot_ms, Some(0), "it came from the pool");
    let script = std::env::temp_dir().join(format!("islet-opener-{}.py", std::process::id()));
    std::fs::write(&script, OPENER).unwrap();
    acme.upload(&id, &script, "/tmp/opener.py").await;
    assert_eq!(open(&acme, &id, &out, 1).await, (0, 1));
    acme.destroy(&id).await;
    server.stop().await;
}

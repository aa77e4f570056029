//! `kill -9` of the server in the middle of 50 creates, then a restart: every idempotency key
//! ends with exactly one running sandbox, and nothing on the host is orphaned.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use islet_testkit::{bin_dir, data_dir, network_identity, template_dir, Client};
use serde_json::json;

pub(crate) struct Server {
    pub child: Child,
    pub base: String,
}

fn spawn(data: &Path, prefix: &str, octet: u8) -> Server {
    spawn_with(data, prefix, octet, &[])
}

/// `islet serve` on ephemeral ports with `extra` flags; returns once it printed its banner.
pub(crate) fn spawn_with(data: &Path, prefix: &str, octet: u8, extra: &[&str]) -> Server {
    let mut child = Command::new(bin_dir().join("islet"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--preview-listen",
            "127.0.0.1:0",
            "--net-prefix",
            prefix,
            "--subnet-octet",
            &octet.to_string(),
        ])
        .arg("--data-dir")
        .arg(data)
        .arg("--template-dir")
        .arg(template_dir())
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    let base = line.trim().rsplit(' ').next().unwrap().to_owned();
    Server { child, base }
}

/// A tenant made with `islet tenant create` in `data`; its API key.
pub(crate) fn tenant_key(data: &Path, name: &str) -> String {
    let out = Command::new(bin_dir().join("islet"))
        .args(["tenant", "create", "--name", name])
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    created["api_key"].as_str().unwrap().to_owned()
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn links_with(prefix: &str) -> usize {
    std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix(prefix).is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_digit()))
        })
        .count()
}

async fn create_all(client: &Client, keys: &[String]) -> Vec<(u16, serde_json::Value)> {
    let bodies: Vec<_> = keys.iter().map(|key| json!({"external_user_id": key})).collect();
    let requests = keys.iter().zip(&bodies).map(|(key, body)| client.create_with_key(key, body));
    futures::future::join_all(requests).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_fifty_creates_leaves_no_orphans_and_no_duplicates() {
    let (prefix, octet) = network_identity();
    let data = data_dir(&format!("crash-{prefix}"));
    let key = tenant_key(&data, "crash");
    let keys: Vec<String> = (0..50).map(|i| format!("crash-key-{i}")).collect();

    let mut first = spawn(&data, &prefix, octet);
    let client = Client::new(&first.base, &key);
    let inflight = tokio::spawn({
        let client = client.clone();
        let keys = keys.clone();
        async move { create_all(&client, &keys).await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();
    let _ = inflight.await;

    let mut second = spawn(&data, &prefix, octet);
    let client = Client::new(&second.base, &key);
    let replies = create_all(&client, &keys).await;
    let mut ids = std::collections::BTreeSet::new();
    for (status, body) in &replies {
        assert_eq!(*status, 201, "{body}");
        assert_eq!(body["data"]["state"], "running", "{body}");
        ids.insert(body["data"]["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 50, "one sandbox per key");
    let listed = client.call("GET", "/sandboxes?limit=1000", None).await;
    let live: Vec<_> =
        listed.data().as_array().unwrap().iter().filter(|s| s["state"] != "error").collect();
    assert_eq!(live.len(), 50, "no duplicates: {}", listed.body);
    assert_eq!(count(&data.join("sandboxes")), 50, "one directory per sandbox");
    assert_eq!(links_with(&prefix), 50, "one veth per sandbox");

    for id in &ids {
        client.destroy(id).await;
    }
    assert_eq!(count(&data.join("sandboxes")), 0, "no files left");
    assert_eq!(links_with(&prefix), 0, "no veth left");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(data.to_str().unwrap()), "no mount left");
    second.child.kill().unwrap();
    second.child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&data);
}

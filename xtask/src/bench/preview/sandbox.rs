//! The backend both proxies forward to: one sandbox running `backend.js` under Node, its port
//! exposed privately, and a preview token to present on every request.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;

use super::super::http::Client;
use super::super::server::SUBNET_OCTET;
use super::super::signals;

const BACKEND_JS: &str = include_str!("backend.js");
const BACKEND_PATH: &str = "/opt/islet-bench-backend.js";
/// The backend's port inside the sandbox.
pub(super) const PORT: u16 = 8000;
/// The sandbox's CPUs (the default size has 1): room for a backend of 2 processes.
pub(super) const CPUS: u32 = 2;

pub(super) struct Backend {
    pub sandbox_id: String,
    /// The sandbox's own address, reachable from the host: what nginx proxies to.
    pub direct: SocketAddr,
    /// `8000-sbx-<id>.preview.localhost`: what the edge routes by.
    pub host: String,
    /// `mp_…`, sent as `X-Preview-Token`.
    pub token: String,
}

/// Create the sandbox and start the backend in it with `processes` Node processes.
pub(super) fn start(client: &Client, processes: usize) -> anyhow::Result<Backend> {
    let id = client.create_with(json!({ "cpu_count": CPUS }))?.id;
    client.upload(&id, BACKEND_PATH, BACKEND_JS.as_bytes())?;
    client.post(
        &format!("/sandboxes/{id}/processes"),
        json!({ "command": format!("node {BACKEND_PATH} {PORT} {processes}") }),
    )?;
    let ip = sandbox_ip(client, &id)?;
    let direct = SocketAddr::from((ip, PORT));
    wait_until_serving(direct)?;
    client.post(
        &format!("/sandboxes/{id}/expose"),
        json!({ "port": PORT, "visibility": "private" }),
    )?;
    let minted = client.post(
        &format!("/sandboxes/{id}/preview-token"),
        json!({ "expires_in": 3600, "scope": "interact" }),
    )?;
    let token = minted["token"].as_str().context("POST preview-token: no data.token")?.to_owned();
    // The label spells the id's underscore as a hyphen: sbx_abc → sbx-abc.
    let host = format!("{PORT}-{}.preview.localhost", id.replace('_', "-"));
    Ok(Backend { sandbox_id: id, direct, host, token })
}

/// The sandbox's address in the bench server's subnet, from `ip -4 -o addr show` inside it.
fn sandbox_ip(client: &Client, id: &str) -> anyhow::Result<Ipv4Addr> {
    let output = client.exec(id, "ip -4 -o addr show")?;
    anyhow::ensure!(
        output.exit_code == 0,
        "ip addr in {id} exited {}: {}",
        output.exit_code,
        output.stderr.trim()
    );
    let prefix = format!("10.{SUBNET_OCTET}.");
    output
        .stdout
        .split_whitespace()
        .filter_map(|word| word.split_once('/').map(|(addr, _)| addr))
        .find(|addr| addr.starts_with(&prefix))
        .and_then(|addr| addr.parse().ok())
        .with_context(|| format!("no {prefix}x.y address in {id}:\n{}", output.stdout))
}

/// Poll `GET /small` on the backend until it answers (Node takes a moment to start).
fn wait_until_serving(direct: SocketAddr) -> anyhow::Result<()> {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(2)).build();
    let url = format!("http://{direct}/small");
    let started = Instant::now();
    loop {
        let last = match agent.get(&url).call() {
            Ok(response) if response.status() == 200 => return Ok(()),
            Ok(response) => format!("HTTP {}", response.status()),
            Err(e) => e.to_string(),
        };
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the backend at {url} did not answer within 30 s: {last}");
        }
        signals::check()?;
        std::thread::sleep(Duration::from_millis(100));
    }
}

//! A private `islet serve` for the benchmark: its own data dir under /var/tmp, one tenant per
//! isolation level, a free port, and its own network prefix and subnet so that it never
//! meets another server on this host (a host-wide lock keeps a second bench from starting
//! alongside: it would use the same prefix and subnet). Dropping the [`Server`] deletes the sandboxes its
//! clients created, stops the server and removes the data dir.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::http::Client;
use super::{signals, Isolation};

/// Prefix of the server's host interfaces and firewall chains.
pub(super) const NET_PREFIX: &str = "bnch";
/// Sandboxes get 10.205.0.0/16.
pub(super) const SUBNET_OCTET: u8 = 205;

pub(super) struct Server {
    child: Child,
    pub pid: u32,
    pub data_dir: PathBuf,
    /// The preview edge's port on 127.0.0.1.
    pub preview_port: u16,
    log: PathBuf,
    /// Where the server's log is copied when it stops.
    keep_log_at: PathBuf,
    tenants: Vec<(Isolation, Client)>,
    /// Released only after the cleanup in `drop`.
    _host_lock: Flock<File>,
}

/// Held while a bench server runs. Two at once would share the network prefix and subnet, and
/// each one's start-up reconcile would remove the other's links.
const HOST_LOCK: &str = "/run/islet-bench.lock";

fn lock_host() -> anyhow::Result<Flock<File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(HOST_LOCK)
        .with_context(|| format!("open {HOST_LOCK}"))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == Errno::EWOULDBLOCK {
            anyhow!(
                "another `cargo xtask bench` or `bench-preview` is running on this host (it \
                 holds {HOST_LOCK}); they cannot share the {NET_PREFIX} network prefix, so wait \
                 for it to finish"
            )
        } else {
            anyhow!("lock {HOST_LOCK}: {errno}")
        }
    })
}

/// `islet tenant create`, returning the API key.
fn create_tenant(islet: &Path, data_dir: &Path, isolation: Isolation) -> anyhow::Result<String> {
    let output = Command::new(islet)
        .args(["tenant", "create", "--name"])
        .arg(format!("bench-{}", isolation.as_str()))
        .args(["--isolation", isolation.as_str(), "--data-dir"])
        .arg(data_dir)
        .stdin(Stdio::null())
        .output()
        .context("run islet tenant create")?;
    if !output.status.success() {
        bail!(
            "islet tenant create: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let value: serde_json::Value = serde_json::from_slice(&output.stdout)
        .context("islet tenant create: output is not JSON")?;
    Ok(value["api_key"].as_str().context("islet tenant create: no api_key")?.to_owned())
}

/// A port on 127.0.0.1 that was free a moment ago (the server binds it right after; the
/// API's own port is the server's pick, read from its output).
pub(super) fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Whether anything is mounted at or below `dir`.
fn has_mounts_under(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return true;
    };
    let dir = dir.to_string_lossy();
    text.lines().any(|line| {
        line.split(' ').nth(4).is_some_and(|mount_point| mount_point.starts_with(dir.as_ref()))
    })
}

impl Server {
    /// Create the tenants and start the server; returns once its API listens.
    pub(super) fn start(
        islet: &Path,
        data_dir: PathBuf,
        template_dir: &Path,
        isolations: &[Isolation],
        keep_log_at: PathBuf,
        warm_pool: usize,
    ) -> anyhow::Result<Self> {
        let host_lock = lock_host()?;
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("mkdir {}", data_dir.display()))?;
        let mut keys = Vec::new();
        for &isolation in isolations {
            keys.push((isolation, create_tenant(islet, &data_dir, isolation)?));
        }
        let preview_port = free_port()?;
        let log = data_dir.join("server.log");
        let log_file = std::fs::File::create(&log).context("create the server log")?;
        let mut child = Command::new(islet)
            .arg("serve")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--template-dir")
            .arg(template_dir)
            .args(["--listen", "127.0.0.1:0", "--preview-listen"])
            .arg(format!("127.0.0.1:{preview_port}"))
            .args(["--net-prefix", NET_PREFIX])
            .args(["--subnet-octet", &SUBNET_OCTET.to_string()])
            .args(["--warm-pool", &warm_pool.to_string()])
            // A duplicate of the locked descriptor, never read: should this bench die without
            // stopping the server, the server keeps the lock until it exits too.
            .stdin(host_lock.try_clone().context("duplicate the host lock")?)
            .stdout(Stdio::piped())
            .stderr(log_file)
            // Not in our process group: a Ctrl-C reaches us, and we stop it in order.
            .process_group(0)
            .spawn()
            .context("spawn islet serve")?;
        let stdout = child.stdout.take().context("islet serve: no stdout")?;
        let mut server = Self {
            pid: child.id(),
            child,
            data_dir,
            preview_port,
            log,
            keep_log_at,
            tenants: Vec::new(),
            _host_lock: host_lock,
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find("listening on http://") {
                    let url = line[at + "listening on ".len()..].trim().to_owned();
                    let _ = tx.send(url);
                }
            }
        });
        let started = Instant::now();
        let base = loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(url) => break url,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(status) = server.child.try_wait()? {
                        bail!(
                            "islet serve exited ({status}) before listening:\n{}",
                            server.log_tail(20)
                        );
                    }
                    if started.elapsed() > Duration::from_secs(300) {
                        bail!("islet serve did not listen within 300 s:\n{}", server.log_tail(20));
                    }
                    signals::check()?;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!(
                        "islet serve closed its stdout before listening:\n{}",
                        server.log_tail(20)
                    )
                }
            }
        };
        for (isolation, key) in keys {
            server.tenants.push((isolation, Client::new(&base, &key)));
        }
        Ok(server)
    }

    /// The client of the tenant whose sandboxes use `isolation`.
    pub(super) fn client(&self, isolation: Isolation) -> anyhow::Result<&Client> {
        self.tenants
            .iter()
            .find(|(i, _)| *i == isolation)
            .map(|(_, c)| c)
            .with_context(|| format!("no {} tenant", isolation.as_str()))
    }

    /// The last `lines` lines of the server's log.
    pub(super) fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Whether the server process is still running.
    pub(super) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGINT (the server's graceful shutdown), then SIGKILL after 20 s.
    fn stop(&mut self) {
        if !self.alive() {
            return;
        }
        let pid = Pid::from_raw(self.pid as i32);
        let _ = kill(pid, Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("bench: islet serve did not stop within 20 s; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let mut left = 0;
        for (isolation, client) in &self.tenants {
            for (id, e) in client.delete_all() {
                eprintln!(
                    "bench: cleanup: deleting {} sandbox {id} failed: {e:#}",
                    isolation.as_str()
                );
                left += 1;
            }
        }
        // Close the clients' pooled keep-alive connections: a graceful shutdown waits for them.
        self.tenants.clear();
        self.stop();
        if let Some(parent) = self.keep_log_at.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::copy(&self.log, &self.keep_log_at);
        if left == 0 && !has_mounts_under(&self.data_dir) {
            if let Err(e) = std::fs::remove_dir_all(&self.data_dir) {
                eprintln!("bench: cleanup: rm -r {}: {e}", self.data_dir.display());
            }
        } else {
            eprintln!(
                "bench: cleanup: keeping {} ({left} sandboxes not deleted, or mounts left); \
                 the next `islet serve --data-dir` on it reconciles them",
                self.data_dir.display()
            );
        }
    }
}

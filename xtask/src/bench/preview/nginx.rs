//! The baseline: Debian's nginx as a reverse proxy to the same backend, configured the way the
//! edge behaves (keep-alive both sides, streaming both ways, WebSocket upgrades). It runs in
//! the foreground as our child, with everything it writes in its own directory; dropping
//! [`Nginx`] stops it and removes that directory.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::super::server::free_port;
use super::super::signals;
use super::sandbox::PORT;

const NGINX: &str = "/usr/sbin/nginx";

pub(super) struct Nginx {
    child: Child,
    dir: PathBuf,
    pub port: u16,
}

/// The configuration. Choices that differ from nginx's defaults, and why:
/// - `keepalive_requests` raised on both sides: nginx closes a keep-alive connection after
///   1000 requests by default, the edge never does;
/// - `access_log off`: the edge writes no per-request log either;
/// - the `X-Forwarded-*` headers the edge sets, and the preview token stripped as the edge does,
///   so the backend sees requests of the same size;
/// - `proxy_buffering off` / `proxy_request_buffering off`: the edge streams both ways.
fn config(dir: &Path, port: u16, upstream: SocketAddr) -> String {
    let dir = dir.display();
    format!(
        r#"user nobody nogroup;
master_process on;
worker_processes auto;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      '';
    }}

    upstream backend {{
        server {upstream};
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }}

    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;

        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Host localhost:{PORT};
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Port $server_port;
            proxy_set_header X-Preview-Token "";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 300s;
        }}
    }}
}}
"#
    )
}

/// `nginx/1.22.1`, from `nginx -v`.
pub(super) fn version() -> String {
    Command::new(NGINX)
        .arg("-v")
        .stdin(Stdio::null())
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stderr);
            text.trim().trim_start_matches("nginx version:").trim().to_owned()
        })
        .unwrap_or_default()
}

impl Nginx {
    /// Write the configuration in `dir` and start nginx; returns once it accepts connections.
    pub(super) fn start(dir: PathBuf, upstream: SocketAddr) -> anyhow::Result<Self> {
        anyhow::ensure!(
            Path::new(NGINX).exists(),
            "{NGINX} is missing: apt-get install nginx-light"
        );
        std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        let port = free_port()?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(&dir, port, upstream))
            .with_context(|| format!("write {}", conf.display()))?;
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(&dir)
            // Before the configuration is read, nginx logs to its compiled-in path otherwise.
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Like the server: a Ctrl-C reaches only us, and we stop nginx in order.
            .process_group(0)
            .spawn()
            .context("spawn nginx")?;
        let mut nginx = Self { child, dir, port };
        nginx.wait_until_listening()?;
        Ok(nginx)
    }

    fn wait_until_listening(&mut self) -> anyhow::Result<()> {
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let started = Instant::now();
        loop {
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("nginx exited ({status}):\n{}", self.log_tail());
            }
            if started.elapsed() > Duration::from_secs(10) {
                bail!("nginx did not listen within 10 s:\n{}", self.log_tail());
            }
            signals::check()?;
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The end of nginx's error log.
    pub(super) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM is nginx's fast shutdown; the master stops its workers and exits.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(self.child.try_wait(), Ok(None)) {
                eprintln!("bench: nginx did not stop within 5 s; killing it");
                // Its whole process group: the workers do not die with their master.
                let _ = kill(Pid::from_raw(-(self.child.id() as i32)), Signal::SIGKILL);
                let _ = self.child.wait();
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("bench: cleanup: rm -r {}: {e}", self.dir.display());
        }
    }
}

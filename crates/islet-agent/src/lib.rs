//! The agent that runs inside every sandbox and serves the sandbox half of the public API
//! (exec, processes, files, watches, terminals) as HTTP/1.1 on a Unix socket.
//!
//! The binary is bind-mounted into each sandbox. The library exposes [`app`], [`run`] and
//! [`bind_socket`] so tests can serve the agent in-process on a socket of their own.

mod command;
pub mod error;
mod exec;
mod extract;
mod files;
mod fsops;
pub mod init;
mod lines;
mod listing;
mod lock;
mod logbuf;
mod logs;
mod paths;
mod process_table;
mod processes;
mod pty;
mod routes;
mod state;
mod terminal;
mod terminal_sessions;
mod terminal_ws;
mod time;
mod watch;

pub use error::AgentError;
pub use extract::BODY_LIMIT;
pub use routes::app;
pub use state::AppState;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use tokio::net::UnixListener;
pub use tokio_util::sync::CancellationToken;

pub const DEFAULT_SOCKET: &str = "/run/islet/agent.sock";
/// How long in-flight requests get after shutdown; streams (SSE, terminals) never end on
/// their own, so waiting for them without a bound would hang shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Binds `path` for the agent: parents created, a stale socket from an earlier run removed,
/// and the socket made owner-only (the host talks to it as root).
pub fn bind_socket(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} is a directory", path.display()),
            ))
        }
        Ok(_) => std::fs::remove_file(path)?,
        Err(_) => {}
    }
    let listener = UnixListener::bind(path)?;
    // gVisor's host-backed sockets refuse chmod; the directory the host gives us is 0700
    // already, so a failure here opens nothing.
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        tracing::warn!(error = %e, "could not restrict the socket's mode");
    }
    Ok(listener)
}

/// Serves [`app`] with fresh state until `shutdown` is cancelled.
pub async fn run(listener: UnixListener, shutdown: CancellationToken) -> std::io::Result<()> {
    let server = axum::serve(listener, app(AppState::new()))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    tokio::select! {
        result = async move { server.await } => result,
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => Ok(()),
    }
}

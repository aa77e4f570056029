//! PTY sessions that outlive their WebSocket clients: the table of live sessions, each with
//! its scrollback and the pump that reads its PTY. HTTP lives in `terminal.rs` and
//! `terminal_ws.rs`; this module knows none of it.

use crate::command::{exit_code, resolve_cwd};
use crate::error::AgentError;
use crate::lock::lock;
use crate::pty::{self, Pty, ShellSpec};
use crate::time::now_rfc3339;
use bytes::Bytes;
use nix::sys::signal::Signal;
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::Child;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

const SCROLLBACK: usize = 64 * 1024;
/// Output still arriving this long after the shell exited belongs to stray background jobs.
const EXIT_LINGER: Duration = Duration::from_millis(200);

#[derive(Default)]
pub(crate) struct TerminalTable {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

#[derive(Clone)]
pub(crate) enum TermEvent {
    Output(Bytes),
    Exit(i32),
}

pub(crate) struct Session {
    pub id: String,
    pid: i32,
    shell: String,
    created_at: String,
    size: Mutex<(u16, u16)>,
    pty: Pty,
    /// Serialises writers so two clients' keystrokes never interleave mid-chunk.
    input: tokio::sync::Mutex<()>,
    inner: Mutex<Inner>,
    events: broadcast::Sender<TermEvent>,
    cancel: CancellationToken,
}

struct Inner {
    scrollback: Vec<u8>,
    exit_code: Option<i32>,
}

pub(crate) struct Attached {
    pub scrollback: Bytes,
    pub events: broadcast::Receiver<TermEvent>,
    pub exit_code: Option<i32>,
}

impl Session {
    pub(crate) fn view(&self) -> Value {
        let (cols, rows) = *lock(&self.size);
        let exit_code = lock(&self.inner).exit_code;
        json!({
            "session_id": self.id,
            "id": self.id,
            "pid": self.pid,
            "cols": cols,
            "rows": rows,
            "shell": self.shell,
            "state": if exit_code.is_some() { "exited" } else { "running" },
            "exit_code": exit_code,
            "created_at": self.created_at,
        })
    }

    /// Scrollback and subscription taken under one lock: no byte is lost or repeated.
    pub(crate) fn attach(&self) -> Attached {
        let inner = lock(&self.inner);
        Attached {
            scrollback: Bytes::copy_from_slice(&inner.scrollback),
            events: self.events.subscribe(),
            exit_code: inner.exit_code,
        }
    }

    pub(crate) async fn write(&self, data: &[u8]) -> std::io::Result<()> {
        let _guard = self.input.lock().await;
        self.pty.write_all(data).await
    }

    pub(crate) fn resize(&self, cols: u16, rows: u16) -> Result<(), AgentError> {
        if cols == 0 || rows == 0 {
            return Err(AgentError::validation("cols and rows must be positive"));
        }
        self.pty.resize(cols, rows).map_err(AgentError::internal)?;
        *lock(&self.size) = (cols, rows);
        Ok(())
    }

    fn record(&self, data: Bytes) {
        let mut inner = lock(&self.inner);
        inner.scrollback.extend_from_slice(&data);
        let excess = inner.scrollback.len().saturating_sub(SCROLLBACK);
        inner.scrollback.drain(..excess);
        let _ = self.events.send(TermEvent::Output(data));
    }

    fn finish(&self, code: i32) {
        lock(&self.inner).exit_code = Some(code);
        let _ = self.events.send(TermEvent::Exit(code));
    }

    fn kill(&self) {
        self.cancel.cancel();
        // The shell leads its own session and group; jobs it put in other groups get the
        // hangup when the master closes.
        crate::command::signal_group(self.pid, Signal::SIGHUP);
        crate::command::signal_group(self.pid, Signal::SIGKILL);
    }
}

impl TerminalTable {
    pub(crate) fn get(&self, id: &str) -> Result<Arc<Session>, AgentError> {
        lock(&self.sessions)
            .get(id)
            .cloned()
            .ok_or_else(|| AgentError::not_found(format!("no such terminal session: {id}")))
    }

    /// Every live session, oldest first.
    pub(crate) fn list(&self) -> Vec<Arc<Session>> {
        let mut sessions: Vec<Arc<Session>> = lock(&self.sessions).values().cloned().collect();
        sessions.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        sessions
    }

    /// End a session: it leaves the table and its shell is killed.
    pub(crate) fn remove(&self, id: &str) -> Result<(), AgentError> {
        let session = lock(&self.sessions)
            .remove(id)
            .ok_or_else(|| AgentError::not_found(format!("no such terminal session: {id}")))?;
        session.kill();
        Ok(())
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct CreateRequest {
    pub cols: Option<u16>,
    pub rows: Option<u16>,
    pub shell: Option<String>,
    pub cwd: Option<String>,
    pub env: Option<HashMap<String, String>>,
}

fn new_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let suffix: String =
        (0..16).map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())])).collect();
    format!("term_{suffix}")
}

fn pick_shell(requested: Option<&str>) -> Result<String, AgentError> {
    match requested.filter(|s| !s.is_empty()) {
        Some(shell) if std::path::Path::new(shell).is_file() => Ok(shell.to_string()),
        // SDKs send the default explicitly; honour its documented fallback too.
        Some("/bin/bash") => Ok(crate::command::shell().to_string()),
        Some(shell) => Err(AgentError::validation(format!("shell not found: {shell}"))),
        None => Ok(crate::command::shell().to_string()),
    }
}

/// Start a shell on a new PTY and keep its session in `table` until the shell ends.
pub(crate) fn create(
    table: &Arc<TerminalTable>,
    req: CreateRequest,
) -> Result<Arc<Session>, AgentError> {
    let shell = pick_shell(req.shell.as_deref())?;
    let cwd = resolve_cwd(req.cwd.as_deref())?;
    let (cols, rows) = (req.cols.unwrap_or(80), req.rows.unwrap_or(24));
    if cols == 0 || rows == 0 {
        return Err(AgentError::validation("cols and rows must be positive"));
    }
    let mut env = req.env.unwrap_or_default();
    env.entry("TERM".into()).or_insert_with(|| "xterm-256color".into());
    // Login + interactive for POSIX-style shells, so profiles and prompts look familiar.
    let args: &[&str] = if shell.ends_with("sh") { &["-l", "-i"] } else { &[] };
    let spec = ShellSpec { shell: &shell, args, cwd: &cwd, env: &env, cols, rows };
    let (pty, child) = pty::spawn(&spec)
        .map_err(|e| AgentError::internal(format!("could not start {shell}: {e}")))?;
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| AgentError::internal("terminal shell has no pid"))?;
    let session = Arc::new(Session {
        id: new_id(),
        pid,
        shell,
        created_at: now_rfc3339(),
        size: Mutex::new((cols, rows)),
        pty,
        input: tokio::sync::Mutex::new(()),
        inner: Mutex::new(Inner { scrollback: Vec::new(), exit_code: None }),
        events: broadcast::channel(1024).0,
        cancel: CancellationToken::new(),
    });
    lock(&table.sessions).insert(session.id.clone(), session.clone());
    tokio::spawn(pump(table.clone(), session.clone(), child));
    Ok(session)
}

async fn pump(table: Arc<TerminalTable>, session: Arc<Session>, mut child: Child) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut status = None;
    loop {
        let linger = tokio::time::sleep(EXIT_LINGER);
        tokio::select! {
            _ = session.cancel.cancelled() => break,
            read = session.pty.read(&mut buf) => match read {
                Ok(n) if n > 0 => session.record(Bytes::copy_from_slice(&buf[..n])),
                _ => break,
            },
            s = child.wait(), if status.is_none() => status = Some(s),
            _ = linger, if status.is_some() => break,
        }
    }
    let code = match status {
        Some(s) => s.map(exit_code).unwrap_or(-1),
        None => child.wait().await.map(exit_code).unwrap_or(-1),
    };
    session.finish(code);
    // An ended session is gone: its PTY is released and reattaching answers 404.
    let mut sessions = lock(&table.sessions);
    if sessions.get(&session.id).is_some_and(|s| Arc::ptr_eq(s, &session)) {
        sessions.remove(&session.id);
    }
}

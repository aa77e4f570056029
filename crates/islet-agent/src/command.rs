//! Spawning shell commands in their own process group and driving them to completion.
//!
//! Shared by `/exec`, `/exec/stream` and background processes: each caller pulls [`Step`]s and
//! decides what to do with the output (collect, stream as SSE, or keep in a ring buffer).

use crate::error::AgentError;
use bytes::Bytes;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
pub(crate) const TIMEOUT_EXIT_CODE: i32 = 124;
/// How long to keep reading pipes after the shell exited: a background job started with `&`
/// may hold them open forever, and the caller must not hang on it.
const LINGER: Duration = Duration::from_millis(300);
/// After a timeout kill, the most time spent draining what is left in the pipes.
const KILL_DRAIN: Duration = Duration::from_secs(2);
const READ_CHUNK: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamKind {
    Stdout,
    Stderr,
}

impl StreamKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

pub(crate) struct Chunk {
    pub kind: StreamKind,
    pub data: Bytes,
}

pub(crate) enum Step {
    Output(Chunk),
    Exited { exit_code: i32, timed_out: bool },
}

pub(crate) struct Spec<'a> {
    pub command: &'a str,
    pub cwd: PathBuf,
    pub env: &'a HashMap<String, String>,
}

/// `/bin/bash` when present; images without it still have a POSIX shell.
pub(crate) fn shell() -> &'static str {
    if Path::new("/bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    }
}

/// The cwd a command runs in, checked up front so a typo is a 400 instead of a spawn error.
pub(crate) fn resolve_cwd(cwd: Option<&str>) -> Result<PathBuf, AgentError> {
    let Some(cwd) = cwd.filter(|c| !c.is_empty()) else {
        let ws = Path::new("/workspace");
        return Ok(if ws.is_dir() { ws } else { Path::new("/") }.to_path_buf());
    };
    if !cwd.starts_with('/') || cwd.contains('\0') {
        return Err(AgentError::validation(format!("cwd must be an absolute path, got {cwd:?}")));
    }
    let path = PathBuf::from(cwd);
    if !path.is_dir() {
        return Err(AgentError::validation(format!(
            "cwd does not exist or is not a directory: {cwd}"
        )));
    }
    Ok(path)
}

/// Sets the variables a login would have when the agent itself was started without them.
pub(crate) fn apply_env(cmd: &mut std::process::Command, extra: &HashMap<String, String>) {
    for (key, default) in [("HOME", "/root"), ("PATH", DEFAULT_PATH)] {
        if std::env::var_os(key).is_none() && !extra.contains_key(key) {
            cmd.env(key, default);
        }
    }
    cmd.envs(extra);
}

pub(crate) fn exit_code(status: ExitStatus) -> i32 {
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(-1)
}

/// Sends `sig` to every process in the group; false when the group is gone.
pub(crate) fn signal_group(pgid: i32, sig: Signal) -> bool {
    killpg(Pid::from_raw(pgid), sig).is_ok()
}

pub(crate) fn group_alive(pgid: i32) -> bool {
    killpg(Pid::from_raw(pgid), None).is_ok()
}

pub(crate) struct Running {
    pub pid: i32,
    child: Child,
    output: mpsc::Receiver<Chunk>,
    /// Pipe readers; aborted when the output is abandoned, or a daemon that inherited the
    /// pipes would keep them (and their fds) alive for as long as it runs.
    pumps: Vec<tokio::task::JoinHandle<()>>,
    output_done: bool,
    exit_code: Option<i32>,
    deadline: Option<Instant>,
    timed_out: bool,
    linger_until: Option<Instant>,
}

pub(crate) fn spawn(spec: &Spec<'_>, timeout: Option<Duration>) -> Result<Running, AgentError> {
    let mut std_cmd = std::process::Command::new(shell());
    std_cmd
        .arg("-c")
        .arg(spec.command)
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    apply_env(&mut std_cmd, spec.env);
    let mut cmd = Command::from(std_cmd);
    // Own group, so a timeout or kill reaches everything the command started.
    cmd.process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| AgentError::internal(format!("could not start {}: {e}", shell())))?;
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| AgentError::internal("spawned process has no pid"))?;
    let (tx, rx) = mpsc::channel(32);
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(out, StreamKind::Stdout, tx.clone())));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(err, StreamKind::Stderr, tx)));
    }
    Ok(Running {
        pid,
        child,
        output: rx,
        pumps,
        output_done: false,
        exit_code: None,
        deadline: timeout.map(|t| Instant::now() + t),
        timed_out: false,
        linger_until: None,
    })
}

async fn pump(mut pipe: impl AsyncRead + Unpin, kind: StreamKind, tx: mpsc::Sender<Chunk>) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let data = Bytes::copy_from_slice(&buf[..n]);
                if tx.send(Chunk { kind, data }).await.is_err() {
                    return;
                }
            }
        }
    }
}

impl Running {
    /// The next piece of output, or the exit once the shell is gone and its pipes are drained
    /// (or abandoned). Cancel-safe; must not be called again after `Exited`.
    pub(crate) async fn next(&mut self) -> Step {
        loop {
            let linger_over = self.linger_until.is_some_and(|t| Instant::now() >= t);
            if let (Some(code), true) = (self.exit_code, self.output_done || linger_over) {
                self.output.close();
                self.pumps.iter().for_each(|p| p.abort());
                let exit_code = if self.timed_out { TIMEOUT_EXIT_CODE } else { code };
                return Step::Exited { exit_code, timed_out: self.timed_out };
            }
            let far = Instant::now() + Duration::from_secs(86_400 * 365);
            let deadline = self.deadline.filter(|_| !self.timed_out);
            tokio::select! {
                chunk = self.output.recv(), if !self.output_done => match chunk {
                    Some(chunk) => {
                        if self.exit_code.is_some() && !self.timed_out {
                            self.linger_until = Some(Instant::now() + LINGER);
                        }
                        return Step::Output(chunk);
                    }
                    None => self.output_done = true,
                },
                status = self.child.wait(), if self.exit_code.is_none() => {
                    self.exit_code = Some(status.map(exit_code).unwrap_or(-1));
                    if !self.timed_out {
                        self.linger_until = Some(Instant::now() + LINGER);
                    }
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => {
                    self.timed_out = true;
                    signal_group(self.pid, Signal::SIGKILL);
                    self.linger_until = Some(Instant::now() + KILL_DRAIN);
                }
                _ = tokio::time::sleep_until(self.linger_until.unwrap_or(far)),
                    if self.linger_until.is_some() && self.exit_code.is_some() => {}
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.pumps.iter().for_each(|p| p.abort());
        // Dropped before the shell was reaped means the caller went away (client disconnect):
        // nothing will read the output, so stop the whole group. The pid cannot have been
        // reused while unreaped.
        if self.exit_code.is_none() {
            signal_group(self.pid, Signal::SIGKILL);
        }
    }
}

//! Driving the OCI runtimes (`runc`, `runsc`) as processes.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use islet_types::sandbox::Isolation;
use tokio::process::Command;

use crate::config::Config;
use crate::error::RuntimeError;

/// One OCI runtime binary with its global flags and state root.
pub(crate) struct Oci {
    binary: PathBuf,
    global: Vec<String>,
    name: &'static str,
}

impl Oci {
    pub(crate) fn for_isolation(config: &Config, isolation: Isolation) -> Self {
        let run_dir = &config.layout.run_dir;
        match isolation {
            Isolation::Container => Self {
                binary: config.runc.clone(),
                global: vec![format!("--root={}", run_dir.join("runc").display())],
                name: "runc",
            },
            Isolation::Gvisor => Self {
                binary: config.runsc.clone(),
                global: vec![
                    format!("--root={}", run_dir.join("runsc").display()),
                    "--platform=ptrace".into(),
                    // runsc's own netstack refuses this kernel (see runtime-notes); the sandbox
                    // uses the host stack inside its own network namespace instead.
                    "--network=host".into(),
                    // The agent creates its socket in a bind-mounted host directory.
                    "--host-uds=create".into(),
                    "--ignore-cgroups".into(),
                ],
                name: "runsc",
            },
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.args(&self.global).args(args).stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }

    async fn checked(&self, mut cmd: Command, what: &str) -> Result<(), RuntimeError> {
        let out = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(RuntimeError::io(format!("run {}", self.name)))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(RuntimeError::Command {
                tool: format!("{} {what}", self.name),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    /// Create and start the container detached; its stdout and stderr go to `log`.
    pub(crate) async fn run(
        &self,
        id: &str,
        bundle: &Path,
        log: &Path,
    ) -> Result<(), RuntimeError> {
        let bundle = bundle.to_string_lossy();
        let cmd = self.command(&["run", "--detach", "--bundle", &bundle, id]);
        self.status_logged(cmd, log).await
    }

    /// Run `cmd` with stdout and stderr appended to `log`; on failure the log's last lines
    /// become the error.
    async fn status_logged(&self, mut cmd: Command, log: &Path) -> Result<(), RuntimeError> {
        // Never through a symlink: the log lives on the sandbox's own disk.
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(log)
            .map_err(RuntimeError::io("open agent log"))?;
        let log_err = log_file.try_clone().map_err(RuntimeError::io("dup agent log"))?;
        cmd.stdout(log_file).stderr(log_err);
        let status = cmd.status().await.map_err(RuntimeError::io(format!("run {}", self.name)))?;
        if status.success() {
            return Ok(());
        }
        Err(RuntimeError::Command {
            tool: format!("{} run", self.name),
            status: status.to_string(),
            stderr: log_tail(log),
        })
    }

    pub(crate) async fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.checked(self.command(&["pause", id]), "pause").await
    }

    pub(crate) async fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.checked(self.command(&["resume", id]), "resume").await
    }

    /// Kill every process and remove the container's runtime state. Absent containers are fine.
    /// A paused container is thawed first where the runtime cannot delete it frozen (runsc
    /// refuses the paused → stopped transition).
    pub(crate) async fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        match self.delete_once(id).await {
            Err(RuntimeError::Command { stderr, .. }) if stderr.contains("paused => stopped") => {
                if let Err(e) = self.resume(id).await {
                    tracing::debug!(container = id, error = %e, "thawing before delete failed");
                }
                self.delete_once(id).await
            }
            other => other,
        }
    }

    async fn delete_once(&self, id: &str) -> Result<(), RuntimeError> {
        match self.checked(self.command(&["delete", "--force", id]), "delete").await {
            Ok(()) => Ok(()),
            Err(RuntimeError::Command { stderr, .. })
                if stderr.contains("does not exist") || stderr.contains("not exist") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The container's status as the runtime reports it (`running`, `paused`, `stopped`…).
    pub(crate) async fn status(&self, id: &str) -> Option<String> {
        let out = self.command(&["state", id]).output().await.ok()?;
        let state: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        state.get("status")?.as_str().map(str::to_owned)
    }

    /// IDs of containers this runtime knows about whose bundle lies under `state_dir`
    /// (other servers on the same host may share the runtime's root).
    pub(crate) async fn list(&self, state_dir: &Path) -> Result<Vec<String>, RuntimeError> {
        let out = self
            .command(&["list", "--format", "json"])
            .output()
            .await
            .map_err(RuntimeError::io(format!("run {}", self.name)))?;
        if !out.status.success() {
            return Ok(Vec::new());
        }
        let parsed: Option<Vec<serde_json::Value>> =
            serde_json::from_slice(&out.stdout).unwrap_or_default();
        Ok(parsed
            .unwrap_or_default()
            .iter()
            .filter(|c| {
                c.get("bundle")
                    .and_then(|v| v.as_str())
                    .is_some_and(|b| Path::new(b).starts_with(state_dir))
            })
            .filter_map(|c| c.get("id").and_then(|v| v.as_str()).map(str::to_owned))
            .collect())
    }
}

impl Oci {
    /// Like [`Oci::run`], with the runtime process (and so everything it forks) placed in the
    /// given cgroups first: for runtimes told to ignore cgroups.
    pub(crate) async fn run_in_cgroups(
        &self,
        id: &str,
        bundle: &Path,
        log: &Path,
        procs_files: &[PathBuf],
    ) -> Result<(), RuntimeError> {
        // The cgroup files come in as positional parameters, the command after `--`: nothing
        // is pasted into the script text.
        let script =
            r#"while [ "$1" != "--" ]; do echo $$ > "$1" || exit 1; shift; done; shift; exec "$@""#;
        let bundle = bundle.to_string_lossy();
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(script)
            .arg("islet-join-cgroups")
            .args(procs_files)
            .arg("--")
            .arg(&self.binary)
            .args(&self.global)
            .args(["run", "--detach", "--bundle", &bundle, id])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        self.status_logged(cmd, log).await
    }
}

/// The most of a failed start's log that is read back: the log lives on the sandbox's disk
/// and may be gigabytes.
const LOG_TAIL_BYTES: u64 = 8 * 1024;

/// The last lines of `log` (at most [`LOG_TAIL_BYTES`] read), newest first, joined.
fn log_tail(log: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let open = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(log);
    let Ok(mut file) = open else { return String::new() };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES))).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    let _ = file.take(LOG_TAIL_BYTES).read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let tail: Vec<&str> = text.lines().rev().take(5).collect();
    tail.join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_log_is_read_from_its_end_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("agent.log");
        let mut text = "x".repeat(3 * 1024 * 1024);
        text.push_str("\nfirst\nsecond\nlast\n");
        std::fs::write(&log, text).expect("write");
        let tail = log_tail(&log);
        assert!(tail.starts_with("last | second | first | xxx"), "{}", &tail[..40]);
        assert!(tail.len() <= 8192 + 9, "read {} bytes of a 3 MiB log", tail.len());
        let link = dir.path().join("link.log");
        std::os::unix::fs::symlink(&log, &link).expect("symlink");
        assert_eq!(log_tail(&link), "", "a symlinked log is not followed");
    }
}

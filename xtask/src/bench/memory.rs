//! Reading memory figures: a sandbox's memory cgroup, a process's RSS, the host's
//! MemAvailable.
//!
//! Islet nests every sandbox's cgroups under its own (`<server's cgroup>/islet/<id>`): runc
//! makes them for `container` sandboxes, the server makes them for `gvisor` ones and starts
//! the runsc processes (sentry, gofer) inside.

use std::path::{Path, PathBuf};

use anyhow::Context;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Where the memory cgroups of a process's sandboxes live.
#[derive(Debug, Clone)]
pub(super) enum MemoryCgroups {
    /// cgroup v1 (or hybrid): the process's directory in the memory hierarchy.
    V1(PathBuf),
    /// cgroup v2: the process's directory in the unified hierarchy.
    V2(PathBuf),
}

/// One sandbox cgroup's memory, in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct CgroupMemory {
    /// `memory.usage_in_bytes` (v1) or `memory.current` (v2).
    pub usage: u64,
    /// Anonymous memory (v1 `total_rss`, v2 `anon`).
    pub anon: u64,
    /// Page cache (v1 `total_cache`, v2 `file`).
    pub file: u64,
    /// Kernel memory (v1 `memory.kmem.usage_in_bytes`, v2 `kernel`), when the kernel says.
    pub kernel: Option<u64>,
    /// Processes in the cgroup.
    pub procs: usize,
}

impl MemoryCgroups {
    /// The memory cgroup directory of process `pid`.
    pub(super) fn of_process(pid: u32) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .with_context(|| format!("read /proc/{pid}/cgroup"))?;
        let entries: Vec<(&str, &str)> = text
            .lines()
            .filter_map(|line| {
                let mut parts = line.splitn(3, ':');
                let _id = parts.next()?;
                Some((parts.next()?, parts.next()?))
            })
            .collect();
        let root = Path::new(CGROUP_ROOT);
        if root.join("cgroup.controllers").exists() {
            let path = entries
                .iter()
                .find(|(controllers, _)| controllers.is_empty())
                .map_or("/", |(_, p)| *p);
            return Ok(Self::V2(root.join(path.trim_start_matches('/'))));
        }
        let path = entries
            .iter()
            .find(|(controllers, _)| controllers.split(',').any(|c| c == "memory"))
            .map(|(_, p)| *p)
            .context("no memory controller in /proc/PID/cgroup")?;
        Ok(Self::V1(root.join("memory").join(path.trim_start_matches('/'))))
    }

    pub(super) fn version(&self) -> &'static str {
        match self {
            Self::V1(_) => "v1",
            Self::V2(_) => "v2",
        }
    }

    /// The directory of sandbox `id`.
    pub(super) fn sandbox_dir(&self, id: &str) -> PathBuf {
        match self {
            Self::V1(dir) | Self::V2(dir) => dir.join("islet").join(id),
        }
    }

    /// The memory of sandbox `id`'s cgroup.
    pub(super) fn sandbox(&self, id: &str) -> anyhow::Result<CgroupMemory> {
        let dir = self.sandbox_dir(id);
        let read = |file: &str| -> anyhow::Result<String> {
            std::fs::read_to_string(dir.join(file))
                .with_context(|| format!("read {}/{file}", dir.display()))
        };
        let stat = read("memory.stat")?;
        let field = |name: &str| -> u64 {
            stat.lines()
                .find_map(|line| {
                    let (key, value) = line.split_once(' ')?;
                    (key == name).then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0)
        };
        let procs = read("cgroup.procs")?.lines().count();
        Ok(match self {
            Self::V1(_) => CgroupMemory {
                usage: read("memory.usage_in_bytes")?.trim().parse()?,
                anon: field("total_rss"),
                file: field("total_cache"),
                kernel: read("memory.kmem.usage_in_bytes").ok().and_then(|s| s.trim().parse().ok()),
                procs,
            },
            Self::V2(_) => CgroupMemory {
                usage: read("memory.current")?.trim().parse()?,
                anon: field("anon"),
                file: field("file"),
                kernel: stat.lines().any(|l| l.starts_with("kernel ")).then(|| field("kernel")),
                procs,
            },
        })
    }
}

/// A `kB` field of a `/proc` file such as `/proc/meminfo` or `/proc/PID/status`, in bytes.
fn kb_field(path: &str, name: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {path}"))?;
    let line = text
        .lines()
        .find(|l| l.split(':').next() == Some(name))
        .with_context(|| format!("no {name} in {path}"))?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .with_context(|| format!("{path}: malformed {name}"))?
        .parse()?;
    Ok(kb * 1024)
}

/// Resident set size of process `pid`, in bytes.
pub(super) fn rss(pid: u32) -> anyhow::Result<u64> {
    kb_field(&format!("/proc/{pid}/status"), "VmRSS")
}

/// The host's MemAvailable, in bytes.
pub(super) fn mem_available() -> anyhow::Result<u64> {
    kb_field("/proc/meminfo", "MemAvailable")
}

/// The host's MemTotal, in bytes.
pub(super) fn mem_total() -> anyhow::Result<u64> {
    kb_field("/proc/meminfo", "MemTotal")
}

/// Bytes to MiB.
pub(super) fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

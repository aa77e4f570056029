//! Cgroups of the sandboxes this node runs, always nested under the server's own cgroup so that
//! whoever limits the server also limits its sandboxes. Handles v1, hybrid (v1 controllers plus
//! an almost empty cgroup2) and pure v2 hierarchies.
//!
//! runc creates and removes the cgroups of `container` sandboxes itself (from the relative
//! `cgroupsPath` in the spec); this module locates them for metering and creates the cgroups
//! of `gvisor` sandboxes, whose runtime is told to ignore cgroups and is started inside them.

use std::path::{Path, PathBuf};

use crate::error::RuntimeError;

const ROOT: &str = "/sys/fs/cgroup";
const V1_CONTROLLERS: [&str; 4] = ["memory", "cpu", "cpuacct", "pids"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Layout {
    /// One directory per v1 controller: (controller, our cgroup's directory).
    V1(Vec<(&'static str, PathBuf)>),
    /// The unified hierarchy: our cgroup's directory.
    V2(PathBuf),
}

/// Parse `/proc/self/cgroup` into (controllers, path) pairs.
fn own_cgroups(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?.to_owned();
            let path = parts.next()?.to_owned();
            Some((controllers, path))
        })
        .collect()
}

pub(crate) fn detect() -> Result<Layout, RuntimeError> {
    let text = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(RuntimeError::io("read /proc/self/cgroup"))?;
    let own = own_cgroups(&text);
    if Path::new(ROOT).join("cgroup.controllers").exists() {
        let path = own
            .iter()
            .find(|(c, _)| c.is_empty())
            .map(|(_, p)| p.trim_start_matches('/').to_owned())
            .unwrap_or_default();
        return Ok(Layout::V2(Path::new(ROOT).join(path)));
    }
    let mut dirs = Vec::new();
    for controller in V1_CONTROLLERS {
        let path = own
            .iter()
            .find(|(c, _)| c.split(',').any(|name| name == controller))
            .map(|(_, p)| p.trim_start_matches('/').to_owned())
            .unwrap_or_default();
        dirs.push((controller, Path::new(ROOT).join(controller).join(path)));
    }
    Ok(Layout::V1(dirs))
}

/// Limits written into a sandbox's cgroups.
pub(crate) struct Limits {
    pub memory_bytes: u64,
    pub cpu_quota_us: u64,
    pub cpu_period_us: u64,
    pub pids: u64,
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), RuntimeError> {
    std::fs::write(dir.join(file), value)
        .map_err(RuntimeError::io(format!("write {}/{file}", dir.display())))
}

/// Directories of sandbox `name` (relative, e.g. `islet/sbx_…`) in each hierarchy.
pub(crate) fn sandbox_dirs(layout: &Layout, name: &str) -> Vec<PathBuf> {
    match layout {
        Layout::V1(dirs) => dirs.iter().map(|(_, d)| d.join(name)).collect(),
        Layout::V2(dir) => vec![dir.join(name)],
    }
}

/// Create the cgroups of `name` with `limits`.
pub(crate) fn create(
    layout: &Layout,
    name: &str,
    limits: &Limits,
) -> Result<Vec<PathBuf>, RuntimeError> {
    match layout {
        Layout::V1(dirs) => {
            for (controller, base) in dirs {
                let dir = base.join(name);
                std::fs::create_dir_all(&dir)
                    .map_err(RuntimeError::io(format!("mkdir {}", dir.display())))?;
                match *controller {
                    "memory" => {
                        write(&dir, "memory.limit_in_bytes", &limits.memory_bytes.to_string())?;
                        // Absent without swap accounting; the plain limit still holds.
                        let _ = write(
                            &dir,
                            "memory.memsw.limit_in_bytes",
                            &limits.memory_bytes.to_string(),
                        );
                    }
                    "cpu" => {
                        write(&dir, "cpu.cfs_period_us", &limits.cpu_period_us.to_string())?;
                        write(&dir, "cpu.cfs_quota_us", &limits.cpu_quota_us.to_string())?;
                    }
                    "pids" => write(&dir, "pids.max", &limits.pids.to_string())?,
                    _ => {}
                }
            }
        }
        Layout::V2(base) => {
            let dir = base.join(name);
            std::fs::create_dir_all(&dir)
                .map_err(RuntimeError::io(format!("mkdir {}", dir.display())))?;
            // Enable the controllers on the way down from our cgroup.
            let mut parent = dir.parent().map(Path::to_path_buf);
            while let Some(p) = parent {
                let _ = write(&p, "cgroup.subtree_control", "+memory +cpu +pids");
                if p == *base {
                    break;
                }
                parent = p.parent().map(Path::to_path_buf);
            }
            write(&dir, "memory.max", &limits.memory_bytes.to_string())?;
            let _ = write(&dir, "memory.swap.max", "0");
            write(&dir, "cpu.max", &format!("{} {}", limits.cpu_quota_us, limits.cpu_period_us))?;
            write(&dir, "pids.max", &limits.pids.to_string())?;
        }
    }
    Ok(sandbox_dirs(layout, name))
}

/// Change the memory and CPU limits of the existing cgroups of `name` (a running sandbox of
/// either isolation level: runc's cgroups are at the same place). A memory limit below what the
/// sandbox uses now is refused by the kernel, and the error says so.
pub(crate) fn set_limits(layout: &Layout, name: &str, limits: &Limits) -> Result<(), RuntimeError> {
    let memory = limits.memory_bytes.to_string();
    match layout {
        Layout::V1(dirs) => {
            for (controller, base) in dirs {
                let dir = base.join(name);
                match *controller {
                    "memory" => {
                        // memsw must stay at least the plain limit: raise it first when growing,
                        // lower it after when shrinking. Absent without swap accounting.
                        let current: u64 =
                            std::fs::read_to_string(dir.join("memory.limit_in_bytes"))
                                .ok()
                                .and_then(|s| s.trim().parse().ok())
                                .unwrap_or(0);
                        if limits.memory_bytes >= current {
                            let _ = write(&dir, "memory.memsw.limit_in_bytes", &memory);
                            write(&dir, "memory.limit_in_bytes", &memory)?;
                        } else {
                            write(&dir, "memory.limit_in_bytes", &memory)?;
                            let _ = write(&dir, "memory.memsw.limit_in_bytes", &memory);
                        }
                    }
                    "cpu" => {
                        write(&dir, "cpu.cfs_period_us", &limits.cpu_period_us.to_string())?;
                        write(&dir, "cpu.cfs_quota_us", &limits.cpu_quota_us.to_string())?;
                    }
                    _ => {}
                }
            }
        }
        Layout::V2(base) => {
            let dir = base.join(name);
            write(&dir, "memory.max", &memory)?;
            write(&dir, "cpu.max", &format!("{} {}", limits.cpu_quota_us, limits.cpu_period_us))?;
        }
    }
    Ok(())
}

/// Remove the cgroups of `name`, killing whatever is still inside. Missing ones are fine.
pub(crate) fn remove(layout: &Layout, name: &str) -> Result<(), RuntimeError> {
    for dir in sandbox_dirs(layout, name) {
        if !dir.exists() {
            continue;
        }
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        // A cgroup is removable once its last process has been reaped; give that a moment.
        let mut last = Ok(());
        for _ in 0..100 {
            last = std::fs::remove_dir(&dir);
            if last.is_ok() || !dir.exists() {
                last = Ok(());
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        last.map_err(RuntimeError::io(format!("rmdir {}", dir.display())))?;
    }
    Ok(())
}

/// What a sandbox's cgroup has used: cumulative CPU time and memory in use now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupUsage {
    pub cpu_usec: u64,
    pub memory_bytes: u64,
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Read `name`'s usage; `None` when its cgroup is gone (or never existed).
pub(crate) fn usage(layout: &Layout, name: &str) -> Option<CgroupUsage> {
    match layout {
        Layout::V1(dirs) => {
            let dir = |controller: &str| {
                dirs.iter().find(|(c, _)| *c == controller).map(|(_, d)| d.join(name))
            };
            let cpu_ns = read_u64(&dir("cpuacct")?.join("cpuacct.usage"))?;
            let memory = read_u64(&dir("memory")?.join("memory.usage_in_bytes"))?;
            Some(CgroupUsage { cpu_usec: cpu_ns / 1000, memory_bytes: memory })
        }
        Layout::V2(base) => {
            let dir = base.join(name);
            let stat = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
            let cpu_usec = stat
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .and_then(|v| v.trim().parse().ok())?;
            let memory = read_u64(&dir.join("memory.current"))?;
            Some(CgroupUsage { cpu_usec, memory_bytes: memory })
        }
    }
}

/// The `cgroup.procs` files a process must join to be inside `name`'s cgroups.
pub(crate) fn procs_files(layout: &Layout, name: &str) -> Vec<PathBuf> {
    sandbox_dirs(layout, name).into_iter().map(|d| d.join("cgroup.procs")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hybrid_proc_self_cgroup() {
        let text = "9:name=systemd:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/x\n0::/\n";
        let own = own_cgroups(text);
        assert_eq!(own[1], ("memory".into(), "/process_api/abc".into()));
        assert_eq!(own[2].0, "cpu,cpuacct");
        assert_eq!(own[3], (String::new(), "/".into()));
    }
}

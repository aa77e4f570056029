//! The OCI runtime spec (`config.json`) of one sandbox.

use std::path::PathBuf;

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxIdMappingBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};

use crate::config::Config;
use crate::error::RuntimeError;
use crate::layout::SandboxPaths;
use crate::seccomp;
use crate::spec::SandboxSpec;

/// Where the agent binary and its socket directory appear inside the sandbox.
pub(crate) const AGENT_PATH: &str = "/.islet/islet-agent";
pub(crate) const AGENT_DIR: &str = "/run/islet";
const CFS_PERIOD_US: u64 = 100_000;
/// Processes per sandbox (fork bombs stop here).
pub(crate) const PIDS_MAX: i64 = 1024;

fn spec_err(e: oci_spec::OciSpecError) -> RuntimeError {
    RuntimeError::Spec(e.to_string())
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, RuntimeError> {
    MountBuilder::default()
        .destination(PathBuf::from(dest))
        .typ(typ)
        .source(PathBuf::from(source))
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(spec_err)
}

fn mounts(
    config: &Config,
    paths: &SandboxPaths,
    isolation: islet_types::sandbox::Isolation,
) -> Result<Vec<Mount>, RuntimeError> {
    let agent = config.agent_binary.to_string_lossy();
    let agent_dir = paths.agent_dir.to_string_lossy();
    // Host-written, read-only (see `Runtime::write_etc`).
    let etc_file = |name: &str| {
        let source = paths.etc.join(name);
        mount(
            &format!("/etc/{name}"),
            "none",
            &source.to_string_lossy(),
            &["bind", "ro", "nosuid", "nodev", "noexec"],
        )
    };
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"])?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"])?,
        // The sandbox's user namespace does not own its network namespace, so it cannot mount
        // a fresh sysfs; a read-only view of the host's is what rootless containers use, and
        // what in it names the host or other sandboxes is covered: the cgroup tree by the
        // sandbox's own cgroup namespace view, the host's links and kernel interfaces by the
        // masks below.
        // gVisor's user-space kernel has a sysfs of its own, which shows nothing of the host.
        match isolation {
            islet_types::sandbox::Isolation::Container => {
                mount("/sys", "none", "/sys", &["rbind", "nosuid", "noexec", "nodev", "ro"])?
            }
            islet_types::sandbox::Isolation::Gvisor => {
                mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"])?
            }
        },
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        )?,
        mount(AGENT_PATH, "none", &agent, &["bind", "ro", "nosuid", "nodev"])?,
        mount(AGENT_DIR, "none", &agent_dir, &["bind", "rw", "nosuid", "nodev", "noexec"])?,
        etc_file("hostname")?,
        etc_file("hosts")?,
        etc_file("resolv.conf")?,
    ])
}

fn capabilities() -> Vec<Capability> {
    use Capability::*;
    vec![
        Chown,
        DacOverride,
        Fsetid,
        Fowner,
        Mknod,
        NetRaw,
        Setgid,
        Setuid,
        Setfcap,
        Setpcap,
        NetBindService,
        SysChroot,
        Kill,
        AuditWrite,
    ]
}

pub(crate) fn build(
    config: &Config,
    paths: &SandboxPaths,
    sandbox: &SandboxSpec,
) -> Result<Spec, RuntimeError> {
    let caps = capabilities();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.iter().copied().collect::<oci_spec::runtime::Capabilities>())
        .effective(caps.iter().copied().collect::<oci_spec::runtime::Capabilities>())
        .permitted(caps.iter().copied().collect::<oci_spec::runtime::Capabilities>())
        .build()
        .map_err(spec_err)?;
    let mut env = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        "HOME=/root".to_string(),
        "TERM=xterm-256color".to_string(),
        "LANG=C.UTF-8".to_string(),
        format!("HOSTNAME={}", sandbox.hostname),
    ];
    env.extend(sandbox.env.iter().map(|(k, v)| format!("{k}={v}")));
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(UserBuilder::default().uid(0u32).gid(0u32).build().map_err(spec_err)?)
        .args(vec![
            AGENT_PATH.to_string(),
            "--socket".to_string(),
            format!("{AGENT_DIR}/agent.sock"),
        ])
        .env(env)
        .cwd("/")
        .capabilities(capabilities)
        .no_new_privileges(true)
        // No rlimits: a user namespace cannot raise them above the server's, so the sandbox
        // inherits the server's (set them on the service that runs Islet).
        .rlimits(Vec::new())
        .build()
        .map_err(spec_err)?;

    let resources = &sandbox.resources;
    let memory_bytes = i64::from(resources.memory_mb) * 1024 * 1024;
    let linux_resources = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(memory_bytes)
                // No swap beyond the memory limit: the OOM killer acts at the limit.
                .swap(memory_bytes)
                .build()
                .map_err(spec_err)?,
        )
        .cpu(
            LinuxCpuBuilder::default()
                .period(CFS_PERIOD_US)
                .quota(CFS_PERIOD_US as i64 * i64::from(resources.cpu_count))
                .build()
                .map_err(spec_err)?,
        )
        .pids(LinuxPidsBuilder::default().limit(PIDS_MAX).build().map_err(spec_err)?)
        .build()
        .map_err(spec_err)?;

    let namespace = |typ, path: Option<&std::path::Path>| {
        let mut b = LinuxNamespaceBuilder::default().typ(typ);
        if let Some(path) = path {
            b = b.path(path.to_path_buf());
        }
        b.build().map_err(spec_err)
    };
    let mut namespaces = vec![
        namespace(LinuxNamespaceType::Pid, None)?,
        namespace(LinuxNamespaceType::Network, Some(&paths.netns))?,
        namespace(LinuxNamespaceType::Ipc, None)?,
        namespace(LinuxNamespaceType::Uts, None)?,
        namespace(LinuxNamespaceType::Mount, None)?,
        namespace(LinuxNamespaceType::Cgroup, None)?,
    ];
    let id_map = LinuxIdMappingBuilder::default()
        .container_id(0u32)
        .host_id(config.uid_base)
        .size(65_536u32)
        .build()
        .map_err(spec_err)?;
    let mut linux = LinuxBuilder::default()
        .resources(linux_resources)
        .cgroups_path(PathBuf::from(format!("islet/{}", sandbox.id)))
        .masked_paths(
            [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/proc/scsi",
                "/sys/firmware",
                "/sys/devices/virtual/powercap",
                // The host's network links and their traffic counters (the sandbox's own are
                // in /proc/net and netlink), and kernel interfaces no sandbox needs.
                "/sys/class/net",
                "/sys/devices/virtual/net",
                "/sys/kernel/debug",
                "/sys/kernel/tracing",
                "/sys/kernel/security",
                "/sys/fs/bpf",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
        )
        .readonly_paths(
            ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        );
    if sandbox.isolation == islet_types::sandbox::Isolation::Container {
        // gVisor is its own syscall filter and brings its own user-space kernel; runc gets the
        // user namespace and the seccomp profile.
        namespaces.push(namespace(LinuxNamespaceType::User, None)?);
        linux = linux
            .uid_mappings(vec![id_map])
            .gid_mappings(vec![id_map])
            .seccomp(seccomp::profile()?);
    }
    let linux = linux.namespaces(namespaces).build().map_err(spec_err)?;

    SpecBuilder::default()
        .version("1.0.2-dev")
        .root(
            RootBuilder::default()
                .path(paths.rootfs.clone())
                .readonly(false)
                .build()
                .map_err(spec_err)?,
        )
        .hostname(sandbox.hostname.clone())
        .mounts(mounts(config, paths, sandbox.isolation)?)
        .process(process)
        .linux(linux)
        .build()
        .map_err(spec_err)
}

//! Create, pause, resume, stop and destroy sandboxes on this host.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use islet_types::egress::EgressPolicy;
use islet_types::sandbox::Isolation;
use islet_types::{Resources, SandboxId};
use rtnetlink::Handle;

use crate::agent_client::AgentClient;
use crate::bundle;
use crate::cgroups;
use crate::config::Config;
use crate::egress::Egress;
use crate::error::RuntimeError;
use crate::firewall;
use crate::layout::{host_veth, slot_addresses, SandboxPaths};
use crate::netns;
use crate::oci::Oci;
use crate::overlay;
pub use crate::spec::SandboxSpec;

const AGENT_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Cumulative bytes a sandbox's link carried, from the sandbox's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetCounters {
    /// Received by the sandbox.
    pub ingress_bytes: u64,
    /// Sent by the sandbox.
    pub egress_bytes: u64,
}

/// A started sandbox.
#[derive(Debug, Clone)]
pub struct Started {
    /// From the start of `create` to the agent's first answer.
    pub boot: Duration,
    pub ip: Ipv4Addr,
}

/// What is on this host that looks like ours, for reconciliation.
#[derive(Debug, Default)]
pub struct Leftovers {
    pub sandbox_dirs: Vec<String>,
    pub containers: Vec<(Isolation, String)>,
    pub links: Vec<String>,
}

pub struct Runtime {
    config: Config,
    netlink: Handle,
    cgroups: cgroups::Layout,
    egress: Egress,
    /// Whether the kernel can cap connections (tenants' `max_connections_per_sandbox`).
    connection_caps: bool,
    /// Whether sandboxes get disks of their own, i.e. `disk_mb` is enforced (see `disk`).
    disk_limits: bool,
}

impl Runtime {
    /// Prepare the host: directories, firewall chains, a netlink connection.
    pub async fn start(config: Config) -> Result<Self, RuntimeError> {
        for dir in [&config.layout.state_dir, &config.layout.run_dir] {
            std::fs::create_dir_all(dir)
                .map_err(RuntimeError::io(format!("mkdir {}", dir.display())))?;
        }
        allow_search_to(&config.layout.state_dir)?;
        // Searchable by a sandbox's mapped root on its way to its rootfs, listable by no one
        // but root: sandbox ids are not for local users to read.
        set_mode(&config.layout.state_dir, 0o711)?;
        firewall::install(&config).await?;
        let egress = Egress::start(&config.net_prefix).await?;
        let connection_caps = config.max_egress_connections.is_some()
            || firewall::connlimit_works(&config.net_prefix).await;
        let (connection, netlink, _) =
            rtnetlink::new_connection().map_err(RuntimeError::io("netlink socket"))?;
        tokio::spawn(connection);
        let cgroups = cgroups::detect()?;
        tracing::info!(?cgroups, "cgroup layout");
        // Disk limits (see `disk`): without them sandboxes still run, unlimited.
        let disk_limits = match crate::disk::probe(&config).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "disk limits are NOT enforced on this host");
                false
            }
        };
        Ok(Self { config, netlink, cgroups, egress, connection_caps, disk_limits })
    }

    /// What a sandbox's cgroup has used so far (CPU time, memory now); `None` when it has no
    /// live cgroup (stopped, destroyed).
    pub fn usage(&self, id: &SandboxId) -> Option<cgroups::CgroupUsage> {
        cgroups::usage(&self.cgroups, &cgroup_name(id))
    }

    /// Bytes through a network slot's link so far, seen from the sandbox (`None` when the slot
    /// has no link). The counters start at zero with each new link (each start or resume).
    pub fn network_counters(&self, index: u32) -> Option<NetCounters> {
        let dir = std::path::Path::new("/sys/class/net")
            .join(host_veth(&self.config, index))
            .join("statistics");
        let read = |name: &str| -> Option<u64> {
            std::fs::read_to_string(dir.join(name)).ok()?.trim().parse().ok()
        };
        // The host end's receive counter is what the sandbox sent, and the other way round.
        Some(NetCounters { egress_bytes: read("rx_bytes")?, ingress_bytes: read("tx_bytes")? })
    }

    /// Set (an empty policy clears) a group's egress rules; its running sandboxes get them at
    /// once.
    pub async fn set_egress(&self, group: &str, policy: EgressPolicy) -> Result<(), RuntimeError> {
        self.egress.set(group, policy).await
    }

    /// Replace all egress state at start-up: every group's rules, and the group of every
    /// network slot in use.
    pub async fn load_egress(
        &self,
        groups: Vec<(String, EgressPolicy)>,
        slots: Vec<(u32, String)>,
    ) -> Result<(), RuntimeError> {
        let slots = slots
            .into_iter()
            .map(|(slot, group)| (slot, group, host_veth(&self.config, slot)))
            .collect();
        self.egress.load(groups, slots).await
    }

    /// A running sandbox changed hands (the warm pool's, now a tenant's).
    pub async fn rebind_egress(&self, slot: u32, group: &str) -> Result<(), RuntimeError> {
        self.egress.bind(slot, group, &host_veth(&self.config, slot)).await
    }

    /// Whether connection caps can be enforced on this host (the kernel's connlimit match).
    pub fn connection_caps_supported(&self) -> bool {
        self.connection_caps
    }

    /// After a failed change of the egress rules, apply them again (a no-op otherwise).
    pub async fn heal_egress(&self) -> Result<(), RuntimeError> {
        self.egress.heal().await
    }

    /// Whether writes beyond a sandbox's `disk_mb` fail (false if the host cannot do it).
    pub fn disk_limits_enforced(&self) -> bool {
        self.disk_limits
    }

    pub fn agent(&self, id: &SandboxId) -> AgentClient {
        AgentClient::new(SandboxPaths::new(&self.config, id).agent_socket)
    }

    /// The sandbox-side address of network slot `index`.
    pub fn sandbox_ip(&self, index: u32) -> Ipv4Addr {
        slot_addresses(&self.config, index).1
    }

    /// Start a sandbox. On failure everything built so far is taken down again (its files
    /// stay: a stopped sandbox that fails to resume keeps them until it is destroyed), and a
    /// failing cleanup is reported together with the original error.
    pub async fn create(&self, spec: &SandboxSpec) -> Result<Started, RuntimeError> {
        let start = Instant::now();
        match self.create_steps(spec).await {
            Ok(ip) => Ok(Started { boot: start.elapsed(), ip }),
            Err(error) => {
                match self.teardown(&spec.id, spec.isolation, Some(spec.net_index), false).await {
                    Ok(()) => Err(error),
                    Err(cleanup) => Err(RuntimeError::CreateAndCleanup {
                        error: Box::new(error),
                        cleanup: Box::new(cleanup),
                    }),
                }
            }
        }
    }

    async fn create_steps(&self, spec: &SandboxSpec) -> Result<Ipv4Addr, RuntimeError> {
        let paths = SandboxPaths::new(&self.config, &spec.id);
        let template = self.config.layout.template_dir.join(&spec.template).join("rootfs");
        if !template.join("etc").is_dir() {
            return Err(RuntimeError::TemplateMissing(spec.template.clone()));
        }
        let mut phases = Phases::start();
        // The root (disk, overlay) and the network do not depend on each other: build them
        // side by side. The disk's mkfs and the netns thread run outside this task.
        let (host_ip, sandbox_ip) = slot_addresses(&self.config, spec.net_index);
        let veth = host_veth(&self.config, spec.net_index);
        let (root, network) = tokio::join!(
            self.prepare_root(&paths, spec, &template),
            netns::create(&self.netlink, &paths.netns, &veth, host_ip, sandbox_ip)
        );
        root?;
        network?;
        // Before anything runs in it, the sandbox is held to its tenant's egress rules.
        self.egress.bind(spec.net_index, &spec.egress_group, &veth).await?;
        phases.mark("root+network");
        self.write_etc(&paths, spec, sandbox_ip)?;

        let oci_spec = bundle::build(&self.config, &paths, spec)?;
        let spec_file = paths.bundle.join("config.json");
        oci_spec.save(&spec_file).map_err(|e| RuntimeError::Spec(e.to_string()))?;
        // It holds the tenant's env: root's alone.
        set_mode(&spec_file, 0o600)?;
        phases.mark("spec");
        let oci = Oci::for_isolation(&self.config, spec.isolation);
        if spec.isolation == Isolation::Gvisor {
            let limits = cgroup_limits(&spec.resources);
            cgroups::create(&self.cgroups, &cgroup_name(&spec.id), &limits)?;
            let procs = cgroups::procs_files(&self.cgroups, &cgroup_name(&spec.id));
            oci.run_in_cgroups(spec.id.as_str(), &paths.bundle, &paths.log, &procs).await?;
        } else {
            oci.run(spec.id.as_str(), &paths.bundle, &paths.log).await?;
        }
        phases.mark("oci_run");
        self.agent(&spec.id)
            .wait_ready(AGENT_READY_TIMEOUT)
            .await
            .map_err(|e| RuntimeError::AgentTimeout(AGENT_READY_TIMEOUT, e))?;
        phases.mark("agent");
        tracing::debug!(sandbox_id = %spec.id, phases = %phases, "sandbox created");
        Ok(sandbox_ip)
    }

    /// The sandbox's disk (disk limits: everything it can write lives on it), its agent
    /// directory and its overlay root.
    async fn prepare_root(
        &self,
        paths: &SandboxPaths,
        spec: &SandboxSpec,
        template: &std::path::Path,
    ) -> Result<(), RuntimeError> {
        crate::disk::attach(&self.config, paths, spec.resources.disk_mb, self.disk_limits).await?;
        set_mode(&paths.dir, 0o711)?;
        std::fs::create_dir_all(&paths.agent_dir).map_err(RuntimeError::io("mkdir agent dir"))?;
        std::fs::create_dir_all(&paths.bundle).map_err(RuntimeError::io("mkdir bundle"))?;
        overlay::chown(&paths.agent_dir, self.config.uid_base)?;
        {
            use std::os::unix::fs::PermissionsExt;
            // Only the sandbox's root and the host's root may reach the agent socket.
            std::fs::set_permissions(&paths.agent_dir, std::fs::Permissions::from_mode(0o700))
                .map_err(RuntimeError::io("chmod agent dir"))?;
        }
        let _ = std::fs::remove_file(&paths.agent_socket);
        overlay::mount_root(paths, template, self.config.uid_base)
    }

    /// `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`, so that servers that look up their
    /// own name start at once and names resolve through the configured resolvers.
    ///
    /// They are written into the bundle directory, which only the host can write, and
    /// bind-mounted read-only by the OCI runtime (which resolves the destinations inside the
    /// root). Nothing here writes through the sandbox's own files, so a symlink the tenant
    /// planted there (say `/etc` → a host path, kept across stop/resume) can never redirect a
    /// host-side write.
    fn write_etc(
        &self,
        paths: &SandboxPaths,
        spec: &SandboxSpec,
        ip: Ipv4Addr,
    ) -> Result<(), RuntimeError> {
        let hosts = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{host}\n",
            host = spec.hostname
        );
        let resolv: String = if self.config.nameservers.is_empty() {
            "# no resolver configured\n".into()
        } else {
            self.config
                .nameservers
                .iter()
                .map(|ns| format!("nameserver {ns}\n"))
                .chain(std::iter::once("options timeout:2 attempts:2\n".to_owned()))
                .collect()
        };
        std::fs::create_dir_all(&paths.etc).map_err(RuntimeError::io("mkdir etc files dir"))?;
        for (name, content) in [
            ("hostname", format!("{}\n", spec.hostname)),
            ("hosts", hosts),
            ("resolv.conf", resolv),
        ] {
            std::fs::write(paths.etc.join(name), content)
                .map_err(RuntimeError::io(format!("write /etc/{name}")))?;
        }
        Ok(())
    }

    /// Give a running sandbox new CPU and memory limits, at once (its cgroups, whichever the
    /// isolation level). The disk keeps its size: it is a filesystem image.
    pub fn resize(&self, id: &SandboxId, resources: &Resources) -> Result<(), RuntimeError> {
        cgroups::set_limits(&self.cgroups, &cgroup_name(id), &cgroup_limits(resources))
    }

    pub async fn pause(&self, id: &SandboxId, isolation: Isolation) -> Result<(), RuntimeError> {
        Oci::for_isolation(&self.config, isolation).pause(id.as_str()).await
    }

    pub async fn resume(&self, id: &SandboxId, isolation: Isolation) -> Result<(), RuntimeError> {
        Oci::for_isolation(&self.config, isolation).resume(id.as_str()).await
    }

    /// Is the sandbox's container there and frozen? (After a host reboot it is neither.)
    pub async fn is_paused(&self, id: &SandboxId, isolation: Isolation) -> bool {
        Oci::for_isolation(&self.config, isolation)
            .status(id.as_str())
            .await
            .is_some_and(|status| status == "paused")
    }

    /// Stop every process and release the network, keeping the sandbox's files for a restart.
    pub async fn stop(
        &self,
        id: &SandboxId,
        isolation: Isolation,
        net_index: Option<u32>,
    ) -> Result<(), RuntimeError> {
        self.teardown(id, isolation, net_index, false).await
    }

    /// Remove everything the sandbox had on this host. Idempotent.
    pub async fn destroy(
        &self,
        id: &SandboxId,
        isolation: Isolation,
        net_index: Option<u32>,
    ) -> Result<(), RuntimeError> {
        self.teardown(id, isolation, net_index, true).await
    }

    async fn teardown(
        &self,
        id: &SandboxId,
        isolation: Isolation,
        net_index: Option<u32>,
        remove_files: bool,
    ) -> Result<(), RuntimeError> {
        let paths = SandboxPaths::new(&self.config, id);
        let mut first_error = None;
        let mut note = |r: Result<(), RuntimeError>| {
            if let Err(e) = r {
                tracing::warn!(sandbox_id = %id, error = %e, "teardown step failed");
                first_error.get_or_insert(e);
            }
        };
        note(Oci::for_isolation(&self.config, isolation).delete(id.as_str()).await);
        note(cgroups::remove(&self.cgroups, &cgroup_name(id)));
        if let Some(i) = net_index {
            self.egress.release(i).await;
        }
        let veth = net_index.map(|i| host_veth(&self.config, i));
        match veth {
            Some(veth) => note(netns::destroy(&self.netlink, &paths.netns, &veth).await),
            None => note(netns::destroy(&self.netlink, &paths.netns, "").await),
        }
        note(overlay::unmount_root(&paths));
        note(crate::disk::detach(&paths)); // disk limits: the disk under the overlay
        let _ = std::fs::remove_file(&paths.agent_socket);
        if remove_files {
            match std::fs::remove_dir_all(&paths.dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => note(Err(RuntimeError::io(format!("remove {}", paths.dir.display()))(e))),
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Everything on this host that looks like one of our sandboxes.
    pub async fn leftovers(&self) -> Result<Leftovers, RuntimeError> {
        let mut found = Leftovers::default();
        if let Ok(entries) = std::fs::read_dir(&self.config.layout.state_dir) {
            for entry in entries.flatten() {
                found.sandbox_dirs.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        for isolation in [Isolation::Container, Isolation::Gvisor] {
            for id in Oci::for_isolation(&self.config, isolation)
                .list(&self.config.layout.state_dir)
                .await?
            {
                found.containers.push((isolation, id));
            }
        }
        found.links = netns::owned_links(&self.netlink, &self.config.net_prefix).await?;
        Ok(found)
    }

    /// Remove a host link this node owns that no sandbox claims.
    pub async fn remove_link(&self, name: &str) -> Result<(), RuntimeError> {
        netns::destroy(&self.netlink, std::path::Path::new("/nonexistent"), name).await
    }

    /// Host-side veth name of a slot.
    pub fn link_name(&self, index: u32) -> String {
        host_veth(&self.config, index)
    }
}

/// The cgroup limits of a sandbox of `resources` (the OCI spec says the same for runc).
fn cgroup_limits(resources: &Resources) -> cgroups::Limits {
    cgroups::Limits {
        memory_bytes: u64::from(resources.memory_mb) * 1024 * 1024,
        cpu_quota_us: 100_000 * u64::from(resources.cpu_count),
        cpu_period_us: 100_000,
        pids: bundle::PIDS_MAX as u64,
    }
}

fn cgroup_name(id: &SandboxId) -> String {
    format!("islet/{id}")
}

/// Set a path's permission bits.
fn set_mode(path: &std::path::Path, mode: u32) -> Result<(), RuntimeError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(RuntimeError::io(format!("chmod {}", path.display())))
}

/// The sandbox's mapped root must be able to walk down to its rootfs (search permission only,
/// no listing) through every directory above `dir`.
fn allow_search_to(dir: &std::path::Path) -> Result<(), RuntimeError> {
    use std::os::unix::fs::PermissionsExt;
    let mut next = Some(dir);
    while let Some(d) = next {
        let mode = std::fs::metadata(d)
            .map_err(RuntimeError::io(format!("stat {}", d.display())))?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o001))
                .map_err(RuntimeError::io(format!("chmod {}", d.display())))?;
        }
        next = d.parent();
    }
    Ok(())
}

/// Durations of the steps of one create, for the debug log (and the benchmark's breakdown).
struct Phases {
    last: Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Phases {
    fn start() -> Self {
        Self { last: Instant::now(), done: Vec::new() }
    }

    fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.done.push((name, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, took) in &self.done {
            write!(f, "{name}={:.1}ms ", took.as_secs_f64() * 1000.0)?;
        }
        Ok(())
    }
}

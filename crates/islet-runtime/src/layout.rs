//! Paths of one sandbox's host-side pieces. Everything a sandbox owns on disk is under its
//! directory, its netns file and its OCI runtime state, so cleanup knows exactly what to remove.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use islet_types::SandboxId;

use crate::config::Config;

pub(crate) struct SandboxPaths {
    pub dir: PathBuf,
    /// The sandbox's own filesystem (see `disk`): everything the sandbox can write is under it.
    pub disk: PathBuf,
    /// The image file of that filesystem.
    pub disk_image: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub rootfs: PathBuf,
    pub bundle: PathBuf,
    /// Host-written files bind-mounted read-only into the sandbox's `/etc`.
    pub etc: PathBuf,
    /// Bind-mounted at `/run/islet` inside; holds the agent socket.
    pub agent_dir: PathBuf,
    pub agent_socket: PathBuf,
    pub log: PathBuf,
    pub netns: PathBuf,
}

impl SandboxPaths {
    pub(crate) fn new(config: &Config, id: &SandboxId) -> Self {
        let dir = config.layout.state_dir.join(id.as_str());
        let disk = dir.join("disk");
        let agent_dir = disk.join("agent");
        Self {
            upper: disk.join("upper"),
            work: disk.join("work"),
            rootfs: dir.join("rootfs"),
            bundle: dir.join("bundle"),
            etc: dir.join("bundle").join("etc"),
            agent_socket: agent_dir.join("agent.sock"),
            agent_dir,
            log: disk.join("agent.log"),
            disk_image: dir.join("disk.img"),
            disk,
            netns: config.layout.run_dir.join("netns").join(id.as_str()),
            dir,
        }
    }
}

/// The /30 of network slot `index`: (host side, sandbox side).
pub(crate) fn slot_addresses(config: &Config, index: u32) -> (Ipv4Addr, Ipv4Addr) {
    let base = u32::from(Ipv4Addr::new(10, config.subnet_octet, 0, 0)) + index * 4;
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

/// Host-side veth name of slot `index` (at most 15 bytes).
pub(crate) fn host_veth(config: &Config, index: u32) -> String {
    format!("{}{index}", config.net_prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_disjoint_slash_30s() {
        let config = Config::new("/d".into(), "/t".into(), "/a".into());
        assert_eq!(
            slot_addresses(&config, 1),
            (Ipv4Addr::new(10, 213, 0, 5), Ipv4Addr::new(10, 213, 0, 6))
        );
        assert_eq!(
            slot_addresses(&config, 16_383),
            (Ipv4Addr::new(10, 213, 255, 253), Ipv4Addr::new(10, 213, 255, 254))
        );
        assert!(host_veth(&config, 16_383).len() <= 15);
    }
}

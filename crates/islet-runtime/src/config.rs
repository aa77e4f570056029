//! The runtime's configuration: plain data, filled in by the binary.

use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Where things live on the host.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Per-sandbox directories (`<state_dir>/<sandbox-id>/…`).
    pub state_dir: PathBuf,
    /// Built templates (`<template_dir>/<name>/rootfs`).
    pub template_dir: PathBuf,
    /// Runtime state that must not survive a host reboot (OCI runtime roots, netns files).
    pub run_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub layout: Layout,
    /// The `islet-agent` binary bind-mounted into every sandbox.
    pub agent_binary: PathBuf,
    pub runc: PathBuf,
    pub runsc: PathBuf,
    /// Formats the sandboxes' disks (see `disk`).
    pub mkfs_ext4: PathBuf,
    /// First host uid/gid of the range sandbox uids 0..65536 map to.
    pub uid_base: u32,
    /// Resolvers the sandboxes use; egress to these on port 53 is allowed.
    pub nameservers: Vec<Ipv4Addr>,
    /// Let sandboxes reach private ranges (an operator's explicit choice; off by default).
    pub allow_private_egress: bool,
    /// Connections one sandbox may hold open at once (through the host's connection
    /// tracking); `None`: no cap.
    pub max_egress_connections: Option<u32>,
    /// Name prefix of every network interface and firewall chain this node owns.
    pub net_prefix: String,
    /// Second octet of the 10.x.0.0/16 the sandboxes' /30s come from.
    pub subnet_octet: u8,
}

impl Config {
    /// Defaults rooted at `data_dir`, with the agent binary at `agent_binary`.
    pub fn new(data_dir: PathBuf, template_dir: PathBuf, agent_binary: PathBuf) -> Self {
        Self {
            layout: Layout {
                state_dir: data_dir.join("sandboxes"),
                template_dir,
                run_dir: PathBuf::from("/run/islet"),
            },
            agent_binary,
            runc: PathBuf::from("runc"),
            runsc: PathBuf::from("runsc"),
            mkfs_ext4: PathBuf::from("mkfs.ext4"),
            uid_base: 100_000,
            nameservers: Vec::new(),
            allow_private_egress: false,
            max_egress_connections: Some(512),
            net_prefix: "isl".into(),
            subnet_octet: 213,
        }
    }
}

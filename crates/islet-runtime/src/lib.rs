//! The node runtime: turns a sandbox spec into a running, isolated sandbox and back.
//!
//! A sandbox is an OCI container run by `runc` (isolation `container`) or `runsc` (gVisor,
//! isolation `gvisor`) over an overlayfs root (the template below, a per-sandbox upper dir
//! above), in a user namespace mapped to an unprivileged uid range, with its own network
//! namespace (a veth /30 set up over rtnetlink), cgroup limits, a default-deny seccomp profile
//! and the guest agent as PID 1. The agent is reached only through a Unix socket in a directory
//! bind-mounted from the host; never through the sandbox's network.
//!
//! Every step of `create` has an inverse in `destroy`, and `destroy` tolerates any step having
//! never happened, so a crash at any point is repaired by destroying what is left.

mod agent_client;
mod bundle;
mod cgroups;
mod config;
mod disk;
mod egress;
mod error;
pub mod firewall;
mod layout;
mod loopdev;
mod netns;
mod oci;
mod overlay;
mod runtime;
mod seccomp;
mod spec;
pub mod staging;
pub mod template;

pub use agent_client::{AgentClient, AgentError};
pub use cgroups::CgroupUsage;
pub use config::{Config, Layout as HostLayout};
pub use error::RuntimeError;
pub use runtime::{Leftovers, NetCounters, Runtime, SandboxSpec, Started};

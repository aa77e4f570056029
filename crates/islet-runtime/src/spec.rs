//! What the node needs to start one sandbox: the input of `Runtime::create` and of the OCI
//! bundle it writes.

use std::collections::BTreeMap;

use islet_types::sandbox::Isolation;
use islet_types::{Resources, SandboxId};

/// What the node needs to start one sandbox.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    pub id: SandboxId,
    pub hostname: String,
    pub template: String,
    pub isolation: Isolation,
    pub resources: Resources,
    pub env: BTreeMap<String, String>,
    /// The sandbox's network slot (its /30).
    pub net_index: u32,
    /// Whose egress rules apply to it (its tenant).
    pub egress_group: String,
}

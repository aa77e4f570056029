//! The sandbox: its lifecycle state machine, the create request and the wire object.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::size::Resources;

/// Where a sandbox is in its life. Every change goes through [`SandboxState::transition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxState {
    Creating,
    Running,
    Paused,
    Stopped,
    Error,
    Destroying,
    Destroyed,
}

/// The longest label (`name`, `external_user_id`, `external_project_id`, …), bytes.
pub const MAX_LABEL: usize = 256;

/// Whether `value` may be a label: 1 to `MAX_LABEL` bytes, no control characters. One rule for
/// every place an end user's or project's id arrives (bodies, paths, the operator's tools).
pub fn label_ok(value: &str) -> bool {
    !value.is_empty() && value.len() <= MAX_LABEL && !value.chars().any(char::is_control)
}

/// A lifecycle operation on a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The runtime reported the agent ready.
    Started,
    /// The runtime failed to start it.
    Failed,
    Pause,
    Resume,
    Stop,
    /// Cleanup begins (delete, timeout, reconcile).
    Destroy,
    /// Cleanup finished.
    Destroyed,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sandbox is {from}, cannot {transition:?}")]
pub struct TransitionError {
    pub from: SandboxState,
    pub transition: Transition,
}

impl SandboxState {
    /// Every state, in lifecycle order.
    pub const ALL: [SandboxState; 7] = [
        SandboxState::Creating,
        SandboxState::Running,
        SandboxState::Paused,
        SandboxState::Stopped,
        SandboxState::Error,
        SandboxState::Destroying,
        SandboxState::Destroyed,
    ];

    /// The one place that says which changes are allowed.
    pub fn transition(self, t: Transition) -> Result<SandboxState, TransitionError> {
        use SandboxState::*;
        use Transition as T;
        let next = match (self, t) {
            (Creating, T::Started) => Running,
            (Creating | Running | Paused | Stopped, T::Failed) => Error,
            (Running, T::Pause) => Paused,
            (Paused, T::Resume) => Running,
            (Stopped, T::Resume) => Creating,
            (Running | Paused, T::Stop) => Stopped,
            (Creating | Running | Paused | Stopped | Error, T::Destroy) => Destroying,
            (Destroying, T::Destroyed) => Destroyed,
            _ => return Err(TransitionError { from: self, transition: t }),
        };
        Ok(next)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SandboxState::Creating => "creating",
            SandboxState::Running => "running",
            SandboxState::Paused => "paused",
            SandboxState::Stopped => "stopped",
            SandboxState::Error => "error",
            SandboxState::Destroying => "destroying",
            SandboxState::Destroyed => "destroyed",
        }
    }

    /// States in which the sandbox holds host resources (processes, mounts, network).
    pub fn is_live(self) -> bool {
        matches!(self, SandboxState::Creating | SandboxState::Running | SandboxState::Paused)
    }
}

impl fmt::Display for SandboxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SandboxState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "creating" | "provisioning" => SandboxState::Creating,
            "running" => SandboxState::Running,
            "paused" => SandboxState::Paused,
            "stopped" => SandboxState::Stopped,
            "error" => SandboxState::Error,
            "destroying" => SandboxState::Destroying,
            "destroyed" => SandboxState::Destroyed,
            other => return Err(format!("unknown sandbox state `{other}`")),
        })
    }
}

/// Isolation level of a sandbox: which backend runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// runc: namespaces, cgroups, seccomp on the host kernel.
    #[default]
    Container,
    /// runsc: gVisor's user-space kernel between the sandbox and the host.
    Gvisor,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Container => "container",
            Isolation::Gvisor => "gvisor",
        }
    }
}

impl FromStr for Isolation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "container" => Ok(Isolation::Container),
            "gvisor" => Ok(Isolation::Gvisor),
            other => Err(format!("unknown isolation `{other}`: expected container or gvisor")),
        }
    }
}

/// A validated create request (contract §5.3). Unknown keys the SDK may send are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateSandbox {
    pub template_id: String,
    pub name: Option<String>,
    pub external_user_id: Option<String>,
    pub external_workspace_id: Option<String>,
    pub external_project_id: Option<String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub tags: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub resources: Resources,
    pub timeout_sec: u64,
    pub idle_timeout_sec: Option<u64>,
    pub isolation: Option<Isolation>,
    /// A handle unique among the tenant's live sandboxes (`a-z0-9-`, 1–64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    /// Never stopped as idle.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub always_on: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use SandboxState::*;

    #[test]
    fn lifecycle_allows_the_happy_paths() {
        let s = Creating.transition(Transition::Started).expect("start");
        let s = s.transition(Transition::Pause).expect("pause");
        let s = s.transition(Transition::Resume).expect("resume");
        let s = s.transition(Transition::Stop).expect("stop");
        let s = s.transition(Transition::Destroy).expect("destroy");
        assert_eq!(s.transition(Transition::Destroyed), Ok(Destroyed));
    }

    #[test]
    fn lifecycle_refuses_the_rest() {
        assert!(Destroyed.transition(Transition::Destroy).is_err());
        assert!(Stopped.transition(Transition::Pause).is_err());
        assert!(Running.transition(Transition::Started).is_err());
        assert!(Destroying.transition(Transition::Resume).is_err());
    }

    #[test]
    fn provisioning_is_an_alias_of_creating() {
        assert_eq!("provisioning".parse::<SandboxState>(), Ok(Creating));
    }
}

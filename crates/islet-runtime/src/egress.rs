//! Per-tenant egress rules on the host firewall.
//!
//! Each group (a tenant) with rules has a chain `<PREFIX>-E<n>` holding only refusals: its
//! connection cap and its denied networks. `<PREFIX>-EGRESS`, which the forward chain enters
//! after the platform's own refusals and before its final accept, sends each sandbox address
//! of a restricted group to that group's chain. Chains only refuse or fall through, so no
//! rule here can accept what the platform refuses.
//!
//! Every change (a restricted sandbox starts or stops, a group's rules change) is one
//! `iptables-restore --noflush` transaction, which the kernel applies atomically: the jump
//! chain is rewritten whole, a group's chain only when its rules changed (so the connection
//! counts of the others carry on). Jumps match the sandbox's host link, not its address. A
//! sandbox is bound before its processes start. When a transaction fails, the next change,
//! or `heal`, which the server calls every second, applies the whole wanted state again; until
//! then the failure is the caller's error. The chains survive a restart of the server (the
//! firewall's install leaves them), so a restarted server's sandboxes stay restricted until it
//! has reloaded the rules from the store.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use islet_types::egress::EgressPolicy;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::Mutex;

use crate::error::RuntimeError;

#[derive(Default, Clone)]
struct State {
    /// Restricted groups: their chain and rules.
    groups: BTreeMap<String, (String, EgressPolicy)>,
    /// Every live network slot's group and host link (restricted or not).
    slots: BTreeMap<u32, (String, String)>,
    /// Chains that exist and belong to no group any more (removed on the next apply).
    stale: BTreeSet<String>,
    /// What each group chain holds in the kernel now, as far as this process knows.
    applied: BTreeMap<String, EgressPolicy>,
    /// The last transaction failed: the kernel may not hold what `groups` and `slots` say.
    dirty: bool,
    next_chain: u32,
}

impl State {
    fn restricted(&self, group: Option<&String>) -> bool {
        group.is_some_and(|g| self.groups.contains_key(g))
    }
}

pub(crate) struct Egress {
    prefix: String,
    state: Mutex<State>,
}

impl Egress {
    /// Take over whatever group chains a previous run left (they go on the first apply).
    pub(crate) async fn start(prefix: &str) -> Result<Self, RuntimeError> {
        let prefix = prefix.to_uppercase();
        let out = Command::new("iptables")
            .args(["-w", "-S"])
            .output()
            .await
            .map_err(RuntimeError::io("run iptables -S"))?;
        let listing = String::from_utf8_lossy(&out.stdout);
        let own = format!("{prefix}-E");
        let mut state = State::default();
        for line in listing.lines() {
            let Some(chain) = line.strip_prefix("-N ") else {
                continue;
            };
            if let Some(n) = chain.strip_prefix(&own).and_then(|n| n.parse::<u32>().ok()) {
                state.stale.insert(chain.to_owned());
                state.next_chain = state.next_chain.max(n + 1);
            }
        }
        Ok(Self { prefix, state: Mutex::new(state) })
    }

    pub(crate) fn main_chain(prefix: &str) -> String {
        format!("{}-EGRESS", prefix.to_uppercase())
    }

    /// Replace everything: the groups' rules and which group each live slot belongs to.
    pub(crate) async fn load(
        &self,
        groups: Vec<(String, EgressPolicy)>,
        slots: Vec<(u32, String, String)>,
    ) -> Result<(), RuntimeError> {
        let mut state = self.state.lock().await;
        let old: Vec<String> = state.groups.keys().cloned().collect();
        for group in old {
            Self::forget(&mut state, &group);
        }
        for (group, policy) in groups {
            Self::put(&mut state, &self.prefix, group, policy);
        }
        state.slots = slots.into_iter().map(|(slot, group, link)| (slot, (group, link))).collect();
        self.apply(&mut state).await
    }

    /// Set (or, with an empty policy, clear) one group's rules.
    pub(crate) async fn set(&self, group: &str, policy: EgressPolicy) -> Result<(), RuntimeError> {
        let mut state = self.state.lock().await;
        let unchanged = match state.groups.get(group) {
            Some((_, p)) => *p == policy,
            None => policy.is_empty(),
        };
        if unchanged && !state.dirty {
            return Ok(());
        }
        // A change the kernel refuses (a transaction is all or nothing) is undone here too, so
        // one tenant's rules can never leave every later change failing.
        let before = state.clone();
        if !unchanged {
            Self::forget(&mut state, group);
            Self::put(&mut state, &self.prefix, group.to_owned(), policy);
        }
        let result = self.apply(&mut state).await;
        if result.is_err() && !unchanged {
            *state = before;
        }
        result
    }

    /// A slot now carries a sandbox of `group` behind host link `link` (before its processes
    /// start).
    pub(crate) async fn bind(
        &self,
        slot: u32,
        group: &str,
        link: &str,
    ) -> Result<(), RuntimeError> {
        let mut state = self.state.lock().await;
        let before = state.slots.insert(slot, (group.to_owned(), link.to_owned()));
        let restricted = state.restricted(Some(&group.to_owned()));
        if state.dirty || restricted || state.restricted(before.as_ref().map(|(g, _)| g)) {
            match self.apply(&mut state).await {
                Ok(()) => {}
                // The sandbox must not run without its rules.
                Err(e) if restricted => return Err(e),
                // Nothing of its own to apply: at worst a previous owner's jump (which only
                // refuses) lingers until the next successful change.
                Err(e) => tracing::warn!(error = %e, slot, "egress rules not rewritten; retrying"),
            }
        }
        Ok(())
    }

    /// A slot's sandbox is gone (stopped or destroyed). Never fails a teardown: a jump left
    /// for a link that no longer exists matches nothing, and the next change (or `heal`)
    /// removes it.
    pub(crate) async fn release(&self, slot: u32) {
        let mut state = self.state.lock().await;
        let before = state.slots.remove(&slot);
        if state.dirty || state.restricted(before.as_ref().map(|(g, _)| g)) {
            if let Err(e) = self.apply(&mut state).await {
                tracing::warn!(error = %e, slot, "egress rules not rewritten; retrying");
            }
        }
    }

    /// After a failed transaction, try the whole wanted state again.
    pub(crate) async fn heal(&self) -> Result<(), RuntimeError> {
        let mut state = self.state.lock().await;
        if state.dirty {
            self.apply(&mut state).await?;
            tracing::info!("egress rules applied again after a failure");
        }
        Ok(())
    }

    fn forget(state: &mut State, group: &str) {
        if let Some((chain, _)) = state.groups.remove(group) {
            state.applied.remove(&chain);
            state.stale.insert(chain);
        }
    }

    fn put(state: &mut State, prefix: &str, group: String, policy: EgressPolicy) {
        if policy.is_empty() {
            return;
        }
        // Reuse a chain that is about to be removed rather than growing the numbers.
        let chain = match state.stale.pop_first() {
            Some(chain) => chain,
            None => {
                state.next_chain += 1;
                format!("{prefix}-E{}", state.next_chain - 1)
            }
        };
        state.applied.remove(&chain);
        state.groups.insert(group, (chain, policy));
    }

    /// The restore script that brings the kernel from `state.applied` to what `state` wants
    /// (its own function so it can be read and tested).
    fn script(&self, state: &State) -> String {
        let main = Self::main_chain(&self.prefix);
        let mut s = String::from("*filter\n");
        let _ = writeln!(s, ":{main} - [0:0]");
        // A chain is declared (which empties it) only when its rules change.
        let changed: Vec<&(String, EgressPolicy)> = state
            .groups
            .values()
            .filter(|(chain, policy)| state.applied.get(chain) != Some(policy))
            .collect();
        for (chain, _) in &changed {
            let _ = writeln!(s, ":{chain} - [0:0]");
        }
        for (chain, policy) in &changed {
            if let Some(n) = policy.max_connections_per_sandbox {
                let cap = format!(
                    "-m conntrack --ctstate NEW -m connlimit --connlimit-above {n} --connlimit-mask 32 --connlimit-saddr"
                );
                let _ = writeln!(s, "-A {chain} -p tcp {cap} -j REJECT --reject-with tcp-reset");
                let _ =
                    writeln!(s, "-A {chain} {cap} -j REJECT --reject-with icmp-port-unreachable");
            }
            for net in &policy.deny {
                let _ = writeln!(s, "-A {chain} -d {net} -p tcp -j REJECT --reject-with tcp-reset");
                let _ = writeln!(
                    s,
                    "-A {chain} -d {net} -j REJECT --reject-with icmp-port-unreachable"
                );
            }
        }
        for (group, link) in state.slots.values() {
            if let Some((chain, _)) = state.groups.get(group) {
                let _ = writeln!(s, "-A {main} -i {link} -j {chain}");
            }
        }
        // Nothing refers to these any more: the main chain was rewritten above.
        for chain in &state.stale {
            let _ = writeln!(s, "-F {chain}");
            let _ = writeln!(s, "-X {chain}");
        }
        s.push_str("COMMIT\n");
        s
    }

    async fn apply(&self, state: &mut State) -> Result<(), RuntimeError> {
        let mut result = self.restore(state).await;
        if result.is_err() && !state.stale.is_empty() {
            // A chain someone else removed must not wedge every later change: once more
            // without removing any (those chains are then left behind).
            let stale = std::mem::take(&mut state.stale);
            result = self.restore(state).await;
            match &result {
                Ok(()) => tracing::warn!(?stale, "egress chains left behind"),
                Err(_) => state.stale = stale,
            }
        }
        match result {
            Ok(()) => {
                state.applied = state.groups.values().cloned().collect();
                state.stale.clear();
                state.dirty = false;
                Ok(())
            }
            Err(e) => {
                // Next time every chain is written whole, whatever the kernel holds now.
                state.applied.clear();
                state.dirty = true;
                Err(e)
            }
        }
    }

    async fn restore(&self, state: &State) -> Result<(), RuntimeError> {
        let script = self.script(state);
        let mut child = Command::new("iptables-restore")
            .args(["-w", "--noflush"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(RuntimeError::io("run iptables-restore"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .await
                .map_err(RuntimeError::io("write iptables-restore input"))?;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(RuntimeError::io("wait for iptables-restore"))?;
        if !out.status.success() {
            return Err(RuntimeError::Command {
                tool: "iptables-restore --noflush (egress rules)".into(),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_sends_restricted_sandboxes_to_their_groups_chain_only() {
        let egress = Egress { prefix: "ISL".into(), state: Mutex::new(State::default()) };
        let mut state = State::default();
        let policy = EgressPolicy {
            deny: vec!["203.0.113.0/24".parse().expect("net")],
            max_connections_per_sandbox: Some(7),
        };
        Egress::put(&mut state, "ISL", "ten_a".into(), policy.clone());
        Egress::put(&mut state, "ISL", "ten_b".into(), EgressPolicy::default());
        state.slots.insert(1, ("ten_a".into(), "isl1".into()));
        state.slots.insert(2, ("ten_b".into(), "isl2".into()));
        state.stale.insert("ISL-E9".into());
        let script = egress.script(&state);
        assert!(script.starts_with("*filter\n:ISL-EGRESS - [0:0]\n:ISL-E0 - [0:0]\n"), "{script}");
        assert!(script.contains("-A ISL-EGRESS -i isl1 -j ISL-E0\n"), "{script}");
        // A group with no rules gets no chain, and its sandboxes no jump.
        assert!(!script.contains("isl2"), "{script}");
        assert!(script.contains("--connlimit-above 7"), "{script}");
        assert!(script
            .contains("-A ISL-E0 -d 203.0.113.0/24 -p tcp -j REJECT --reject-with tcp-reset\n"));
        assert!(script.ends_with("-F ISL-E9\n-X ISL-E9\nCOMMIT\n"), "{script}");
        // Only refusals: nothing in a group chain can accept.
        assert!(!script.contains("ACCEPT") && !script.contains("RETURN"), "{script}");

        // Once applied, an unchanged chain is left alone (its connection counts carry on);
        // only the jumps are rewritten.
        state.applied.insert("ISL-E0".into(), policy);
        state.stale.clear();
        state.slots.insert(3, ("ten_a".into(), "isl3".into()));
        let again = egress.script(&state);
        assert!(!again.contains(":ISL-E0") && !again.contains("-A ISL-E0"), "{again}");
        assert!(again.contains("-A ISL-EGRESS -i isl3 -j ISL-E0\n"), "{again}");
    }
}

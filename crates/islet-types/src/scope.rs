//! API scopes (contract §12): what a credential may do. A tenant's full key has every scope;
//! a restricted key, a scoped key bound to one end user (`msk_l2_…`) and a browser token
//! (`mst_…`) carry a subset, never more than whoever minted them.

use std::fmt;

/// One scope. `sandboxes:write` implies `sandboxes:create`, `sandboxes:exec` and
/// `sandboxes:read`; every `x:write` implies `x:read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    SandboxesRead,
    SandboxesCreate,
    SandboxesExec,
    SandboxesWrite,
    PreviewsWrite,
    UsageRead,
    PolicyWrite,
    WebhooksRead,
    WebhooksWrite,
    DomainsWrite,
    SettingsWrite,
    KeysRead,
    KeysWrite,
    TokensWrite,
}

const ALL: [Scope; 14] = [
    Scope::SandboxesRead,
    Scope::SandboxesCreate,
    Scope::SandboxesExec,
    Scope::SandboxesWrite,
    Scope::PreviewsWrite,
    Scope::UsageRead,
    Scope::PolicyWrite,
    Scope::WebhooksRead,
    Scope::WebhooksWrite,
    Scope::DomainsWrite,
    Scope::SettingsWrite,
    Scope::KeysRead,
    Scope::KeysWrite,
    Scope::TokensWrite,
];

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::SandboxesRead => "sandboxes:read",
            Scope::SandboxesCreate => "sandboxes:create",
            Scope::SandboxesExec => "sandboxes:exec",
            Scope::SandboxesWrite => "sandboxes:write",
            Scope::PreviewsWrite => "previews:write",
            Scope::UsageRead => "usage:read",
            Scope::PolicyWrite => "policy:write",
            Scope::WebhooksRead => "webhooks:read",
            Scope::WebhooksWrite => "webhooks:write",
            Scope::DomainsWrite => "domains:write",
            Scope::SettingsWrite => "settings:write",
            Scope::KeysRead => "keys:read",
            Scope::KeysWrite => "keys:write",
            Scope::TokensWrite => "tokens:write",
        }
    }

    pub fn all() -> &'static [Scope] {
        &ALL
    }

    fn bit(self) -> u32 {
        1 << (ALL.iter().position(|s| *s == self).unwrap_or(0) as u32)
    }

    /// The scopes this one grants (itself included).
    fn grants(self) -> u32 {
        let implied: &[Scope] = match self {
            Scope::SandboxesWrite => {
                &[Scope::SandboxesRead, Scope::SandboxesCreate, Scope::SandboxesExec]
            }
            Scope::WebhooksWrite => &[Scope::WebhooksRead],
            Scope::KeysWrite => &[Scope::KeysRead],
            _ => &[],
        };
        implied.iter().fold(self.bit(), |acc, s| acc | s.bit())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = UnknownScope;
    fn from_str(s: &str) -> Result<Self, UnknownScope> {
        ALL.iter().copied().find(|x| x.as_str() == s).ok_or_else(|| UnknownScope(s.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope `{0}`")]
pub struct UnknownScope(pub String);

/// A set of scopes, with implications applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScopeSet(u32);

impl ScopeSet {
    pub fn full() -> Self {
        ScopeSet(ALL.iter().fold(0, |acc, s| acc | s.grants()))
    }

    pub fn of(scopes: &[Scope]) -> Self {
        ScopeSet(scopes.iter().fold(0, |acc, s| acc | s.grants()))
    }

    /// Parse names; `*` is every scope.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, UnknownScope> {
        if names.iter().any(|n| n.as_ref() == "*") {
            return Ok(Self::full());
        }
        let scopes =
            names.iter().map(|n| n.as_ref().trim().parse()).collect::<Result<Vec<Scope>, _>>()?;
        Ok(Self::of(&scopes))
    }

    pub fn allows(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn is_subset_of(self, other: ScopeSet) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn intersect(self, other: ScopeSet) -> ScopeSet {
        ScopeSet(self.0 & other.0)
    }

    /// The names, in catalogue order.
    pub fn names(self) -> Vec<&'static str> {
        ALL.iter().filter(|s| self.allows(**s)).map(|s| s.as_str()).collect()
    }

    pub fn is_full(self) -> bool {
        self == Self::full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_implies_read_and_sets_compare() {
        let s = ScopeSet::parse(&["sandboxes:write"]).expect("parse");
        assert!(s.allows(Scope::SandboxesRead) && s.allows(Scope::SandboxesExec));
        assert!(!s.allows(Scope::PreviewsWrite));
        let r = ScopeSet::parse(&["sandboxes:read"]).expect("parse");
        assert!(r.is_subset_of(s) && !s.is_subset_of(r));
        assert!(s.is_subset_of(ScopeSet::full()));
        assert_eq!(ScopeSet::parse(&["*"]), Ok(ScopeSet::full()));
        assert!(ScopeSet::parse(&["sandboxes:fly"]).is_err());
        assert_eq!(r.names(), vec!["sandboxes:read"]);
    }
}

//! Previews: the host label that names a sandbox's port, token scopes, visibility, branding.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::SandboxId;

/// What a preview token lets its bearer do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Look only: safe methods (GET, HEAD, OPTIONS) and WebSocket upgrades.
    Read,
    /// Everything the app inside accepts.
    Interact,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Interact => "interact",
        }
    }
}

impl FromStr for Scope {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "read" => Ok(Scope::Read),
            "interact" => Ok(Scope::Interact),
            _ => Err(()),
        }
    }
}

/// Whether a preview's port needs a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Public,
    Private,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
        }
    }
}

impl FromStr for Visibility {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "public" => Ok(Visibility::Public),
            "private" => Ok(Visibility::Private),
            _ => Err(()),
        }
    }
}

/// Ports a preview may name: anything but 0.
pub fn valid_port(port: u64) -> Option<u16> {
    u16::try_from(port).ok().filter(|p| *p > 0)
}

/// The first DNS label of a preview host: `<port>-sbx-<body>`.
///
/// Sandbox IDs carry an underscore, which DNS names and certificates do not allow, so the label
/// spells it as a hyphen; the parser accepts both spellings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PreviewLabel {
    pub port: u16,
    pub sandbox_id: SandboxId,
}

impl fmt::Display for PreviewLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-sbx-{}", self.port, self.sandbox_id.body())
    }
}

impl FromStr for PreviewLabel {
    type Err = ();
    fn from_str(label: &str) -> Result<Self, ()> {
        let (port, rest) = label.split_once('-').ok_or(())?;
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        let port = valid_port(port.parse().map_err(|_| ())?).ok_or(())?;
        let body = rest.strip_prefix("sbx-").or_else(|| rest.strip_prefix("sbx_")).ok_or(())?;
        let sandbox_id = SandboxId::from_body(body).map_err(|_| ())?;
        Ok(Self { port, sandbox_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_round_trips_in_both_spellings() {
        let id = SandboxId::generate();
        let label = PreviewLabel { port: 8080, sandbox_id: id.clone() };
        let text = label.to_string();
        assert!(!text.contains('_'));
        assert_eq!(text.parse::<PreviewLabel>(), Ok(label.clone()));
        let underscored = format!("8080-{id}");
        assert_eq!(underscored.parse::<PreviewLabel>(), Ok(label));
        for bad in [
            "0-sbx-aaaaaaaaaaaaaaaaaaaa",
            "65536-sbx-aaaaaaaaaaaaaaaaaaaa",
            "+80-sbx-aaaaaaaaaaaaaaaaaaaa",
            "80-sbx-aaaa",
            "80-abc-aaaaaaaaaaaaaaaaaaaa",
            "sbx-aaaaaaaaaaaaaaaaaaaa",
            "080x-sbx-aaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(bad.parse::<PreviewLabel>().is_err(), "{bad} accepted");
        }
    }
}

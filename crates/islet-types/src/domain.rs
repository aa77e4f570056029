//! Domain names as the preview edge and the tenant API use them: lowercase, ASCII, dot-separated
//! DNS labels, no trailing dot, no port.

use std::fmt;
use std::str::FromStr;

/// The path under which the preview edge answers a claimed domain's ownership challenge
/// (`<path><challenge>` returns the challenge).
pub const CHALLENGE_PATH: &str = "/.well-known/preview-domain-verification/";

/// A validated, lowercase DNS name with at least two labels (`preview.acme.com`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a valid domain name (lowercase letters, digits and hyphens in dot-separated labels, at least two labels)")]
pub struct DomainError(pub String);

impl DomainName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `host` lies strictly below this domain: the part in front of `.<self>`.
    pub fn strip_from<'a>(&self, host: &'a str) -> Option<&'a str> {
        host.strip_suffix(self.0.as_str())?.strip_suffix('.').filter(|s| !s.is_empty())
    }
}

fn valid_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

impl FromStr for DomainName {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        let lower = s.trim().trim_end_matches('.').to_ascii_lowercase();
        let labels: Vec<&str> = lower.split('.').collect();
        if lower.len() > 253 || labels.len() < 2 || !labels.iter().all(|l| valid_label(l)) {
            return Err(DomainError(s.to_owned()));
        }
        Ok(Self(lower))
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for DomainName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_rejects() {
        let d: DomainName = "Preview.Acme.COM.".parse().expect("valid");
        assert_eq!(d.as_str(), "preview.acme.com");
        for bad in ["localhost", "a..b", "-a.b", "a_b.com", "a.b:80", "", "é.com", "a.b/c"] {
            assert!(bad.parse::<DomainName>().is_err(), "{bad} accepted");
        }
        assert_eq!(d.strip_from("8080-x.preview.acme.com"), Some("8080-x"));
        assert_eq!(d.strip_from("preview.acme.com"), None);
        assert_eq!(d.strip_from("xpreview.acme.com"), None);
    }
}

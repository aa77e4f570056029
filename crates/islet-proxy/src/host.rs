//! From the request's host to what it names: a preview on the platform's domain or on a
//! tenant's domain.

use islet_types::domain::DomainName;
use islet_types::preview::PreviewLabel;
use islet_types::TenantId;

/// Which domain a request came in on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Site {
    /// The operator's preview domain.
    Platform,
    /// A tenant's verified custom preview domain.
    Tenant {
        domain: DomainName,
        tenant_id: TenantId,
    },
}

/// The host with any port removed, lowercased; `None` if it is not a plausible host name.
pub fn normalise(host: &str) -> Option<String> {
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'))
    .then_some(host)
}

/// Split `host` into its first label and the domain under it.
pub fn first_label(host: &str) -> Option<(&str, &str)> {
    host.split_once('.')
}

/// The preview label, if the first label is one.
pub fn label(first: &str) -> Option<PreviewLabel> {
    first.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_hosts() {
        assert_eq!(
            normalise("8080-sbx-x.Preview.Localhost:8443").as_deref(),
            Some("8080-sbx-x.preview.localhost")
        );
        assert_eq!(normalise("a.b.").as_deref(), Some("a.b"));
        assert_eq!(normalise("a b.c"), None);
        assert_eq!(normalise(""), None);
        assert_eq!(first_label("a.b.c"), Some(("a", "b.c")));
    }
}

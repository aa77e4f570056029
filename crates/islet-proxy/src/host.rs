//! Request hosts, normalised.

/// The host with any port removed, lowercased; `None` if it is not a plausible host name.
pub(crate) fn normalise(host: &str) -> Option<String> {
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()
        && host.len() <= 253
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'))
    .then_some(host)
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
    }
}

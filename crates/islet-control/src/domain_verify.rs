//! Proving a tenant controls its preview domain: a DNS TXT record
//! `_preview-verify.<domain>` holding the tenant's challenge. Only whoever runs the domain's
//! DNS can publish it, and the challenge is the tenant's own, so pointing a domain at the edge
//! does not let another tenant claim it.
//!
//! Which resolver answers is pluggable ([`VerifyTarget`]): the host's in production, a given
//! nameserver in tests or split-horizon setups.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::TokioAsyncResolver;
use islet_types::domain::DomainName;

/// Label of the TXT record under the tenant's domain.
pub const RECORD_LABEL: &str = "_preview-verify";

/// Which DNS resolver verification asks.
#[derive(Debug, Clone)]
pub enum VerifyTarget {
    /// The host's resolvers (`/etc/resolv.conf`).
    System,
    /// This nameserver (UDP and TCP).
    Nameserver(SocketAddr),
}

/// Why verification did not succeed (shown to the tenant).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("no TXT record {0} yet: create it with the value shown, then verify again")]
    Missing(String),
    #[error("the TXT record {0} does not hold this account's challenge")]
    Mismatch(String),
    #[error("DNS lookup failed: {0}")]
    Lookup(String),
}

/// The record name the tenant must create.
pub fn record_name(domain: &DomainName) -> String {
    format!("{RECORD_LABEL}.{domain}")
}

pub async fn verify(
    target: &VerifyTarget,
    domain: &DomainName,
    challenge: &str,
) -> Result<(), VerifyError> {
    let mut options = ResolverOpts::default();
    options.timeout = Duration::from_secs(3);
    options.attempts = 2;
    // Fresh answers: a tenant who just created the record should not wait for a cache.
    options.cache_size = 0;
    let resolver = match target {
        VerifyTarget::System => TokioAsyncResolver::tokio_from_system_conf()
            .map_err(|e| VerifyError::Lookup(e.to_string()))?,
        VerifyTarget::Nameserver(address) => {
            let servers =
                NameServerConfigGroup::from_ips_clear(&[address.ip()], address.port(), true);
            TokioAsyncResolver::tokio(ResolverConfig::from_parts(None, vec![], servers), options)
        }
    };
    // A fully qualified name: no search domains appended.
    let name = format!("{}.", record_name(domain));
    let lookup = match resolver.txt_lookup(name.as_str()).await {
        Ok(lookup) => lookup,
        Err(e)
            if matches!(
                e.kind(),
                hickory_resolver::error::ResolveErrorKind::NoRecordsFound { .. }
            ) =>
        {
            return Err(VerifyError::Missing(record_name(domain)))
        }
        Err(e) => return Err(VerifyError::Lookup(e.to_string())),
    };
    let found = lookup.iter().any(|txt| {
        let value: Vec<u8> = txt.txt_data().iter().flat_map(|part| part.iter().copied()).collect();
        value == challenge.as_bytes()
    });
    if found {
        Ok(())
    } else {
        Err(VerifyError::Mismatch(record_name(domain)))
    }
}

//! Certificate choice by SNI.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Certificates for exact hosts (issued by ACME), then by the domain they cover as
/// `*.<domain>` (uploaded), then the platform's own, which also answers handshakes without a
/// server name.
#[derive(Debug, Default)]
pub struct SniResolver {
    platform: RwLock<Option<Arc<CertifiedKey>>>,
    domains: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    hosts: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl SniResolver {
    pub fn set_platform(&self, key: Arc<CertifiedKey>) {
        if let Ok(mut slot) = self.platform.write() {
            *slot = Some(key);
        }
    }

    /// Replace every tenant certificate at once.
    pub fn set_domains(&self, domains: HashMap<String, Arc<CertifiedKey>>) {
        if let Ok(mut slot) = self.domains.write() {
            *slot = domains;
        }
    }

    /// Replace every host certificate at once.
    pub fn set_hosts(&self, hosts: HashMap<String, Arc<CertifiedKey>>) {
        if let Ok(mut slot) = self.hosts.write() {
            *slot = hosts;
        }
    }

    /// Add (or replace) one host's certificate.
    pub fn set_host(&self, host: &str, key: Arc<CertifiedKey>) {
        if let Ok(mut slot) = self.hosts.write() {
            slot.insert(host.to_ascii_lowercase(), key);
        }
    }

    /// A tenant's certificate for `name` (host or wildcard), not the platform's.
    pub fn for_name(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = name.to_ascii_lowercase();
        if let Some(key) = self.hosts.read().ok()?.get(&name) {
            return Some(key.clone());
        }
        let parent = name.split_once('.').map(|(_, rest)| rest)?;
        self.domains.read().ok()?.get(parent).cloned()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|name| self.for_name(name))
            .or_else(|| self.platform.read().ok()?.clone())
    }
}

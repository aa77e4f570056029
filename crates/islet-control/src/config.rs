use std::str::FromStr;

use islet_types::domain::DomainName;
use islet_types::sandbox::Isolation;

use crate::domain_verify::VerifyTarget;

/// Control-plane settings (filled in by the binary from flags and environment).
#[derive(Debug, Clone)]
pub struct Config {
    /// Isolation of sandboxes whose tenant has no setting of its own.
    pub default_isolation: Isolation,
    /// Domain previews are served under (`<port>-sbx-<id>.<domain>`).
    pub preview_domain: DomainName,
    /// Scheme of preview URLs (`https` behind TLS, `http` for local use).
    pub preview_scheme: String,
    /// Port preview URLs name, when the edge is not on the scheme's default port.
    pub preview_public_port: Option<u16>,
    /// Which DNS resolver custom-domain verification asks.
    pub domain_verify: VerifyTarget,
    /// The edge obtains certificates for tenants' domains by ACME: a verified domain is used in
    /// https URLs even before the tenant uploads a certificate.
    pub preview_acme: bool,
    /// How often the reaper looks for expired and idle sandboxes.
    pub reap_interval: std::time::Duration,
    /// Sandboxes kept started ahead of demand (default size, default template, the default
    /// isolation, no env); 0 turns the warm pool off.
    pub warm_pool: usize,
    /// A sandbox still `creating` this long after admission, with no operation in progress on
    /// it, is started again by the reaper (its creating task died).
    pub stuck_create_after: std::time::Duration,
    /// Requests per second each API key (or browser token) may make, bursts to twice that;
    /// 0 = no limit.
    pub api_rate_limit: u32,
    /// Requests per second all credentials bound to one end user may make together.
    pub api_user_rate_limit: u32,
    /// Requests per second all of one tenant's credentials may make together: minting more
    /// keys or tokens does not buy a tenant more of the server.
    pub api_tenant_rate_limit: u32,
    /// How long a client has to send a request's headers (and how long a kept-alive
    /// connection may sit idle) before the API drops it.
    pub api_header_timeout: std::time::Duration,
    /// Connections the API serves at once.
    pub api_max_connections: usize,
    /// How often every sandbox's usage is sampled.
    pub meter_interval: std::time::Duration,
    /// The webhook dispatcher: target policy, timeouts, retry schedule.
    pub webhooks: islet_webhooks::DispatcherConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            default_isolation: Isolation::Container,
            preview_domain: DomainName::from_str("preview.localhost")
                .expect("the default preview domain is valid"),
            preview_scheme: "http".into(),
            preview_public_port: None,
            domain_verify: VerifyTarget::System,
            preview_acme: false,
            reap_interval: std::time::Duration::from_secs(1),
            warm_pool: 0,
            stuck_create_after: std::time::Duration::from_secs(120),
            meter_interval: std::time::Duration::from_secs(10),
            api_rate_limit: 100,
            api_user_rate_limit: 20,
            api_tenant_rate_limit: 1000,
            api_header_timeout: std::time::Duration::from_secs(30),
            api_max_connections: 4096,
            webhooks: islet_webhooks::DispatcherConfig::default(),
        }
    }
}

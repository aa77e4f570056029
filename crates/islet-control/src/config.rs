use islet_types::sandbox::Isolation;

/// Control-plane settings (filled in by the binary from flags and environment).
#[derive(Debug, Clone)]
pub struct Config {
    /// Isolation of sandboxes whose tenant has no setting of its own.
    pub default_isolation: Isolation,
    /// Domain previews are served under (`<port>-<sandbox>.<domain>`).
    pub preview_domain: String,
    /// Scheme of preview URLs (`https` behind TLS, `http` for local use).
    pub preview_scheme: String,
    /// How often the reaper looks for expired and idle sandboxes.
    pub reap_interval: std::time::Duration,
    /// Sandboxes kept started ahead of demand (default size, default template, the default
    /// isolation, no env); 0 turns the warm pool off.
    pub warm_pool: usize,
    /// A sandbox still `creating` this long after admission, with no operation in progress on
    /// it, is started again by the reaper (its creating task died).
    pub stuck_create_after: std::time::Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            default_isolation: Isolation::Container,
            preview_domain: "preview.localhost".into(),
            preview_scheme: "http".into(),
            reap_interval: std::time::Duration::from_secs(1),
            warm_pool: 0,
            stuck_create_after: std::time::Duration::from_secs(120),
        }
    }
}

//! Command line and environment. Every flag has an `ISLET_*` environment variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use islet_types::sandbox::Isolation;

#[derive(Parser)]
#[command(name = "islet", version, about = "Self-hosted, white-label sandboxes")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Clone)]
pub(crate) struct DataArgs {
    /// Where Islet keeps its database and sandbox state.
    #[arg(long, env = "ISLET_DATA_DIR", default_value = "./.islet")]
    pub data_dir: PathBuf,
    /// Where built templates are cached (default: <data-dir>/templates).
    #[arg(long, env = "ISLET_TEMPLATE_DIR")]
    pub template_dir: Option<PathBuf>,
}

impl DataArgs {
    /// Make the data directory, `0711`: searchable on the way to sandboxes' roots, listable by
    /// root alone (it holds the database and every sandbox's state).
    pub(crate) fn make_data_dir(&self) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&self.data_dir)?;
        std::fs::set_permissions(&self.data_dir, std::fs::Permissions::from_mode(0o711))
    }

    pub(crate) fn template_dir(&self) -> PathBuf {
        self.template_dir.clone().unwrap_or_else(|| self.data_dir.join("templates"))
    }
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run the API, the node runtime and the preview listener on this host.
    Serve(Box<ServeArgs>),
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Suspend or reinstate a tenant's end user (the operator's switch; tenants have the API).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Build templates.
    Template {
        #[command(subcommand)]
        command: TemplateCommand,
    },
    /// Check that this host can run Islet, and say how to fix what is missing.
    Doctor,
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Address of the API.
    #[arg(long, env = "ISLET_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Address of the preview listener (plain HTTP; HTTP/1.1 and h2c).
    #[arg(long, env = "ISLET_PREVIEW_LISTEN", default_value = "127.0.0.1:8081")]
    pub preview_listen: String,
    /// Address of the TLS preview listener (off unless set). Preview URLs then use https.
    #[arg(long, env = "ISLET_PREVIEW_TLS_LISTEN")]
    pub preview_tls_listen: Option<String>,
    /// PEM certificate chain for `*.<preview-domain>` (default with TLS: a self-signed one).
    #[arg(long, env = "ISLET_PREVIEW_TLS_CERT", requires = "preview_tls_key")]
    pub preview_tls_cert: Option<PathBuf>,
    /// PEM private key of `--preview-tls-cert`.
    #[arg(long, env = "ISLET_PREVIEW_TLS_KEY", requires = "preview_tls_cert")]
    pub preview_tls_key: Option<PathBuf>,
    /// Port preview URLs name (default: the preview listener's, left out when 80 or 443;
    /// set it when a load balancer in front listens elsewhere).
    #[arg(long, env = "ISLET_PREVIEW_PUBLIC_PORT")]
    pub preview_public_port: Option<u16>,
    /// Requests per second each sandbox's previews may serve (0 = no limit); bursts may reach
    /// twice that.
    #[arg(long, env = "ISLET_PREVIEW_RATE_LIMIT", default_value_t = 0)]
    pub preview_rate_limit: u32,
    /// ACME directory to obtain certificates from for previews on tenants' domains that have
    /// no uploaded certificate (off unless set).
    #[arg(long, env = "ISLET_ACME_DIRECTORY")]
    pub acme_directory: Option<String>,
    /// PEM file of the CA to trust for the ACME directory (test CAs); system roots otherwise.
    #[arg(long, env = "ISLET_ACME_CA_FILE")]
    pub acme_ca_file: Option<PathBuf>,
    /// How the CA checks control of a host: `tls-alpn-01` (port 443 must reach the TLS
    /// listener) or `http-01` (port 80 must reach the plain listener).
    #[arg(long, env = "ISLET_ACME_CHALLENGE", default_value = "tls-alpn-01", value_parser = ["tls-alpn-01", "http-01"])]
    pub acme_challenge: String,
    /// Renew ACME certificates this many days before they expire.
    #[arg(long, env = "ISLET_ACME_RENEW_DAYS", default_value_t = 30)]
    pub acme_renew_days: u64,
    /// Ask this DNS server (ip:port) for custom-domain verification records instead of the
    /// host's resolvers (split-horizon DNS, tests).
    #[arg(long, env = "ISLET_DOMAIN_VERIFY_NAMESERVER")]
    pub domain_verify_nameserver: Option<std::net::SocketAddr>,
    /// Domain previews are served under.
    #[arg(long, env = "ISLET_PREVIEW_DOMAIN", default_value = "preview.localhost")]
    pub preview_domain: String,
    /// Isolation for tenants without their own setting.
    #[arg(long, env = "ISLET_ISOLATION", default_value = "container")]
    pub isolation: Isolation,
    /// The islet-agent binary to run inside sandboxes (default: next to this binary).
    #[arg(long, env = "ISLET_AGENT_BINARY")]
    pub agent_binary: Option<PathBuf>,
    /// Debian mirror used to build templates.
    #[arg(long, env = "ISLET_DEBIAN_MIRROR", default_value = "http://deb.debian.org/debian")]
    pub mirror: String,
    /// Let sandboxes reach private address ranges (off by default).
    #[arg(long, env = "ISLET_ALLOW_PRIVATE_EGRESS", default_value_t = false, value_parser = boolish())]
    pub allow_private_egress: bool,
    /// Connections one sandbox may hold open at once (0 = no cap). Tenants may set a lower
    /// cap for their own sandboxes (`PUT /settings`, `egress`).
    #[arg(long, env = "ISLET_EGRESS_MAX_CONNECTIONS", default_value_t = 512)]
    pub egress_max_connections: u32,
    /// Prefix of the network interfaces and firewall chains this server owns (several servers
    /// on one host need different prefixes and subnets).
    #[arg(long, env = "ISLET_NET_PREFIX", default_value = "isl")]
    pub net_prefix: String,
    /// Sandboxes get addresses from 10.<octet>.0.0/16.
    #[arg(long, env = "ISLET_SUBNET_OCTET", default_value_t = 213)]
    pub subnet_octet: u8,
    /// Sandboxes kept started ahead of demand, handed to creates of the default size and
    /// template with no env (0 = off). Each costs one idle sandbox (about 1 MiB for runc).
    #[arg(long, env = "ISLET_WARM_POOL", default_value_t = 0)]
    pub warm_pool: usize,
    /// Create a tenant named "default" on first start and print its API key.
    #[arg(long, env = "ISLET_BOOTSTRAP_TENANT", default_value_t = false, value_parser = boolish())]
    pub bootstrap_tenant: bool,
    /// Requests per second each API key (or browser token) may make, bursts to twice that
    /// (0 = no limit).
    #[arg(long, env = "ISLET_API_RATE_LIMIT", default_value_t = 100)]
    pub api_rate_limit: u32,
    /// Requests per second all credentials bound to one end user may make together.
    #[arg(long, env = "ISLET_API_USER_RATE_LIMIT", default_value_t = 20)]
    pub api_user_rate_limit: u32,
    /// Requests per second all of one tenant's credentials may make together (0 = no limit).
    #[arg(long, env = "ISLET_API_TENANT_RATE_LIMIT", default_value_t = 1000)]
    pub api_tenant_rate_limit: u32,
    /// Seconds a client has to send a request's headers (and a kept-alive connection may sit
    /// idle) before the API drops it.
    #[arg(long, env = "ISLET_API_HEADER_TIMEOUT", default_value_t = 30)]
    pub api_header_timeout: u64,
    /// Connections the API serves at once (more wait in the kernel's backlog).
    #[arg(long, env = "ISLET_API_MAX_CONNECTIONS", default_value_t = 4096)]
    pub api_max_connections: usize,
    /// Seconds between usage samples of every sandbox (CPU time, memory, running time, storage).
    #[arg(long, env = "ISLET_METER_INTERVAL", default_value_t = 10)]
    pub meter_interval: u64,
    /// Let webhook endpoints be on loopback, private, link-local or ULA addresses, and plain
    /// http (local receivers, development). Cloud metadata addresses stay refused.
    #[arg(long, env = "ISLET_WEBHOOK_ALLOW_PRIVATE", default_value_t = false, value_parser = boolish())]
    pub webhook_allow_private: bool,
    /// Seconds one webhook attempt may take, connect to last byte.
    #[arg(long, env = "ISLET_WEBHOOK_TIMEOUT", default_value_t = 10)]
    pub webhook_timeout: u64,
    /// Multiply the webhook retry schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h) by this
    /// factor; below 1 for soak tests and staging only.
    #[arg(long, env = "ISLET_WEBHOOK_RETRY_SCALE", default_value_t = 1.0)]
    pub webhook_retry_scale: f64,
    /// PEM file of CA certificates trusted for webhook endpoints besides the system's.
    #[arg(long, env = "ISLET_WEBHOOK_CA_FILE")]
    pub webhook_ca_file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub(crate) enum TenantCommand {
    /// Create a tenant and print its ID and first API key (shown once) as JSON.
    Create {
        #[arg(long)]
        name: String,
        /// Isolation of this tenant's sandboxes (default: the server's).
        #[arg(long)]
        isolation: Option<Isolation>,
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Subcommand)]
pub(crate) enum UserCommand {
    /// Suspend an end user: a running server stops their sandboxes within seconds, their
    /// user-bound keys and browser tokens stop working at once, and nothing of theirs is
    /// admitted until they are reinstated. The tenant gets a `user.suspended` event.
    Suspend {
        /// The tenant's ID (or its name, if no other tenant has it).
        #[arg(long)]
        tenant: String,
        /// The tenant's `external_user_id` for the user.
        #[arg(long)]
        user: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Lift a suspension.
    Unsuspend {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user: String,
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Subcommand)]
pub(crate) enum TemplateCommand {
    /// Build a template (only `default` / `miosa-sandbox` exists today).
    Build {
        name: String,
        #[command(flatten)]
        data: DataArgs,
        #[arg(long, env = "ISLET_DEBIAN_MIRROR", default_value = "http://deb.debian.org/debian")]
        mirror: String,
        /// Rebuild even if it is already built.
        #[arg(long)]
        force: bool,
    },
}

/// A flag that may also come from the environment as `1/0`, `true/false`, `yes/no`, `on/off`.
fn boolish() -> clap::builder::BoolishValueParser {
    clap::builder::BoolishValueParser::new()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Set by the test below for a copy of this test binary that parses `serve` from the
    /// environment alone.
    const CHILD: &str = "CLI_TEST_BOOL_CHILD";
    const FLAGS: [&str; 3] =
        ["ISLET_ALLOW_PRIVATE_EGRESS", "ISLET_BOOTSTRAP_TENANT", "ISLET_WEBHOOK_ALLOW_PRIVATE"];

    #[test]
    fn serve_parsed_from_the_environment() {
        let Ok(expected) = std::env::var(CHILD) else { return };
        let cli = Cli::try_parse_from(["islet", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else { panic!("not serve") };
        let got = [args.allow_private_egress, args.bootstrap_tenant, args.webhook_allow_private];
        assert_eq!(got, [expected == "true"; 3]);
    }

    #[test]
    fn boolean_flags_from_the_environment_read_the_usual_spellings() {
        for (value, expected) in [
            ("1", true),
            ("yes", true),
            ("on", true),
            ("TRUE", true),
            ("0", false),
            ("no", false),
            ("false", false),
        ] {
            let mut child = std::process::Command::new(std::env::current_exe().unwrap());
            child.args(["--exact", "cli::tests::serve_parsed_from_the_environment", "--nocapture"]);
            child.env(CHILD, expected.to_string());
            for flag in FLAGS {
                child.env(flag, value);
            }
            let out = child.output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{value}: {stdout}");
            assert!(stdout.contains("1 passed"), "the child ran the parse: {stdout}");
        }
    }
}

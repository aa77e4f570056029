//! What `islet serve` runs with, derived from its flags: [`runtime_config`] and [`configs`]
//! check every flag and build the runtime's, the control plane's and the edge's `Config`
//! without starting anything, so each rule is a unit test. The only I/O is reading a
//! `--webhook-ca-file` when given.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use islet_control::domain_verify::VerifyTarget;
use islet_control::Config;
use islet_types::domain::DomainName;

use crate::cli::ServeArgs;

/// The directories `serve` works in, made and resolved, and the agent binary it mounts.
pub(crate) struct Dirs {
    pub data: PathBuf,
    pub templates: PathBuf,
    pub agent: PathBuf,
}

impl Dirs {
    /// Make the data and template directories and find the agent binary.
    pub(crate) fn prepare(args: &ServeArgs) -> anyhow::Result<Self> {
        args.data.make_data_dir()?;
        let templates = args.data.template_dir();
        std::fs::create_dir_all(&templates)?;
        Ok(Dirs {
            data: args.data.data_dir.canonicalize()?,
            templates: templates.canonicalize()?,
            agent: agent_binary(args.agent_binary.clone())?,
        })
    }
}

fn agent_binary(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match explicit {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("binary has no directory")?
            .join("islet-agent"),
    };
    let path = path.canonicalize().with_context(|| {
        format!("islet-agent not found at {} (build it, or pass --agent-binary)", path.display())
    })?;
    Ok(path)
}

/// Where the listeners ended up (a `:0` port is known only once bound).
pub(crate) struct Bound {
    pub api: SocketAddr,
    pub preview: SocketAddr,
    pub preview_tls: Option<SocketAddr>,
}

/// The control plane's and the edge's settings, configured.
pub(crate) struct Configs {
    pub control: Config,
    pub edge: islet_proxy::Config,
    /// The preview URL pattern the banner prints.
    pub previews: String,
}

/// The node runtime's settings (nameservers are the caller's: they are read from the host).
/// Checked before anything starts, as the host is prepared before any port opens.
pub(crate) fn runtime_config(
    args: &ServeArgs,
    dirs: &Dirs,
) -> anyhow::Result<islet_runtime::Config> {
    let mut runtime =
        islet_runtime::Config::new(dirs.data.clone(), dirs.templates.clone(), dirs.agent.clone());
    runtime.allow_private_egress = args.allow_private_egress;
    runtime.max_egress_connections = Some(args.egress_max_connections).filter(|n| *n > 0);
    anyhow::ensure!(
        !args.net_prefix.is_empty()
            && args.net_prefix.len() <= 5
            && args.net_prefix.bytes().all(|b| b.is_ascii_lowercase()),
        "--net-prefix must be 1..=5 lowercase letters"
    );
    runtime.net_prefix = args.net_prefix.clone();
    runtime.subnet_octet = args.subnet_octet;
    Ok(runtime)
}

/// The control plane's and the edge's settings, once the listeners are bound.
pub(crate) fn configs(args: &ServeArgs, bound: &Bound) -> anyhow::Result<Configs> {
    let preview_domain: DomainName = args
        .preview_domain
        .parse()
        .context("--preview-domain must be a domain name such as preview.example.com")?;
    let (scheme, url_port) = match bound.preview_tls {
        Some(tls) => ("https", tls.port()),
        None => ("http", bound.preview.port()),
    };
    let public_port = args.preview_public_port.or(Some(url_port)).filter(|p| *p != 80 && *p != 443);
    anyhow::ensure!(
        (1..=3600).contains(&args.meter_interval),
        "--meter-interval must be 1..=3600 seconds"
    );
    let control = Config {
        default_isolation: args.isolation,
        preview_domain: preview_domain.clone(),
        preview_scheme: scheme.into(),
        preview_public_port: public_port,
        domain_verify: match args.domain_verify_nameserver {
            Some(addr) => VerifyTarget::Nameserver(addr),
            None => VerifyTarget::System,
        },
        preview_acme: args.acme_directory.is_some(),
        warm_pool: args.warm_pool,
        webhooks: webhook_config(args)?,
        api_rate_limit: args.api_rate_limit,
        api_user_rate_limit: args.api_user_rate_limit,
        api_tenant_rate_limit: args.api_tenant_rate_limit,
        api_header_timeout: std::time::Duration::from_secs(args.api_header_timeout.max(1)),
        api_max_connections: args.api_max_connections.max(1),
        meter_interval: std::time::Duration::from_secs(args.meter_interval),
        ..Config::default()
    };
    let mut edge = islet_proxy::Config::new(preview_domain.clone());
    edge.rate_limit_per_sec = args.preview_rate_limit;
    edge.rate_limit_burst = args.preview_rate_limit.saturating_mul(2);
    // With TLS, the plain listener only redirects (and answers ACME HTTP-01 probes).
    edge.https_redirect_port =
        bound.preview_tls.map(|tls| args.preview_public_port.unwrap_or(tls.port()));
    edge.acme = args.acme_directory.clone().map(|directory_url| islet_proxy::AcmeConfig {
        directory_url,
        root_ca: args.acme_ca_file.clone(),
        challenge: if args.acme_challenge == "http-01" {
            islet_proxy::Challenge::Http01
        } else {
            islet_proxy::Challenge::TlsAlpn01
        },
        renew_before: std::time::Duration::from_secs(args.acme_renew_days * 86_400),
        issue_timeout: std::time::Duration::from_secs(60),
    });
    let port_suffix = public_port.map(|p| format!(":{p}")).unwrap_or_default();
    let previews = format!("{scheme}://<port>-sbx-<id>.{preview_domain}{port_suffix}/");
    Ok(Configs { control, edge, previews })
}

fn webhook_config(args: &ServeArgs) -> anyhow::Result<islet_webhooks::DispatcherConfig> {
    anyhow::ensure!(
        (1..=300).contains(&args.webhook_timeout),
        "--webhook-timeout must be 1..=300 seconds"
    );
    anyhow::ensure!(
        args.webhook_retry_scale.is_finite()
            && args.webhook_retry_scale > 0.0
            && args.webhook_retry_scale <= 1.0,
        "--webhook-retry-scale must be in (0, 1]"
    );
    let extra_roots = match &args.webhook_ca_file {
        Some(path) => vec![std::fs::read(path)
            .with_context(|| format!("reading --webhook-ca-file {}", path.display()))?],
        None => Vec::new(),
    };
    Ok(islet_webhooks::DispatcherConfig {
        policy: islet_webhooks::TargetPolicy {
            allow_private: args.webhook_allow_private,
            sandbox_net: Some((std::net::Ipv4Addr::new(10, args.subnet_octet, 0, 0), 16)),
        },
        timeout: std::time::Duration::from_secs(args.webhook_timeout),
        schedule: islet_webhooks::schedule::RetrySchedule::scaled(args.webhook_retry_scale),
        extra_roots,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    fn args(flags: &[&str]) -> ServeArgs {
        let argv = ["islet", "serve"].iter().chain(flags).copied();
        match crate::cli::Cli::try_parse_from(argv).unwrap().command {
            crate::cli::Command::Serve(args) => *args,
            _ => unreachable!(),
        }
    }

    fn dirs() -> Dirs {
        Dirs { data: "/d".into(), templates: "/t".into(), agent: "/a".into() }
    }

    fn bound(tls: Option<u16>) -> Bound {
        Bound {
            api: "127.0.0.1:8080".parse().unwrap(),
            preview: "127.0.0.1:8081".parse().unwrap(),
            preview_tls: tls.map(|p| SocketAddr::from(([127, 0, 0, 1], p))),
        }
    }

    #[test]
    fn the_defaults_serve_plain_previews_on_the_bound_port() {
        let c = configs(&args(&[]), &bound(None)).unwrap();
        assert_eq!(c.control.preview_scheme, "http");
        assert_eq!(c.control.preview_public_port, Some(8081));
        assert_eq!(c.previews, "http://<port>-sbx-<id>.preview.localhost:8081/");
        assert_eq!(c.control.meter_interval, std::time::Duration::from_secs(10));
        assert_eq!(c.edge.https_redirect_port, None);
        let runtime = runtime_config(&args(&[]), &dirs()).unwrap();
        assert_eq!(runtime.max_egress_connections, Some(512));
        assert_eq!(runtime.agent_binary, PathBuf::from("/a"));
    }

    #[test]
    fn webhooks_never_reach_the_sandbox_subnet() {
        let w =
            webhook_config(&args(&["--webhook-allow-private", "--subnet-octet", "77"])).unwrap();
        assert!(w.policy.allow_private);
        assert_eq!(w.policy.sandbox_net, Some((std::net::Ipv4Addr::new(10, 77, 0, 0), 16)));
        assert!(islet_webhooks::target::check_url("http://10.77.0.6:8000/", w.policy).is_err());
        assert!(islet_webhooks::target::check_url("http://127.0.0.1:9000/", w.policy).is_ok());
    }

    #[test]
    fn tls_makes_previews_https_and_the_plain_listener_redirect() {
        let c = configs(&args(&["--preview-public-port", "443"]), &bound(Some(8443))).unwrap();
        assert_eq!(c.control.preview_scheme, "https");
        // 443 is the scheme's own port: URLs leave it out.
        assert_eq!(c.control.preview_public_port, None);
        assert_eq!(c.edge.https_redirect_port, Some(443));
        let c = configs(&args(&[]), &bound(Some(8443))).unwrap();
        assert_eq!(
            (c.control.preview_public_port, c.edge.https_redirect_port),
            (Some(8443), Some(8443))
        );
    }

    #[test]
    fn bad_flags_are_refused_with_their_name() {
        for (flags, named) in [
            (&["--net-prefix", "NOPE"][..], "--net-prefix"),
            (&["--net-prefix", "toolong"][..], "--net-prefix"),
            (&["--meter-interval", "0"][..], "--meter-interval"),
            (&["--preview-domain", "not a domain"][..], "--preview-domain"),
            (&["--webhook-timeout", "0"][..], "--webhook-timeout"),
            (&["--webhook-retry-scale", "2"][..], "--webhook-retry-scale"),
        ] {
            let error = runtime_config(&args(flags), &dirs())
                .and_then(|_| configs(&args(flags), &bound(None)))
                .err()
                .unwrap();
            assert!(format!("{error:#}").contains(named), "{flags:?}: {error:#}");
        }
    }

    #[test]
    fn zero_lifts_the_connection_cap() {
        let runtime = runtime_config(&args(&["--egress-max-connections", "0"]), &dirs()).unwrap();
        assert_eq!(runtime.max_egress_connections, None);
    }
}

//! `islet serve`: everything on one host.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use islet_control::domain_verify::VerifyTarget;
use islet_control::{AppState, Config};
use islet_runtime::{firewall, template, Runtime};
use islet_store::Store;
use islet_types::domain::DomainName;
use tokio_util::sync::CancellationToken;

use crate::cli::ServeArgs;

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
        policy: islet_webhooks::TargetPolicy { allow_private: args.webhook_allow_private },
        timeout: std::time::Duration::from_secs(args.webhook_timeout),
        schedule: islet_webhooks::schedule::RetrySchedule::scaled(args.webhook_retry_scale),
        extra_roots,
        ..Default::default()
    })
}

pub(crate) async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data.data_dir)?;
    let data_dir = args.data.data_dir.canonicalize()?;
    let template_dir = args.data.template_dir();
    std::fs::create_dir_all(&template_dir)?;
    let template_dir = template_dir.canonicalize()?;
    let store = Store::open(&data_dir.join("islet.db"))?;

    let mut runtime_config = islet_runtime::Config::new(
        data_dir.clone(),
        template_dir.clone(),
        agent_binary(args.agent_binary.clone())?,
    );
    runtime_config.nameservers = firewall::host_nameservers();
    runtime_config.allow_private_egress = args.allow_private_egress;
    runtime_config.max_egress_connections = Some(args.egress_max_connections).filter(|n| *n > 0);
    anyhow::ensure!(
        !args.net_prefix.is_empty()
            && args.net_prefix.len() <= 5
            && args.net_prefix.bytes().all(|b| b.is_ascii_lowercase()),
        "--net-prefix must be 1..=5 lowercase letters"
    );
    runtime_config.net_prefix = args.net_prefix.clone();
    runtime_config.subnet_octet = args.subnet_octet;
    if !template::is_built(&template_dir, template::DEFAULT_TEMPLATE) {
        eprintln!("building the default template (first start only)...");
        template::build(
            &template_dir,
            template::DEFAULT_TEMPLATE,
            &args.mirror,
            runtime_config.uid_base,
            |line| eprintln!("  {line}"),
        )
        .await?;
    }
    let runtime = Runtime::start(runtime_config).await.context("preparing the host")?;

    let preview_domain: DomainName = args
        .preview_domain
        .parse()
        .context("--preview-domain must be a domain name such as preview.example.com")?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let address = listener.local_addr()?;
    let preview_listener = tokio::net::TcpListener::bind(&args.preview_listen)
        .await
        .with_context(|| format!("binding {}", args.preview_listen))?;
    let preview_tls_listener = match &args.preview_tls_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?,
        ),
        None => None,
    };
    let (scheme, url_listener) = match &preview_tls_listener {
        Some(l) => ("https", l.local_addr()?),
        None => ("http", preview_listener.local_addr()?),
    };
    let public_port =
        args.preview_public_port.or(Some(url_listener.port())).filter(|p| *p != 80 && *p != 443);
    let config = Config {
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
        webhooks: webhook_config(&args)?,
        api_rate_limit: args.api_rate_limit,
        api_user_rate_limit: args.api_user_rate_limit,
        meter_interval: {
            anyhow::ensure!(
                (1..=3600).contains(&args.meter_interval),
                "--meter-interval must be 1..=3600 seconds"
            );
            std::time::Duration::from_secs(args.meter_interval)
        },
        ..Config::default()
    };
    let port_suffix = public_port.map(|p| format!(":{p}")).unwrap_or_default();
    let previews = format!("{scheme}://<port>-sbx-<id>.{preview_domain}{port_suffix}/");
    let banner = if args.bootstrap_tenant {
        let key = bootstrap_key(&store, &data_dir).await?;
        format!(
            "Islet is running.\n  API:      http://{address}/api/v1\n  API key:  {key}\n  \
             Previews: {previews}\n  Try:      MIOSA_BASE_URL=http://{address} \
             MIOSA_API_KEY={key} python3 -c \"import miosa; ...\""
        )
    } else {
        format!("Islet API listening on http://{address}/api/v1\n  Previews: {previews}")
    };
    // One write, and a closed stdout (a supervisor that read the first line and left) is not
    // a reason to stop serving.
    let _ = writeln!(std::io::stdout(), "{banner}");
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        signal.cancel();
    });
    let state = AppState::new(store.clone(), runtime, config).await?;
    let platform_certificate = match &preview_tls_listener {
        Some(_) => Some(platform_certificate(&args, &preview_domain)?),
        None => None,
    };
    let runtime = state.runtime.clone();
    let mut edge_config = islet_proxy::Config::new(preview_domain.clone());
    edge_config.rate_limit_per_sec = args.preview_rate_limit;
    edge_config.rate_limit_burst = args.preview_rate_limit.saturating_mul(2);
    // With TLS, the plain listener only redirects (and answers ACME HTTP-01 probes).
    edge_config.https_redirect_port = match &preview_tls_listener {
        Some(l) => Some(args.preview_public_port.unwrap_or(l.local_addr()?.port())),
        None => None,
    };
    edge_config.acme = args.acme_directory.clone().map(|directory_url| islet_proxy::AcmeConfig {
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
    let edge = islet_proxy::Edge::new(
        store,
        edge_config,
        Arc::new(move |slot| IpAddr::V4(runtime.sandbox_ip(slot))),
        platform_certificate,
    )
    .await?;
    let edge_task = tokio::spawn(islet_proxy::run(
        edge,
        Some(preview_listener),
        preview_tls_listener,
        shutdown.clone(),
    ));
    islet_control::run(listener, state, shutdown.clone()).await?;
    shutdown.cancel();
    edge_task.await??;
    Ok(())
}

/// The platform's certificate for `*.<preview-domain>`: the operator's files, else a
/// self-signed one (browsers will warn; fine for local use).
fn platform_certificate(
    args: &ServeArgs,
    domain: &DomainName,
) -> anyhow::Result<Arc<islet_tls::CertifiedKey>> {
    let (cert, key) = match (&args.preview_tls_cert, &args.preview_tls_key) {
        (Some(cert), Some(key)) => (
            std::fs::read_to_string(cert).with_context(|| format!("reading {}", cert.display()))?,
            std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?,
        ),
        _ => {
            eprintln!(
                "no --preview-tls-cert given: serving previews with a self-signed certificate"
            );
            islet_tls::self_signed(&[format!("*.{domain}"), domain.to_string()])?
        }
    };
    let parsed = islet_tls::parse_pair(&cert, &key, domain, islet_types::time::now_millis())
        .context("the preview TLS certificate")?;
    Ok(parsed.key)
}

/// The quick start's tenant: created on first start; its key is kept in a 0600 file in the
/// data dir (the operator's own secret) so later starts can print it again.
async fn bootstrap_key(store: &Store, data_dir: &std::path::Path) -> anyhow::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("bootstrap-api-key");
    if let Ok(key) = std::fs::read_to_string(&path) {
        if store.authenticate(key.trim()).await?.is_some() {
            return Ok(key.trim().to_owned());
        }
    }
    let created = store.create_tenant("default".into(), None).await?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&path)?;
    std::io::Write::write_all(&mut file, created.plaintext.as_bytes())?;
    Ok(created.plaintext)
}

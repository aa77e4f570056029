//! `islet serve`: everything on one host. The settings come from `serve_config.rs`; this file
//! only starts things, in order.

use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Context;
use islet_control::AppState;
use islet_runtime::{firewall, template, Runtime};
use islet_store::Store;
use islet_types::domain::DomainName;
use tokio_util::sync::CancellationToken;

use crate::cli::ServeArgs;
use crate::serve_config::{configs, runtime_config, Bound, Configs, Dirs};

pub(crate) async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let dirs = Dirs::prepare(&args)?;
    let store = Store::open(&dirs.data.join("islet.db"))?;
    let mut runtime = runtime_config(&args, &dirs)?;
    runtime.nameservers = firewall::host_nameservers();
    if !template::is_built(&dirs.templates, template::DEFAULT_TEMPLATE) {
        eprintln!("building the default template (first start only)...");
        template::build(
            &dirs.templates,
            template::DEFAULT_TEMPLATE,
            &args.mirror,
            runtime.uid_base,
            |line| eprintln!("  {line}"),
        )
        .await?;
    }
    let runtime = Runtime::start(runtime).await.context("preparing the host")?;
    // The ports open only once the host is ready.
    let listener = bind(&args.listen).await?;
    let preview_listener = bind(&args.preview_listen).await?;
    let preview_tls_listener = match &args.preview_tls_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let bound = Bound {
        api: listener.local_addr()?,
        preview: preview_listener.local_addr()?,
        preview_tls: preview_tls_listener.as_ref().map(|l| l.local_addr()).transpose()?,
    };
    let Configs { control, edge, previews } = configs(&args, &bound)?;
    let address = bound.api;
    let banner = if args.bootstrap_tenant {
        let key = bootstrap_key(&store, &dirs.data).await?;
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
    let state = AppState::new(store.clone(), runtime, control).await?;
    let platform_certificate = match &preview_tls_listener {
        Some(_) => Some(platform_certificate(&args, &edge.domain)?),
        None => None,
    };
    let runtime = state.runtime.clone();
    let edge = islet_proxy::Edge::new(
        store,
        edge,
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

async fn bind(addr: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))
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

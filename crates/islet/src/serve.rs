//! `islet serve`: everything on one host.

use std::path::PathBuf;

use anyhow::Context;
use islet_control::{AppState, Config};
use islet_runtime::{firewall, template, Runtime};
use islet_store::Store;
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
        format!(
            "islet-agent not found at {} (build it, or pass --agent-binary)",
            path.display()
        )
    })?;
    Ok(path)
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data.data_dir)?;
    let data_dir = args.data.data_dir.canonicalize()?;
    let template_dir = args.data.template_dir();
    std::fs::create_dir_all(&template_dir)?;
    let template_dir = template_dir.canonicalize()?;
    let store = Store::open(&data_dir.join("islet.db"))?;

    let mut runtime_config = islet_runtime::Config::new(
        data_dir.clone(),
        template_dir.clone(),
        agent_binary(args.agent_binary)?,
    );
    runtime_config.nameservers = firewall::host_nameservers();
    runtime_config.allow_private_egress = args.allow_private_egress;
    anyhow::ensure!(
        !args.net_prefix.is_empty()
            && args.net_prefix.len() <= 5
            && args.net_prefix.bytes().all(|b| b.is_ascii_lowercase()),
        "--net-prefix must be 1..=5 lowercase letters"
    );
    runtime_config.net_prefix = args.net_prefix;
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
    let runtime = Runtime::start(runtime_config)
        .await
        .context("preparing the host")?;

    let config = Config {
        default_isolation: args.isolation,
        preview_domain: args.preview_domain,
        warm_pool: args.warm_pool,
        ..Config::default()
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let address = listener.local_addr()?;
    if args.bootstrap_tenant {
        let key = bootstrap_key(&store, &data_dir).await?;
        println!("Islet is running.");
        println!("  API:      http://{address}/api/v1");
        println!("  API key:  {key}");
        println!("  Try:      MIOSA_BASE_URL=http://{address} MIOSA_API_KEY={key} python3 -c \"import miosa; ...\"");
    } else {
        println!("Islet API listening on http://{address}/api/v1");
    }
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        signal.cancel();
    });
    let state = AppState::new(store, runtime, config);
    islet_control::run(listener, state, shutdown).await?;
    Ok(())
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

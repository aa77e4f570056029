//! `islet-agent`: the in-sandbox API server, usually the container's PID 1.

use clap::Parser;
use islet_agent::{bind_socket, init, run, CancellationToken, DEFAULT_SOCKET};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(version, about = "Islet in-sandbox agent")]
struct Args {
    /// Unix socket to serve HTTP on.
    #[arg(long, env = "ISLET_AGENT_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
}

/// The agent's log filter, set by the runtime (tenants cannot set `ISLET_*` variables).
const LOG_VAR: &str = "ISLET_AGENT_LOG";

fn main() -> ExitCode {
    let args = Args::parse();
    init::reap_if_pid1();
    tracing_subscriber::fmt()
        .with_env_filter(
            // Its own variable, not `RUST_LOG`: the sandbox's environment is the tenant's, and
            // a tenant's `RUST_LOG=trace` must not make the agent fill its log.
            tracing_subscriber::EnvFilter::try_from_env(LOG_VAR)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("islet-agent: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "agent failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> std::io::Result<()> {
    let listener = bind_socket(&args.socket)?;
    tracing::info!(socket = %args.socket.display(), "islet-agent listening");
    let shutdown = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutting down");
        trigger.cancel();
    });
    run(listener, shutdown).await
}

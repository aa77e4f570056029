//! `islet`: parses configuration (flags and `ISLET_*` environment variables, listed in
//! `docs/configuration.md`), sets up logging and calls into the library crates.

mod cli;
mod commands;
mod doctor;
mod serve;
mod serve_config;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("ISLET_LOG").unwrap_or_else(
            |_| tracing_subscriber::EnvFilter::new("info,netlink_packet_route=error"),
        ))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(commands::dispatch(cli))
}

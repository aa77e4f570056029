//! `cargo xtask bench-preview`: Islet's preview edge next to nginx, both proxying the same
//! backend in one sandbox, measured in the same run: requests/s and p50/p99 latency at fixed
//! rates and at maximum throughput (small and 1 MiB bodies), and WebSocket round trips, as
//! ratios edge ÷ nginx. It reports; it asserts nothing about timing.
//!
//! Steps:
//! 1. The load generator must not be a debug build (it shares the cores with what it
//!    measures), and `cargo xtask` runs one: unless `--no-build`, build islet as `cargo xtask
//!    bench` does; then build this xtask in release and run that instead.
//! 2. A private `islet serve` (`../server.rs`) with its preview edge on a free port.
//! 3. One sandbox running `backend.js` (`sandbox.rs`), exposed privately, and a preview token.
//! 4. nginx proxying to the sandbox's address (`nginx.rs`).
//! 5. Warm-up, then the scenarios (`scenarios.rs`, `load.rs`, `ws.rs`).
//! 6. The report (`report.rs`) on stdout and in `target/bench/preview.json`.
//!
//! Must run as root. Everything lives under `/var/tmp/islet-bench-<pid>` and is removed
//! again (sandbox deleted, nginx and the server stopped), also on errors and on Ctrl-C.

mod load;
mod nginx;
mod report;
mod sandbox;
mod scenarios;
mod ws;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use anyhow::{bail, Context};

use super::server::Server;
use super::{signals, Isolation, Scratch};
use load::Shape;
use scenarios::Targets;

pub(crate) const USAGE: &str =
    "usage: cargo xtask bench-preview [--quick] [--no-build] [--backend-processes N]

  --quick                 short runs, one fixed rate (a smoke run)
  --no-build              do not build islet first (the release xtask is still built)
  --backend-processes N   Node processes serving the backend (default 1: on a 2-core host a
                          second one takes more CPU from the proxies than it adds)";

pub(crate) struct Options {
    pub quick: bool,
    pub build: bool,
    pub help: bool,
    pub backend_processes: usize,
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut options = Self { quick: false, build: true, help: false, backend_processes: 1 };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = super::split_flag(arg);
            match flag {
                "--quick" => options.quick = true,
                "--no-build" => options.build = false,
                "-h" | "--help" => options.help = true,
                "--backend-processes" => {
                    let value = super::flag_value(flag, inline, &mut args)?;
                    options.backend_processes = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=16).contains(n))
                        .context("--backend-processes: a number from 1 to 16")?;
                }
                other => bail!("unknown argument {other:?} (try --help)"),
            }
        }
        Ok(options)
    }
}

pub(crate) fn run(options: &Options) -> anyhow::Result<()> {
    let root = super::workspace_root();
    if cfg!(debug_assertions) {
        return run_release_build(&root, options);
    }
    signals::install()?;
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "cargo xtask bench-preview must run as root (islet serve needs it)"
    );
    if options.build {
        super::cargo_build(&root, &["islet", "islet-agent"])?;
    }
    let target = super::target_dir(&root);
    let islet = super::release_islet(&target)?;
    let template_dir = super::template_dir();
    super::template_rootfs(&islet, &template_dir)?;
    let scratch = Scratch::new()?;
    let mut report = report::Report {
        generated_unix_s: super::unix_now(),
        mode: if options.quick { "quick" } else { "full" },
        host: super::host(super::cgroup_version()),
        targets: report::TARGETS,
        setup: None,
        scenarios: Vec::new(),
        errors: Vec::new(),
        notes: Vec::new(),
    };
    let server_log = target.join("bench").join("preview-server.log");
    eprintln!("bench-preview: starting islet serve");
    let outcome = Server::start(
        &islet,
        scratch.0.join("server"),
        &template_dir,
        &[Isolation::Container],
        server_log.clone(),
        0,
    )
    .and_then(|mut server| {
        let measured = measure(&server, &scratch.0, options, &mut report);
        if !server.alive() {
            report
                .errors
                .push(format!("islet serve died during the run:\n{}", server.log_tail(20)));
        }
        measured
    });
    drop(scratch);
    if let Err(e) = outcome {
        if report.scenarios.is_empty() {
            return Err(e);
        }
        report.errors.push(format!("{e:#}"));
    }
    // The general notes first, then what the run added (nginx's error log).
    let general = notes(options, &report);
    let added = std::mem::replace(&mut report.notes, general);
    report.notes.extend(added);
    report.notes.push(format!("server log: {}", server_log.display()));
    report.print();
    let json = target.join("bench").join("preview.json");
    super::write_json(&json, &report)?;
    println!("\nreport written to {}", json.display());
    signals::check()
}

/// Build (islet unless `--no-build`, and this xtask in release) and replace this process with
/// the release xtask.
fn run_release_build(root: &Path, options: &Options) -> anyhow::Result<()> {
    if options.build {
        super::cargo_build(root, &["islet", "islet-agent"])?;
    }
    super::cargo_build(root, &["xtask"])?;
    let xtask = super::target_dir(root).join("release").join("xtask");
    let mut command = Command::new(&xtask);
    command.args(["bench-preview", "--no-build", "--backend-processes"]);
    command.arg(options.backend_processes.to_string());
    if options.quick {
        command.arg("--quick");
    }
    let error = command.exec();
    Err(error).with_context(|| format!("run {}", xtask.display()))
}

/// Set up the backend and nginx, then run every scenario into `report`. The sandbox is
/// deleted when `server` is dropped; nginx when this returns.
fn measure(
    server: &Server,
    scratch: &Path,
    options: &Options,
    report: &mut report::Report,
) -> anyhow::Result<()> {
    let client = server.client(Isolation::Container)?;
    eprintln!("bench-preview: backend sandbox with {} Node process(es)", options.backend_processes);
    let backend = sandbox::start(client, options.backend_processes)?;
    let nginx = nginx::Nginx::start(scratch.join("nginx"), backend.direct)?;
    report.setup = Some(report::Setup {
        node_version: client
            .exec(&backend.sandbox_id, "node --version")
            .map(|o| o.stdout.trim().to_owned())
            .unwrap_or_default(),
        node_processes: options.backend_processes,
        sandbox_cpus: sandbox::CPUS,
        nginx_version: nginx::version(),
        nginx_workers: report.host.cpus,
    });
    let targets = Targets {
        edge: SocketAddr::from(([127, 0, 0, 1], server.preview_port)),
        nginx: SocketAddr::from(([127, 0, 0, 1], nginx.port)),
        direct: backend.direct,
    };
    let shape = Arc::new(Shape::new(&backend.host, &backend.token)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the load generator's runtime")?;
    runtime.block_on(async {
        for (name, addr) in
            [("edge", targets.edge), ("nginx", targets.nginx), ("direct", targets.direct)]
        {
            for kind in [load::Kind::Small, load::Kind::Big, load::Kind::Upload] {
                load::probe(addr, &shape, kind)
                    .await
                    .with_context(|| format!("{name} does not serve {kind:?} ({addr})"))?;
            }
        }
        for (name, addr) in [("edge", targets.edge), ("nginx", targets.nginx)] {
            eprintln!("bench-preview: warming up {name}");
            scenarios::warm_up(addr, &shape, options.quick).await;
        }
        for (index, plan) in scenarios::plans(options.quick).iter().enumerate() {
            let scenario = scenarios::run(plan, index, targets, &shape).await;
            // A scenario cut short by Ctrl-C has figures of different lengths: left out.
            signals::check()?;
            report.scenarios.push(scenario);
        }
        anyhow::Ok(())
    })?;
    let tail = nginx.log_tail();
    if !tail.trim().is_empty() {
        report.notes.push(format!("nginx error log:\n{tail}"));
    }
    Ok(())
}

fn notes(options: &Options, report: &report::Report) -> Vec<String> {
    let mut notes = vec![
        "the load generator (this xtask, release build, 2 tokio threads), islet serve, nginx \
         and the backend share this host's CPUs: every figure includes that contention, for \
         both proxies alike"
            .into(),
        "each scenario runs against the edge and nginx back to back; which goes first \
         alternates from scenario to scenario; both were warmed up first"
            .into(),
        "every request carries the preview Host and X-Preview-Token to both proxies: the edge \
         resolves the sandbox, verifies the token's HMAC per request and strips it; nginx \
         checks nothing and drops the header"
            .into(),
        "nginx: keep-alive to the backend (upstream keepalive 64), proxy_buffering off and \
         proxy_request_buffering off (the edge streams both ways), keepalive_requests raised \
         (the edge never closes a connection after N requests), access_log off, the same \
         X-Forwarded-* headers the edge sets"
            .into(),
        "fixed rates: open loop; latency counts from each request's due time (no coordinated \
         omission), so it includes any wait for a free connection and the pacer thread's \
         wake-up (tens of µs). `X of Y` req/s = achieved of offered"
            .into(),
        "max throughput: closed loop, each connection sends its next request when the last one \
         answered; latency from send to the whole answer"
            .into(),
        "direct (no proxy): the same load straight to the sandbox's address, for the ceiling \
         the backend itself sets"
            .into(),
    ];
    if let Some(setup) = &report.setup {
        notes.push(format!(
            "backend: Node's http module (keep-alive, no framework), {} process(es) (a `cluster` \
             when more than 1) in a sandbox with {} CPUs. One process is the default: on a \
             2-core host a second takes more CPU from the proxies than it adds; the direct \
             column shows the headroom the backend leaves",
            setup.node_processes, setup.sandbox_cpus
        ));
    }
    notes.push(
        "nginx with proxy_buffering off moves an answer through one proxy_buffer_size buffer \
         (default one page, 4 KiB or 8 KiB): a read and a write every few KiB, where the edge \
         reads and writes far larger chunks. The 1 MiB figures depend on that setting, which is \
         left at its default here"
            .into(),
    );
    if options.quick {
        notes.push("quick run: 3 s per measurement and one fixed rate".into());
    }
    notes
}

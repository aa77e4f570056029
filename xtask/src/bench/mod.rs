//! `cargo xtask bench`: Islet's start-up latency, exec round trip and idle memory, next to a
//! bare `runc run` of the same rootfs measured in the same run. It prints figures and the
//! issue's targets; it asserts nothing about timing.
//!
//! Steps:
//! 1. Unless `--no-build`: `cargo build --release -p islet -p islet-agent` (the only thing it
//!    builds; `target/release/islet` and `islet-agent` must sit side by side).
//! 2. If the template rootfs is missing: `islet template build default`.
//! 3. The bare runc baseline (`runc_baseline.rs`).
//! 4. A private `islet serve` (`server.rs`) with one tenant per isolation level; for each:
//!    create → first exec one at a time and N at once, exec round trip, idle memory and the
//!    estimate of how many idle sandboxes fit (`islet.rs`).
//! 5. The report (`report.rs`) on stdout and in `target/bench/report.json`.
//!
//! Must run as root (like `islet serve`). Everything it makes lives under
//! `/var/tmp/islet-bench-<pid>` and is removed again, also on errors and on Ctrl-C.

mod http;
mod islet;
mod memory;
pub(crate) mod preview;
mod report;
mod runc_baseline;
mod server;
mod signals;
mod stats;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use serde::Serialize;

const DEFAULT_TEMPLATE_DIR: &str = "/var/lib/islet/templates";
const TEMPLATE: &str = "miosa-sandbox";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Isolation {
    Container,
    Gvisor,
}

impl Isolation {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Container => "container",
            Self::Gvisor => "gvisor",
        }
    }
}

/// Sample sizes.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Sizes {
    /// create → first exec, one at a time.
    pub serial: usize,
    /// create → first exec, all at once.
    pub concurrent: usize,
    /// Bare runc lifecycles.
    pub baseline: usize,
    /// Sequential execs on one sandbox.
    pub exec: usize,
    /// Idle sandboxes for the memory figures.
    pub idle: usize,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Self { serial: 5, concurrent: 10, baseline: 5, exec: 30, idle: 5 }
        } else {
            Self { serial: 30, concurrent: 50, baseline: 30, exec: 200, idle: 20 }
        }
    }
}

pub(crate) struct Options {
    pub quick: bool,
    pub isolations: Vec<Isolation>,
    pub build: bool,
    pub help: bool,
    /// Passed to `islet serve --warm-pool`: 0 measures cold starts only.
    pub warm_pool: usize,
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut options = Self {
            quick: false,
            isolations: vec![Isolation::Container, Isolation::Gvisor],
            build: true,
            help: false,
            warm_pool: 0,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = split_flag(arg);
            match flag {
                "--quick" => options.quick = true,
                "--no-build" => options.build = false,
                "--warm-pool" => {
                    let value = flag_value(flag, inline, &mut args)?;
                    options.warm_pool = value.parse().context("--warm-pool: a number")?;
                }
                "-h" | "--help" => options.help = true,
                "--isolation" => {
                    let value = flag_value(flag, inline, &mut args)?;
                    options.isolations = match value.as_str() {
                        "container" => vec![Isolation::Container],
                        "gvisor" => vec![Isolation::Gvisor],
                        "both" => vec![Isolation::Container, Isolation::Gvisor],
                        other => bail!("--isolation: {other:?} is not container, gvisor or both"),
                    };
                }
                other => bail!("unknown argument {other:?} (try --help)"),
            }
        }
        Ok(options)
    }
}

/// `--flag=value` or `--flag value`: split an argument into its flag and inline value.
pub(crate) fn split_flag(arg: &str) -> (&str, Option<String>) {
    match arg.split_once('=') {
        Some((f, v)) => (f, Some(v.to_owned())),
        None => (arg, None),
    }
}

/// The value of `flag`: inline, or the next argument.
pub(crate) fn flag_value<'a>(
    flag: &str,
    inline: Option<String>,
    rest: &mut impl Iterator<Item = &'a String>,
) -> anyhow::Result<String> {
    match inline {
        Some(v) => Ok(v),
        None => Ok(rest.next().with_context(|| format!("{flag} needs a value"))?.clone()),
    }
}

/// Write a report as pretty JSON, creating its directory.
pub(crate) fn write_json(path: &Path, report: &impl Serialize) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(report)?)?;
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

fn first_line(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines().next().map(|l| l.trim().to_owned())
}

fn host(cgroup: &str) -> report::Host {
    report::Host {
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        mem_total_mib: memory::mem_total().map_or(0.0, |b| memory::mib(b as f64)),
        cgroup: cgroup.to_owned(),
        runc: first_line("runc", &["--version"]),
        runsc: first_line("runsc", &["--version"]),
    }
}

/// `cargo build --release -p <package>…`.
fn cargo_build(root: &Path, packages: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut args = vec!["build", "--release"];
    for package in packages {
        args.extend(["-p", package]);
    }
    eprintln!("bench: cargo {}", args.join(" "));
    let status = Command::new(cargo)
        .args(&args)
        .current_dir(root)
        .stdin(Stdio::null())
        .status()
        .context("run cargo build")?;
    anyhow::ensure!(status.success(), "cargo build failed: {status}");
    Ok(())
}

/// `target/release/islet`, once it and `islet-agent` beside it are known to exist.
fn release_islet(target: &Path) -> anyhow::Result<PathBuf> {
    let islet = target.join("release").join("islet");
    for binary in [&islet, &target.join("release").join("islet-agent")] {
        anyhow::ensure!(
            binary.exists(),
            "{} is missing: run `cargo build --release -p islet -p islet-agent`",
            binary.display()
        );
    }
    Ok(islet)
}

fn template_dir() -> PathBuf {
    std::env::var_os("ISLET_TEMPLATE_DIR")
        .map_or_else(|| PathBuf::from(DEFAULT_TEMPLATE_DIR), PathBuf::from)
}

fn cgroup_version() -> &'static str {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "v2"
    } else {
        "v1"
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The template rootfs, built with `islet template build default` if missing.
fn template_rootfs(islet: &Path, template_dir: &Path) -> anyhow::Result<PathBuf> {
    let rootfs = template_dir.join(TEMPLATE).join("rootfs");
    if !rootfs.join("bin").exists() {
        eprintln!("bench: building the template in {}", template_dir.display());
        let status = Command::new(islet)
            .args(["template", "build", "default", "--template-dir"])
            .arg(template_dir)
            .stdin(Stdio::null())
            .status()
            .context("run islet template build")?;
        anyhow::ensure!(status.success(), "islet template build failed: {status}");
    }
    anyhow::ensure!(rootfs.join("bin").exists(), "no template rootfs at {}", rootfs.display());
    Ok(rootfs)
}

/// `/var/tmp/islet-bench-<pid>`: searchable (not listable) by the sandboxes' mapped root, as
/// their bundles live below it. Removed on drop when nothing is left inside.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let dir = PathBuf::from(format!("/var/tmp/islet-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Only an empty directory: whatever is left was kept on purpose and reported.
        let _ = std::fs::remove_dir(&self.0);
    }
}

pub(crate) fn run(options: &Options) -> anyhow::Result<()> {
    signals::install()?;
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "cargo xtask bench must run as root (islet serve, runc and mounts need it)"
    );
    let root = workspace_root();
    if options.build {
        cargo_build(&root, &["islet", "islet-agent"])?;
    }
    let target = target_dir(&root);
    let islet = release_islet(&target)?;
    let template_dir = template_dir();
    let rootfs = template_rootfs(&islet, &template_dir)?;
    let scratch = Scratch::new()?;
    let sizes = Sizes::new(options.quick);
    let cgroup = cgroup_version();

    let mut report = report::Report {
        generated_unix_s: unix_now(),
        mode: if options.quick { "quick" } else { "full" },
        warm_pool: options.warm_pool,
        sizes: sizes.clone(),
        host: host(cgroup),
        targets: report::TARGETS,
        baseline: None,
        baseline_error: None,
        islet: Vec::new(),
        ratios: Vec::new(),
        errors: Vec::new(),
        notes: notes(&sizes),
    };

    eprintln!("bench: bare runc baseline (N={})", sizes.baseline);
    match runc_baseline::run(&scratch.0.join("baseline"), &rootfs, sizes.baseline) {
        Ok(b) => report.baseline = Some(b),
        Err(e) => {
            eprintln!("bench: baseline failed: {e:#}");
            report.baseline_error = Some(format!("{e:#}"));
        }
    }

    if !signals::stopping() {
        let server_log = target.join("bench").join("server.log");
        eprintln!("bench: starting islet serve");
        match server::Server::start(
            &islet,
            scratch.0.join("server"),
            &template_dir,
            &options.isolations,
            server_log.clone(),
            options.warm_pool,
        ) {
            Ok(mut server) => {
                for &isolation in &options.isolations {
                    if signals::stopping() {
                        break;
                    }
                    report.islet.push(islet::measure(&server, isolation, &sizes));
                    if !server.alive() {
                        report.errors.push(format!(
                            "islet serve died during the {} run:\n{}",
                            isolation.as_str(),
                            server.log_tail(20)
                        ));
                        break;
                    }
                }
                drop(server);
                report.notes.push(format!("server log: {}", server_log.display()));
            }
            Err(e) => report.errors.push(format!("starting islet serve: {e:#}")),
        }
    }
    drop(scratch);

    report.finish();
    report.print();
    let json = target.join("bench").join("report.json");
    write_json(&json, &report)?;
    println!("\nreport written to {}", json.display());
    signals::check()
}

fn notes(sizes: &Sizes) -> Vec<String> {
    vec![
        "create → first exec: from sending POST /sandboxes to the completed answer of the first \
         `exec true`, measured by this client over loopback HTTP; one untimed warm-up sandbox \
         first; each sandbox deleted (untimed) after its sample"
            .into(),
        format!(
            "concurrent series: {} clients released together by a barrier; latency per sandbox; \
             on a 2-core host they queue for CPU",
            sizes.concurrent
        ),
        "bare runc: the default `runc spec` with Islet's user-namespace mapping, a cgroup \
         namespace and memory/CPU/pids limits; no seccomp, no veth, no agent, no HTTP; ratio = \
         Islet p50 (1 at a time) ÷ bare runc whole-lifecycle p50"
            .into(),
        "memory: memory.usage_in_bytes (v1) / memory.current (v2) of each sandbox's cgroup \
         (<server cgroup>/islet/<id>) 2 s after the last create; page cache of the shared \
         template is charged to whichever cgroup read it first, so it is mostly not in these \
         figures. gVisor: the runsc sentry and gofer run in that cgroup, so they are counted"
            .into(),
        "fit: an ESTIMATE = MemAvailable ÷ (cgroup memory + server RSS growth per sandbox); \
         nothing was filled. It ignores CPU, pids, per-sandbox kernel objects outside the cgroup \
         and the network slots (16384 /30s in a /16)"
            .into(),
        "targets (from the issue) are shown next to both concurrency levels; ok/MISS is \
         informational, nothing is asserted"
            .into(),
    ]
}

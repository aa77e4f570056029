//! `cargo xtask ci <tier>`: the test suite in four tiers, cheapest first, so a formatting
//! error fails before any package is installed and a logic error in the store before any
//! sandbox starts.
//!
//! - `lint`: `cargo fmt --check`, `cargo clippy -D warnings`, and the repository rules
//!   (`tidy.rs`: module graphs without cycles). Needs nothing but the toolchain.
//! - `unit`: every test that needs no root and no host packages: library and binary unit
//!   tests, doc tests, the store's tests (real SQLite files) and the repository's own tests.
//! - `host`: installs the host's packages, builds the binaries and the default template, and
//!   runs every integration test against real runc/gVisor sandboxes (root).
//! - `sdk`: the real `miosa` SDK against a live server, on both isolation levels.
//!
//! `all` runs the four in that order (the README's test command).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

pub(crate) const USAGE: &str = "usage: cargo xtask ci lint|unit|host|sdk|all";

/// Crates whose integration tests need neither root nor host packages (run by `unit`).
const NO_ROOT_TEST_CRATES: &[&str] = &["islet-store", "islet"];

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let root = workspace_root();
    match args.first().map(String::as_str) {
        Some("lint") => lint(&root),
        Some("unit") => unit(&root),
        Some("host") => host(&root),
        Some("sdk") => sdk(&root),
        Some("all") => {
            lint(&root)?;
            unit(&root)?;
            host(&root)?;
            sdk(&root)
        }
        Some("-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

fn lint(root: &Path) -> anyhow::Result<()> {
    step(root, "cargo", &["fmt", "--all", "--", "--check"])?;
    step(root, "cargo", &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    let problems = crate::tidy::check(root)?;
    if !problems.is_empty() {
        bail!("repository rules broken:\n{}", problems.join("\n"));
    }
    println!("tidy: module graphs are one-way");
    Ok(())
}

fn unit(root: &Path) -> anyhow::Result<()> {
    step(root, "cargo", &["test", "--workspace", "--lib", "--bins"])?;
    step(root, "cargo", &["test", "--workspace", "--doc"])?;
    let mut args = vec!["test"];
    for krate in NO_ROOT_TEST_CRATES {
        args.extend(["-p", krate]);
    }
    args.extend(["--test", "*"]);
    step(root, "cargo", &args)
}

fn host(root: &Path) -> anyhow::Result<()> {
    step(root, "./scripts/install-deps.sh", &[])?;
    build_binaries_and_template(root)?;
    let mut args = vec!["test", "--workspace"];
    for krate in NO_ROOT_TEST_CRATES {
        args.extend(["--exclude", krate]);
    }
    args.extend(["--test", "*", "--", "--test-threads=2"]);
    step(root, "cargo", &args)
}

fn sdk(root: &Path) -> anyhow::Result<()> {
    build_binaries_and_template(root)?;
    step(root, "./tests/sdk/run.sh", &["container"])?;
    step(root, "./tests/sdk/run.sh", &["gvisor"])
}

/// The binaries the integration tests start, and the template their sandboxes boot (built
/// once; later calls find it cached).
fn build_binaries_and_template(root: &Path) -> anyhow::Result<()> {
    step(root, "cargo", &["build", "-p", "islet", "-p", "islet-agent", "-p", "islet-checker"])?;
    let templates = template_dir();
    step(
        root,
        "./target/debug/islet",
        &["template", "build", "default", "--template-dir", &templates],
    )
}

/// Where templates are built and found: `ISLET_TEMPLATE_DIR`, as the tests read it.
fn template_dir() -> String {
    std::env::var("ISLET_TEMPLATE_DIR").unwrap_or_else(|_| "/var/lib/islet/templates".into())
}

fn step(root: &Path, program: &str, args: &[&str]) -> anyhow::Result<()> {
    println!("==> {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(root)
        .status()
        .with_context(|| format!("starting {program}"))?;
    if !status.success() {
        bail!("{program} {} failed ({status})", args.join(" "));
    }
    Ok(())
}

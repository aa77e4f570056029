//! The baseline: a bare `runc run` of the same template rootfs, with no Islet in between.
//!
//! One iteration is the whole lifecycle of a throw-away container: mkdir upper/work/merged,
//! mount the overlay (lower = the template rootfs), write `config.json`, `runc run` of
//! `/bin/true` until it exits (runc removes the container and its cgroups itself), unmount,
//! remove the directory. The spec is `runc spec`'s default, edited to look like Islet's: the
//! same user-namespace mapping (0 → 100000, 65536 ids), a cgroup namespace, and memory, CPU and
//! pids limits in a cgroup nested under ours. Not included, unlike Islet: a network beyond the
//! empty netns runc makes, seccomp, the agent, any HTTP.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::Serialize;
use serde_json::{json, Value};

use super::signals;
use super::stats::{ms_since, summarize, Summary};

/// Host id of the sandbox's root, as Islet maps it.
const UID_BASE: u32 = 100_000;
const ID_COUNT: u32 = 65_536;

#[derive(Debug, Clone, Serialize)]
pub(super) struct BaselineResult {
    /// Whether the containers ran in a user namespace (Islet's mapping).
    pub user_namespace: bool,
    /// Why the user namespace was dropped, if it was.
    pub note: Option<String>,
    /// Everything: setup + `runc run` + teardown.
    pub lifecycle_ms: Option<Summary>,
    /// mkdir, overlay mount, config.json.
    pub setup_ms: Option<Summary>,
    /// `runc run` of `/bin/true` until it exits.
    pub runc_run_ms: Option<Summary>,
    /// umount, rm -r.
    pub teardown_ms: Option<Summary>,
    pub failures: usize,
    pub first_error: Option<String>,
}

/// One container's directory, overlay and runc state; undone on drop.
struct Bundle<'a> {
    runc_root: &'a Path,
    id: String,
    dir: PathBuf,
    merged: PathBuf,
    mounted: bool,
    started: bool,
}

impl<'a> Bundle<'a> {
    fn new(runc_root: &'a Path, base: &Path, id: String) -> Self {
        let dir = base.join(&id);
        Self { runc_root, merged: dir.join("merged"), dir, id, mounted: false, started: false }
    }

    fn setup(&mut self, rootfs: &Path, spec: &Value, userns: bool) -> anyhow::Result<()> {
        let (upper, work) = (self.dir.join("upper"), self.dir.join("work"));
        for d in [&upper, &work, &self.merged] {
            std::fs::create_dir_all(d).with_context(|| format!("mkdir {}", d.display()))?;
        }
        if userns {
            for d in [&upper, &work] {
                std::os::unix::fs::chown(d, Some(UID_BASE), Some(UID_BASE))
                    .with_context(|| format!("chown {}", d.display()))?;
            }
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            rootfs.display(),
            upper.display(),
            work.display()
        );
        mount(
            Some("overlay"),
            &self.merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(options.as_str()),
        )
        .with_context(|| format!("mount overlay on {}", self.merged.display()))?;
        self.mounted = true;
        let mut spec = spec.clone();
        spec["root"] = json!({ "path": self.merged, "readonly": false });
        spec["linux"]["cgroupsPath"] = json!(format!("islet-bench-{}", self.id));
        std::fs::write(self.dir.join("config.json"), serde_json::to_vec(&spec)?)
            .context("write config.json")?;
        Ok(())
    }

    fn run(&mut self) -> anyhow::Result<()> {
        self.started = true;
        let output = Command::new("runc")
            .arg("--root")
            .arg(self.runc_root)
            .arg("run")
            .arg("--bundle")
            .arg(&self.dir)
            .arg(&self.id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .output()
            .context("spawn runc")?;
        if !output.status.success() {
            bail!(
                "runc run {}: {}: {}",
                self.id,
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        // `runc run` removes the container when its process exits.
        self.started = false;
        Ok(())
    }

    fn teardown(&mut self) -> anyhow::Result<()> {
        if self.started {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(self.runc_root)
                .args(["delete", "--force", &self.id])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            self.started = false;
        }
        if self.mounted {
            umount2(&self.merged, MntFlags::empty())
                .or_else(|_| umount2(&self.merged, MntFlags::MNT_DETACH))
                .with_context(|| format!("umount {}", self.merged.display()))?;
            self.mounted = false;
        }
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir)
                .with_context(|| format!("rm -r {}", self.dir.display()))?;
        }
        Ok(())
    }
}

impl Drop for Bundle<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("bench: baseline cleanup of {}: {e:#}", self.id);
        }
    }
}

/// `runc spec`'s default, edited as described in the module documentation.
fn spec(work: &Path, userns: bool) -> anyhow::Result<Value> {
    let dir = work.join("spec");
    std::fs::create_dir_all(&dir)?;
    let status = Command::new("runc")
        .arg("spec")
        .arg("--bundle")
        .arg(&dir)
        .stdin(Stdio::null())
        .status()
        .context("run `runc spec` (is runc installed?)")?;
    anyhow::ensure!(status.success(), "runc spec: {status}");
    let path = dir.join("config.json");
    let mut spec: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    std::fs::remove_dir_all(&dir)?;
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!(["/bin/true"]);
    spec["hostname"] = json!("bench");
    let linux = &mut spec["linux"];
    let memory = 512_i64 << 20;
    linux["resources"]["memory"] = json!({ "limit": memory, "swap": memory });
    linux["resources"]["cpu"] = json!({ "period": 100_000, "quota": 100_000 });
    linux["resources"]["pids"] = json!({ "limit": 1024 });
    let namespaces =
        linux["namespaces"].as_array_mut().context("runc spec: no linux.namespaces")?;
    let mut wanted = vec!["cgroup"];
    if userns {
        wanted.push("user");
    }
    for kind in wanted {
        if !namespaces.iter().any(|n| n["type"] == kind) {
            namespaces.push(json!({ "type": kind }));
        }
    }
    if userns {
        let map = json!([{ "containerID": 0, "hostID": UID_BASE, "size": ID_COUNT }]);
        linux["uidMappings"] = map.clone();
        linux["gidMappings"] = map;
    }
    Ok(spec)
}

/// One timed lifecycle: (setup, run, teardown) in milliseconds.
fn lifecycle(
    runc_root: &Path,
    work: &Path,
    id: String,
    rootfs: &Path,
    spec: &Value,
    userns: bool,
) -> anyhow::Result<(f64, f64, f64)> {
    let mut bundle = Bundle::new(runc_root, work, id);
    let start = Instant::now();
    bundle.setup(rootfs, spec, userns)?;
    let setup = ms_since(start);
    let start = Instant::now();
    bundle.run()?;
    let run = ms_since(start);
    let start = Instant::now();
    bundle.teardown()?;
    let teardown = ms_since(start);
    Ok((setup, run, teardown))
}

/// Measure `n` lifecycles in `work` (created; removed again when empty).
pub(super) fn run(work: &Path, rootfs: &Path, n: usize) -> anyhow::Result<BaselineResult> {
    let runc_root = work.join("runc");
    std::fs::create_dir_all(&runc_root)?;
    let tag = std::process::id();
    // An untimed first run also warms the page cache, as Islet's warm-up does.
    let mut userns = true;
    let mut note = None;
    let mut spec_value = spec(work, true)?;
    if let Err(e) =
        lifecycle(&runc_root, work, format!("bnch-{tag}-warm"), rootfs, &spec_value, true)
    {
        userns = false;
        note = Some(format!("runc failed with the user namespace, measured without it: {e:#}"));
        spec_value = spec(work, false)?;
        lifecycle(&runc_root, work, format!("bnch-{tag}-warm2"), rootfs, &spec_value, false)
            .context("bare runc, even without a user namespace")?;
    }
    let (mut setup, mut run, mut teardown, mut total) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut failures, mut first_error) = (0, None);
    for i in 0..n {
        signals::check()?;
        match lifecycle(&runc_root, work, format!("bnch-{tag}-{i}"), rootfs, &spec_value, userns) {
            Ok((s, r, t)) => {
                setup.push(s);
                run.push(r);
                teardown.push(t);
                total.push(s + r + t);
            }
            Err(e) => {
                failures += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    let _ = std::fs::remove_dir(&runc_root);
    let _ = std::fs::remove_dir(work);
    Ok(BaselineResult {
        user_namespace: userns,
        note,
        lifecycle_ms: summarize(&total),
        setup_ms: summarize(&setup),
        runc_run_ms: summarize(&run),
        teardown_ms: summarize(&teardown),
        failures,
        first_error,
    })
}

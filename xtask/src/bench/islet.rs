//! The measurements through Islet's API, for one isolation level.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use super::http::Client;
use super::memory::{self, mib, MemoryCgroups};
use super::server::Server;
use super::stats::{ms_since, summarize, Summary};
use super::{signals, Isolation, Sizes};

/// A series of create → first exec latencies.
#[derive(Debug, Clone, Serialize)]
pub(super) struct CreateSeries {
    pub concurrency: usize,
    pub attempted: usize,
    pub failures: usize,
    pub first_error: Option<String>,
    /// From sending `POST /sandboxes` to the completed answer of the first `exec true`.
    pub create_to_first_exec_ms: Option<Summary>,
    /// From sending `POST /sandboxes` to its 201.
    pub create_ms: Option<Summary>,
    /// The server's own `boot_ms`.
    pub server_boot_ms: Option<Summary>,
    /// From releasing the burst to the last completed exec (concurrent series only).
    pub wall_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct MemoryResult {
    pub sandboxes: usize,
    pub cgroup_version: &'static str,
    /// Sandbox cgroups that could not be read.
    pub unreadable_cgroups: usize,
    /// Mean over the sandboxes of their memory cgroup's usage.
    pub per_sandbox_mib: f64,
    pub per_sandbox_anon_mib: f64,
    pub per_sandbox_file_mib: f64,
    pub per_sandbox_kernel_mib: Option<f64>,
    pub min_sandbox_mib: f64,
    pub max_sandbox_mib: f64,
    pub processes_per_sandbox: f64,
    /// Sum over the sandboxes.
    pub total_cgroup_mib: f64,
    pub server_rss_before_mib: f64,
    pub server_rss_after_mib: f64,
    /// (server RSS after − before) / sandboxes.
    pub server_rss_delta_per_sandbox_mib: f64,
    /// (MemAvailable before − after) / sandboxes: everything on the host, noisy.
    pub host_available_drop_per_sandbox_mib: f64,
    pub mem_available_mib: f64,
    /// MemAvailable / (per-sandbox cgroup + per-sandbox server RSS growth). An estimate.
    pub estimated_fit: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct IsolationResult {
    pub isolation: Isolation,
    pub serial: Option<CreateSeries>,
    pub concurrent: Option<CreateSeries>,
    /// Sequential `exec true` on one running sandbox.
    pub exec_round_trip_ms: Option<Summary>,
    pub exec_failures: usize,
    pub memory: Option<MemoryResult>,
    /// Sections that failed as a whole.
    pub errors: Vec<String>,
}

/// Create a sandbox and run `true` in it: (create → exec done, create → 201, boot_ms, id).
fn create_then_exec(client: &Client) -> anyhow::Result<(f64, f64, Option<f64>, String)> {
    let start = Instant::now();
    let created = client.create()?;
    let create_ms = ms_since(start);
    client.exec_ok(&created.id, "true")?;
    Ok((ms_since(start), create_ms, created.boot_ms, created.id))
}

#[derive(Default)]
struct Samples {
    total: Vec<f64>,
    create: Vec<f64>,
    boot: Vec<f64>,
    failures: usize,
    first_error: Option<String>,
}

impl Samples {
    fn add(&mut self, result: &anyhow::Result<(f64, f64, Option<f64>, String)>) {
        match result {
            Ok((total, create, boot, _)) => {
                self.total.push(*total);
                self.create.push(*create);
                self.boot.extend(*boot);
            }
            Err(e) => {
                self.failures += 1;
                self.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }

    fn series(self, concurrency: usize, attempted: usize, wall_ms: Option<f64>) -> CreateSeries {
        CreateSeries {
            concurrency,
            attempted,
            failures: self.failures,
            first_error: self.first_error,
            create_to_first_exec_ms: summarize(&self.total),
            create_ms: summarize(&self.create),
            server_boot_ms: summarize(&self.boot),
            wall_ms,
        }
    }
}

/// One at a time; each sandbox is deleted (untimed) before the next is created.
fn serial(client: &Client, n: usize) -> anyhow::Result<CreateSeries> {
    // Untimed warm-up: the first sandbox pays for cold caches.
    let (_, _, _, id) = create_then_exec(client).context("warm-up sandbox")?;
    client.delete(&id)?;
    let mut samples = Samples::default();
    let mut failures_in_a_row = 0;
    for _ in 0..n {
        signals::check()?;
        let result = create_then_exec(client);
        samples.add(&result);
        match result {
            Ok((.., id)) => {
                client.delete(&id)?;
                failures_in_a_row = 0;
            }
            Err(e) => {
                failures_in_a_row += 1;
                if failures_in_a_row == 3 {
                    bail!("3 failures in a row, the last: {e:#}");
                }
            }
        }
        client.delete_all();
    }
    Ok(samples.series(1, n, None))
}

/// `n` at once (released together by a barrier), then all deleted.
fn concurrent(client: &Client, n: usize) -> anyhow::Result<CreateSeries> {
    let barrier = Barrier::new(n + 1);
    let (results, wall) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let result = create_then_exec(client);
                    (result, Instant::now())
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let mut results = Vec::new();
        let mut last = start;
        for handle in handles {
            match handle.join() {
                Ok((result, done)) => {
                    last = last.max(done);
                    results.push(result);
                }
                Err(_) => results.push(Err(anyhow::anyhow!("a client thread panicked"))),
            }
        }
        (results, (last - start).as_secs_f64() * 1000.0)
    });
    let mut samples = Samples::default();
    for result in &results {
        samples.add(result);
    }
    let failures = client.delete_all();
    if let Some((id, e)) = failures.first() {
        bail!("deleting {id} after the burst: {e:#}");
    }
    Ok(samples.series(n, n, Some(wall)))
}

/// Sequential `exec true` on one sandbox: (summary, failures).
fn exec_round_trip(client: &Client, n: usize) -> anyhow::Result<(Option<Summary>, usize)> {
    let created = client.create()?;
    for _ in 0..5 {
        client.exec_ok(&created.id, "true")?;
    }
    let mut samples = Vec::with_capacity(n);
    let mut failures = 0;
    for _ in 0..n {
        signals::check()?;
        let start = Instant::now();
        match client.exec_ok(&created.id, "true") {
            Ok(()) => samples.push(ms_since(start)),
            Err(_) => failures += 1,
        }
    }
    client.delete(&created.id)?;
    Ok((summarize(&samples), failures))
}

/// `k` idle sandboxes: their cgroups' memory, the server's RSS growth, and an estimate of how
/// many would fit.
fn idle_memory(server: &Server, client: &Client, k: usize) -> anyhow::Result<MemoryResult> {
    let cgroups = MemoryCgroups::of_process(server.pid)?;
    std::thread::sleep(Duration::from_millis(500));
    let rss_before = memory::rss(server.pid)?;
    let available_before = memory::mem_available()?;
    let mut ids = Vec::with_capacity(k);
    for _ in 0..k {
        signals::check()?;
        ids.push(client.create()?.id);
    }
    std::thread::sleep(Duration::from_secs(2));
    let mut samples = Vec::with_capacity(k);
    let mut unreadable = 0;
    for id in &ids {
        match cgroups.sandbox(id) {
            Ok(sample) => samples.push(sample),
            Err(e) => {
                unreadable += 1;
                eprintln!("bench: {e:#}");
            }
        }
    }
    let rss_after = memory::rss(server.pid)?;
    let available_after = memory::mem_available()?;
    for id in &ids {
        client.delete(id)?;
    }
    anyhow::ensure!(!samples.is_empty(), "no sandbox cgroup could be read");
    let count = samples.len() as f64;
    let mean = |f: &dyn Fn(&memory::CgroupMemory) -> u64| {
        mib(samples.iter().map(|s| f(s) as f64).sum::<f64>() / count)
    };
    let usages: Vec<f64> = samples.iter().map(|s| mib(s.usage as f64)).collect();
    let per_sandbox = mean(&|s| s.usage);
    let server_delta = mib((rss_after as f64 - rss_before as f64) / k as f64);
    let per_sandbox_all = per_sandbox + server_delta.max(0.0);
    Ok(MemoryResult {
        sandboxes: k,
        cgroup_version: cgroups.version(),
        unreadable_cgroups: unreadable,
        per_sandbox_mib: per_sandbox,
        per_sandbox_anon_mib: mean(&|s| s.anon),
        per_sandbox_file_mib: mean(&|s| s.file),
        per_sandbox_kernel_mib: samples
            .iter()
            .all(|s| s.kernel.is_some())
            .then(|| mean(&|s| s.kernel.unwrap_or(0))),
        min_sandbox_mib: usages.iter().copied().fold(f64::INFINITY, f64::min),
        max_sandbox_mib: usages.iter().copied().fold(0.0, f64::max),
        processes_per_sandbox: samples.iter().map(|s| s.procs as f64).sum::<f64>() / count,
        total_cgroup_mib: usages.iter().sum(),
        server_rss_before_mib: mib(rss_before as f64),
        server_rss_after_mib: mib(rss_after as f64),
        server_rss_delta_per_sandbox_mib: server_delta,
        host_available_drop_per_sandbox_mib: mib((available_before as f64
            - available_after as f64)
            / k as f64),
        mem_available_mib: mib(available_before as f64),
        estimated_fit: if per_sandbox_all > 0.0 {
            (mib(available_before as f64) / per_sandbox_all).floor() as u64
        } else {
            0
        },
    })
}

/// Everything for `isolation`. A failing section is recorded and the next one still runs
/// (unless the server died or a stop was asked for).
pub(super) fn measure(server: &Server, isolation: Isolation, sizes: &Sizes) -> IsolationResult {
    let mut result = IsolationResult {
        isolation,
        serial: None,
        concurrent: None,
        exec_round_trip_ms: None,
        exec_failures: 0,
        memory: None,
        errors: Vec::new(),
    };
    let name = isolation.as_str();
    let client = match server.client(isolation) {
        Ok(c) => c,
        Err(e) => {
            result.errors.push(format!("{e:#}"));
            return result;
        }
    };
    let record = |what: &str, outcome: anyhow::Result<()>, errors: &mut Vec<String>| {
        if let Err(e) = outcome {
            eprintln!("bench: {name}: {what} failed: {e:#}");
            errors.push(format!("{what}: {e:#}"));
        }
        for (id, e) in client.delete_all() {
            errors.push(format!("{what}: cleanup of {id}: {e:#}"));
        }
    };
    let mut errors = Vec::new();

    eprintln!("bench: {name}: create → first exec, one at a time (N={})", sizes.serial);
    let outcome = serial(client, sizes.serial).map(|s| result.serial = Some(s));
    record("create → first exec (c=1)", outcome, &mut errors);

    if !signals::stopping() {
        eprintln!("bench: {name}: create → first exec, {} at once", sizes.concurrent);
        let outcome = concurrent(client, sizes.concurrent).map(|s| result.concurrent = Some(s));
        record("create → first exec (concurrent)", outcome, &mut errors);
    }

    if !signals::stopping() {
        eprintln!("bench: {name}: exec round trip (N={})", sizes.exec);
        let outcome = exec_round_trip(client, sizes.exec).map(|(s, failures)| {
            result.exec_round_trip_ms = s;
            result.exec_failures = failures;
        });
        record("exec round trip", outcome, &mut errors);
    }

    if !signals::stopping() {
        eprintln!("bench: {name}: memory of {} idle sandboxes", sizes.idle);
        let outcome = idle_memory(server, client, sizes.idle).map(|m| result.memory = Some(m));
        record("idle memory", outcome, &mut errors);
    }
    result.errors = errors;
    result
}

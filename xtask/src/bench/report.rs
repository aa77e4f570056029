//! The report: a table on stdout, and the same figures as JSON.

use serde::Serialize;

use super::islet::{CreateSeries, IsolationResult};
use super::runc_baseline::BaselineResult;
use super::stats::Summary;
use super::{Isolation, Sizes};

/// The targets of the issue.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Targets {
    pub create_to_first_exec_p50_ms: f64,
    pub create_to_first_exec_p50_max_ratio_to_bare_runc: f64,
    pub create_to_first_exec_p99_ms: f64,
    pub exec_round_trip_p50_ms: f64,
    pub idle_container_sandbox_mib: f64,
}

pub(super) const TARGETS: Targets = Targets {
    create_to_first_exec_p50_ms: 30.0,
    create_to_first_exec_p50_max_ratio_to_bare_runc: 2.0,
    create_to_first_exec_p99_ms: 80.0,
    exec_round_trip_p50_ms: 3.0,
    idle_container_sandbox_mib: 3.0,
};

#[derive(Debug, Clone, Serialize)]
pub(super) struct Host {
    pub cpus: usize,
    pub kernel: String,
    pub mem_total_mib: f64,
    pub cgroup: String,
    pub runc: Option<String>,
    pub runsc: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Ratio {
    pub isolation: Isolation,
    /// Islet create → first exec p50 (one at a time) / bare runc lifecycle p50.
    pub islet_p50_over_runc_p50: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Report {
    pub generated_unix_s: u64,
    pub mode: &'static str,
    /// `islet serve --warm-pool` of this run (0 = every create a cold start).
    pub warm_pool: usize,
    pub sizes: Sizes,
    pub host: Host,
    pub targets: Targets,
    pub baseline: Option<BaselineResult>,
    pub baseline_error: Option<String>,
    pub islet: Vec<IsolationResult>,
    pub ratios: Vec<Ratio>,
    pub errors: Vec<String>,
    pub notes: Vec<String>,
}

fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.1} ms")
    }
}

/// `value` plus "ok"/"MISS" when a target applies.
fn judged(value: String, met: Option<bool>) -> String {
    match met {
        Some(true) => format!("{value}  ok"),
        Some(false) => format!("{value}  MISS"),
        None => value,
    }
}

/// Rows of cells printed in aligned columns (also used by `bench-preview`).
#[derive(Default)]
pub(super) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(super) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(super) fn print(&self) {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                let pad = widths[c].saturating_sub(cell.chars().count());
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 3));
            }
            println!("{}", line.trim_end());
        }
    }
}

impl Report {
    pub(super) fn ratio(&self, isolation: Isolation) -> Option<f64> {
        let runc = self.baseline.as_ref()?.lifecycle_ms.as_ref()?.p50;
        let islet = self
            .islet
            .iter()
            .find(|r| r.isolation == isolation)?
            .serial
            .as_ref()?
            .create_to_first_exec_ms
            .as_ref()?
            .p50;
        (runc > 0.0).then_some(islet / runc)
    }

    /// Fill in the derived figures (ratios).
    pub(super) fn finish(&mut self) {
        self.ratios = self
            .islet
            .iter()
            .filter_map(|r| {
                Some(Ratio {
                    isolation: r.isolation,
                    islet_p50_over_runc_p50: self.ratio(r.isolation)?,
                })
            })
            .collect();
    }

    pub(super) fn print(&self) {
        let t = &self.targets;
        let h = &self.host;
        println!();
        println!("=== Islet benchmark ({} run) ===", self.mode);
        println!(
            "islet serve --warm-pool {} ({})",
            self.warm_pool,
            if self.warm_pool == 0 {
                "every create is a cold start"
            } else {
                "container creates of the default size are taken from the pool while it lasts"
            }
        );
        println!(
            "host: {} CPUs, kernel {}, {:.1} GiB RAM, cgroup {}; {}; {}",
            h.cpus,
            h.kernel,
            h.mem_total_mib / 1024.0,
            h.cgroup,
            h.runc.as_deref().unwrap_or("runc: ?"),
            h.runsc.as_deref().unwrap_or("runsc: ?"),
        );
        println!();
        self.print_baseline();
        println!();
        self.print_table(t);
        if !self.errors.is_empty() || self.islet.iter().any(|r| !r.errors.is_empty()) {
            println!();
            println!("errors:");
            for e in &self.errors {
                println!("  - {e}");
            }
            for r in &self.islet {
                for e in &r.errors {
                    println!("  - {}: {e}", r.isolation.as_str());
                }
            }
        }
        println!();
        println!("notes:");
        for note in &self.notes {
            println!("  - {note}");
        }
    }

    fn print_baseline(&self) {
        println!(
            "bare runc baseline: same template rootfs, N={}: mkdir + overlay mount + config.json, \
             `runc run` of /bin/true until it exits, umount + rm",
            self.sizes.baseline
        );
        match (&self.baseline, &self.baseline_error) {
            (Some(b), _) => {
                println!(
                    "  {}",
                    if b.user_namespace {
                        "user namespace 0→100000 (65536 ids), as Islet maps it".to_owned()
                    } else {
                        format!("WITHOUT a user namespace: {}", b.note.as_deref().unwrap_or("?"))
                    }
                );
                let line = |name: &str, s: &Option<Summary>| match s {
                    Some(s) => println!(
                        "  {name:<22} p50 {:>9}   p99 {:>9}   (min {}, max {})",
                        ms(s.p50),
                        ms(s.p99),
                        ms(s.min),
                        ms(s.max)
                    ),
                    None => println!("  {name:<22} -"),
                };
                line("whole lifecycle", &b.lifecycle_ms);
                line("  setup", &b.setup_ms);
                line("  runc run → exit", &b.runc_run_ms);
                line("  teardown", &b.teardown_ms);
                if b.failures > 0 {
                    println!(
                        "  failures: {} ({})",
                        b.failures,
                        b.first_error.as_deref().unwrap_or("")
                    );
                }
            }
            (None, Some(e)) => println!("  FAILED: {e}"),
            (None, None) => println!("  not measured"),
        }
    }

    fn print_table(&self, t: &Targets) {
        let runs = &self.islet;
        let mut table = Table::default();
        let mut header = vec!["Islet".to_owned(), String::new()];
        header.extend(runs.iter().map(|r| r.isolation.as_str().to_owned()));
        header.push("target".to_owned());
        table.row(header.clone());
        table.row(header.iter().map(|h| "-".repeat(h.chars().count().max(4))).collect());
        let mut row = |section: &str, what: &str, cells: Vec<String>, target: &str| {
            let mut r = vec![section.to_owned(), what.to_owned()];
            r.extend(cells);
            r.push(target.to_owned());
            table.row(r);
        };
        let runc_p50 = self.baseline.as_ref().and_then(|b| b.lifecycle_ms.as_ref()).map(|s| s.p50);

        for concurrent in [false, true] {
            let series = |r: &IsolationResult| -> Option<CreateSeries> {
                if concurrent {
                    r.concurrent.clone()
                } else {
                    r.serial.clone()
                }
            };
            let section = if concurrent {
                format!("create → first exec, {} at once", self.sizes.concurrent)
            } else {
                format!("create → first exec, 1 at a time (N={})", self.sizes.serial)
            };
            let stat = |r: &IsolationResult, f: &dyn Fn(&Summary) -> f64, limit: Option<f64>| {
                match series(r).and_then(|s| s.create_to_first_exec_ms) {
                    Some(s) => judged(ms(f(&s)), limit.map(|l| f(&s) <= l)),
                    None => "-".to_owned(),
                }
            };
            row(
                &section,
                "p50",
                runs.iter()
                    .map(|r| stat(r, &|s| s.p50, Some(t.create_to_first_exec_p50_ms)))
                    .collect(),
                &format!("≤ {} ms", t.create_to_first_exec_p50_ms),
            );
            row(
                "",
                "p99",
                runs.iter()
                    .map(|r| stat(r, &|s| s.p99, Some(t.create_to_first_exec_p99_ms)))
                    .collect(),
                &format!("≤ {} ms", t.create_to_first_exec_p99_ms),
            );
            if !concurrent {
                let limit = t.create_to_first_exec_p50_max_ratio_to_bare_runc;
                row(
                    "",
                    "p50 ÷ bare runc p50",
                    runs.iter()
                        .map(|r| match self.ratio(r.isolation) {
                            Some(x) => judged(format!("{x:.2}×"), Some(x <= limit)),
                            None => "-".to_owned(),
                        })
                        .collect(),
                    &match runc_p50 {
                        Some(p) => format!("≤ {limit}× (runc p50 {})", ms(p)),
                        None => format!("≤ {limit}×"),
                    },
                );
            }
            let info = |f: &dyn Fn(&CreateSeries) -> Option<String>| -> Vec<String> {
                runs.iter()
                    .map(|r| series(r).and_then(|s| f(&s)).unwrap_or_else(|| "-".into()))
                    .collect()
            };
            row(
                "",
                "  min / max",
                info(&|s| {
                    s.create_to_first_exec_ms
                        .as_ref()
                        .map(|x| format!("{} / {}", ms(x.min), ms(x.max)))
                }),
                "",
            );
            row("", "  create (201) p50", info(&|s| s.create_ms.as_ref().map(|x| ms(x.p50))), "");
            row(
                "",
                "  server boot_ms p50",
                info(&|s| s.server_boot_ms.as_ref().map(|x| ms(x.p50))),
                "",
            );
            if concurrent {
                row("", "  wall, all done", info(&|s| s.wall_ms.map(ms)), "");
            }
            row("", "  failures", info(&|s| Some(format!("{}/{}", s.failures, s.attempted))), "");
        }

        let section = format!("exec round trip (N={})", self.sizes.exec);
        let exec = |f: &dyn Fn(&Summary) -> f64, limit: Option<f64>| -> Vec<String> {
            runs.iter()
                .map(|r| match &r.exec_round_trip_ms {
                    Some(s) => judged(ms(f(s)), limit.map(|l| f(s) <= l)),
                    None => "-".into(),
                })
                .collect()
        };
        row(
            &section,
            "p50",
            exec(&|s| s.p50, Some(t.exec_round_trip_p50_ms)),
            &format!("≤ {} ms", t.exec_round_trip_p50_ms),
        );
        row("", "p99", exec(&|s| s.p99, None), "");
        row(
            "",
            "  failures",
            runs.iter()
                .map(|r| match &r.exec_round_trip_ms {
                    Some(s) => format!("{}/{}", r.exec_failures, s.n + r.exec_failures),
                    None => "-".into(),
                })
                .collect(),
            "",
        );

        let section = format!("host memory, {} idle sandboxes", self.sizes.idle);
        let mem = |f: &dyn Fn(&super::islet::MemoryResult) -> String| -> Vec<String> {
            runs.iter().map(|r| r.memory.as_ref().map(f).unwrap_or_else(|| "-".into())).collect()
        };
        row(
            &section,
            "per sandbox (cgroup)",
            runs.iter()
                .map(|r| match &r.memory {
                    Some(m) => judged(
                        format!("{:.2} MiB", m.per_sandbox_mib),
                        (r.isolation == Isolation::Container)
                            .then_some(m.per_sandbox_mib <= t.idle_container_sandbox_mib),
                    ),
                    None => "-".into(),
                })
                .collect(),
            &format!("≤ {} MiB (container)", t.idle_container_sandbox_mib),
        );
        row(
            "",
            "  anon / file / kernel",
            mem(&|m| {
                format!(
                    "{:.2} / {:.2} / {}",
                    m.per_sandbox_anon_mib,
                    m.per_sandbox_file_mib,
                    m.per_sandbox_kernel_mib.map_or_else(|| "?".to_owned(), |k| format!("{k:.2}"))
                )
            }),
            "MiB",
        );
        row(
            "",
            "  min / max",
            mem(&|m| format!("{:.2} / {:.2} MiB", m.min_sandbox_mib, m.max_sandbox_mib)),
            "",
        );
        row("", "  processes per sandbox", mem(&|m| format!("{:.1}", m.processes_per_sandbox)), "");
        row("", "total (cgroups)", mem(&|m| format!("{:.1} MiB", m.total_cgroup_mib)), "");
        row(
            "",
            "server RSS growth / sandbox",
            mem(&|m| {
                format!(
                    "{:.2} MiB ({:.0}→{:.0})",
                    m.server_rss_delta_per_sandbox_mib,
                    m.server_rss_before_mib,
                    m.server_rss_after_mib
                )
            }),
            "",
        );
        row(
            "",
            "MemAvailable drop / sandbox",
            mem(&|m| format!("{:.2} MiB", m.host_available_drop_per_sandbox_mib)),
            "noisy: whole host",
        );
        row(
            "idle sandboxes that fit",
            "ESTIMATE",
            mem(&|m| format!("~{}", m.estimated_fit)),
            "not tried",
        );
        table.print();
    }
}

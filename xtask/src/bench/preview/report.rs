//! The preview report: a table of edge, nginx and edge ÷ nginx on stdout, and the same figures
//! in `target/bench/preview.json`.

use serde::Serialize;

use super::super::report::{Host, Table};
use super::load::Outcome;
use super::scenarios::Scenario;

pub(super) const TARGETS: &str = "throughput ≥ nginx's, p99 ≤ nginx's";

#[derive(Debug, Clone, Serialize)]
pub(super) struct Setup {
    pub node_version: String,
    pub node_processes: usize,
    pub sandbox_cpus: u32,
    pub nginx_version: String,
    pub nginx_workers: usize,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Report {
    pub generated_unix_s: u64,
    pub mode: &'static str,
    pub host: Host,
    pub targets: &'static str,
    pub setup: Option<Setup>,
    pub scenarios: Vec<Scenario>,
    pub errors: Vec<String>,
    pub notes: Vec<String>,
}

fn ms(v: f64) -> String {
    if v < 1.0 {
        format!("{v:.3} ms")
    } else if v < 100.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.0} ms")
    }
}

fn per_second(o: &Outcome) -> String {
    format!("{:.0}", o.per_second)
}

fn ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "—".into(), |r| format!("{r:.2}"))
}

/// "≥ 1 ok" / "≥ 1 MISS" (informational), or nothing when the target does not apply.
fn judged(applies: bool, bound: &str, met: Option<bool>) -> String {
    match (applies, met) {
        (false, _) => String::new(),
        (true, Some(true)) => format!("{bound} ok"),
        (true, Some(false)) => format!("{bound} MISS"),
        (true, None) => format!("{bound} ?"),
    }
}

impl Report {
    pub(super) fn print(&self) {
        let h = &self.host;
        println!();
        println!("=== Islet preview edge vs nginx ({} run) ===", self.mode);
        println!(
            "host: {} CPUs, kernel {}, {:.1} GiB RAM",
            h.cpus,
            h.kernel,
            h.mem_total_mib / 1024.0
        );
        if let Some(s) = &self.setup {
            println!(
                "backend: node {} × {} process(es) in a {}-CPU sandbox; baseline: {} with {} \
                 workers",
                s.node_version, s.node_processes, s.sandbox_cpus, s.nginx_version, s.nginx_workers
            );
        }
        println!("targets: {} (ok/MISS is informational; nothing is asserted)", self.targets);
        println!();
        self.print_table();
        println!();
        println!("loads:");
        for s in &self.scenarios {
            println!("  {}: {}; {} measured first", s.name, s.load, s.first);
        }
        let failures: Vec<String> = self
            .scenarios
            .iter()
            .flat_map(|s| {
                let sides = [("edge", Some(&s.edge)), ("nginx", Some(&s.nginx))];
                let direct = [("direct", s.direct.as_ref())];
                sides
                    .into_iter()
                    .chain(direct)
                    .filter_map(|(name, o)| Some((name, o?)))
                    .filter(|(_, o)| o.errors + o.unfinished > 0)
                    .map(|(name, o)| {
                        format!(
                            "{} ({name}): {} errors, {} unfinished: {}",
                            s.name,
                            o.errors,
                            o.unfinished,
                            o.first_errors.join("; ")
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .chain(self.errors.iter().cloned())
            .collect();
        if !failures.is_empty() {
            println!();
            println!("errors:");
            for f in failures {
                println!("  {f}");
            }
        }
        println!();
        println!("notes:");
        for note in &self.notes {
            println!("  - {note}");
        }
    }

    fn print_table(&self) {
        let mut table = Table::default();
        table.row(
            ["scenario", "metric", "edge", "nginx", "edge÷nginx", "target", "direct (no proxy)"]
                .map(String::from)
                .to_vec(),
        );
        for s in &self.scenarios {
            let direct = s.direct.as_ref();
            let websocket = s.name.starts_with("WebSocket");
            if !websocket {
                let rate = |o: &Outcome| match o.offered_per_second {
                    Some(offered) => format!("{} of {offered:.0}", per_second(o)),
                    None => per_second(o),
                };
                table.row(vec![
                    s.name.clone(),
                    "req/s".into(),
                    rate(&s.edge),
                    rate(&s.nginx),
                    ratio(s.ratios.per_second),
                    judged(s.throughput_target, "≥ 1", s.ratios.per_second.map(|r| r >= 1.0)),
                    direct.map(per_second).unwrap_or_default(),
                ]);
            }
            if let (Some(e), Some(n)) = (s.edge.mib_per_second, s.nginx.mib_per_second) {
                table.row(vec![
                    String::new(),
                    "MiB/s".into(),
                    format!("{e:.0}"),
                    format!("{n:.0}"),
                    String::new(),
                    String::new(),
                    direct
                        .and_then(|d| d.mib_per_second)
                        .map(|d| format!("{d:.0}"))
                        .unwrap_or_default(),
                ]);
            }
            let latency = |o: Option<&Outcome>, pick: fn(&super::super::stats::Summary) -> f64| {
                o.and_then(|o| o.latency_ms.as_ref()).map_or_else(String::new, |s| ms(pick(s)))
            };
            let first = |label: &str| {
                if websocket {
                    label.to_owned()
                } else {
                    String::new()
                }
            };
            table.row(vec![
                first(&s.name),
                "p50".into(),
                latency(Some(&s.edge), |s| s.p50),
                latency(Some(&s.nginx), |s| s.p50),
                ratio(s.ratios.p50),
                String::new(),
                latency(direct, |s| s.p50),
            ]);
            table.row(vec![
                String::new(),
                "p99".into(),
                latency(Some(&s.edge), |s| s.p99),
                latency(Some(&s.nginx), |s| s.p99),
                ratio(s.ratios.p99),
                judged(true, "≤ 1", s.ratios.p99.map(|r| r <= 1.0)),
                latency(direct, |s| s.p99),
            ]);
            let failed = |o: &Outcome| o.errors + o.unfinished;
            if failed(&s.edge) + failed(&s.nginx) + direct.map_or(0, failed) > 0 {
                table.row(vec![
                    String::new(),
                    "errors".into(),
                    failed(&s.edge).to_string(),
                    failed(&s.nginx).to_string(),
                    String::new(),
                    String::new(),
                    direct.map(|d| failed(d).to_string()).unwrap_or_default(),
                ]);
            }
        }
        table.print();
    }
}

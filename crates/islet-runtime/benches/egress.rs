//! `cargo bench -p islet-runtime --bench egress` (root): what a tenant's egress rules cost
//! when one of its sandboxes starts or stops, side by side with the least the kernel could be
//! asked to do for it.
//!
//! - Islet: `Runtime::rebind_egress` of one restricted sandbox, i.e. one `iptables-restore`
//!   transaction rewriting the jump chain (the tenant chains stay untouched), with the host
//!   already holding T restricted tenants of D denied networks each and S restricted sandboxes.
//! - Baseline: one bare `iptables -A` of the sandbox's single jump rule (and its `-D`), the
//!   rule-by-rule alternative, which cannot be made atomic with the rest.
//!
//! Nothing runs in the sandboxes: the rules are about host links that need not exist. The
//! runtime uses its own chain prefix and subnet, and the bench removes its chains at the end.

use std::time::Instant;

use islet_runtime::{Config, Runtime};
use islet_types::egress::EgressPolicy;

const PREFIX: &str = "ibe";

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn policy(denies: usize) -> EgressPolicy {
    EgressPolicy {
        deny: (0..denies)
            .map(|i| format!("198.{}.{}.0/24", 18 + i / 256, i % 256).parse().expect("net"))
            .collect(),
        max_connections_per_sandbox: Some(64),
    }
}

fn iptables(args: &[&str]) {
    let ok = std::process::Command::new("iptables")
        .arg("-w")
        .args(args)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "iptables {}", args.join(" "));
}

/// Take out every chain and hook the runtime installed under this bench's prefix.
fn remove_our_firewall() {
    let own = format!("{}-", PREFIX.to_uppercase());
    for table in ["filter", "nat"] {
        let out = std::process::Command::new("iptables")
            .args(["-w", "-t", table, "-S"])
            .output()
            .expect("iptables -S");
        let listing = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut chains = Vec::new();
        for line in listing.lines() {
            if let Some(chain) = line.strip_prefix("-N ").filter(|c| c.starts_with(&own)) {
                chains.push(chain.to_owned());
            } else if let Some(rule) = line.strip_prefix("-A ") {
                // A hook from a built-in chain into ours.
                if !rule.starts_with(&own) && rule.contains(&format!("-j {own}")) {
                    let mut args = vec!["-w", "-t", table, "-D"];
                    args.extend(rule.split_whitespace());
                    let _ = std::process::Command::new("iptables").args(&args).status();
                }
            }
        }
        for chain in &chains {
            let _ = std::process::Command::new("iptables")
                .args(["-w", "-t", table, "-F", chain])
                .status();
        }
        for chain in &chains {
            let _ = std::process::Command::new("iptables")
                .args(["-w", "-t", table, "-X", chain])
                .status();
        }
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runs = if quick { 10 } else { 40 };
    let dir = std::env::temp_dir().join(format!("islet-bench-egress-{}", std::process::id()));
    let mut config = Config::new(dir.join("data"), dir.join("templates"), dir.join("agent"));
    config.layout.run_dir = dir.join("run");
    config.net_prefix = PREFIX.into();
    config.subnet_octet = 251;
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let runtime = rt.block_on(Runtime::start(config)).expect("runtime (run as root)");
    // The baseline's own chain, so it never touches what the runtime owns.
    let bare = format!("{}-BARE", PREFIX.to_uppercase());
    let _ = std::process::Command::new("iptables").args(["-w", "-N", &bare]).status();

    println!("| tenants × denied networks, restricted sandboxes (rules) | islet p50 / p99 ms | bare iptables -A + -D p50 / p99 ms | ratio (p50) |");
    println!("|---|---|---|---|");
    let mut report = Vec::new();
    for (tenants, denies, sandboxes) in [(1, 1, 1), (1, 64, 50), (10, 16, 200), (50, 64, 500)] {
        let groups: Vec<(String, EgressPolicy)> =
            (0..tenants).map(|t| (format!("ten_{t}"), policy(denies))).collect();
        let slots: Vec<(u32, String)> =
            (0..sandboxes as u32).map(|s| (s, format!("ten_{}", s as usize % tenants))).collect();
        rt.block_on(runtime.load_egress(groups, slots)).expect("load");
        let rules = tenants * (2 + 2 * denies) + sandboxes;
        let extra = sandboxes as u32 + 1;
        let (mut ours, mut base) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            // A sandbox of tenant 0 starts (bound) and stops (released: as teardown does).
            let t = Instant::now();
            rt.block_on(runtime.rebind_egress(extra, "ten_0")).expect("bind");
            ours.push(t.elapsed().as_secs_f64() * 1000.0);
            let link = runtime.link_name(extra);
            let t = Instant::now();
            iptables(&["-A", &bare, "-i", &link, "-j", "RETURN"]);
            iptables(&["-D", &bare, "-i", &link, "-j", "RETURN"]);
            base.push(t.elapsed().as_secs_f64() * 1000.0);
            rt.block_on(runtime.rebind_egress(extra, "nobody")).expect("unbind");
        }
        ours.sort_by(f64::total_cmp);
        base.sort_by(f64::total_cmp);
        println!(
            "| {tenants} × {denies}, {sandboxes} ({rules}) | {:.1} / {:.1} | {:.1} / {:.1} | {:.2} |",
            pct(&ours, 0.5),
            pct(&ours, 0.99),
            pct(&base, 0.5),
            pct(&base, 0.99),
            pct(&ours, 0.5) / pct(&base, 0.5)
        );
        report.push(serde_json::json!({
            "tenants": tenants, "denies": denies, "sandboxes": sandboxes, "rules": rules,
            "islet_p50_ms": pct(&ours, 0.5), "islet_p99_ms": pct(&ours, 0.99),
            "bare_p50_ms": pct(&base, 0.5), "bare_p99_ms": pct(&base, 0.99),
        }));
    }
    rt.block_on(runtime.load_egress(Vec::new(), Vec::new())).expect("clear");
    let _ = std::process::Command::new("iptables").args(["-w", "-X", &bare]).status();
    drop(runtime);
    remove_our_firewall();
    let _ = std::fs::remove_dir_all(&dir);
    let out =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-egress.json");
    let _ = std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap_or_default());
}

//! `cargo bench -p islet-store --bench usage [-- --quick]`: the usage rollup at 1 M and 10 M
//! hourly records, and sandbox admission with per-user quota checks on and off.
//!
//! - **Rollup**: N rows in `usage_hourly` (10,000 end users × 5 sandboxes, hours spread back
//!   from now), then 200 per-user 30-day queries through `Store::usage_rollup`, side by side
//!   with the same SQL run on a bare SQLite connection (the baseline), and one tenant-wide
//!   30-day rollup. Target: a per-user month ≤ 50 ms at 10 M records.
//! - **Admission**: `Store::begin_create` 2,000 times for one end user with a policy whose
//!   limits are never reached (every check runs), against 2,000 creates with no end user (no
//!   check). Each is one durable transaction, as in the server.
//!
//! Prints a table and writes `target/bench/usage.json`. Timing is reported, never asserted.

use std::time::Instant;

use islet_store::{GroupBy, Store, Subject, UsageQuery};
use islet_types::sandbox::Isolation;
use islet_types::time::now_millis;
use islet_types::{CreateSandbox, Resources, TenantId};
use rand::Rng;
use rusqlite::params;

const USERS: usize = 10_000;
const PER_USER: usize = 5;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Fill `usage_hourly` with `n` rows for `tenant`.
fn fill(path: &std::path::Path, tenant: &TenantId, n: usize) {
    let mut conn = rusqlite::Connection::open(path).expect("open");
    conn.pragma_update(None, "synchronous", "OFF").expect("pragma");
    let sandboxes = USERS * PER_USER;
    let hours = n.div_ceil(sandboxes);
    let now = now_millis();
    let top = now - now.rem_euclid(HOUR_MS);
    let tx = conn.transaction().expect("tx");
    {
        let mut stmt = tx
            .prepare(
                "INSERT INTO usage_hourly (sandbox_id, hour, tenant_id, external_user_id,
                    external_project_id, external_workspace_id, sandbox_seconds, vcpu_seconds,
                    cpu_seconds, memory_gib_seconds, storage_gib_hours)
                 VALUES (?1, ?2, ?3, ?4, ?5, NULL, 3600.0, 3600.0, 900.5, 1800.25, 0.5)",
            )
            .expect("prepare");
        let mut written = 0;
        'out: for h in 0..hours {
            // Each sandbox's hours step back from now, a few hours apart, over ~90 days.
            for s in 0..sandboxes {
                if written == n {
                    break 'out;
                }
                let user = s / PER_USER;
                let hour = top - (h as i64 * 3 + (s % 3) as i64) * HOUR_MS;
                stmt.execute(params![
                    format!("sbx_{s:020}"),
                    hour,
                    tenant.as_str(),
                    format!("user_{user}"),
                    format!("proj_{}", user % 100),
                ])
                .expect("insert");
                written += 1;
            }
        }
    }
    // The daily rows the meter keeps beside the hourly ones, as if it had written both.
    tx.execute("DELETE FROM usage_daily", []).expect("clear daily");
    tx.execute(
        "INSERT INTO usage_daily
         SELECT tenant_id, hour - hour % 86400000, COALESCE(external_user_id, ''),
                COALESCE(external_project_id, ''), COALESCE(external_workspace_id, ''),
                SUM(sandbox_seconds), SUM(vcpu_seconds), SUM(cpu_seconds),
                SUM(memory_gib_seconds), SUM(storage_gib_hours), SUM(network_ingress_bytes),
                SUM(network_egress_bytes)
         FROM usage_hourly GROUP BY 1, 2, 3, 4, 5",
        [],
    )
    .expect("daily rows");
    tx.commit().expect("commit");
}

fn rollup(
    store: &Store,
    tenant: &TenantId,
    n: usize,
    path: &std::path::Path,
    rt: &tokio::runtime::Runtime,
) -> serde_json::Value {
    fill(path, tenant, n);
    let bare = rusqlite::Connection::open(path).expect("open");
    let now = now_millis();
    let mut rng = rand::thread_rng();
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        let user = format!("user_{}", rng.gen_range(0..USERS));
        let q = UsageQuery {
            start: now - 30 * DAY_MS,
            end: now,
            group_by: GroupBy::ExternalUser,
            external_user_id: Some(user.clone()),
            bucket_ms: None,
        };
        let t = Instant::now();
        let rows = rt.block_on(store.usage_rollup(tenant, q)).expect("rollup");
        ours.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(rows.len(), 1, "one group for {user}");
        let t = Instant::now();
        let _: f64 = bare
            .query_row(
                "SELECT SUM(sandbox_seconds) FROM usage_hourly
                 WHERE tenant_id = ?1 AND external_user_id = ?2 AND hour >= ?3 AND hour < ?4",
                params![tenant.as_str(), user, now - 30 * DAY_MS, now],
                |r| r.get(0),
            )
            .expect("bare");
        base.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ours.sort_by(f64::total_cmp);
    base.sort_by(f64::total_cmp);
    let t = Instant::now();
    let all = rt
        .block_on(store.usage_rollup(
            tenant,
            UsageQuery {
                start: now - 30 * DAY_MS,
                end: now,
                group_by: GroupBy::ExternalUser,
                external_user_id: None,
                bucket_ms: None,
            },
        ))
        .expect("tenant rollup");
    let tenant_ms = t.elapsed().as_secs_f64() * 1000.0;
    println!(
        "| rollup, {n} records: one user's 30 days, p50 / p99 ms | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} | <= 50 ms |",
        pct(&ours, 0.5),
        pct(&ours, 0.99),
        pct(&base, 0.5),
        pct(&base, 0.99),
        pct(&ours, 0.99) / pct(&base, 0.99)
    );
    println!(
        "| rollup, {n} records: the whole tenant's 30 days ({} users), ms | {tenant_ms:.0} | | | |",
        all.len()
    );
    serde_json::json!({
        "records": n, "user_p50_ms": pct(&ours, 0.5), "user_p99_ms": pct(&ours, 0.99),
        "bare_p50_ms": pct(&base, 0.5), "bare_p99_ms": pct(&base, 0.99), "tenant_ms": tenant_ms,
    })
}

fn request(user: Option<&str>) -> CreateSandbox {
    CreateSandbox {
        template_id: "miosa-sandbox".into(),
        name: None,
        external_user_id: user.map(str::to_owned),
        external_workspace_id: None,
        external_project_id: None,
        metadata: Default::default(),
        tags: Vec::new(),
        env: Default::default(),
        resources: Resources::resolve(None, None, None, None).expect("default size"),
        timeout_sec: 300,
        idle_timeout_sec: None,
        isolation: None,
        slug: None,
        always_on: false,
    }
}

fn admission(rt: &tokio::runtime::Runtime, n: usize) -> serde_json::Value {
    // Each variant on a store of its own, so none runs on a file the one before it grew.
    let rate = |users: Option<usize>| {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("islet.db")).expect("store");
        let tenant =
            rt.block_on(store.create_tenant("bench".into(), None)).expect("tenant").tenant_id;
        let policy = serde_json::json!({"quotas": {"max_sandboxes": 1_000_000_000u64, "max_concurrent": 1_000_000_000u64,
            "max_cpu": 1_000_000_000u64, "max_memory_mb": 1_000_000_000u64, "max_storage_gb": 1_000_000_000u64}});
        // The tenant's default applies to every user, so each create runs every check.
        rt.block_on(store.set_policy(&tenant, Subject::Tenant, policy.as_object().cloned()))
            .expect("policy");
        let t = Instant::now();
        for i in 0..n {
            let user = users.map(|u| format!("user_{}", i % u));
            rt.block_on(store.begin_create(
                &tenant,
                None,
                request(user.as_deref()),
                Isolation::Container,
                None,
            ))
            .expect("admit");
        }
        n as f64 / t.elapsed().as_secs_f64()
    };
    let off = rate(None);
    let spread = rate(Some(n / 10));
    let one = rate(Some(1));
    println!(
        "| admission, {n} creates (durable commits): creates/s, quota checks on, users holding <= 10 | {spread:.0} | {off:.0} (checks off) | {:.2} | |",
        spread / off
    );
    println!(
        "| admission, {n} creates: creates/s, quota checks on, one user holding up to {n} | {one:.0} | {off:.0} (checks off) | {:.2} | |",
        one / off
    );
    serde_json::json!({ "creates": n, "spread_per_sec": spread, "one_user_per_sec": one,
        "off_per_sec": off, "ratio": spread / off })
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("| measure | islet | baseline | ratio | target |");
    println!("|---|---|---|---|---|");
    let mut report = serde_json::json!({ "rollup": [] });
    let sizes: &[usize] = if quick { &[100_000, 1_000_000] } else { &[1_000_000, 10_000_000] };
    for &n in sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("islet.db");
        let store = Store::open(&path).expect("store");
        let tenant =
            rt.block_on(store.create_tenant("bench".into(), None)).expect("tenant").tenant_id;
        let result = rollup(&store, &tenant, n, &path, &rt);
        if let Some(list) = report["rollup"].as_array_mut() {
            list.push(result);
        }
    }
    report["admission"] = admission(&rt, if quick { 500 } else { 2_000 });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(
        dir.join("usage.json"),
        serde_json::to_vec_pretty(&report).unwrap_or_default(),
    );
}

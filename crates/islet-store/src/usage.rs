//! Metering: cgroup samples turned into usage per sandbox and hour, and the rollups billing
//! reads (by end user, project or workspace, over a period, in hourly or daily buckets).
//!
//! `usage_meters` holds, per sandbox, the CPU and network counters already accounted for, since when its
//! running time is accounted (`run_at`, null while it does not run) and its storage
//! (`storage_at`). Lifecycle transitions move these marks in their own transactions; a sample
//! adds the deltas since the marks to the hour's row and moves the marks, in one transaction.

use islet_types::time::UnixMillis;
use islet_types::{SandboxId, SandboxState, TenantId};
use rusqlite::{params, OptionalExtension, Transaction};

use crate::sandbox_rows::{get_tx, SandboxRecord};
use crate::{Store, StoreError};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// One reading of a sandbox's cgroup (`None` when it has no live cgroup: stopped).
#[derive(Debug, Clone)]
pub struct UsageSample {
    pub sandbox_id: SandboxId,
    pub at: UnixMillis,
    /// Cumulative CPU time of the sandbox's cgroup, microseconds.
    pub cpu_usec: Option<u64>,
    /// Memory in use now, bytes.
    pub memory_bytes: u64,
    /// Cumulative bytes received and sent through the sandbox's link (`None`: no link).
    pub network: Option<(u64, u64)>,
}

/// Usage totals.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UsageTotals {
    pub sandbox_seconds: f64,
    pub vcpu_seconds: f64,
    pub cpu_seconds: f64,
    pub memory_gib_seconds: f64,
    pub storage_gib_hours: f64,
    pub network_ingress_bytes: f64,
    pub network_egress_bytes: f64,
}

impl UsageTotals {
    /// Add `k` × `other`, measure by measure.
    pub fn add_scaled(&mut self, other: &UsageTotals, k: f64) {
        self.sandbox_seconds += other.sandbox_seconds * k;
        self.vcpu_seconds += other.vcpu_seconds * k;
        self.cpu_seconds += other.cpu_seconds * k;
        self.memory_gib_seconds += other.memory_gib_seconds * k;
        self.storage_gib_hours += other.storage_gib_hours * k;
        self.network_ingress_bytes += other.network_ingress_bytes * k;
        self.network_egress_bytes += other.network_egress_bytes * k;
    }
}

/// What rollups group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    ExternalUser,
    ExternalProject,
    Workspace,
}

impl GroupBy {
    fn column(self) -> &'static str {
        match self {
            GroupBy::ExternalUser => "external_user_id",
            GroupBy::ExternalProject => "external_project_id",
            GroupBy::Workspace => "external_workspace_id",
        }
    }
}

/// A rollup query.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    pub start: UnixMillis,
    pub end: UnixMillis,
    pub group_by: GroupBy,
    /// Only this end user.
    pub external_user_id: Option<String>,
    /// Bucket width (`HOUR_MS`, a day) or none.
    pub bucket_ms: Option<i64>,
}

/// One row of a rollup: the group's value, the bucket start when bucketed, the totals.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    pub group: Option<String>,
    pub bucket: Option<UnixMillis>,
    pub totals: UsageTotals,
}

/// Mark a sandbox as running from `now` (start, resume, pool hand-over). `fresh_cgroup`: its
/// CPU and network counters start again from zero (a new cgroup and a new link).
pub(crate) fn mark_running(
    tx: &Transaction<'_>,
    record: &SandboxRecord,
    now: UnixMillis,
    fresh_cgroup: bool,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO usage_meters (sandbox_id, cpu_usec, run_at, storage_at, net_in, net_out)
         VALUES (?1, 0, ?2, ?3, CASE WHEN ?4 THEN 0 END, CASE WHEN ?4 THEN 0 END)
         ON CONFLICT(sandbox_id) DO UPDATE SET run_at = ?2,
            cpu_usec = CASE WHEN ?4 THEN 0 ELSE cpu_usec END,
            net_in = CASE WHEN ?4 THEN 0 ELSE net_in END,
            net_out = CASE WHEN ?4 THEN 0 ELSE net_out END",
        params![record.id.as_str(), now, record.created_at, fresh_cgroup],
    )?;
    Ok(())
}

/// Running time stops accruing (pause, stop, failure); storage goes on until destroyed.
pub(crate) fn mark_not_running(tx: &Transaction<'_>, id: &str) -> Result<(), StoreError> {
    tx.execute("UPDATE usage_meters SET run_at = NULL WHERE sandbox_id = ?1", [id])?;
    Ok(())
}

pub(crate) fn forget_meter(tx: &Transaction<'_>, id: &str) -> Result<(), StoreError> {
    tx.execute("DELETE FROM usage_meters WHERE sandbox_id = ?1", [id])?;
    Ok(())
}

/// The hours `[from, to)` covers, each with the share of the interval that fell in it; an
/// empty interval is all in `to`'s hour.
fn spread(from: UnixMillis, to: UnixMillis) -> Vec<(UnixMillis, f64)> {
    let hour_of = |t: UnixMillis| t - t.rem_euclid(HOUR_MS);
    if to <= from {
        return vec![(hour_of(to), 1.0)];
    }
    let total = (to - from) as f64;
    let mut out = Vec::new();
    let mut start = from;
    while start < to {
        let end = (hour_of(start) + HOUR_MS).min(to);
        out.push((hour_of(start), (end - start) as f64 / total));
        start = end;
    }
    out
}

/// The measures an upsert adds to the row it meets (hourly and daily rows alike).
macro_rules! add_measures {
    () => {
        "
            sandbox_seconds = sandbox_seconds + excluded.sandbox_seconds,
            vcpu_seconds = vcpu_seconds + excluded.vcpu_seconds,
            cpu_seconds = cpu_seconds + excluded.cpu_seconds,
            memory_gib_seconds = memory_gib_seconds + excluded.memory_gib_seconds,
            storage_gib_hours = storage_gib_hours + excluded.storage_gib_hours,
            network_ingress_bytes = network_ingress_bytes + excluded.network_ingress_bytes,
            network_egress_bytes = network_egress_bytes + excluded.network_egress_bytes"
    };
}

fn add(
    tx: &Transaction<'_>,
    record: &SandboxRecord,
    hour: UnixMillis,
    t: &UsageTotals,
) -> Result<(), StoreError> {
    tx.prepare_cached(concat!(
        "INSERT INTO usage_hourly (sandbox_id, hour, tenant_id, external_user_id,
            external_project_id, external_workspace_id, sandbox_seconds, vcpu_seconds,
            cpu_seconds, memory_gib_seconds, storage_gib_hours, network_ingress_bytes,
            network_egress_bytes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT(sandbox_id, hour) DO UPDATE SET
            tenant_id = excluded.tenant_id,
            external_user_id = excluded.external_user_id,
            external_project_id = excluded.external_project_id,
            external_workspace_id = excluded.external_workspace_id,",
        add_measures!()
    ))?
    .execute(params![
        record.id.as_str(),
        hour,
        record.tenant_id.as_str(),
        record.external_user_id,
        record.external_project_id,
        record.external_workspace_id,
        t.sandbox_seconds,
        t.vcpu_seconds,
        t.cpu_seconds,
        t.memory_gib_seconds,
        t.storage_gib_hours,
        t.network_ingress_bytes,
        t.network_egress_bytes,
    ])?;
    tx.prepare_cached(concat!(
        "INSERT INTO usage_daily (tenant_id, day, external_user_id, external_project_id,
            external_workspace_id, sandbox_seconds, vcpu_seconds, cpu_seconds,
            memory_gib_seconds, storage_gib_hours, network_ingress_bytes, network_egress_bytes)
         VALUES (?1, ?2, COALESCE(?3, ''), COALESCE(?4, ''), COALESCE(?5, ''), ?6, ?7, ?8, ?9,
            ?10, ?11, ?12)
         ON CONFLICT(tenant_id, day, external_user_id, external_project_id, external_workspace_id)
         DO UPDATE SET",
        add_measures!()
    ))?
    .execute(params![
        record.tenant_id.as_str(),
        hour - hour.rem_euclid(DAY_MS),
        record.external_user_id,
        record.external_project_id,
        record.external_workspace_id,
        t.sandbox_seconds,
        t.vcpu_seconds,
        t.cpu_seconds,
        t.memory_gib_seconds,
        t.storage_gib_hours,
        t.network_ingress_bytes,
        t.network_egress_bytes,
    ])?;
    Ok(())
}

/// How `[start, end)` (start on an hour) is read: the whole UTC days inside it from the daily
/// rows, the partial days at either edge from the hourly rows. `(head_end, tail_start)`: the
/// daily part is `[head_end, tail_start)`, empty when no whole day fits (or `hourly_only`).
fn split(start: UnixMillis, end: UnixMillis, hourly_only: bool) -> (UnixMillis, UnixMillis) {
    let first_day = start + (DAY_MS - start.rem_euclid(DAY_MS)) % DAY_MS;
    let last_day = end - end.rem_euclid(DAY_MS);
    if hourly_only || first_day >= last_day {
        (end, end)
    } else {
        (first_day, last_day)
    }
}

/// The measures, as summed, for a UNION of hourly and daily rows.
const MEASURES: &str = "sandbox_seconds, vcpu_seconds, cpu_seconds, memory_gib_seconds,
    storage_gib_hours, network_ingress_bytes, network_egress_bytes";

/// Account one sample: the deltas since the sandbox's marks, then the marks move to it.
fn account(tx: &Transaction<'_>, s: &UsageSample) -> Result<(), StoreError> {
    let Some(record) = get_tx(tx, &s.sandbox_id)? else {
        return Ok(());
    };
    if record.state == SandboxState::Destroyed {
        return Ok(());
    }
    type Meter = (i64, Option<i64>, i64, Option<i64>, Option<i64>);
    let meter: Option<Meter> = tx
        .prepare_cached(
            "SELECT cpu_usec, run_at, storage_at, net_in, net_out FROM usage_meters
             WHERE sandbox_id = ?1",
        )?
        .query_row([record.id.as_str()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()?;
    // A sandbox with no meter (it predates metering) is metered from now on.
    let running = matches!(record.state, SandboxState::Running | SandboxState::Paused);
    let (cpu_mark, run_at, storage_at, net_in_mark, net_out_mark) = meter.unwrap_or((
        s.cpu_usec.unwrap_or(0) as i64,
        running.then_some(s.at),
        s.at,
        None,
        None,
    ));
    // A sample read before something already accounted (a stop's or a resume's, or a claim)
    // but committed after it says nothing new: its counters may be older than the marks.
    if s.at < storage_at || run_at.is_some_and(|r| s.at < r) {
        return Ok(());
    }
    // A counter below its mark belongs to a new cgroup or link: all of it is new.
    let since = |now: i64, mark: i64| if now >= mark { now - mark } else { now };
    let mut t = UsageTotals::default();
    let mut cpu_now = cpu_mark;
    let (mut net_in, mut net_out) = (net_in_mark, net_out_mark);
    if let Some(run_at) = run_at {
        // Running time counts even when the cgroup could not be read; CPU waits for a reading.
        let seconds = (s.at - run_at).max(0) as f64 / 1000.0;
        t.sandbox_seconds = seconds;
        t.vcpu_seconds = seconds * f64::from(record.resources.cpu_count);
        t.memory_gib_seconds = s.memory_bytes as f64 / GIB * seconds;
        if let Some(cpu) = s.cpu_usec {
            let cpu = cpu as i64;
            t.cpu_seconds = since(cpu, cpu_mark) as f64 / 1_000_000.0;
            cpu_now = cpu;
        }
        if let Some((inbound, outbound)) = s.network {
            let (inbound, outbound) = (inbound as i64, outbound as i64);
            // Marks not known yet (a link older than its meter): this reading becomes them.
            t.network_ingress_bytes = net_in_mark.map_or(0, |m| since(inbound, m)) as f64;
            t.network_egress_bytes = net_out_mark.map_or(0, |m| since(outbound, m)) as f64;
            (net_in, net_out) = (Some(inbound), Some(outbound));
        }
    }
    // Storage accrues over its own interval (it runs on while a sandbox is stopped).
    let storage_hours = (s.at - storage_at).max(0) as f64 / HOUR_MS as f64;
    let storage = UsageTotals {
        storage_gib_hours: f64::from(record.resources.disk_mb) / 1024.0 * storage_hours,
        ..UsageTotals::default()
    };
    // Each part goes to the hours its interval covered, in proportion (after a long gap, such
    // as control-plane downtime, the usage lands in the hours it happened, not all in one).
    let mut hours: Vec<(UnixMillis, UsageTotals)> = Vec::new();
    let mut put = |hour: UnixMillis, part: &UsageTotals, share: f64| match hours
        .iter_mut()
        .find(|(h, _)| *h == hour)
    {
        Some((_, totals)) => totals.add_scaled(part, share),
        None => {
            let mut totals = UsageTotals::default();
            totals.add_scaled(part, share);
            hours.push((hour, totals));
        }
    };
    if let Some(run_at) = run_at {
        for (hour, share) in spread(run_at, s.at) {
            put(hour, &t, share);
        }
    }
    for (hour, share) in spread(storage_at, s.at) {
        put(hour, &storage, share);
    }
    for (hour, totals) in &hours {
        add(tx, &record, *hour, totals)?;
    }
    tx.prepare_cached(
        "INSERT INTO usage_meters (sandbox_id, cpu_usec, run_at, storage_at, net_in, net_out)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(sandbox_id) DO UPDATE SET cpu_usec = ?2, run_at = ?3, storage_at = ?4,
            net_in = ?5, net_out = ?6",
    )?
    .execute(params![
        record.id.as_str(),
        cpu_now,
        run_at.map(|_| s.at),
        s.at,
        net_in,
        net_out
    ])?;
    Ok(())
}

fn totals_of(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<UsageTotals> {
    Ok(UsageTotals {
        sandbox_seconds: r.get(first)?,
        vcpu_seconds: r.get(first + 1)?,
        cpu_seconds: r.get(first + 2)?,
        memory_gib_seconds: r.get(first + 3)?,
        storage_gib_hours: r.get(first + 4)?,
        network_ingress_bytes: r.get(first + 5)?,
        network_egress_bytes: r.get(first + 6)?,
    })
}

const SUMS: &str = "COALESCE(SUM(sandbox_seconds), 0.0), COALESCE(SUM(vcpu_seconds), 0.0),
    COALESCE(SUM(cpu_seconds), 0.0), COALESCE(SUM(memory_gib_seconds), 0.0),
    COALESCE(SUM(storage_gib_hours), 0.0), COALESCE(SUM(network_ingress_bytes), 0.0),
    COALESCE(SUM(network_egress_bytes), 0.0)";

/// One sandbox's usage over a period (`GET /usage/sessions`).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub sandbox_id: String,
    pub external_user_id: Option<String>,
    pub external_project_id: Option<String>,
    pub first_hour: UnixMillis,
    pub last_hour: UnixMillis,
    pub totals: UsageTotals,
}

/// What one end user has used since `since` (whole days from the daily rows).
pub(crate) fn user_totals_tx(
    conn: &rusqlite::Connection,
    tenant: &str,
    user: &str,
    since: UnixMillis,
) -> Result<UsageTotals, StoreError> {
    let start = since - since.rem_euclid(HOUR_MS);
    let end = UnixMillis::MAX - DAY_MS;
    let (head_end, tail_start) = split(start, end, false);
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SUMS} FROM (
                SELECT {MEASURES} FROM usage_hourly INDEXED BY usage_user_hour
                 WHERE tenant_id = ?1 AND external_user_id = ?2 AND hour >= ?3 AND hour < ?4
                UNION ALL
                SELECT {MEASURES} FROM usage_daily INDEXED BY usage_daily_user
                 WHERE tenant_id = ?1 AND external_user_id = ?2 AND day >= ?4 AND day < ?5
                UNION ALL
                SELECT {MEASURES} FROM usage_hourly INDEXED BY usage_user_hour
                 WHERE tenant_id = ?1 AND external_user_id = ?2 AND hour >= ?5)"
        ))?
        .query_row(params![tenant, user, start, head_end, tail_start], |r| totals_of(r, 0))?)
}

impl Store {
    /// Per-sandbox usage over `[start, end)`, most running time first.
    pub async fn usage_sessions(
        &self,
        tenant_id: &TenantId,
        start: UnixMillis,
        end: UnixMillis,
        external_user_id: Option<String>,
        limit: u32,
    ) -> Result<Vec<SessionRow>, StoreError> {
        let tenant = tenant_id.to_string();
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT sandbox_id, MAX(external_user_id), MAX(external_project_id), MIN(hour),
                        MAX(hour), {SUMS}
                 FROM usage_hourly
                 WHERE tenant_id = ?1 AND hour >= ?2 AND hour < ?3
                   AND (?4 IS NULL OR external_user_id = ?4)
                 GROUP BY sandbox_id ORDER BY SUM(sandbox_seconds) DESC LIMIT ?5"
            ))?;
            let rows = stmt
                .query_map(
                    params![
                        tenant,
                        start - start.rem_euclid(HOUR_MS),
                        end,
                        external_user_id,
                        limit
                    ],
                    |r| {
                        Ok(SessionRow {
                            sandbox_id: r.get(0)?,
                            external_user_id: r.get(1)?,
                            external_project_id: r.get(2)?,
                            first_hour: r.get(3)?,
                            last_hour: r.get(4)?,
                            totals: totals_of(r, 5)?,
                        })
                    },
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Account samples, each in the same transaction as the marks it moves.
    pub async fn record_usage(&self, samples: Vec<UsageSample>) -> Result<(), StoreError> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            for s in &samples {
                account(&tx, s)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// A sandbox's totals so far.
    pub async fn sandbox_usage(
        &self,
        tenant_id: &TenantId,
        id: &SandboxId,
    ) -> Result<(SandboxRecord, UsageTotals), StoreError> {
        let (tenant, id) = (tenant_id.clone(), id.clone());
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let record = get_tx(&tx, &id)?
                .filter(|r| r.tenant_id == tenant)
                .ok_or(StoreError::NotFound("sandbox"))?;
            let totals = tx.query_row(
                &format!("SELECT {SUMS} FROM usage_hourly WHERE sandbox_id = ?1"),
                [id.as_str()],
                |r| totals_of(r, 0),
            )?;
            tx.commit()?;
            Ok((record, totals))
        })
        .await
    }

    /// Roll usage up by group (and bucket) over `[start, end)`.
    pub async fn usage_rollup(
        &self,
        tenant_id: &TenantId,
        q: UsageQuery,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let tenant = tenant_id.to_string();
        self.with(move |conn| {
            let col = q.group_by.column();
            let bucket = |x: &str| match q.bucket_ms {
                Some(ms) => format!("({x} - ({x} % {ms}))"),
                None => "NULL".to_owned(),
            };
            let (hb, db) = (bucket("hour"), bucket("day"));
            // One user's rows are found through the user indexes (the planner, left alone,
            // may walk the tenant's whole period by time instead).
            let (user_filter, hourly, daily) = if q.external_user_id.is_some() {
                (
                    "AND external_user_id = ?4",
                    "usage_hourly INDEXED BY usage_user_hour",
                    "usage_daily INDEXED BY usage_daily_user",
                )
            } else {
                ("AND ?4 IS NULL", "usage_hourly", "usage_daily")
            };
            // Whole days come from the daily rows, unless hourly buckets are asked for.
            let hourly_only = q.bucket_ms.is_some_and(|ms| ms < DAY_MS);
            let sql = format!(
                "SELECT g, b, {SUMS} FROM (
                    SELECT {col} AS g, {hb} AS b, {MEASURES} FROM {hourly}
                     WHERE tenant_id = ?1 AND hour >= ?2 AND hour < ?5 {user_filter}
                    UNION ALL
                    SELECT NULLIF({col}, '') AS g, {db} AS b, {MEASURES} FROM {daily}
                     WHERE tenant_id = ?1 AND day >= ?5 AND day < ?6 {user_filter}
                    UNION ALL
                    SELECT {col} AS g, {hb} AS b, {MEASURES} FROM {hourly}
                     WHERE tenant_id = ?1 AND hour >= ?6 AND hour < ?3 {user_filter})
                 GROUP BY g, b ORDER BY b, g"
            );
            let start = q.start - q.start.rem_euclid(HOUR_MS);
            let (head_end, tail_start) = split(start, q.end, hourly_only);
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt
                .query_map(
                    params![tenant, start, q.end, q.external_user_id, head_end, tail_start],
                    |r| {
                        Ok(UsageRow {
                            group: r.get(0)?,
                            bucket: r.get(1)?,
                            totals: totals_of(r, 2)?,
                        })
                    },
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_read_whole_days_from_the_daily_rows() {
        let d = 20_000 * DAY_MS;
        // Mid-day to mid-day three days later: two whole days inside.
        assert_eq!(
            split(d + 5 * HOUR_MS, d + 3 * DAY_MS + HOUR_MS, false),
            (d + DAY_MS, d + 3 * DAY_MS)
        );
        // Day-aligned on both ends: all of it.
        assert_eq!(split(d, d + 2 * DAY_MS, false), (d, d + 2 * DAY_MS));
        // Less than a whole day, or hourly buckets: hourly rows only.
        assert_eq!(
            split(d + HOUR_MS, d + DAY_MS + HOUR_MS, false),
            (d + DAY_MS + HOUR_MS, d + DAY_MS + HOUR_MS)
        );
        assert_eq!(split(d, d + 2 * DAY_MS, true), (d + 2 * DAY_MS, d + 2 * DAY_MS));
    }

    #[test]
    fn an_interval_is_shared_among_the_hours_it_covers() {
        let h = 1_000 * HOUR_MS;
        assert_eq!(spread(h + 10, h + 20), vec![(h, 1.0)]);
        assert_eq!(spread(h + 20, h + 20), vec![(h, 1.0)]);
        let parts = spread(h + HOUR_MS / 2, h + 3 * HOUR_MS);
        let hours: Vec<i64> = parts.iter().map(|(x, _)| *x).collect();
        assert_eq!(hours, vec![h, h + HOUR_MS, h + 2 * HOUR_MS]);
        let shares: Vec<f64> = parts.iter().map(|(_, s)| *s).collect();
        assert_eq!(shares, vec![0.2, 0.4, 0.4]);
        assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // Ending exactly on an hour: nothing goes to the next one.
        assert_eq!(spread(h, h + HOUR_MS), vec![(h, 1.0)]);
    }
}

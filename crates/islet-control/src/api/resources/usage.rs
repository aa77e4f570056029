//! Usage (contract §11): one sandbox's meter, rollups by end user, project or workspace over a
//! period (optionally in hourly or daily buckets), a tenant summary, and a CSV export.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{Datelike, TimeZone, Utc};
use islet_store::{GroupBy, Pricing, UsageQuery, UsageRow, UsageTotals};
use islet_types::time::{now_millis, rfc3339, UnixMillis};
use serde::{Deserialize, Serialize};

use crate::api::extract::Caller;
use crate::api::extract::IdPath;
use crate::api::extract::Query;
use crate::api::wire::{self, Data};
use crate::error::ApiError;
use crate::state::AppState;
use islet_types::SandboxId;

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
/// The longest period one query covers.
const MAX_PERIOD_MS: i64 = 366 * DAY_MS;

pub(crate) async fn sandbox_usage(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<SandboxId>,
) -> Result<Json<Data<SandboxUsage>>, ApiError> {
    // A live sandbox is sampled now, so "what has this session cost so far" is current, not
    // up to one meter interval behind.
    let current = state.store.get_sandbox(&caller.tenant_id, &id).await?;
    if matches!(
        current.state,
        islet_types::SandboxState::Running | islet_types::SandboxState::Paused
    ) {
        crate::metering::sample(&state, &current).await;
    }
    let (record, t) = state.store.sandbox_usage(&caller.tenant_id, &id).await?;
    let pricing = state.store.pricing(&caller.tenant_id).await?;
    let now = now_millis();
    let remaining = record.expires_at.map(|e| (e - now).max(0));
    Ok(wire::data(SandboxUsage {
        sandbox_id: record.id.clone(),
        state: record.state.as_str(),
        external_user_id: record.external_user_id.clone(),
        external_project_id: record.external_project_id.clone(),
        external_workspace_id: record.external_workspace_id.clone(),
        runtime_sec: t.sandbox_seconds,
        sandbox_seconds: t.sandbox_seconds,
        vcpu_seconds: t.vcpu_seconds,
        cpu_seconds: t.cpu_seconds,
        memory_gib_seconds: t.memory_gib_seconds,
        storage_gib_hours: t.storage_gib_hours,
        provisioned_vcpu_ms: (t.vcpu_seconds * 1000.0).round() as u64,
        provisioned_memory_mb_ms: (t.sandbox_seconds
            * 1000.0
            * f64::from(record.resources.memory_mb))
        .round() as u64,
        active_cpu_ms: (t.cpu_seconds * 1000.0).round() as u64,
        creation_count: 1,
        network_ingress_bytes: t.network_ingress_bytes.round() as u64,
        network_egress_bytes: t.network_egress_bytes.round() as u64,
        measurement_status: MeasurementStatus {
            cpu: "measured",
            memory: "sampled",
            runtime: "measured",
            storage: "allocated",
            network: "measured",
        },
        estimated_cost_cents: pricing.cents(&t),
        timeout_sec: record.timeout_sec,
        timeout_remaining_ms: remaining,
    }))
}

/// `GET /sandboxes/{id}/usage`: the sandbox's metered totals so far.
#[derive(Debug, Serialize)]
pub(crate) struct SandboxUsage {
    pub sandbox_id: SandboxId,
    pub state: &'static str,
    pub external_user_id: Option<String>,
    pub external_project_id: Option<String>,
    pub external_workspace_id: Option<String>,
    /// `sandbox_seconds` again, as the SDK names it.
    pub runtime_sec: f64,
    pub sandbox_seconds: f64,
    pub vcpu_seconds: f64,
    pub cpu_seconds: f64,
    pub memory_gib_seconds: f64,
    pub storage_gib_hours: f64,
    pub provisioned_vcpu_ms: u64,
    pub provisioned_memory_mb_ms: u64,
    pub active_cpu_ms: u64,
    pub creation_count: u64,
    pub network_ingress_bytes: u64,
    pub network_egress_bytes: u64,
    /// How each figure is known.
    pub measurement_status: MeasurementStatus,
    pub estimated_cost_cents: f64,
    pub timeout_sec: u64,
    pub timeout_remaining_ms: Option<i64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct MeasurementStatus {
    pub cpu: &'static str,
    pub memory: &'static str,
    pub runtime: &'static str,
    pub storage: &'static str,
    pub network: &'static str,
}

/// A total's fields; `credit_cents` is its price under the tenant's price list, rounded to the
/// cent (`credit_cents_exact` keeps the fraction).
#[derive(Debug, Serialize)]
pub(crate) struct TotalsView {
    pub sandbox_seconds: f64,
    /// Always 0: Islet has no computer-use sandboxes.
    pub computer_seconds: u64,
    pub vcpu_seconds: f64,
    pub cpu_seconds: f64,
    pub memory_gib_seconds: f64,
    pub storage_gib_hours: f64,
    /// `storage_gib_hours` again, as the SDK names it.
    pub storage_gb_hours: f64,
    pub network_ingress_bytes: u64,
    pub network_egress_bytes: u64,
    pub credit_cents: u64,
    pub credit_cents_exact: f64,
}

/// One group's totals (and bucket, when bucketed); the group's value is under the grouping's
/// own name (`external_user_id`, `external_project_id`, …).
#[derive(Debug, Serialize)]
pub(crate) struct RowView {
    #[serde(flatten)]
    pub totals: TotalsView,
    #[serde(flatten)]
    pub group: BTreeMap<&'static str, Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_start: Option<String>,
}

/// `GET /usage`.
#[derive(Debug, Serialize)]
pub(crate) struct UsageAnswer {
    pub period_start: String,
    pub period_end: String,
    pub group_by: &'static str,
    pub results: Vec<RowView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buckets: Option<Vec<RowView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granularity: Option<String>,
}

/// One sandbox's usage over a period (`GET /usage/sessions`).
#[derive(Debug, Serialize)]
pub(crate) struct SessionView {
    #[serde(flatten)]
    pub totals: TotalsView,
    pub sandbox_id: String,
    pub external_user_id: Option<String>,
    pub external_project_id: Option<String>,
    pub first_hour: String,
    pub last_hour: String,
}

/// `GET /usage/summary`.
#[derive(Debug, Serialize)]
pub(crate) struct SummaryView {
    #[serde(flatten)]
    pub totals: TotalsView,
    pub period_start: String,
    pub period_end: String,
    /// End users with any usage in the period.
    pub external_users: usize,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct UsageParams {
    external_user_id: Option<String>,
    group_by: Option<String>,
    period: Option<String>,
    start: Option<String>,
    end: Option<String>,
    period_start: Option<String>,
    period_end: Option<String>,
    granularity: Option<String>,
}

fn parse_time(raw: &str, field: &'static str) -> Result<UnixMillis, ApiError> {
    if let Ok(secs) = raw.parse::<i64>() {
        return Ok(secs.saturating_mul(1000));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).map_or(0, |t| t.and_utc().timestamp_millis()));
    }
    Err(ApiError::validation(
        format!("{field} must be RFC 3339, YYYY-MM-DD or unix seconds"),
        field,
    ))
}

fn month_start(now: UnixMillis) -> UnixMillis {
    let today = Utc.timestamp_millis_opt(now).single().unwrap_or_default();
    Utc.with_ymd_and_hms(today.year(), today.month(), 1, 0, 0, 0)
        .single()
        .map_or(now, |t| t.timestamp_millis())
}

/// `[start, end)` of the query. Default `30d`; `start`/`end` alone mean a custom period.
fn period(p: &UsageParams, default: &str) -> Result<(UnixMillis, UnixMillis), ApiError> {
    let now = now_millis();
    let start = p.start.as_deref().or(p.period_start.as_deref());
    let end = p.end.as_deref().or(p.period_end.as_deref());
    let kind = p.period.as_deref().unwrap_or(if start.is_some() { "custom" } else { default });
    let (s, e) = match kind {
        "7d" => (now - 7 * DAY_MS, now),
        "30d" => (now - 30 * DAY_MS, now),
        "24h" | "1d" => (now - DAY_MS, now),
        "mtd" | "month-to-date" => (month_start(now), now),
        "custom" => {
            let s = start
                .ok_or_else(|| ApiError::validation("a custom period needs start", "start"))?;
            let s = parse_time(s, "start")?;
            let e = match end {
                Some(e) => parse_time(e, "end")?,
                None => now,
            };
            (s, e)
        }
        _ => {
            return Err(ApiError::validation(
                "period must be 7d, 30d, mtd (month-to-date) or custom",
                "period",
            ))
        }
    };
    if e <= s {
        return Err(ApiError::validation("end must be after start", "end"));
    }
    if e - s > MAX_PERIOD_MS {
        return Err(ApiError::validation("a period covers at most 366 days", "start"));
    }
    Ok((s, e))
}

fn group_by(raw: Option<&str>) -> Result<(GroupBy, &'static str), ApiError> {
    match raw.unwrap_or("external_user_id") {
        "external_user_id" => Ok((GroupBy::ExternalUser, "external_user_id")),
        "external_project_id" => Ok((GroupBy::ExternalProject, "external_project_id")),
        "workspace_id" | "external_workspace_id" => Ok((GroupBy::Workspace, "workspace_id")),
        _ => Err(ApiError::validation(
            "group_by must be external_user_id, external_project_id or workspace_id",
            "group_by",
        )),
    }
}

/// The end user a usage query is for: the one asked for, or for a credential bound to one end
/// user, that user (asking for another is 403).
fn whose_usage(
    caller: &islet_store::Principal,
    asked: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let asked = asked.filter(|u| !u.is_empty());
    match (&caller.external_user_id, asked) {
        (Some(bound), Some(asked)) if bound != asked => {
            Err(ApiError::Forbidden(format!("this credential reads `{bound}`'s usage only")))
        }
        (Some(bound), _) => Ok(Some(bound.clone())),
        (None, asked) => Ok(asked.map(str::to_owned)),
    }
}

fn bucket(raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    match raw {
        None | Some("") | Some("none") => Ok(None),
        Some("hour") | Some("hourly") => Ok(Some(HOUR_MS)),
        Some("day") | Some("daily") => Ok(Some(DAY_MS)),
        Some(_) => Err(ApiError::validation("granularity must be hour or day", "granularity")),
    }
}

fn totals_view(t: &UsageTotals, pricing: &Pricing) -> TotalsView {
    let cents = pricing.cents(t);
    TotalsView {
        sandbox_seconds: t.sandbox_seconds,
        computer_seconds: 0,
        vcpu_seconds: t.vcpu_seconds,
        cpu_seconds: t.cpu_seconds,
        memory_gib_seconds: t.memory_gib_seconds,
        storage_gib_hours: t.storage_gib_hours,
        storage_gb_hours: t.storage_gib_hours,
        network_ingress_bytes: t.network_ingress_bytes.round() as u64,
        network_egress_bytes: t.network_egress_bytes.round() as u64,
        credit_cents: cents.round() as u64,
        credit_cents_exact: cents,
    }
}

fn row_view(key: &'static str, row: &UsageRow, pricing: &Pricing) -> RowView {
    RowView {
        totals: totals_view(&row.totals, pricing),
        group: BTreeMap::from([(key, row.group.clone())]),
        bucket_start: row.bucket.map(rfc3339),
    }
}

async fn rollup(
    state: &AppState,
    caller: &islet_store::Principal,
    p: &UsageParams,
    default_period: &str,
) -> Result<(UnixMillis, UnixMillis, &'static str, Vec<UsageRow>, Option<Vec<UsageRow>>), ApiError>
{
    let (start, end) = period(p, default_period)?;
    let (group, key) = group_by(p.group_by.as_deref())?;
    let user = whose_usage(caller, p.external_user_id.as_deref())?;
    let query = UsageQuery { start, end, group_by: group, external_user_id: user, bucket_ms: None };
    let totals = state.store.usage_rollup(&caller.tenant_id, query.clone()).await?;
    let buckets = match bucket(p.granularity.as_deref())? {
        Some(ms) => Some(
            state
                .store
                .usage_rollup(&caller.tenant_id, UsageQuery { bucket_ms: Some(ms), ..query })
                .await?,
        ),
        None => None,
    };
    Ok((start, end, key, totals, buckets))
}

/// `GET /usage`: results per group, the largest first.
pub(crate) async fn usage(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(p): Query<UsageParams>,
) -> Result<Json<Data<UsageAnswer>>, ApiError> {
    let (start, end, key, mut totals, buckets) = rollup(&state, &caller, &p, "30d").await?;
    let pricing = state.store.pricing(&caller.tenant_id).await?;
    // Who costs most first; running time breaks ties (and orders free usage).
    totals.sort_by(|a, b| {
        pricing
            .cents(&b.totals)
            .total_cmp(&pricing.cents(&a.totals))
            .then(b.totals.sandbox_seconds.total_cmp(&a.totals.sandbox_seconds))
    });
    let granularity = buckets.as_ref().and(p.granularity.clone());
    Ok(wire::data(UsageAnswer {
        period_start: rfc3339(start),
        period_end: rfc3339(end),
        group_by: key,
        results: totals.iter().map(|r| row_view(key, r, &pricing)).collect(),
        buckets: buckets.map(|b| b.iter().map(|r| row_view(key, r, &pricing)).collect()),
        granularity,
    }))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct SessionParams {
    #[serde(flatten)]
    usage: UsageParams,
    limit: Option<String>,
}

/// `GET /usage/sessions`: per-sandbox usage over the period, most running time first.
pub(crate) async fn sessions(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(p): Query<SessionParams>,
) -> Result<Json<Data<Vec<SessionView>>>, ApiError> {
    let (start, end) = period(&p.usage, "30d")?;
    let limit = match p.limit.as_deref() {
        None => 100,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| ApiError::validation("limit must be 1..=1000", "limit"))?,
    };
    let user = whose_usage(&caller, p.usage.external_user_id.as_deref())?;
    let rows = state.store.usage_sessions(&caller.tenant_id, start, end, user, limit).await?;
    let pricing = state.store.pricing(&caller.tenant_id).await?;
    let data = rows
        .iter()
        .map(|r| SessionView {
            totals: totals_view(&r.totals, &pricing),
            sandbox_id: r.sandbox_id.clone(),
            external_user_id: r.external_user_id.clone(),
            external_project_id: r.external_project_id.clone(),
            first_hour: rfc3339(r.first_hour),
            last_hour: rfc3339(r.last_hour),
        })
        .collect();
    Ok(wire::data(data))
}

/// `GET /usage/summary`: the tenant's totals (default: month to date).
pub(crate) async fn summary(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(p): Query<UsageParams>,
) -> Result<Json<Data<SummaryView>>, ApiError> {
    let (start, end, _, rows, _) = rollup(&state, &caller, &p, "mtd").await?;
    let mut sum = UsageTotals::default();
    for r in &rows {
        sum.add_scaled(&r.totals, 1.0);
    }
    let pricing = state.store.pricing(&caller.tenant_id).await?;
    Ok(wire::data(SummaryView {
        totals: totals_view(&sum, &pricing),
        period_start: rfc3339(start),
        period_end: rfc3339(end),
        external_users: rows.iter().filter(|r| r.group.is_some()).count(),
    }))
}

/// `GET /usage/export.csv`: one line per group (and bucket, default daily) for billing
/// systems.
pub(crate) async fn export_csv(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(mut p): Query<UsageParams>,
) -> Result<Response, ApiError> {
    if p.granularity.is_none() {
        p.granularity = Some("day".into());
    }
    let (start, end, key, _, buckets) = rollup(&state, &caller, &p, "30d").await?;
    let pricing = state.store.pricing(&caller.tenant_id).await?;
    let mut out = format!(
        "period_start,period_end,bucket_start,{key},sandbox_seconds,vcpu_seconds,cpu_seconds,memory_gib_seconds,storage_gib_hours,network_ingress_bytes,network_egress_bytes,credit_cents\n"
    );
    for r in buckets.unwrap_or_default() {
        let group = r.group.clone().unwrap_or_default();
        // A value a spreadsheet would run as a formula is prefixed with `'`; a field with a
        // comma, quote or line break is quoted, quotes doubled (RFC 4180).
        let group =
            if group.starts_with(['=', '+', '-', '@']) { format!("'{group}") } else { group };
        let group = if group.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", group.replace('"', "\"\""))
        } else {
            group
        };
        out.push_str(&format!(
            "{},{},{},{group},{:.3},{:.3},{:.6},{:.6},{:.6},{:.0},{:.0},{:.4}\n",
            rfc3339(start),
            rfc3339(end),
            r.bucket.map(rfc3339).unwrap_or_default(),
            r.totals.sandbox_seconds,
            r.totals.vcpu_seconds,
            r.totals.cpu_seconds,
            r.totals.memory_gib_seconds,
            r.totals.storage_gib_hours,
            r.totals.network_ingress_bytes,
            r.totals.network_egress_bytes,
            pricing.cents(&r.totals),
        ));
    }
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response())
}

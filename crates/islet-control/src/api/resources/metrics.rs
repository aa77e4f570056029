//! `GET /sandboxes/{id}/metrics?window=`: the sandbox's recent CPU, memory and network, from
//! the meter's samples, and its current resources.

use axum::extract::State;
use axum::Json;
use islet_types::time::{now_millis, rfc3339};
use islet_types::SandboxId;
use serde::{Deserialize, Serialize};

use crate::api::extract::{Caller, IdPath, Query};
use crate::api::wire::{self, Data};
use crate::error::ApiError;
use crate::metrics::{rates, MAX_WINDOW_MS};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct MetricsQuery {
    window: Option<String>,
}

/// The answer.
#[derive(Debug, Serialize)]
pub(crate) struct MetricsView {
    pub sandbox_id: SandboxId,
    pub window: String,
    /// Seconds between samples, at least (the meter's interval, 30 s at the finest).
    pub resolution_sec: u64,
    pub current: Current,
    /// Oldest first.
    pub points: Vec<MetricPoint>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Current {
    pub state: &'static str,
    pub cpu_count: u32,
    pub memory_mb: u32,
    pub disk_mb: u32,
    /// Memory in use at the last sample.
    pub memory_bytes: Option<u64>,
}

/// One sample; rates are over the time since the point before it.
#[derive(Debug, Serialize)]
pub(crate) struct MetricPoint {
    pub at: String,
    /// Percent of one CPU.
    pub cpu_percent: Option<f64>,
    pub memory_bytes: u64,
    pub network_ingress_bytes_per_sec: Option<f64>,
    pub network_egress_bytes_per_sec: Option<f64>,
}

/// `5m`, `15m`, `1h`, `6h`, or any `<n>s|m|h` up to 6 hours.
fn window_ms(raw: &str) -> Result<i64, ApiError> {
    let bad = || ApiError::validation("window must be like 5m, 1h or 6h (at most 6h)", "window");
    let (number, unit) = match raw.char_indices().last() {
        Some((at, unit)) => (&raw[..at], unit),
        None => return Err(bad()),
    };
    let n: i64 = number.parse().map_err(|_| bad())?;
    let per = match unit {
        's' => 1000,
        'm' => 60_000,
        'h' => 3_600_000,
        _ => return Err(bad()),
    };
    let ms = n.checked_mul(per).ok_or_else(bad)?;
    (1..=MAX_WINDOW_MS).contains(&ms).then_some(ms).ok_or_else(bad)
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    IdPath(id): IdPath<SandboxId>,
    Query(q): Query<MetricsQuery>,
) -> Result<Json<Data<MetricsView>>, ApiError> {
    // The sandbox first: another tenant's is 404 whatever the query says.
    let record = state.store.get_sandbox(&caller.tenant_id, &id).await?;
    let window = q.window.unwrap_or_else(|| "1h".into());
    let since = now_millis() - window_ms(&window)?;
    let kept = state.metrics.since(&id, since);
    let points = kept
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (cpu, network) = match i.checked_sub(1) {
                Some(before) => rates(&kept[before], p),
                None => (None, None),
            };
            MetricPoint {
                at: rfc3339(p.at),
                cpu_percent: cpu,
                memory_bytes: p.memory_bytes,
                network_ingress_bytes_per_sec: network.map(|n| n.0),
                network_egress_bytes_per_sec: network.map(|n| n.1),
            }
        })
        .collect();
    Ok(wire::data(MetricsView {
        sandbox_id: record.id.clone(),
        window,
        resolution_sec: state.config.meter_interval.as_secs().max(30),
        current: Current {
            state: record.state.as_str(),
            cpu_count: record.resources.cpu_count,
            memory_mb: record.resources.memory_mb,
            disk_mb: record.resources.disk_mb,
            memory_bytes: kept.last().map(|p| p.memory_bytes),
        },
        points,
    }))
}

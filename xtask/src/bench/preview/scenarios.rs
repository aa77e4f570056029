//! What is measured, and in what order: each scenario runs against the edge and nginx back to
//! back, the one going first alternating from scenario to scenario so that both see similar
//! machine conditions. The backend without any proxy ("direct") is measured last, for the
//! maximum-throughput and WebSocket scenarios only: it shows the ceiling the backend sets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::super::signals;
use super::super::stats::Summary;
use super::load::{self, Kind, Outcome, Shape};
use super::ws;

/// How a scenario loads its target.
#[derive(Debug, Clone, Copy)]
pub(super) enum Load {
    Closed { connections: usize },
    Open { rate: f64, connections: usize },
    WebSocket { echoes: usize },
}

pub(super) struct Plan {
    pub name: String,
    kind: Kind,
    load: Load,
    duration: Duration,
    direct: bool,
    /// Whether the "throughput ≥ nginx's" target applies (the maximum-throughput runs; a fixed
    /// rate is met or missed by both).
    pub throughput_target: bool,
}

impl Plan {
    pub(super) fn describe(&self) -> String {
        let secs = self.duration.as_secs_f64();
        match self.load {
            Load::Closed { connections } => {
                format!("closed loop, {connections} connections, {secs} s")
            }
            Load::Open { rate, connections } => {
                format!("open loop at {rate} req/s, up to {connections} connections, {secs} s")
            }
            Load::WebSocket { echoes } => {
                format!("1 connection, {echoes} sequential 32-byte text echoes")
            }
        }
    }
}

pub(super) fn plans(quick: bool) -> Vec<Plan> {
    let duration = Duration::from_secs(if quick { 3 } else { 10 });
    let rates: &[f64] = if quick { &[1000.0] } else { &[1000.0, 2000.0, 4000.0] };
    let plan = |name: String, kind, load, direct, throughput_target| Plan {
        name,
        kind,
        load,
        duration,
        direct,
        throughput_target,
    };
    let mut plans = vec![plan(
        "small GET, max throughput".into(),
        Kind::Small,
        Load::Closed { connections: 32 },
        true,
        true,
    )];
    for &rate in rates {
        plans.push(plan(
            format!("small GET at {rate} req/s"),
            Kind::Small,
            Load::Open { rate, connections: 32 },
            false,
            false,
        ));
    }
    plans.extend([
        plan(
            "1 MiB GET at 100 req/s".into(),
            Kind::Big,
            Load::Open { rate: 100.0, connections: 8 },
            false,
            false,
        ),
        plan(
            "1 MiB GET, max throughput".into(),
            Kind::Big,
            Load::Closed { connections: 8 },
            true,
            true,
        ),
        plan(
            "1 MiB POST at 50 req/s".into(),
            Kind::Upload,
            Load::Open { rate: 50.0, connections: 8 },
            false,
            false,
        ),
        plan(
            "WebSocket round trip".into(),
            Kind::Small,
            Load::WebSocket { echoes: if quick { 200 } else { 2000 } },
            true,
            false,
        ),
    ]);
    plans
}

/// Where the load goes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Targets {
    pub edge: SocketAddr,
    pub nginx: SocketAddr,
    pub direct: SocketAddr,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Ratios {
    /// Edge ÷ nginx: ≥ 1 is the target for throughput.
    pub per_second: Option<f64>,
    pub p50: Option<f64>,
    /// Edge ÷ nginx: ≤ 1 is the target.
    pub p99: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Scenario {
    pub name: String,
    pub load: String,
    pub throughput_target: bool,
    /// Which target was measured first.
    pub first: &'static str,
    pub edge: Outcome,
    pub nginx: Outcome,
    /// The backend without a proxy, where measured.
    pub direct: Option<Outcome>,
    pub ratios: Ratios,
}

fn ratio(edge: f64, nginx: f64) -> Option<f64> {
    (nginx > 0.0 && edge.is_finite()).then_some(edge / nginx)
}

async fn measure(plan: &Plan, addr: SocketAddr, shape: &Arc<Shape>) -> Outcome {
    match plan.load {
        Load::Closed { connections } => {
            load::closed(addr, shape.clone(), plan.kind, connections, plan.duration).await
        }
        Load::Open { rate, connections } => {
            load::open(addr, shape.clone(), plan.kind, rate, connections, plan.duration).await
        }
        Load::WebSocket { echoes } => match ws::round_trips(addr, shape, 20, echoes).await {
            Ok(outcome) => outcome,
            Err(e) => {
                let mut tally = load::Tally::default();
                tally.error(&e);
                tally.outcome(0.0, None)
            }
        },
    }
}

/// Run `plan` against both proxies (and the backend directly, if the plan says so).
pub(super) async fn run(
    plan: &Plan,
    index: usize,
    targets: Targets,
    shape: &Arc<Shape>,
) -> Scenario {
    let edge_first = index.is_multiple_of(2);
    let order = if edge_first {
        [("edge", targets.edge), ("nginx", targets.nginx)]
    } else {
        [("nginx", targets.nginx), ("edge", targets.edge)]
    };
    let mut edge = Outcome::default();
    let mut nginx = Outcome::default();
    for (name, addr) in order {
        if signals::stopping() {
            break;
        }
        eprintln!("bench-preview: {} — {name}", plan.name);
        let outcome = measure(plan, addr, shape).await;
        if name == "edge" {
            edge = outcome;
        } else {
            nginx = outcome;
        }
        settle().await;
    }
    let direct = if plan.direct && !signals::stopping() {
        eprintln!("bench-preview: {} — direct", plan.name);
        let outcome = measure(plan, targets.direct, shape).await;
        settle().await;
        Some(outcome)
    } else {
        None
    };
    let latency = |pick: fn(&Summary) -> f64| {
        let edge = edge.latency_ms.as_ref().map(pick)?;
        ratio(edge, nginx.latency_ms.as_ref().map(pick)?)
    };
    let ratios = Ratios {
        per_second: ratio(edge.per_second, nginx.per_second),
        p50: latency(|s| s.p50),
        p99: latency(|s| s.p99),
    };
    Scenario {
        name: plan.name.clone(),
        load: plan.describe(),
        throughput_target: plan.throughput_target,
        first: if edge_first { "edge" } else { "nginx" },
        edge,
        nginx,
        direct,
        ratios,
    }
}

/// A pause between runs, so that one run's closing connections do not overlap the next.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// Untimed load on `addr` so that connection pools, caches and the CPU frequency are warm.
pub(super) async fn warm_up(addr: SocketAddr, shape: &Arc<Shape>, quick: bool) {
    let seconds = if quick { 0.5 } else { 1.0 };
    let _ =
        load::closed(addr, shape.clone(), Kind::Small, 32, Duration::from_secs_f64(seconds)).await;
    let _ = load::closed(addr, shape.clone(), Kind::Big, 8, Duration::from_secs_f64(seconds / 2.0))
        .await;
    let _ = ws::round_trips(addr, shape, 50, 0).await;
}

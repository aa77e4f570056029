//! Recent metrics of each sandbox, from the meter's own samples: a bounded ring per sandbox
//! in memory (the last 6 hours, a point at most every 30 s), read by
//! `GET /sandboxes/{id}/metrics`. Lost on a restart, as a dashboard's recent history may be;
//! what is billed is the store's.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use islet_store::UsageSample;
use islet_types::time::UnixMillis;
use islet_types::SandboxId;

/// Points kept per sandbox, and the least time between two.
const MAX_POINTS: usize = 720;
const MIN_SPACING_MS: i64 = 30_000;
/// The longest window one can ask for.
pub(crate) const MAX_WINDOW_MS: i64 = 6 * 3600 * 1000;

/// One sample as kept: cumulative counters and memory in use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Point {
    pub at: UnixMillis,
    pub cpu_usec: Option<u64>,
    pub memory_bytes: u64,
    /// Cumulative bytes received and sent through the sandbox's link.
    pub network: Option<(u64, u64)>,
}

#[derive(Default)]
pub(crate) struct MetricsRing {
    points: Mutex<HashMap<SandboxId, VecDeque<Point>>>,
}

impl MetricsRing {
    /// Keep a sample (unless the last kept one is under 30 s old).
    pub(crate) fn record(&self, sample: &UsageSample) {
        let mut all = self.points.lock().unwrap_or_else(|e| e.into_inner());
        let ring = all.entry(sample.sandbox_id.clone()).or_default();
        if ring.back().is_some_and(|last| sample.at - last.at < MIN_SPACING_MS) {
            return;
        }
        if ring.len() == MAX_POINTS {
            ring.pop_front();
        }
        ring.push_back(Point {
            at: sample.at,
            cpu_usec: sample.cpu_usec,
            memory_bytes: sample.memory_bytes,
            network: sample.network,
        });
    }

    /// Forget the sandboxes `keep` does not name (destroyed ones).
    pub(crate) fn retain(&self, keep: impl Fn(&SandboxId) -> bool) {
        self.points.lock().unwrap_or_else(|e| e.into_inner()).retain(|id, _| keep(id));
    }

    /// The points of `id` since `since`, oldest first.
    pub(crate) fn since(&self, id: &SandboxId, since: UnixMillis) -> Vec<Point> {
        let all = self.points.lock().unwrap_or_else(|e| e.into_inner());
        all.get(id)
            .map(|ring| ring.iter().filter(|p| p.at >= since).copied().collect())
            .unwrap_or_default()
    }
}

/// Between two points: CPU use (percent of one CPU) and bytes per second each way.
pub(crate) fn rates(a: &Point, b: &Point) -> (Option<f64>, Option<(f64, f64)>) {
    let seconds = (b.at - a.at) as f64 / 1000.0;
    if seconds <= 0.0 {
        return (None, None);
    }
    let cpu = match (a.cpu_usec, b.cpu_usec) {
        // A counter that went down is a new cgroup (a stop and resume): no rate across it.
        (Some(x), Some(y)) if y >= x => Some((y - x) as f64 / 1e6 / seconds * 100.0),
        _ => None,
    };
    let network = match (a.network, b.network) {
        (Some((ai, ae)), Some((bi, be))) if bi >= ai && be >= ae => {
            Some(((bi - ai) as f64 / seconds, (be - ae) as f64 / seconds))
        }
        _ => None,
    };
    (cpu, network)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: i64, cpu: u64) -> UsageSample {
        UsageSample {
            sandbox_id: "sbx_aaaaaaaaaaaaaaaaaaaa".parse().expect("id"),
            at,
            cpu_usec: Some(cpu),
            memory_bytes: 1 << 20,
            network: Some((at as u64, 2 * at as u64)),
        }
    }

    #[test]
    fn points_are_spaced_bounded_and_rated() {
        let ring = MetricsRing::default();
        let id: SandboxId = "sbx_aaaaaaaaaaaaaaaaaaaa".parse().expect("id");
        ring.record(&sample(0, 0));
        ring.record(&sample(10_000, 1));
        ring.record(&sample(30_000, 15_000_000));
        let points = ring.since(&id, 0);
        assert_eq!(points.len(), 2, "a point under 30 s after the last is not kept");
        let (cpu, net) = rates(&points[0], &points[1]);
        assert_eq!(cpu, Some(50.0), "15 CPU-seconds over 30 s is half a CPU");
        assert_eq!(net, Some((1000.0, 2000.0)), "30,000 and 60,000 bytes over 30 s");
        for i in 0..(MAX_POINTS as i64 + 10) {
            ring.record(&sample(60_000 + i * MIN_SPACING_MS, 0));
        }
        assert_eq!(ring.since(&id, 0).len(), MAX_POINTS);
        ring.retain(|_| false);
        assert!(ring.since(&id, 0).is_empty());
    }
}

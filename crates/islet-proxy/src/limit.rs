//! Per-sandbox request rate limit (a token bucket), so one visitor cannot flood a sandbox's app
//! or the edge on its behalf. Off when the rate is 0.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use islet_types::SandboxId;

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<SandboxId, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(per_second).max(1)),
            buckets: Mutex::default(),
        }
    }

    /// Take one request's worth; `false` when the sandbox is over its rate.
    pub fn allow(&self, sandbox: &SandboxId) -> bool {
        if self.per_second <= 0.0 {
            return true;
        }
        let Ok(mut buckets) = self.buckets.lock() else {
            return true;
        };
        let now = Instant::now();
        if buckets.len() > 100_000 {
            buckets.retain(|_, (_, at)| now.duration_since(*at).as_secs() < 60);
        }
        let (tokens, at) = buckets.entry(sandbox.clone()).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_burst_and_leaves_others_alone() {
        let limiter = RateLimiter::new(1, 5);
        let (a, b) = (SandboxId::generate(), SandboxId::generate());
        let allowed = (0..20).filter(|_| limiter.allow(&a)).count();
        assert!((5..=6).contains(&allowed), "{allowed}");
        assert!(limiter.allow(&b));
        assert!(RateLimiter::new(0, 0).allow(&a));
    }
}

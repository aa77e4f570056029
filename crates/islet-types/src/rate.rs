//! Token-bucket rate limits keyed by anything (a sandbox at the edge, an API key or an end
//! user at the API). Each key refills at `per_second` up to `burst`; keys are independent, so
//! one busy key never slows another. A rate of 0 turns the limiter off.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests a key may make right now, after this one.
    pub remaining: u32,
    /// When refused: how long until one request's worth has refilled.
    pub retry_after: Duration,
    /// How long until the bucket is full again.
    pub reset: Duration,
}

pub struct RateLimiter<K> {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(per_second).max(1)),
            buckets: Mutex::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.per_second > 0.0
    }

    /// The sustained rate and the burst, for `X-RateLimit-Limit`.
    pub fn limit(&self) -> (u32, u32) {
        (self.per_second as u32, self.burst as u32)
    }

    /// Take one request's worth for `key`.
    pub fn check(&self, key: &K) -> Decision {
        let open = Decision {
            allowed: true,
            remaining: u32::MAX,
            retry_after: Duration::ZERO,
            reset: Duration::ZERO,
        };
        if !self.enabled() {
            return open;
        }
        let Ok(mut buckets) = self.buckets.lock() else {
            return open;
        };
        let now = Instant::now();
        if buckets.len() > 100_000 {
            buckets.retain(|_, (_, at)| now.duration_since(*at).as_secs() < 60);
        }
        let (tokens, at) = buckets.entry(key.clone()).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        let allowed = *tokens >= 1.0;
        if allowed {
            *tokens -= 1.0;
        }
        let refill = |missing: f64| Duration::from_secs_f64((missing / self.per_second).max(0.0));
        Decision {
            allowed,
            remaining: tokens.floor() as u32,
            retry_after: if allowed { Duration::ZERO } else { refill(1.0 - *tokens) },
            reset: refill(self.burst - *tokens),
        }
    }

    /// Whether `key` may make one more request.
    pub fn allow(&self, key: &K) -> bool {
        self.check(key).allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_burst_and_leaves_others_alone() {
        let limiter = RateLimiter::new(1, 5);
        let allowed = (0..20).filter(|_| limiter.allow(&"a")).count();
        assert!((5..=6).contains(&allowed), "{allowed}");
        let refused = limiter.check(&"a");
        assert!(!refused.allowed && refused.retry_after > Duration::ZERO);
        assert!(refused.retry_after <= Duration::from_secs(1));
        assert!(limiter.allow(&"b"));
        assert!(RateLimiter::new(0, 0).allow(&"a"));
    }
}

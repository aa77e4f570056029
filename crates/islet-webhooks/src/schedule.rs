//! When a failed delivery is tried again.
//!
//! The first attempt goes at once; after each failure the next waits the schedule's step
//! (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h) with ±10 % jitter so a recovering receiver is not
//! hit by every retry at the same instant. A `Retry-After` from the receiver can only push a
//! retry later, never earlier, and never past a day.

use std::time::{Duration, SystemTime};

use rand::Rng;

/// The published steps: the wait before attempts 2, 3, … 8.
pub const STEPS: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// The longest a `Retry-After` can defer a retry.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Retries after the first attempt when an endpoint does not say (the whole schedule).
pub const DEFAULT_RETRIES: u32 = STEPS.len() as u32;

/// The most retries an endpoint may ask for; past the schedule's end each waits its last step.
pub const MAX_RETRIES: u32 = 10;

#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    steps: Vec<Duration>,
    jitter: f64,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self { steps: STEPS.to_vec(), jitter: 0.1 }
    }
}

impl RetrySchedule {
    /// The published schedule with every step multiplied by `factor` (tests and soaks run it
    /// faster; the shape stays the same).
    pub fn scaled(factor: f64) -> Self {
        let mut s = Self::default();
        s.steps = s.steps.iter().map(|d| d.mul_f64(factor)).collect();
        s
    }

    /// The step after failed attempt `attempt` (1-based), before jitter.
    pub fn step(&self, attempt: u32) -> Duration {
        let index = (attempt.max(1) - 1) as usize;
        self.steps.get(index).or(self.steps.last()).copied().unwrap_or_default()
    }

    /// How long to wait after failed attempt `attempt`, given the receiver's `Retry-After`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let base = self.step(attempt);
        let factor = 1.0 + rand::thread_rng().gen_range(-self.jitter..=self.jitter);
        let jittered = base.mul_f64(factor.max(0.0));
        match retry_after {
            Some(asked) => jittered.max(asked.min(MAX_RETRY_AFTER)),
            None => jittered,
        }
    }

    /// The jitter fraction (0.1 = ±10 %).
    pub fn jitter(&self) -> f64 {
        self.jitter
    }
}

/// A `Retry-After` value: delta seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_published_steps_with_bounded_jitter() {
        let s = RetrySchedule::default();
        for (i, step) in STEPS.iter().enumerate() {
            for _ in 0..50 {
                let d = s.delay(i as u32 + 1, None);
                assert!(d >= step.mul_f64(0.9) && d <= step.mul_f64(1.1), "{d:?} vs {step:?}");
            }
        }
        assert_eq!(s.step(9), Duration::from_secs(10 * 3600));
    }

    #[test]
    fn retry_after_only_defers() {
        let s = RetrySchedule::default();
        let d = s.delay(1, Some(Duration::from_secs(120)));
        assert_eq!(d, Duration::from_secs(120));
        let d = s.delay(3, Some(Duration::from_secs(1)));
        assert!(d >= Duration::from_secs(30 * 60 * 9 / 10));
        assert_eq!(s.delay(1, Some(Duration::from_secs(10 * 86400))), MAX_RETRY_AFTER);
    }

    #[test]
    fn parses_both_retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("30", now), Some(Duration::from_secs(30)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(90)));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}

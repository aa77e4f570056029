//! Per-sandbox request rate limit, so one visitor cannot flood a sandbox's app or the edge on
//! its behalf (the token bucket is `islet_types::rate`). Off when the rate is 0.

use islet_types::SandboxId;

pub(crate) type RateLimiter = islet_types::rate::RateLimiter<SandboxId>;

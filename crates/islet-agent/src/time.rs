//! Timestamps as the API writes them: RFC 3339, UTC, microseconds.

use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};

pub(crate) fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn time_rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Micros, true)
}

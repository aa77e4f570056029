//! Timestamps on the wire: RFC 3339, UTC, `Z`, whole seconds or microseconds (the SDK's parser
//! rejects nanoseconds on older Pythons).

use chrono::{DateTime, SecondsFormat, Utc};

/// Milliseconds since the Unix epoch, the unit the store keeps.
pub type UnixMillis = i64;

pub fn now_millis() -> UnixMillis {
    Utc::now().timestamp_millis()
}

/// `2026-05-25T14:32:10.123000Z`.
pub fn rfc3339(ms: UnixMillis) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_six_fraction_digits_and_z() {
        assert_eq!(rfc3339(1_779_719_530_123), "2026-05-25T14:32:10.123000Z");
    }
}

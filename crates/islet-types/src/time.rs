//! Timestamps on the wire: RFC 3339, UTC, `Z`, whole seconds or microseconds (the SDK's parser
//! rejects nanoseconds on older Pythons).

use chrono::{DateTime, Datelike, SecondsFormat, TimeZone, Utc};

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

/// The start (00:00 UTC on the 1st) of the calendar month `ms` falls in.
pub fn month_start(ms: UnixMillis) -> UnixMillis {
    let t = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
        .single()
        .map_or(0, |m| m.timestamp_millis())
}

/// The start (00:00 UTC) of the day `ms` falls in.
pub fn day_start(ms: UnixMillis) -> UnixMillis {
    ms - ms.rem_euclid(86_400_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_days_start_at_midnight_utc() {
        // 2026-05-25T14:32:10.123Z
        assert_eq!(month_start(1_779_719_530_123), 1_777_593_600_000);
        assert_eq!(rfc3339(month_start(1_779_719_530_123)), "2026-05-01T00:00:00.000000Z");
        assert_eq!(rfc3339(day_start(1_779_719_530_123)), "2026-05-25T00:00:00.000000Z");
        // The first millisecond of a month is its own start.
        assert_eq!(month_start(1_777_593_600_000), 1_777_593_600_000);
    }

    #[test]
    fn formats_with_six_fraction_digits_and_z() {
        assert_eq!(rfc3339(1_779_719_530_123), "2026-05-25T14:32:10.123000Z");
    }
}

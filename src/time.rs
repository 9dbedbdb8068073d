//! Times and durations as numbers and as text: epoch milliseconds, RFC 3339, and the few
//! spellings of a duration that logs, tables and metrics use.
//!
//! Every function here is total: any `i64` or `SystemTime` gives an answer, never a panic or an
//! overflow. Times from outside (Knox's answers, files read back) are kept within
//! `0..=`[`MAX_EPOCH_MS`] where they enter ([`clamp_epoch_ms`]), so that rendering and
//! arithmetic on them cannot fail.

use std::time::{Duration, SystemTime};

/// The last millisecond of year 9999 (`9999-12-31T23:59:59.999Z`): every time from outside is
/// kept at or below it, so that RFC 3339 rendering and arithmetic on it cannot fail.
pub(crate) const MAX_EPOCH_MS: i64 = 253_402_300_799_999;

/// `ms` within `0..=`[`MAX_EPOCH_MS`] (1970 to the end of 9999).
pub(crate) fn clamp_epoch_ms(ms: i64) -> i64 {
    ms.clamp(0, MAX_EPOCH_MS)
}

/// Milliseconds since the Unix epoch (negative before it), saturating at the ends of `i64`.
pub(crate) fn epoch_ms(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// `SystemTime` at epoch ms `ms`, for any `ms`: one the platform cannot represent is the
/// epoch itself (on Linux every `i64` can be represented).
pub(crate) fn from_epoch_ms(ms: i64) -> SystemTime {
    let d = Duration::from_millis(ms.unsigned_abs());
    let t =
        if ms >= 0 { SystemTime::UNIX_EPOCH.checked_add(d) } else { SystemTime::UNIX_EPOCH.checked_sub(d) };
    t.unwrap_or(SystemTime::UNIX_EPOCH)
}

/// RFC 3339 UTC with second precision, e.g. `2026-11-23T04:21:45Z`. Total: a time before
/// 1970 shows as `1970-01-01T00:00:00Z`, one after 9999 as `9999-12-31T23:59:59Z`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let clamped = from_epoch_ms(clamp_epoch_ms(epoch_ms(t)));
    humantime::format_rfc3339_seconds(clamped).to_string()
}

/// A duration for people: "42m", "2h 5m", "1d 3h", "30s", "800ms".
pub(crate) fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => match (s / 3600, s % 3600 / 60) {
            (h, 0) => format!("{h}h"),
            (h, m) => format!("{h}h {m}m"),
        },
        _ => match (s / 86_400, s % 86_400 / 3600) {
            (d, 0) => format!("{d}d"),
            (d, h) => format!("{d}d {h}h"),
        },
    }
}

/// Milliseconds left, for people ("42m"); nothing left (or less) is "0ms".
pub(crate) fn left(ms: i64) -> String {
    human(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

/// Knox's clock offset for people: "+2h", "-90s", "0s" (below a second is noise: the
/// `Date` header has one-second resolution).
pub(crate) fn signed(ms: i64) -> String {
    if ms.unsigned_abs() < 1000 {
        return "0s".into();
    }
    let sign = if ms < 0 { '-' } else { '+' };
    // Rounded to the second: the estimate is the middle of a `Date` second.
    format!("{sign}{}", human(Duration::from_secs(ms.unsigned_abs().saturating_add(500) / 1000)))
}

/// Milliseconds as seconds with three decimals ("1.500", "-0.250"), as the Prometheus text
/// format writes a time or a duration.
pub(crate) fn secs(ms: i64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2023-11-14T22:13:50.123Z.
    const T: i64 = 1_700_000_030_123;

    #[test]
    fn clamping_keeps_1970_to_9999() {
        for (ms, want) in [
            (i64::MIN, 0),
            (-1, 0),
            (0, 0),
            (T, T),
            (MAX_EPOCH_MS, MAX_EPOCH_MS),
            (MAX_EPOCH_MS + 1, MAX_EPOCH_MS),
            (i64::MAX, MAX_EPOCH_MS),
        ] {
            assert_eq!(clamp_epoch_ms(ms), want, "{ms}");
        }
    }

    #[test]
    fn epoch_ms_saturates() {
        let epoch = SystemTime::UNIX_EPOCH;
        let far = epoch + Duration::from_secs(u64::MAX / 4);
        for (t, want) in [
            (epoch, 0),
            (epoch + Duration::from_micros(1_999), 1),
            (epoch + Duration::from_millis(T as u64), T),
            (epoch - Duration::from_millis(1_500), -1_500),
            (far, i64::MAX),
        ] {
            assert_eq!(epoch_ms(t), want, "{t:?}");
        }
    }

    #[test]
    fn from_epoch_ms_is_total_and_inverts_epoch_ms() {
        for ms in [i64::MIN, -1_500, -1, 0, 1, T, MAX_EPOCH_MS, i64::MAX] {
            assert_eq!(epoch_ms(from_epoch_ms(ms)), ms, "{ms}");
        }
    }

    #[test]
    fn rfc3339_is_total() {
        for (ms, want) in [
            (i64::MIN, "1970-01-01T00:00:00Z"),
            (-1, "1970-01-01T00:00:00Z"),
            (0, "1970-01-01T00:00:00Z"),
            (T, "2023-11-14T22:13:50Z"),
            (MAX_EPOCH_MS, "9999-12-31T23:59:59Z"),
            (MAX_EPOCH_MS + 1, "9999-12-31T23:59:59Z"),
            (i64::MAX, "9999-12-31T23:59:59Z"),
        ] {
            assert_eq!(rfc3339(from_epoch_ms(ms)), want, "{ms}");
        }
    }

    #[test]
    fn left_for_people() {
        for (ms, want) in [
            (i64::MIN, "0ms"),
            (-5_000, "0ms"),
            (0, "0ms"),
            (800, "800ms"),
            (42_000, "42s"),
            (125_000, "2m"),
            (7_500_000, "2h 5m"),
            (97_200_000, "1d 3h"),
        ] {
            assert_eq!(left(ms), want, "{ms}");
        }
    }

    #[test]
    fn secs_has_three_decimals() {
        for (ms, want) in [
            (0, "0.000"),
            (1, "0.001"),
            (1_500, "1.500"),
            (-250, "-0.250"),
            (T, "1700000030.123"),
            (MAX_EPOCH_MS, "253402300799.999"),
        ] {
            assert_eq!(secs(ms), want, "{ms}");
        }
    }

    #[test]
    fn human_durations() {
        let check = |secs: u64, want: &str| assert_eq!(human(Duration::from_secs(secs)), want);
        check(0, "0ms");
        check(59, "59s");
        check(42 * 60 + 10, "42m");
        check(3600, "1h");
        check(2 * 3600 + 5 * 60, "2h 5m");
        check(86_400 + 3 * 3600, "1d 3h");
        assert_eq!(human(Duration::from_millis(800)), "800ms");
    }

    #[test]
    fn signed_offsets() {
        let rows: &[(i64, &str)] = &[
            (0, "0s"),
            (999, "0s"),
            (-999, "0s"),
            (1000, "+1s"),
            (1499, "+1s"),
            (1500, "+2s"),
            (-90_000, "-1m"),
            (7_200_000, "+2h"),
            (i64::MIN, "-106751991167d 7h"),
        ];
        for &(ms, want) in rows {
            assert_eq!(signed(ms), want, "{ms} ms");
        }
    }
}

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
pub const MAX_EPOCH_MS: i64 = 253_402_300_799_999;

/// `ms` within `0..=`[`MAX_EPOCH_MS`] (1970 to the end of 9999).
pub fn clamp_epoch_ms(ms: i64) -> i64 {
    ms.clamp(0, MAX_EPOCH_MS)
}

/// Milliseconds since the Unix epoch (negative before it), saturating at the ends of `i64`.
pub fn epoch_ms(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// `SystemTime` at epoch ms `ms`, for any `ms`: one the platform cannot represent is the
/// epoch itself (on Linux every `i64` can be represented).
pub fn from_epoch_ms(ms: i64) -> SystemTime {
    let d = Duration::from_millis(ms.unsigned_abs());
    let t =
        if ms >= 0 { SystemTime::UNIX_EPOCH.checked_add(d) } else { SystemTime::UNIX_EPOCH.checked_sub(d) };
    t.unwrap_or(SystemTime::UNIX_EPOCH)
}

/// RFC 3339 UTC with second precision, e.g. `2026-11-23T04:21:45Z`. Total: a time before
/// 1970 shows as `1970-01-01T00:00:00Z`, one after 9999 as `9999-12-31T23:59:59Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let clamped = from_epoch_ms(clamp_epoch_ms(epoch_ms(t)));
    humantime::format_rfc3339_seconds(clamped).to_string()
}

/// Milliseconds left, for people ("42m"); nothing left (or less) is "0ms".
// `keeper::human` belongs here too; it stays in keeper.rs until that file is rewritten.
pub fn left(ms: i64) -> String {
    crate::keeper::human(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

/// Milliseconds as seconds with three decimals ("1.500", "-0.250"), as the Prometheus text
/// format writes a time or a duration.
pub fn secs(ms: i64) -> String {
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
}

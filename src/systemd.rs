//! sd_notify messages: READY, RELOADING (with MONOTONIC_USEC), STOPPING, STATUS and WATCHDOG,
//! and when the next WATCHDOG=1 is due ([`next_ping`]: a pure function of the last ping).
//!
//! Everything is a no-op without `$NOTIFY_SOCKET`, so the daemon runs the same under
//! systemd, in a container, or in a terminal. Send failures are logged at debug level and
//! otherwise ignored: losing a STATUS line must never stop refreshing.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// Whether a service manager listens (`$NOTIFY_SOCKET` is set).
pub(crate) fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

fn send(states: &[NotifyState<'_>]) {
    if !enabled() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!("sd_notify failed: {e}");
    }
}

/// READY=1: sent once every cluster has published or failed its first attempt, so units
/// ordered after this one start with a token in place when Knox is up, and a Knox outage
/// at boot does not hang the unit.
pub(crate) fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// RELOADING=1 with MONOTONIC_USEC, as `Type=notify-reload` expects.
pub(crate) fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// STOPPING=1.
pub(crate) fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// `STATUS=<line>`, shown by `systemctl status`.
pub(crate) fn status(line: &str) {
    send(&[NotifyState::Status(line)]);
}

/// The watchdog interval systemd expects pings within (`WATCHDOG_USEC`, for this process
/// per `WATCHDOG_PID`), if a watchdog is enabled.
///
/// Like `sd_watchdog_enabled(3)`: an unset `WATCHDOG_PID` means this process (the sd-notify
/// crate's helper insists on it being set, which systemd does, but not every supervisor).
/// A value that is not a positive number of microseconds means no watchdog.
pub(crate) fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    parse_watchdog(usec.as_deref(), pid.as_deref(), std::process::id()).filter(|_| enabled())
}

/// [`watchdog_interval`] from the two variables' values and this process's id.
fn parse_watchdog(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(own_pid) {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

/// Pings come at least this often, whatever the interval says: a watchdog of a few
/// microseconds cannot be met, and trying would spin.
const MIN_PING_PERIOD: Duration = Duration::from_millis(10);

/// The time between WATCHDOG=1 pings for a watchdog `interval`: half the interval (systemd's
/// advice), less a tenth of it (at most a second) so that timer slack and the work of one turn
/// of the loop do not push a gap past the half.
pub(crate) fn ping_period(interval: Duration) -> Duration {
    let half = interval / 2;
    half.saturating_sub((interval / 10).min(Duration::from_secs(1))).max(MIN_PING_PERIOD)
}

/// When the ping after one sent at `last` is due. Counted from the last ping, not from the
/// last wake-up: a wake-up for something else just before it is due must not postpone it.
pub(crate) fn next_ping(last: Instant, interval: Duration) -> Instant {
    // An interval too large to add is one that is never due in practice.
    last.checked_add(ping_period(interval)).unwrap_or(last + MAX_PING_DELAY)
}

/// The furthest ahead a ping is scheduled when the interval is absurdly large.
const MAX_PING_DELAY: Duration = Duration::from_secs(86_400);

/// WATCHDOG=1: sent from the keeper loop itself, so a stuck loop gets the service restarted.
pub(crate) fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_variables() {
        let s = Duration::from_secs;
        let cases = [
            (Some("2000000"), None, Some(s(2))),
            (Some(" 2000000\n"), Some("42"), Some(s(2))),
            (Some("2000000"), Some("43"), None), // another process's watchdog
            (Some("2000000"), Some("x"), None),
            (Some("0"), None, None),
            (Some("-5"), None, None),
            (Some("2s"), None, None),
            (Some("99999999999999999999999"), None, None),
            (Some("18446744073709551615"), None, Some(Duration::from_micros(u64::MAX))),
            (None, Some("42"), None),
        ];
        for (usec, pid, expected) in cases {
            assert_eq!(parse_watchdog(usec, pid, 42), expected, "{usec:?} {pid:?}");
        }
    }

    #[test]
    fn pings_are_anchored_to_the_last_ping() {
        let ms = Duration::from_millis;
        // (interval, period between pings)
        let periods = [
            (ms(2_000), ms(800)),
            (ms(1_000), ms(400)),
            (ms(60_000), ms(29_000)),
            (ms(180_000), ms(89_000)),
            (ms(30), ms(12)),
            (ms(1), MIN_PING_PERIOD),
            (Duration::ZERO, MIN_PING_PERIOD),
        ];
        for (interval, period) in periods {
            assert_eq!(ping_period(interval), period, "{interval:?}");
            assert!(period <= interval / 2 || period == MIN_PING_PERIOD, "{interval:?}");
        }
        let last = Instant::now();
        let interval = ms(2_000);
        assert_eq!(next_ping(last, interval), last + ms(800));
        // What this replaced: a wake-up for something else just before the half interval did
        // not ping, and the next wake-up came a whole half interval after it (a 1.8 s gap at
        // WATCHDOG_USEC=2s). Now the ping is due 0.8 s after the last one, however the loop woke.
        for woke in [ms(0), ms(100), ms(790)] {
            let now = last + woke;
            assert!(next_ping(last, interval) > now, "not yet due at {woke:?}");
        }
        assert!(next_ping(last, interval) <= last + ms(800));
        // Absurd intervals neither panic nor overflow.
        let far = next_ping(last, Duration::MAX);
        assert!(far > last);
    }
}

//! sd_notify messages: READY, RELOADING (with MONOTONIC_USEC), STOPPING and STATUS.
//!
//! Everything is a no-op without `$NOTIFY_SOCKET`, so the daemon runs the same under
//! systemd, in a container, or in a terminal. Send failures are logged at debug level and
//! otherwise ignored: losing a STATUS line must never stop refreshing.

use sd_notify::NotifyState;

/// Whether a service manager listens (`$NOTIFY_SOCKET` is set).
pub fn enabled() -> bool {
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
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// RELOADING=1 with MONOTONIC_USEC, as `Type=notify-reload` expects.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// STOPPING=1.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// `STATUS=<line>`, shown by `systemctl status`.
pub fn status(line: &str) {
    send(&[NotifyState::Status(line)]);
}

/// The watchdog interval systemd expects pings within (`WATCHDOG_USEC`, for this process
/// per `WATCHDOG_PID`), if a watchdog is enabled.
///
/// Like `sd_watchdog_enabled(3)`: an unset `WATCHDOG_PID` means this process (the sd-notify
/// crate's helper insists on it being set, which systemd does, but not every supervisor).
pub fn watchdog_interval() -> Option<std::time::Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    enabled().then(|| std::time::Duration::from_micros(usec))
}

/// WATCHDOG=1: sent from the keeper loop itself, so a stuck loop gets the service restarted.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

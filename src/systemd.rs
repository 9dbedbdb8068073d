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

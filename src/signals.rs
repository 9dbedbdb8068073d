//! Unix signals to [`Control`] messages, in one task.
//!
//! - SIGHUP → reload: the convention for daemons, and what `ExecReload=kill -HUP $MAINPID`
//!   sends.
//! - SIGTERM → shutdown: what systemd and container runtimes send to stop a service.
//! - SIGINT → shutdown: Ctrl-C in a terminal (the demo example).
//! - SIGUSR1 → refresh every cluster now: for an operator who rotated a password or wants a
//!   new token without waiting. Requests are coalesced, here and in the keeper, which also
//!   spaces them out per cluster (`keeper::FORCED_REFRESH_GAP`), so a loop sending SIGUSR1
//!   cannot run through the user's Knox token quota.
//!
//! The handlers are installed by [`install`] before anything else starts, so a SIGHUP that
//! arrives during start-up is queued instead of killing the process (its default action).

use futures_util::StreamExt as _;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_tokio::Signals;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::control::Control;

/// Installs the handlers.
pub(crate) fn install() -> std::io::Result<Signals> {
    Signals::new([SIGHUP, SIGTERM, SIGINT, SIGUSR1])
}

/// Forwards signals to `control` until `shutdown`.
pub(crate) async fn run(mut signals: Signals, control: mpsc::Sender<Control>, shutdown: CancellationToken) {
    let handle = signals.handle();
    loop {
        let signal = tokio::select! {
            s = signals.next() => s,
            () = shutdown.cancelled() => break,
        };
        let Some(signal) = signal else { break };
        let message = match signal {
            SIGHUP => Control::Reload { cause: "SIGHUP" },
            SIGUSR1 => Control::Refresh,
            SIGTERM => Control::Shutdown { cause: "SIGTERM" },
            SIGINT => Control::Shutdown { cause: "SIGINT" },
            _ => continue,
        };
        // A refresh request is coalesced here already: when the channel is full, the messages
        // in it are being handled and this one is dropped, so a SIGUSR1 flood never makes a
        // later SIGTERM wait behind it. The keeper spaces out what gets through.
        let sent = match message {
            Control::Refresh => match control.try_send(message) {
                Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => Ok(()),
            },
            _ => control.send(message).await.map_err(|_| ()),
        };
        if sent.is_err() {
            break;
        }
    }
    handle.close();
}

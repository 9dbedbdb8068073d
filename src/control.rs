//! [`Control`]: the one message type that steers the running daemon.
//!
//! `signals` and `reload` send it; `app::run` is its only receiver, and the only place that
//! decides to reload, refresh or stop. It lives on its own so that the senders do not import
//! the daemon's wiring (and the wiring does not import them back through it).

/// Everything that can steer the running daemon. Signals and the config watcher send these;
/// [`crate::app::run`] is the only receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    /// Re-read and validate the config; apply it if valid.
    Reload {
        /// What asked, for the log.
        cause: &'static str,
    },
    /// Refresh every cluster now.
    Refresh,
    /// Stop gracefully.
    Shutdown {
        /// What asked, for the log.
        cause: &'static str,
    },
}

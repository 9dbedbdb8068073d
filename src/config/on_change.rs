//! `[cluster.on_change]` (and `[defaults.on_change]`): the signal names it accepts, and its
//! resolution into [`OnChange`].

use std::time::Duration;

use super::limits;
use super::paths::expand_path;
use super::values::parse_bounded;
use super::{Env, OnChange, RawOnChange};

/// How long an `on_change` command may run when `timeout` is not set.
const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// The signals `on_change` may send, by the names `kill -l` uses.
const SIGNALS: [(&str, i32); 9] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("TERM", libc::SIGTERM),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("QUIT", libc::SIGQUIT),
    ("ALRM", libc::SIGALRM),
    ("CONT", libc::SIGCONT),
    ("WINCH", libc::SIGWINCH),
];

/// A signal name, with or without `SIG`.
fn parse_signal(ctx: &str, name: &str) -> Result<i32, String> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS.iter().find(|(n, _)| *n == bare).map(|&(_, s)| s).ok_or_else(|| {
        let names: Vec<&str> = SIGNALS.iter().map(|(n, _)| *n).collect();
        format!("{ctx}: signal: {name:?} is not one of {}", names.join(", "))
    })
}

/// The name (without `SIG`) of one of [`SIGNALS`], for the printed config.
pub(super) fn signal_name(signal: i32) -> &'static str {
    SIGNALS.iter().find(|&&(_, s)| s == signal).map_or("?", |(n, _)| n)
}

impl RawOnChange {
    /// Validates the table: a signal with its pid file, or a command, or both.
    pub(super) fn resolve(&self, ctx: &str, env: &Env) -> Result<OnChange, String> {
        let signal = match (&self.signal, &self.pid_file) {
            (Some(sig), Some(pf)) => Some((parse_signal(ctx, sig)?, expand_path(ctx, "pid_file", pf, env)?)),
            (Some(_), None) => return Err(format!("{ctx}: pid_file: required with signal")),
            (None, Some(_)) => return Err(format!("{ctx}: signal: required with pid_file")),
            (None, None) => None,
        };
        let command = match &self.command {
            Some(argv) if argv.first().is_none_or(String::is_empty) => {
                return Err(format!(
                    "{ctx}: command: must name a program, e.g. [\"systemctl\", \"reload\", \"spark-edge\"]"
                ))
            }
            other => other.clone(),
        };
        if signal.is_none() && command.is_none() {
            return Err(format!("{ctx}: give signal and pid_file, or command, or both"));
        }
        let timeout = match &self.timeout {
            Some(t) => parse_bounded(ctx, "timeout", t, limits::HOOK_TIMEOUT)?,
            None => DEFAULT_HOOK_TIMEOUT,
        };
        Ok(OnChange { signal, command, timeout })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signal_can_be_sent_and_named() {
        for (name, signal) in SIGNALS {
            // hooks sends it through rustix, which takes only the signals it names.
            assert!(rustix::process::Signal::from_named_raw(signal).is_some(), "{name}");
            assert_eq!(signal_name(signal), name);
            assert_eq!(parse_signal("t", &format!("SIG{name}")), Ok(signal));
        }
    }
}

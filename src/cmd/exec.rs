//! `token-keeper exec`: runs a command with a token in its environment, like `k5start -- cmd`.
//!
//! The token is the cluster's published one when it has at least `--min-valid` left (on
//! Knox's clock, see [`output::Published::remaining_ms`]); otherwise exec acquires one itself, so it
//! works with or without a running daemon. It refuses, exit 1, when neither can cover
//! `--min-valid`. Without `--min-valid` the bar is the one the keeper uses for "fresh" (the
//! cluster's `min_remaining`, or half the lifetime of a short token), which any token Knox has
//! just issued meets: a fixed default would refuse every token of a topology whose
//! `knox.token.ttl` is shorter (Knox's own default is 30 s, docs/knox.md §6.1).
//!
//! Decisions:
//! - exec is a consumer, not the keeper: it never publishes the token it acquired, nor
//!   revokes it afterwards. Publishing belongs to the one daemon that schedules refreshes and
//!   revokes superseded tokens; a second writer would bump the generation and leave tokens
//!   behind that nobody revokes. The child may also have handed the token on (a submitted
//!   Spark job), so it is left to expire.
//! - The child gets exec's own environment plus exactly one variable (`--env-var`, else the
//!   cluster's `env_var`, else `CDE_TOKEN`). Passwords and cookies are never put in it, and
//!   every descriptor exec opened is close-on-exec.
//! - SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGUSR1 and SIGUSR2 are forwarded to the child, so
//!   exec can stand in front of a daemon (`systemctl reload`, `kill -USR1`) and stops with it.
//!   A signal the kernel sent to the whole foreground process group (Ctrl-C, Ctrl-\) already
//!   reached a child in that group and is not sent a second time, as sudo does.
//! - The child is waited for with `waitid(WNOWAIT)` on the blocking pool, and reaped only
//!   after forwarding has stopped, so a signal can never reach a recycled pid.
//! - Exit code: the child's, or 128 + the signal that killed it. A command that cannot be
//!   started exits 127 when it is not found and 126 otherwise, as shells do.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Command, ExitCode, ExitStatus};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _};
use futures_util::StreamExt as _;
use rustix::io::Errno;
use rustix::process::{getpgid, getpgrp, kill_process, waitid, Pid, Signal, WaitId, WaitIdOptions};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::exfiltrator::WithRawSiginfo;
use signal_hook_tokio::SignalsInfo;
use tracing::{debug, error, info, warn};

use crate::config::{self, Cluster, ConfigError, Env};
use crate::knox::labels::Purpose;
use crate::knox::{KnoxClient, Token};
use crate::output;
use crate::secret::Secret;
use crate::time::human;
use crate::time::left;

/// The options of `exec`.
#[derive(Debug, Clone)]
pub(super) struct Args {
    /// The cluster, or the default one.
    pub cluster: Option<String>,
    /// The token must stay valid at least this long; `None` is the cluster's freshness rule
    /// (`min_remaining`, or half the lifetime of a short token).
    pub min_valid: Option<Duration>,
    /// The variable to export, or the cluster's `env_var`.
    pub env_var: Option<String>,
    /// The command and its arguments.
    pub command: Vec<OsString>,
}

/// The signals passed on to the child. SIGHUP, SIGINT and SIGTERM are how services are
/// reloaded and stopped; SIGQUIT, SIGUSR1 and SIGUSR2 would otherwise kill exec (their
/// default action) and leave the child running on its own.
const FORWARDED: [i32; 6] = [SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGUSR1, SIGUSR2];

/// How long transient Knox failures (connection, timeout, 5xx, 429) are retried, the same as
/// `once --timeout`'s default: long enough for a gateway restart, short enough for a person
/// waiting at a prompt.
const RETRY_FOR: Duration = Duration::from_secs(30);

/// Shells' exit codes for a command that was not found, and one that could not be run.
const NOT_FOUND: u8 = 127;
const NOT_EXECUTABLE: u8 = 126;

/// Runs the command; the exit code is the child's (128 + signal when it was killed).
pub(super) async fn run(config_path: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let config = config::load(config_path, &Env::from_process())?;
    let cluster = config.pick(config_path, args.cluster.as_deref()).map_err(anyhow::Error::msg)?;
    let env_var = match args.env_var.as_deref() {
        Some(name) => {
            check_env_var(name)?;
            name
        }
        None => cluster.env_var(),
    };
    let jwt = token_for(cluster, args.min_valid).await?;
    let (program, rest) = args.command.split_first().context("no command to run")?;
    let mut command = Command::new(program);
    command.args(rest).env(env_var, jwt.expose());
    run_child(command, program).await
}

/// A name `setenv` and shells accept: `[A-Za-z_][A-Za-z0-9_]*`.
fn check_env_var(name: &str) -> Result<(), ConfigError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            "command line",
            format!("--env-var {name:?} is not a valid shell variable name"),
        ))
    }
}

/// How much validity the command's token needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// `--min-valid`: at least this long, or the command is not run.
    AtLeast(Duration),
    /// No `--min-valid`: a token the keeper itself would call fresh, with at least the
    /// cluster's safety margin for its lifetime left (`min_remaining`, or half the lifetime of
    /// a short token; `Policy::margin`). A token Knox has just issued always qualifies, so
    /// this works whatever the topology's `knox.token.ttl` (Knox's default is 30 s, docs/knox.md
    /// §6.1).
    Fresh,
}

impl Need {
    fn from_args(min_valid: Option<Duration>) -> Need {
        min_valid.map_or(Need::Fresh, Need::AtLeast)
    }

    /// The validity a token of this lifetime must have left.
    fn required(self, cluster: &Cluster, lifetime: Duration) -> Duration {
        match self {
            Need::AtLeast(d) => d,
            Need::Fresh => cluster.policy.margin(lifetime),
        }
    }

    /// How the refusal names the requirement.
    fn describe(self) -> String {
        match self {
            Need::AtLeast(d) => format!("--min-valid {}", humantime::format_duration(d)),
            Need::Fresh => "the cluster's freshness margin (min_remaining)".to_owned(),
        }
    }
}

/// The published token if it has what `need` asks left, else a new one from Knox if that has.
async fn token_for(cluster: &Cluster, min_valid: Option<Duration>) -> anyhow::Result<Secret> {
    let name = cluster.name.as_str();
    let need = Need::from_args(min_valid);
    // Why the published token will not do, for the log and the refusal message.
    let why_not = match output::read_published(cluster) {
        Ok(Some(p)) => match p.remaining_ms(SystemTime::now()) {
            None => {
                debug!(
                    cluster = name,
                    token_id = p.token_id.as_deref().unwrap_or("-"),
                    "using the published token: it never expires"
                );
                return Ok(p.jwt);
            }
            Some(ms) if ms <= 0 => "the published token has expired".to_owned(),
            Some(ms) => {
                let required = need.required(cluster, p.lifetime().unwrap_or_default());
                if covers(ms, required) {
                    debug!(cluster = name, token_id = p.token_id.as_deref().unwrap_or("-"), left = %left(ms), "using the published token");
                    return Ok(p.jwt);
                }
                format!("the published token has {} left, less than {}", left(ms), need.describe())
            }
        },
        Ok(None) => "no token is published".to_owned(),
        Err(e) => {
            warn!(cluster = name, "ignoring the published token: {e:#}");
            format!("the published token is unreadable ({e:#})")
        }
    };
    let cluster = match need {
        Need::AtLeast(d) => asking_for(cluster, d),
        Need::Fresh => cluster.clone(),
    };
    let token = match acquire(&cluster).await {
        Ok(t) => t,
        Err(e) => bail!(
            "cluster {name:?}: {why_not}, and acquiring a new one failed, so no token can cover {}: {e:#}",
            need.describe()
        ),
    };
    let lifetime = token.lifetime(cluster.lifecycle.consumers_validate);
    if let (Need::AtLeast(min_valid), Some(l)) = (need, lifetime) {
        if l < min_valid {
            bail!(
                "cluster {name:?}: {why_not}, and Knox issued one with only {}: no token can cover {}",
                human(l),
                need.describe()
            );
        }
    }
    info!(
        cluster = name,
        reason = %why_not,
        token_id = %token.id(),
        fingerprint = %token.jwt.fingerprint(),
        left = %lifetime.map_or_else(|| "never expires".into(), human),
        "acquired a token for the command (exec does not publish it)"
    );
    Ok(token.jwt)
}

/// Whether `ms` milliseconds left cover `required`. `--min-valid` comes from the command line:
/// a huge one must not wrap around to a negative number that every token covers.
fn covers(ms: i64, required: Duration) -> bool {
    i64::try_from(required.as_millis()).is_ok_and(|req| ms >= req)
}

/// `cluster` with its requested `lifespan` raised to cover `min_valid`, when it asks for one
/// at all. Without a configured `lifespan` (or `min_valid`) Knox's TTL applies, which is
/// already the longest Knox gives (a longer `lifespan` is capped to it, docs/knox.md §2.1),
/// so asking would only ever shorten the token.
fn asking_for(cluster: &Cluster, min_valid: Duration) -> Cluster {
    let mut c = cluster.clone();
    if c.lifespan.is_some() || c.lifecycle.min_valid.is_some() {
        c.lifecycle.min_valid = Some(c.lifecycle.min_valid.map_or(min_valid, |m| m.max(min_valid)));
    }
    c
}

/// One acquisition, retrying transient failures for up to [`RETRY_FOR`].
async fn acquire(cluster: &Cluster) -> anyhow::Result<Token> {
    let client = KnoxClient::new(&cluster.transport)?;
    Ok(super::acquire_until(&client, cluster, Instant::now() + RETRY_FOR, None, Purpose::Exec).await?)
}

/// Starts `command`, forwards signals to it until it exits, and returns its exit code.
async fn run_child(mut command: Command, program: &OsString) -> anyhow::Result<ExitCode> {
    // Before the spawn, so that a signal arriving in between is queued and then forwarded
    // rather than killing exec (the default action) and orphaning the child. Until here the
    // default actions apply: stopping exec while it fetches a token leaves nothing behind.
    let mut signals = SignalsInfo::<WithRawSiginfo>::with_exfiltrator(FORWARDED, WithRawSiginfo)
        .context("installing signal handlers")?;
    let handle = signals.handle();
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            handle.close();
            let code = if e.kind() == io::ErrorKind::NotFound { NOT_FOUND } else { NOT_EXECUTABLE };
            error!("cannot run {}: {e}", program.to_string_lossy());
            return Ok(ExitCode::from(code));
        }
    };
    // The pid of a child we have not reaped: it cannot be reused until `child.wait()` below.
    let pid = Pid::from_child(&child);
    debug!(pid = pid.as_raw_pid(), "command started");
    let mut exited = tokio::task::spawn_blocking(move || wait_exited(pid));
    loop {
        tokio::select! {
            r = &mut exited => {
                r.context("waiting for the command")?.context("waiting for the command")?;
                break;
            }
            Some(info) = signals.next() => forward(pid, &info),
        }
    }
    handle.close();
    // Reaps the child, which has already exited: this does not block.
    let status = child.wait().context("reaping the command")?;
    debug!(%status, "command exited");
    Ok(ExitCode::from(exit_code(status)))
}

/// Blocks until `pid` has exited, without reaping it (`WNOWAIT`), so its pid stays ours
/// while signals may still be forwarded to it.
fn wait_exited(pid: Pid) -> io::Result<()> {
    loop {
        match waitid(WaitId::Pid(pid), WaitIdOptions::EXITED | WaitIdOptions::NOWAIT) {
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sends the signal described by `info` on to `pid`, unless the kernel sent it to the whole
/// process group (Ctrl-C, Ctrl-\ at a terminal) and the child, still in our group, got it too.
fn forward(pid: Pid, info: &libc::siginfo_t) {
    let signal = info.si_signo;
    // If the child's group cannot be read, it counts as another group.
    let same_group = getpgid(Some(pid)).is_ok_and(|group| group == getpgrp());
    if info.si_code == libc::SI_KERNEL && same_group {
        debug!(signal, "not forwarded: the kernel sent it to the child's process group too");
        return;
    }
    // `pid` is our child, not yet reaped, so it cannot name another process. Only the named
    // signals of FORWARDED arrive here; any other would be refused as the kernel refuses it.
    let sent = Signal::from_named_raw(signal).ok_or(Errno::INVAL).and_then(|s| kill_process(pid, s));
    let pid = pid.as_raw_pid();
    match sent {
        Ok(()) => debug!(signal, pid, "signal forwarded"),
        Err(e) => warn!(signal, pid, "cannot forward the signal: {}", io::Error::from(e)),
    }
}

/// The child's exit code, or 128 + the signal that killed it, as shells report it.
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        // Exit codes are 0 to 255 on Unix, and signals below 128; out of range is a failure.
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(signal.saturating_add(128)).unwrap_or(1),
        // Neither exited nor killed: only a stopped child reports this, and wait() does not
        // return for one.
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_shells() {
        let check =
            |raw: i32, expected: u8| assert_eq!(exit_code(ExitStatus::from_raw(raw)), expected, "{raw:#x}");
        check(0, 0);
        check(7 << 8, 7);
        check(255 << 8, 255);
        check(libc::SIGTERM, 143);
        check(libc::SIGKILL, 137);
        // Killed and dumped core: still 128 + the signal.
        check(libc::SIGSEGV | 0x80, 139);
    }

    #[test]
    fn every_forwarded_signal_can_be_sent() {
        for signal in FORWARDED {
            assert!(Signal::from_named_raw(signal).is_some(), "{signal}");
        }
    }

    #[test]
    fn huge_min_valid_is_not_covered() {
        let hour = Duration::from_secs(3600);
        assert!(covers(3_600_000, hour));
        assert!(!covers(3_599_999, hour));
        // 300 million years in ms is above i64::MAX: `as i64` made it negative.
        let huge = Duration::from_secs(300_000_000 * 365 * 86_400);
        assert!(!covers(i64::MAX, huge));
        assert!(!covers(i64::MAX, Duration::MAX));
    }

    #[test]
    fn env_var_names() {
        for ok in ["CDE_TOKEN", "_x", "a1"] {
            assert!(check_env_var(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A=B", "A B", "É"] {
            assert!(check_env_var(bad).is_err(), "{bad}");
        }
    }
}

//! The allowed range of every bounded config value, in one place.
//!
//! `check-config`, start-up and reload all validate through [`Config::from_toml`], so a value
//! outside these ranges is refused before the daemon runs with it. The bounds are far beyond
//! any sensible setting and far below what would overflow the scheduler's arithmetic or
//! tokio's semaphore; docs/reference.md's configuration tables and `config/example.toml` quote them.
//!
//! [`Config::from_toml`]: super::Config::from_toml

use std::time::Duration;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// `max_concurrent_requests`: 1 to this. A thousand requests in flight is more than any
/// gateway wants, and far below tokio's semaphore limit (which panics).
pub const MAX_CONCURRENT_REQUESTS: usize = 1024;

/// `min_remaining`: more than zero, at most 30 days. A larger margin would keep a token
/// "not fresh" for its whole life.
pub const MAX_MIN_REMAINING: Duration = Duration::from_secs(30 * DAY);

/// `lifespan` (ISO-8601 or humantime) and `min_valid`: at most 3650 days, about ten years.
pub const MAX_LIFESPAN: Duration = Duration::from_secs(3650 * DAY);

/// `revoke_superseded_after`: zero to one day. Readers need seconds to finish with the old
/// token, and Knox counts a superseded token against the user's limit until it is revoked
/// (docs/knox.md §9.3).
pub const MAX_REVOKE_SUPERSEDED_AFTER: Duration = Duration::from_secs(DAY);

/// `timeout` (per Knox request): more than zero, at most 10 minutes.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(10 * MINUTE);

/// `[cluster.on_change] timeout`: more than zero, at most one hour.
pub const MAX_HOOK_TIMEOUT: Duration = Duration::from_secs(HOUR);

/// The config file: at most 16 MiB. A config of 10,000 clusters with explicit outputs (what
/// `benches/keeper.rs` runs) is about 4 MiB; the limit stops a huge file given by mistake
/// from being read into memory. (Devices and FIFOs are refused before any read.)
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// `password_credential`: at most this many bytes of `[A-Za-z0-9._-]`. systemd credential
/// names are short file names like `vc-prod`.
pub const MAX_CREDENTIAL_NAME: usize = 64;

/// `cookie_name`: at most this many bytes. Cookie names are short (`hadoop-jwt`); a long
/// value is more likely the cookie itself, pasted into the wrong key.
pub const MAX_COOKIE_NAME: usize = 64;

/// `installation_id`: at most this many characters of `[A-Za-z0-9._-]`. It is sent to Knox
/// with every token (docs/knox.md §2.1) and shown in its token list, so it stays short.
pub const MAX_INSTALLATION_ID: usize = 64;

/// The host name sent with every token is cut to this many characters (it is not a config
/// key: the kernel's name is reduced to `[A-Za-z0-9._-]`, `config::installation`).
pub const MAX_HOST_LABEL: usize = 64;

/// The allowed range of a duration key: whether zero is allowed, and the maximum.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    /// Whether `0s` is allowed (it turns some keys off).
    pub(super) zero_ok: bool,
    /// The largest value allowed.
    pub(super) max: Duration,
}

impl Span {
    /// More than zero, at most `max`.
    pub(super) const fn positive(max: Duration) -> Span {
        Span { zero_ok: false, max }
    }

    /// Zero to `max`.
    pub(super) const fn up_to(max: Duration) -> Span {
        Span { zero_ok: true, max }
    }

    /// "more than 0s, at most 30days", in the units a config file may use.
    pub(super) fn describe(self) -> String {
        let max = spell(self.max);
        if self.zero_ok {
            format!("0s to {max}")
        } else {
            format!("more than 0s, at most {max}")
        }
    }

    /// `d` if it is in range, else a message naming `ctx`, `key` and the range. The value is
    /// quoted only when it is too long (a duration, never a secret: it parsed as one).
    pub(super) fn check(self, ctx: &str, key: &str, value: &str, d: Duration) -> Result<Duration, String> {
        if d.is_zero() && !self.zero_ok {
            Err(format!("{ctx}: {key}: must be longer than zero (allowed: {})", self.describe()))
        } else if d > self.max {
            Err(format!("{ctx}: {key}: {value:?} is too long (allowed: {})", self.describe()))
        } else {
            Ok(d)
        }
    }
}

/// `d` in the largest unit that divides it ("3650days", "10m"), as a config file may spell
/// it; humantime would say "9years 11months 27days 21h 50m 24s".
fn spell(d: Duration) -> String {
    let secs = d.as_secs();
    let unit = [(DAY, "days"), (HOUR, "h"), (MINUTE, "m")]
        .into_iter()
        .find(|&(unit, _)| d.subsec_nanos() == 0 && secs > 0 && secs.checked_rem(unit) == Some(0));
    match unit {
        Some((DAY, _)) if secs == DAY => "1day".to_owned(),
        Some((unit, name)) => format!("{}{name}", secs.checked_div(unit).unwrap_or(secs)),
        None => humantime::format_duration(d).to_string(),
    }
}

/// `min_remaining`.
pub(super) const MIN_REMAINING: Span = Span::positive(MAX_MIN_REMAINING);
/// `lifespan`.
pub(super) const LIFESPAN: Span = Span::positive(MAX_LIFESPAN);
/// `min_valid` (zero turns it off).
pub(super) const MIN_VALID: Span = Span::up_to(MAX_LIFESPAN);
/// `revoke_superseded_after` (zero revokes at once).
pub(super) const REVOKE_SUPERSEDED_AFTER: Span = Span::up_to(MAX_REVOKE_SUPERSEDED_AFTER);
/// `timeout`.
pub(super) const TIMEOUT: Span = Span::positive(MAX_TIMEOUT);
/// `[cluster.on_change] timeout`.
pub(super) const HOOK_TIMEOUT: Span = Span::positive(MAX_HOOK_TIMEOUT);

/// A duration key that `0s` turns off and that is otherwise between a floor and a ceiling.
#[derive(Debug, Clone, Copy)]
pub(super) struct OffOr {
    /// The shortest value allowed, besides `0s`.
    pub(super) min: Duration,
    /// The longest value allowed.
    pub(super) max: Duration,
}

impl OffOr {
    /// "0s (off), or 30s to 1h".
    pub(super) fn describe(self) -> String {
        format!("0s (off), or {} to {}", spell(self.min), spell(self.max))
    }

    /// `None` for `0s` (off), `Some(d)` in range, else a message naming `key` and the range.
    pub(super) fn check(self, key: &str, value: &str, d: Duration) -> Result<Option<Duration>, String> {
        if d.is_zero() {
            Ok(None)
        } else if d < self.min {
            Err(format!("{key}: {value:?} is too short (allowed: {})", self.describe()))
        } else if d > self.max {
            Err(format!("{key}: {value:?} is too long (allowed: {})", self.describe()))
        } else {
            Ok(Some(d))
        }
    }
}

/// `eviction_check_interval`: a census of the user's tokens costs Knox one request per
/// gateway and user; more often than every 30 s buys little, less often than hourly leaves a
/// revoked token published for too long (docs/knox.md §4.3).
pub(super) const EVICTION_CHECK_INTERVAL: OffOr =
    OffOr { min: Duration::from_secs(30), max: Duration::from_secs(HOUR) };

/// `orphan_sweep_interval`: one minute to seven days.
pub(super) const ORPHAN_SWEEP_INTERVAL: OffOr =
    OffOr { min: Duration::from_secs(MINUTE), max: Duration::from_secs(7 * DAY) };

//! When to refresh: the pure [`plan`] function and the types it reads.
//!
//! `plan` does no IO, reads no clock and cannot fail: the caller passes `now` and the random
//! samples it drew, so every decision is a table test away. The async loop that acts on its
//! answers lives in `keeper/` (whose own transitions are pure too).
//!
//! All instants are monotonic (`Instant`) and were derived from Knox's clock at the moment
//! the token arrived (see `knox::Token::lifetime`), so a wall-clock jump on this host cannot
//! make a token look fresher or staler than it is.
//!
//! No arithmetic here can panic, whatever the inputs: instants move forward only through
//! [`later`] (which saturates at [`FAR_FUTURE`] ahead, and at the end of the clock's range),
//! shares of a duration go through [`share`] (which clamps the fraction and ignores NaN),
//! and durations add and multiply saturating. The config bounds every value well below
//! where this matters (`config::limits`); `plan` holds even without them, as the property
//! tests in `scheduler/tests.rs` check with extreme values.

use std::time::{Duration, Instant};

/// First retry after a transient failure: about a second, so a blip costs little.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Transient retries never wait longer than this, so recovery after an outage is prompt.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// The shortest wait between attempts, whatever the jitter drew: never a tight loop.
pub const MIN_RETRY: Duration = Duration::from_millis(100);
/// A token is kept at least this long (or half its lifetime, if shorter), whatever the policy
/// says, so no combination of `refresh_fraction` and `jitter` can make the keeper re-acquire
/// in a loop.
pub const MIN_TOKEN_AGE: Duration = Duration::from_secs(1);
/// The furthest ahead `plan` ever schedules (about a century): an instant further out is
/// "never" for a daemon, and instants that far ahead may not be representable.
pub const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 86_400);

/// `t + d`, except that `d` counts as at most [`FAR_FUTURE`], and that near the end of the
/// monotonic clock's range the result is the last instant that can be represented. Never
/// panics, unlike `t + d`.
pub fn later(t: Instant, d: Duration) -> Instant {
    let d = d.min(FAR_FUTURE);
    if let Some(at) = t.checked_add(d) {
        return at;
    }
    // Only within a century of the clock's end: approach the last representable instant.
    // Each step size succeeds at most once before it is halved, so this ends in at most
    // about 2 × 62 rounds.
    let (mut at, mut step) = (t, d);
    while !step.is_zero() {
        match at.checked_add(step) {
            Some(next) => at = next,
            None => step = step.checked_div(2).unwrap_or_default(),
        }
    }
    at
}

/// `fraction` of `d`, with the fraction clamped to [0, 1] and NaN taken as 0: never more than
/// `d`, and never a panic (`Duration::mul_f64` panics on a negative, NaN or overflowing
/// result).
pub fn share(d: Duration, fraction: f64) -> Duration {
    let f = if fraction.is_nan() { 0.0 } else { fraction.clamp(0.0, 1.0) };
    // Same arithmetic as `mul_f64`, so results are identical where it would not panic.
    Duration::try_from_secs_f64(f * d.as_secs_f64()).map_or(d, |s| s.min(d))
}

/// Refresh policy of one cluster (config keys of the same names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Replace a token once this share of its lifetime has passed. 0.8 leaves a fifth of the
    /// lifetime to ride out a Knox outage.
    pub refresh_fraction: f64,
    /// ...and never later than this before it expires; also the "fresh" threshold.
    pub min_remaining: Duration,
    /// Up to this share of the lifetime is taken off the refresh point at random, so many
    /// keepers started together do not hit Knox together. Only ever earlier.
    pub jitter: f64,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy { refresh_fraction: 0.8, min_remaining: Duration::from_secs(60), jitter: 0.05 }
    }
}

impl Policy {
    /// The safety margin before expiry for a token of this lifetime: `min_remaining`, or half
    /// the lifetime when the lifetime is shorter than twice that, so a short-lived token is
    /// refreshed at mid-life instead of immediately (which would loop).
    pub fn margin(&self, lifetime: Duration) -> Duration {
        if lifetime < self.min_remaining.saturating_mul(2) {
            half(lifetime)
        } else {
            self.min_remaining
        }
    }

    /// Whether a token of `lifetime` with `remaining` left is still worth keeping rather than
    /// replacing now: at least the margin for its lifetime is left. The same bar the refresh
    /// point keeps, so a short token (a 40 s renewal, Knox's 30 s default ttl) that was just
    /// published counts as fresh; with `min_remaining` taken literally it never would.
    pub fn keeps(&self, remaining: Duration, lifetime: Duration) -> bool {
        !remaining.is_zero() && remaining >= self.margin(lifetime)
    }
}

/// The published token, in monotonic time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Held {
    /// When it arrived (Knox's issue time, as near as we can tell).
    pub issued: Instant,
    /// When it stops working, or `None` for a token that never expires.
    pub expires: Option<Instant>,
    /// The jitter draw for this token in [0, 1), fixed at acquisition so re-planning (after a
    /// reload, say) gives the same point.
    pub jitter_sample: f64,
    /// Whether the refresh is a renewal (a managed token whose consumers go through the
    /// gateway) rather than a re-acquisition.
    pub renewable: bool,
}

impl Held {
    /// The token's lifetime, or `None` if it never expires.
    pub fn lifetime(&self) -> Option<Duration> {
        self.expires.map(|e| e.saturating_duration_since(self.issued))
    }

    /// The point at which a token is replaced when all goes well.
    pub fn refresh_at(&self, policy: &Policy) -> Option<Instant> {
        let lifetime = self.lifetime()?;
        let by_fraction = share(lifetime, policy.refresh_fraction);
        let by_margin = lifetime.saturating_sub(policy.margin(lifetime));
        let jitter = share(lifetime, policy.jitter * self.jitter_sample.clamp(0.0, 1.0));
        let floor = MIN_TOKEN_AGE.min(half(lifetime));
        Some(later(self.issued, by_fraction.min(by_margin).saturating_sub(jitter).max(floor)))
    }

    /// The last point at which replacing it still leaves the full margin.
    pub fn last_safe(&self, policy: &Policy) -> Option<Instant> {
        let lifetime = self.lifetime()?;
        Some(later(self.issued, lifetime.saturating_sub(policy.margin(lifetime))))
    }

    /// The same token after a host suspend of `d`: monotonic time did not count the sleep,
    /// so everything about the token is `d` earlier than the instants said.
    pub fn shifted_back(&self, d: Duration) -> Held {
        let back = |t: Instant| t.checked_sub(d).unwrap_or(t);
        Held { issued: back(self.issued), expires: self.expires.map(back), ..*self }
    }

    /// Whether at least `min_remaining` is left at `now` ("fresh").
    pub fn is_fresh(&self, now: Instant, policy: &Policy) -> bool {
        match self.expires {
            None => true,
            Some(e) => e.saturating_duration_since(now) >= policy.min_remaining,
        }
    }
}

/// Consecutive failures since the last success.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Failures {
    /// How many in a row (at least 1).
    pub count: u32,
    /// When the last one happened.
    pub last: Instant,
    /// The backoff draw for the last one, in [0, 1).
    pub sample: f64,
    /// What kind of failure the last one was.
    pub class: ErrorClass,
}

/// Failures differ in how soon trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Network, timeouts, 5xx: Knox having a bad minute. Retry soon.
    Transient,
    /// 401, 403, redirects, TLS, unusable answers: someone has to fix something. Retry less
    /// often, so the gateway's logs and the LDAP behind it are not flooded.
    Rejected,
    /// The per-user token limit: every attempt may count against the quota for a day
    /// (docs/knox.md §9.3). Retry in minutes.
    Quota,
}

impl ErrorClass {
    /// The first backoff, the cap, and the floor under the jitter.
    fn params(self) -> (Duration, Duration, Duration) {
        match self {
            ErrorClass::Transient => (BACKOFF_BASE, BACKOFF_CAP, MIN_RETRY),
            ErrorClass::Rejected => {
                (Duration::from_secs(15), Duration::from_secs(900), Duration::from_secs(5))
            }
            ErrorClass::Quota => {
                (Duration::from_secs(120), Duration::from_secs(1800), Duration::from_secs(60))
            }
        }
    }
}

/// What the keeper knows about one cluster.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct View {
    /// The published token, if any.
    pub held: Option<Held>,
    /// Set while refreshing keeps failing.
    pub failures: Option<Failures>,
}

/// What to do next for one cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Acquire (and publish) a token now.
    Acquire,
    /// Renew the held token now.
    Renew,
    /// Nothing until then.
    WaitUntil(Instant),
    /// Nothing until something changes: the token never expires.
    Idle,
}

/// The backoff before retry number `count` (1-based) after failures of `class`: exponential
/// from the class's base, capped, with full jitter (`sample` in [0, 1) scales it), and never
/// below the class's floor. For transient failures: ~1 s, doubling, at most 5 minutes.
pub fn backoff(count: u32, sample: f64, class: ErrorClass) -> Duration {
    let (base, cap, floor) = class.params();
    let doublings = count.saturating_sub(1).min(16);
    let exp = base.saturating_mul(2u32.saturating_pow(doublings)).min(cap);
    share(exp, sample).max(floor)
}

/// For the one-shot verbs (`once`, `exec`), which retry an acquisition until a deadline
/// instead of holding a token: the wait before retry number `count` after a failure of
/// `class` at `now`, or `None` to give up, because the failure is not transient or the retry
/// would not start before `deadline`.
pub fn retry_before(
    count: u32,
    sample: f64,
    class: ErrorClass,
    transient: bool,
    now: Instant,
    deadline: Instant,
) -> Option<Duration> {
    let wait = backoff(count, sample, class);
    (transient && later(now, wait) < deadline).then_some(wait)
}

/// Half of `d` (rounded down), spelled so that no lint has to wonder about division.
fn half(d: Duration) -> Duration {
    d.checked_div(2).unwrap_or_default()
}

/// Decides the next step for one cluster. Pure: same inputs, same answer.
pub fn plan(now: Instant, view: &View, policy: &Policy) -> Action {
    let due = match (view.failures, view.held) {
        (Some(f), held) => {
            let mut retry = later(f.last, backoff(f.count, f.sample, f.class));
            // While a good token is published, do not sleep past the points that matter for
            // it: the last safe refresh point, then its expiry.
            if let Some(h) = held {
                let limits = [h.last_safe(policy), h.expires];
                if let Some(limit) = limits.into_iter().flatten().find(|&t| t > f.last) {
                    retry = retry.min(limit.max(later(f.last, MIN_RETRY)));
                }
            }
            retry
        }
        (None, Some(h)) => match h.refresh_at(policy) {
            Some(t) => t,
            None => return Action::Idle,
        },
        (None, None) => return Action::Acquire,
    };
    if due > now {
        Action::WaitUntil(due)
    } else if view.held.is_some_and(|h| h.renewable) {
        Action::Renew
    } else {
        Action::Acquire
    }
}

#[cfg(test)]
mod tests;

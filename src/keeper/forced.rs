//! Refreshes requested by SIGUSR1: coalesced and spaced out per cluster, so that a flood of
//! signals costs at most one token per cluster per [`FORCED_REFRESH_GAP`].

use std::time::{Duration, Instant};

use super::slot::State;
use crate::scheduler::{later, Action};

/// After a refresh requested by SIGUSR1 got a token, the next requested one for that cluster
/// waits this long: a script that sends SIGUSR1 in a loop gets one token per cluster per 10 s,
/// not one per signal (Knox's per-user limit is 10 by default, docs/knox.md §9.3).
pub const FORCED_REFRESH_GAP: Duration = Duration::from_secs(10);

/// After a requested refresh failed, the next requested one waits this long: Knox's answer
/// cost no token, so a retry after fixing a password comes at once, but never in a tight loop.
pub(super) const FORCED_RETRY_GAP: Duration = crate::scheduler::MIN_RETRY;

/// When a refresh requested at `now` (SIGUSR1) happens: `None` if the cluster is `busy` (an
/// attempt in flight, or a requested refresh pending, covers this request too); otherwise now,
/// or when the gap since the last requested refresh ends (`gate`). Deferred, never dropped.
pub(super) fn forced_request(now: Instant, busy: bool, gate: Option<Instant>) -> Option<Instant> {
    if busy {
        return None;
    }
    Some(gate.map_or(now, |g| g.max(now)))
}

/// What a request did to one cluster, for the summary line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Request {
    /// Refreshed now.
    Now,
    /// Refreshed when the gap since the last requested refresh is over.
    Deferred,
    /// An attempt in flight, or a request pending, covers it.
    Absorbed,
}

/// A refresh requested at `now` for one cluster ([`forced_request`]); the state records when
/// it is due, and the cluster must then be re-planned (unless it was absorbed).
pub(super) fn request(state: &mut State, now: Instant) -> Request {
    match forced_request(now, state.in_flight || state.forced.due.is_some(), state.forced.gate) {
        None => Request::Absorbed,
        Some(at) => {
            state.forced.due = Some(at);
            if at <= now {
                Request::Now
            } else {
                Request::Deferred
            }
        }
    }
}

/// `plan`'s `action` for a cluster with a requested refresh due at `forced`: plan's own action
/// when it acts now (an attempt absorbs the request; a due request turns a renewal into an
/// acquisition, which is what was asked for), an acquisition once the request is due, and
/// otherwise a wake-up at the earlier of the two.
pub(super) fn with_forced(action: Action, now: Instant, forced: Option<Instant>) -> Action {
    let Some(at) = forced else { return action };
    match action {
        Action::Acquire => Action::Acquire,
        _ if at <= now => Action::Acquire,
        Action::Renew => Action::Renew,
        Action::WaitUntil(t) => Action::WaitUntil(t.min(at)),
        Action::Idle => Action::WaitUntil(at),
    }
}

/// Until when requested refreshes wait after a requested attempt finished at `now`: a token
/// gained costs the full gap; a failure (which cost no token) only the shortest retry.
pub(super) fn gate_after(acquired: bool, now: Instant) -> Instant {
    later(now, if acquired { FORCED_REFRESH_GAP } else { FORCED_RETRY_GAP })
}

/// How a request went across every cluster, for its one log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Requested {
    pub(super) now: usize,
    pub(super) deferred: usize,
    pub(super) absorbed: usize,
}

impl Requested {
    /// Counts one cluster's answer.
    pub(super) fn add(&mut self, r: Request) {
        match r {
            Request::Now => self.now += 1,
            Request::Deferred => self.deferred += 1,
            Request::Absorbed => self.absorbed += 1,
        }
    }
}

//! The refresh cycle of one cluster as transitions: what to do next ([`next`]), and what an
//! attempt's outcome leads to ([`finish`]): the new state, and the effects for the loop to
//! carry out (log lines, telemetry, files to rewrite, a hook, a revocation, a re-plan).
//!
//! Pure: no clock is read (the instant is passed in), nothing is drawn at random (the draws
//! are passed in), and nothing is done here. Time decisions go through `scheduler::plan`.

use std::time::Instant;

use super::effect::{Effect, Record};
use super::forced::{gate_after, with_forced};
use super::log::{Failure, Note, Publication};
use super::revoke;
use super::slot::{SlotId, State};
use super::warnings;
use crate::config::Cluster;
use crate::knox::answer::Reason;
use crate::knox::{Flavor, KnoxError, Token};
use crate::output::Eviction;
use crate::scheduler::{plan, Action, ErrorClass, Failures, Held};

/// What an attempt does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Work {
    Acquire,
    Renew,
}

/// An attempt to start, with what its task needs from the state.
#[derive(Debug)]
pub(super) enum Start {
    /// Acquire a token and publish it as `generation`, with the last eviction.
    Acquire { generation: u64, eviction: Option<Eviction> },
    /// Renew `token`, whose json is rewritten as `generation` (the same one).
    Renew { token: Box<Token>, generation: u64, eviction: Option<Eviction> },
}

/// What [`next`] says the loop does for a cluster.
#[derive(Debug)]
pub(super) enum Step {
    /// Start this attempt now (the state already counts it as in flight).
    Start(Start),
    /// Wake up at this instant and ask again.
    WakeAt(Instant),
}

/// What an attempt's task reports back.
#[derive(Debug)]
pub(super) struct Done {
    /// The generation it published (or would have).
    pub(super) generation: u64,
    pub(super) work: Work,
    /// The renew/revoke API flavour Knox answered to.
    pub(super) flavor: Flavor,
    pub(super) result: Result<Attempted, AttemptError>,
}

/// What an attempt achieved.
#[derive(Debug)]
pub(super) enum Attempted {
    /// A new token, published.
    Acquired(Token),
    /// The held token, renewed (its json rewritten).
    Renewed(Token),
    /// Knox will not renew it; it has to be replaced.
    RenewRefused(Reason),
}

/// Why an attempt produced nothing.
#[derive(Debug)]
pub(crate) enum AttemptError {
    /// Knox said no, or could not be reached.
    Knox(KnoxError),
    /// Every output failed; the token was not published anywhere.
    Publish(String),
    /// Shutdown came first.
    Cancelled,
}

/// The random draws a transition may need, drawn by the loop so that transitions stay pure.
#[derive(Debug, Clone, Copy)]
pub(super) struct Draws {
    /// For a new token's refresh point (`Held::jitter_sample`), in [0, 1).
    pub(super) jitter: f64,
    /// For a failure's backoff (`Failures::sample`), in [0, 1).
    pub(super) backoff: f64,
}

impl Draws {
    /// Fresh draws.
    pub(super) fn new() -> Draws {
        Draws { jitter: fastrand::f64(), backoff: fastrand::f64() }
    }
}

/// What comes next for a cluster at `now`: nothing while an attempt is in flight (its
/// outcome comes next), else `plan`'s action joined with a requested refresh. Starting an
/// attempt marks it in flight here. The note, if any, says once that the token expired.
pub(super) fn next(state: &mut State, cluster: &Cluster, now: Instant) -> (Option<Note>, Option<Step>) {
    if state.in_flight {
        return (None, None);
    }
    let mut note = None;
    if let (Some(h), false) = (state.held, state.said.expired) {
        if h.expires.is_some_and(|e| e <= now) {
            state.said.expired = true;
            note = Some(Note::Expired);
        }
    }
    // A token found gone on the server is replaced at once (`census::evicted`).
    let action = if state.guard.due {
        Action::Acquire
    } else {
        with_forced(plan(now, &state.view(), &cluster.policy), now, state.forced.due)
    };
    let step = match action {
        Action::Acquire => Some(Step::Start(begin(state, Work::Acquire, now))),
        Action::Renew => Some(Step::Start(begin(state, Work::Renew, now))),
        Action::WaitUntil(t) => Some(Step::WakeAt(t)),
        Action::Idle => None,
    };
    (note, step)
}

/// Marks an attempt in flight. Any attempt absorbs a requested refresh; it counts as
/// requested (for the gap after it) only if it acquires and the request was due. A renewal
/// keeps the generation; an acquisition publishes the next one (the generation was read
/// back from the published json, so it may be anything: it saturates).
fn begin(state: &mut State, work: Work, now: Instant) -> Start {
    state.in_flight = true;
    state.guard.due = false;
    let eviction = state.guard.last.clone();
    let forced = state.forced.due.take();
    state.forced.in_flight = work == Work::Acquire && forced.is_some_and(|t| t <= now);
    match (work, &state.token) {
        (Work::Renew, Some(token)) => {
            Start::Renew { token: Box::new(token.clone()), generation: state.generation, eviction }
        }
        _ => Start::Acquire { generation: state.generation.saturating_add(1), eviction },
    }
}

/// What an attempt's outcome leads to. A new token replaces the held one (the old one is
/// queued for revocation, see [`revoke::supersede`]); a renewal moves the expiry; a refused
/// renewal makes `plan` say acquire; a failure is counted for the backoff and may make the
/// json stale. A cancelled attempt (shutdown) changes only the bookkeeping.
pub(super) fn finish(
    state: &mut State,
    cluster: &Cluster,
    slot: SlotId,
    done: Done,
    now: Instant,
    draws: Draws,
) -> Vec<Effect> {
    let mut effects = Vec::new();
    state.in_flight = false;
    let cancelled = matches!(done.result, Err(AttemptError::Cancelled));
    if std::mem::take(&mut state.forced.in_flight) && !cancelled {
        state.forced.gate = Some(gate_after(matches!(done.result, Ok(Attempted::Acquired(_))), now));
    }
    if !state.attempted {
        state.attempted = true;
        effects.push(Effect::FirstAttempt);
    }
    state.flavor = done.flavor;
    let superseded = match done.result {
        Ok(Attempted::Acquired(token)) => {
            acquired(state, cluster, token, done.generation, now, draws.jitter, &mut effects)
        }
        Ok(Attempted::Renewed(token)) => {
            renewed(state, cluster, token, now, draws.jitter, &mut effects);
            None
        }
        Ok(Attempted::RenewRefused(reason)) => {
            effects.push(Effect::Record(Record::RenewalFailed(reason.code().to_owned())));
            renew_refused(state, reason, &mut effects);
            None
        }
        Err(AttemptError::Cancelled) => return effects,
        Err(err) => {
            failed(state, cluster, done.work, &err, now, draws.backoff, &mut effects);
            None
        }
    };
    if let Some(old) = superseded {
        effects.extend(revoke::supersede(state, cluster, slot, old, now));
        state.guard.gone = None;
    }
    effects.push(Effect::Replan);
    effects
}

/// The info line for a published token.
fn publication(
    cluster: &Cluster,
    token: &Token,
    generation: u64,
    held: &Held,
    renewal: bool,
    now: Instant,
) -> Note {
    Note::Published(Publication {
        renewal,
        url: cluster.token_url.to_string(),
        token_id: token.id().to_owned(),
        fingerprint: token.jwt.fingerprint(),
        generation,
        expires_at_ms: token.expiry_ms(cluster.lifecycle.consumers_validate),
        next_refresh_in: held.refresh_at(&cluster.policy).map(|t| t.saturating_duration_since(now)),
    })
}

/// A new token was published: it is held from now on; the one it replaces is returned.
fn acquired(
    state: &mut State,
    cluster: &Cluster,
    token: Token,
    generation: u64,
    now: Instant,
    jitter: f64,
    effects: &mut Vec<Effect>,
) -> Option<Token> {
    let held = state.hold(cluster, &token, jitter);
    effects.push(Effect::Log(publication(cluster, &token, generation, &held, false, now)));
    effects.extend(warnings::new_token(&mut state.said, cluster, &token).into_iter().map(Effect::Log));
    let published = state.published(cluster, &token, generation);
    effects.push(Effect::Record(Record::Published { published: Box::new(published), renewal: false }));
    if cluster.on_change.is_some() {
        effects.push(Effect::Hook { generation });
    }
    let old = state.token.replace(token);
    state.generation = generation;
    state.held = Some(held);
    state.failures = None;
    state.said.expired = false;
    state.stale = None;
    state.expired_removed = false;
    old
}

/// The held token was renewed: same token and generation, a later expiry.
fn renewed(
    state: &mut State,
    cluster: &Cluster,
    token: Token,
    now: Instant,
    jitter: f64,
    effects: &mut Vec<Effect>,
) {
    let held = state.hold(cluster, &token, jitter);
    effects.push(Effect::Log(publication(cluster, &token, state.generation, &held, true, now)));
    let published = state.published(cluster, &token, state.generation);
    effects.push(Effect::Record(Record::Published { published: Box::new(published), renewal: true }));
    state.token = Some(token);
    state.held = Some(held);
    state.failures = None;
    state.said.expired = false;
    state.stale = None;
}

/// Knox would not renew the held token: say why, stop renewing for good if it never will,
/// and let `plan` say acquire (the refresh point has passed: renewal was due).
fn renew_refused(state: &mut State, reason: Reason, effects: &mut Vec<Effect>) {
    let token_id = state.token.as_ref().map_or("-", Token::id).to_owned();
    effects.push(Effect::Log(Note::RenewalRefused { token_id, reason }));
    if matches!(reason, Reason::NotAuthorized | Reason::NotExtended) {
        if !state.renew_refused {
            effects.push(Effect::Log(Note::RenewalStopped { reason }));
        }
        state.renew_refused = true;
    }
    if let Some(h) = &mut state.held {
        h.renewable = false;
    }
    state.failures = None;
}

/// An attempt failed: count it (the backoff grows with the count and depends on the class),
/// say so in one line (an error once it is the quota, or the third in a row), and mark the
/// json stale past the refresh point.
fn failed(
    state: &mut State,
    cluster: &Cluster,
    work: Work,
    err: &AttemptError,
    now: Instant,
    sample: f64,
    effects: &mut Vec<Effect>,
) {
    let (message, status, class) = match err {
        AttemptError::Knox(e) => (e.to_string(), e.status(), e.class()),
        AttemptError::Publish(e) => (e.clone(), None, ErrorClass::Transient),
        AttemptError::Cancelled => return,
    };
    effects.push(Effect::Record(match work {
        Work::Acquire => Record::AcquisitionFailed,
        Work::Renew => Record::RenewalFailed(status.map_or_else(|| "none".to_owned(), |s| s.to_string())),
    }));
    let count = state.failures.map_or(1, |f| f.count.saturating_add(1));
    state.failures = Some(Failures { count, last: now, sample, class });
    let retry_in = match plan(now, &state.view(), &cluster.policy) {
        Action::WaitUntil(t) => Some(t.saturating_duration_since(now)),
        _ => None,
    };
    effects.push(Effect::Log(Note::RefreshFailed(Failure {
        message: message.clone(),
        status,
        failures: count,
        retry_in,
        left: left(state.held, now),
        loud: class == ErrorClass::Quota || count >= 3,
    })));
    effects.extend(stale(state, cluster, &message, now));
}

/// What a failure leaves published, for its log line.
pub(super) fn left(held: Option<Held>, now: Instant) -> String {
    match held.and_then(|h| h.expires) {
        Some(e) if e > now => {
            format!("the last good token stays published, {} left", crate::time::human(e - now))
        }
        Some(_) => "the last good token has expired".to_owned(),
        None if held.is_some() => "the last good token stays published".to_owned(),
        None => "no token is published yet".to_owned(),
    }
}

/// Refreshing failed with `message`: past the refresh point the json says so (again only
/// when the error changed), and with `remove_expired` an expired token's files go away
/// (once per token).
pub(super) fn stale(state: &mut State, cluster: &Cluster, message: &str, now: Instant) -> Vec<Effect> {
    let mut effects = Vec::new();
    let (Some(held), Some(token)) = (state.held, &state.token) else { return effects };
    let past_refresh = held.refresh_at(&cluster.policy).is_some_and(|t| t <= now);
    if past_refresh && state.stale.as_deref() != Some(message) {
        state.stale = Some(message.to_owned());
        effects.push(Effect::Record(Record::Stale(state.stale.clone())));
        let mut published = state.published(cluster, token, state.generation);
        published.stale = true;
        published.last_error = Some(message.to_owned());
        effects.push(Effect::WriteJson(Box::new(published)));
    }
    let expired = held.expires.is_some_and(|e| e <= now);
    if expired && cluster.lifecycle.remove_expired && !state.expired_removed {
        state.expired_removed = true;
        effects.push(Effect::RemoveFiles);
    }
    effects
}

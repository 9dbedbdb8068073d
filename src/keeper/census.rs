//! The census of a user's tokens, as pure decisions: which clusters share one
//! ([`group_key`]), how often it may be taken ([`budget_allows`]), what Knox's list says about
//! each published managed token ([`judge`]), what a failed census means ([`after_failure`]),
//! and what a token found revoked on the server does to its cluster ([`evicted`]).
//!
//! One census is `getUserTokens?userName=<user>` (docs/knox.md §4.3) through one cluster of a
//! group: Knox's token state is gateway-wide, so the list holds the user's tokens of every
//! topology of that gateway, and one call per group and interval serves every cluster of it.
//! The eviction guard and the orphan sweep (`sweep`) both read it.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::effect::{Effect, Record};
use super::log::Note;
use super::slot::State;
use crate::config::{Cluster, Identity};
use crate::knox::labels;
use crate::knox::wire::{UserToken, UserTokens};
use crate::knox::{KnoxError, Token};
use crate::output::Eviction;
use crate::scheduler::later;

/// The window over which census calls are counted.
pub(super) const BUDGET_WINDOW: Duration = Duration::from_secs(3600);

/// After 401 or 403, the census of a group is tried again at most this often.
pub(super) const DENIED_RETRY: Duration = Duration::from_secs(3600);

/// Who shares one census: Knox's gateway (scheme, host and port) and the user.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct GroupKey {
    /// `https://knox.example.com:8443`.
    pub(super) origin: String,
    pub(super) user: String,
}

/// The group of `cluster`: its gateway and its user, the Basic user, else the published
/// token's `sub` (`None` until a token says who it is).
pub(super) fn group_key(cluster: &Cluster, token: Option<&Token>) -> Option<GroupKey> {
    let user = crate::knox::owner(cluster, token)?;
    Some(GroupKey { origin: cluster.token_url.origin().ascii_serialization(), user })
}

/// Whether a cluster's published token is guarded: a managed token (a pre-1.6 Knox, which
/// does not say, has no `getUserTokens` either).
pub(super) fn guarded(state: &State) -> bool {
    state.token.as_ref().is_some_and(|t| t.managed && !t.legacy)
}

/// The most census calls a group makes per rolling hour when they are due every
/// `interval`: the steady rate plus two for restarts and reloads.
pub(super) fn budget(interval: Duration) -> usize {
    let per_hour = BUDGET_WINDOW.as_secs().checked_div(interval.as_secs().max(1)).unwrap_or(0);
    usize::try_from(per_hour).unwrap_or(usize::MAX).saturating_add(2)
}

/// Whether a census may be sent at `now`, given the instants of the group's earlier calls
/// (pruned here to the last hour): `Ok`, or `Err(t)` with the instant the oldest call leaves
/// the window.
pub(super) fn budget_allows(
    calls: &mut VecDeque<Instant>,
    now: Instant,
    interval: Duration,
) -> Result<(), Instant> {
    while calls.front().is_some_and(|&t| later(t, BUDGET_WINDOW) <= now) {
        calls.pop_front();
    }
    match calls.front() {
        Some(&oldest) if calls.len() >= budget(interval) => Err(later(oldest, BUDGET_WINDOW)),
        _ => Ok(()),
    }
}

/// One token of Knox's list, as the guard and the sweep read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Listed {
    pub(super) id: String,
    /// `false` only when Knox says so.
    pub(super) enabled: bool,
    /// Issue time, epoch ms on Knox's clock.
    pub(super) issued_ms: Option<i64>,
    /// This installation's (`labels::is_mine`).
    pub(super) mine: bool,
    /// The host of its labels: `tk_host`, else the comment's `on <host> for`.
    pub(super) host: Option<String>,
    /// The cluster of its labels: `tk_cluster`, else the comment's `for <cluster>`.
    pub(super) cluster: Option<String>,
    /// Acquired by `exec` for a child process: never published, so never an orphan.
    pub(super) exec: bool,
}

/// Why a census told nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CensusError {
    /// 503 or 404: no token management, or no such API. The guard stops until a reload.
    NoApi(String),
    /// 401 or 403: tried again at most hourly.
    Denied(String),
    /// Anything else: the next interval tries again.
    Transient(String),
}

/// Reads Knox's answer to `getUserTokens` (status and body) for `identity`.
pub(super) fn read(status: u16, body: &str, identity: &Identity) -> Result<Vec<Listed>, CensusError> {
    let say = |what: &str| format!("getUserTokens answered {status}{what}");
    match status {
        200 => {}
        503 | 404 => return Err(CensusError::NoApi(say(": token management is not configured here"))),
        401 | 403 => return Err(CensusError::Denied(say(": not allowed to list the user's tokens"))),
        _ => return Err(CensusError::Transient(say(""))),
    }
    let list: UserTokens = serde_json::from_str(body)
        .map_err(|e| CensusError::Transient(say(&format!(" with a body that is not a token list: {e}"))))?;
    Ok(list.tokens.into_iter().map(|t| listed(t, identity)).collect())
}

/// A request error (the census never got an answer of Knox's own).
pub(super) fn request_failed(e: &KnoxError) -> CensusError {
    match e {
        KnoxError::Unauthorized { .. } | KnoxError::Redirect { .. } => CensusError::Denied(e.to_string()),
        _ => CensusError::Transient(e.to_string()),
    }
}

/// One token of the list, read.
fn listed(t: UserToken, identity: &Identity) -> Listed {
    let m = t.metadata.as_ref();
    let enabled = match m.and_then(|m| m.enabled.as_ref()) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => !s.trim().eq_ignore_ascii_case("false"),
        _ => true,
    };
    Listed {
        mine: labels::is_mine(m, &identity.installation_id),
        host: labels::host_of(m),
        cluster: labels::cluster_of(m),
        exec: labels::is_exec(m),
        enabled,
        issued_ms: t.issue_time_long,
        id: t.token_id,
    }
}

/// Why a published token is gone on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gone {
    /// Listed with `enabled: false`.
    Disabled,
    /// No longer listed: revoked, or evicted by `REMOVE_OLDEST`.
    Removed,
}

impl Gone {
    /// As the log line and `status` say it.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Gone::Disabled => "disabled",
            Gone::Removed => "removed",
        }
    }
}

/// What a census says about one published managed token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Listed and enabled, expired (the schedule replaces it anyway), or being replaced.
    Fine,
    /// Absent, but never seen listed, and the census did not come through its own topology
    /// (or came before it was acquired): nothing can be concluded.
    Unjudged,
    /// Gone on the server: replace it now.
    Gone(Gone),
    /// Gone, but the guard replaced this cluster's token less than an interval ago.
    Throttled(Gone),
}

/// One published managed token, as [`judge`] sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Member<'a> {
    pub(super) token_id: &'a str,
    /// When it arrived.
    pub(super) received: Instant,
    pub(super) expires: Option<Instant>,
    /// The census came through this cluster's own `token_url`.
    pub(super) own_url: bool,
    /// An attempt is in flight for the cluster.
    pub(super) in_flight: bool,
    /// When the guard last asked for a replacement.
    pub(super) replaced_at: Option<Instant>,
}

/// What the census `listed`, sent at `sent`, says at `now` about `m`. `seen` holds the ids an
/// earlier census of the group listed. A token is gone when it is listed disabled, or absent
/// while an earlier census listed it, or absent from a census that came through its own
/// topology after it was acquired. An expired token is not judged; the schedule replaces it.
pub(super) fn judge(
    m: &Member<'_>,
    listed: &[Listed],
    seen: &BTreeSet<String>,
    sent: Instant,
    now: Instant,
    interval: Duration,
) -> Verdict {
    if m.in_flight || m.expires.is_some_and(|e| e <= now) {
        return Verdict::Fine;
    }
    let gone = match listed.iter().find(|t| t.id == m.token_id) {
        Some(t) if !t.enabled => Gone::Disabled,
        Some(_) => return Verdict::Fine,
        None if seen.contains(m.token_id) => Gone::Removed,
        None if m.own_url && m.received < sent => Gone::Removed,
        None => return Verdict::Unjudged,
    };
    match m.replaced_at {
        Some(t) if later(t, interval) > now => Verdict::Throttled(gone),
        _ => Verdict::Gone(gone),
    }
}

/// What a failed census leads to for its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Halt {
    /// Try again at this instant.
    Until(Instant),
    /// Stop until the config is reloaded.
    Stopped,
}

/// After `error` at `now`: no API → stop; denied → at most hourly; else the next interval.
pub(super) fn after_failure(error: &CensusError, now: Instant, interval: Duration) -> Halt {
    match error {
        CensusError::NoApi(_) => Halt::Stopped,
        CensusError::Denied(_) => Halt::Until(later(now, DENIED_RETRY.max(interval))),
        CensusError::Transient(_) => Halt::Until(later(now, interval)),
    }
}

/// The published token of a cluster is `gone` on the server (seen at `now`, `wall` on this
/// host's clock): it is replaced at once, counted, said, and remembered for `status`; a
/// removed token is not revoked again once replaced. A token already said to be gone (its
/// replacement failed) is only tried again: said and counted once.
pub(super) fn evicted(state: &mut State, gone: Gone, now: Instant, wall: SystemTime) -> Vec<Effect> {
    let token_id = state.token.as_ref().map_or("-", Token::id).to_owned();
    state.guard.due = true;
    state.guard.replaced_at = Some(now);
    if state.guard.last.as_ref().is_some_and(|e| e.token_id == token_id && e.reason == gone.as_str()) {
        return vec![Effect::Replan];
    }
    let eviction = Eviction { reason: gone.as_str().to_owned(), at: wall, token_id: token_id.clone() };
    state.guard.gone = (gone == Gone::Removed).then(|| token_id.clone());
    state.guard.last = Some(eviction);
    if let Some(h) = &mut state.held {
        // Knox will not renew a revoked or disabled token.
        h.renewable = false;
    }
    vec![
        Effect::Log(Note::Evicted { token_id, reason: gone.as_str() }),
        Effect::Record(Record::Evicted),
        Effect::Replan,
    ]
}

//! Revoking superseded tokens, as transitions: when a replaced token is revoked
//! ([`supersede`]), what Knox's answer leads to ([`settle`]: done, refused for good, retried
//! with backoff, or given up), and what is revoked at shutdown ([`at_exit`]).
//!
//! Revoking keeps the user under Knox's per-user token limit (docs/knox.md §9.3); a token
//! that is not revoked still expires on its own, so giving up is safe.

use std::time::{Duration, Instant};

use super::effect::{Effect, Record};
use super::log::{Note, RevokeNote};
use super::slot::{SlotId, State};
use crate::config::Cluster;
use crate::knox::answer::Revocation;
use crate::knox::{Flavor, KnoxError, Token};
use crate::scheduler::{backoff, later, ErrorClass};
use crate::secret::Secret;

/// A revocation that keeps failing is given up after this many tries; the token expires on
/// its own anyway.
pub(super) const REVOKE_ATTEMPTS: u32 = 5;

/// A superseded token to revoke.
#[derive(Debug)]
pub(super) struct PendingRevoke {
    /// The cluster's name, for log lines and telemetry (the slot may be gone by then).
    pub(super) cluster: String,
    /// The incarnation that replaced it: only that one revokes it.
    pub(super) slot: SlotId,
    /// For log lines.
    pub(super) token_id: Option<String>,
    /// What Knox is sent ([`Token::revocation_body`]).
    pub(super) body: Secret,
    /// Tries so far.
    pub(super) attempts: u32,
}

impl PendingRevoke {
    /// The token id for log lines, or `-`.
    pub(super) fn id(&self) -> &str {
        self.token_id.as_deref().unwrap_or("-")
    }
}

/// What a revocation task reports back.
#[derive(Debug)]
pub(super) struct Revoked {
    /// The renew/revoke API flavour Knox answered to.
    pub(super) flavor: Flavor,
    pub(super) result: Result<Revocation, KnoxError>,
}

/// When `old`, just replaced in `state` by a new token, is revoked: a managed token (or any
/// token of a pre-1.6 Knox, which does not say) that is not the new one itself, unless
/// revocation was refused for good. It is due `revoke_superseded_after` from `now`, so that
/// readers that just loaded it can finish, but no later than it expires: readers cannot use
/// it past its expiry anyway, and expired tokens still count toward the limit for a day.
/// With short-lived tokens (Knox's default 30 s) this keeps the user well under the limit.
pub(super) fn supersede(
    state: &State,
    cluster: &Cluster,
    slot: SlotId,
    old: Token,
    now: Instant,
) -> Option<Effect> {
    let is_new = state.token.as_ref().is_some_and(|t| t.jwt == old.jwt);
    let revocable = old.managed || old.legacy;
    // A token the eviction guard found removed on the server is gone already.
    let gone = state.guard.gone.is_some() && state.guard.gone == old.token_id;
    if is_new || !revocable || state.revoke_refused || gone {
        return None;
    }
    let left = old
        .expires_at(cluster.lifecycle.consumers_validate)
        .map_or(Duration::MAX, |e| e.saturating_duration_since(now));
    // A wait too long to add to the clock (an absurd configured value) never comes.
    let due = now.checked_add(cluster.lifecycle.revoke_superseded_after.min(left))?;
    let pending = PendingRevoke {
        cluster: cluster.name.clone(),
        slot,
        token_id: old.token_id.clone(),
        body: old.revocation_body(),
        attempts: 0,
    };
    Some(Effect::Revoke { due, pending })
}

/// What Knox's answer to a revocation leads to. `state` is the cluster's if the incarnation
/// that queued the revocation still exists: it keeps the API flavour Knox answered to, and
/// learns when revocation is refused for good. The answer is counted once it is final
/// (revoked, refused for good, or given up); a failure before the last try is retried after
/// a transient backoff drawn from `sample`.
pub(super) fn settle(
    mut pending: PendingRevoke,
    answer: Revoked,
    mut state: Option<&mut State>,
    now: Instant,
    sample: f64,
) -> Vec<Effect> {
    let Revoked { flavor, result } = answer;
    let ok = matches!(result, Ok(Revocation::Revoked | Revocation::AlreadyGone));
    let refused = matches!(result, Ok(Revocation::NotAuthorized | Revocation::NotConfigured));
    let last_try = pending.attempts.saturating_add(1) >= REVOKE_ATTEMPTS;
    let mut effects = Vec::new();
    if ok || refused || last_try {
        effects.push(Effect::Record(Record::Revoked { ok }));
    }
    let token_id = pending.id().to_owned();
    let say = |note| Effect::Log(Note::Revoke(note));
    if let Some(state) = &mut state {
        state.flavor = flavor;
    }
    match result {
        Ok(Revocation::Revoked) => effects.push(say(RevokeNote::Revoked { token_id })),
        Ok(Revocation::AlreadyGone) => effects.push(say(RevokeNote::AlreadyGone { token_id })),
        Ok(r @ (Revocation::NotAuthorized | Revocation::NotConfigured)) => {
            if let Some(state) = state {
                if !state.revoke_refused {
                    let not_authorized = r == Revocation::NotAuthorized;
                    effects.push(say(RevokeNote::Stopped { token_id, not_authorized }));
                }
                state.revoke_refused = true;
            }
        }
        Ok(Revocation::Refused) | Err(_) => {
            let why = match &result {
                Err(e) => e.to_string(),
                _ => "Knox refused".to_owned(),
            };
            pending.attempts = pending.attempts.saturating_add(1);
            if pending.attempts >= REVOKE_ATTEMPTS {
                effects.push(say(RevokeNote::GaveUp { token_id, attempts: pending.attempts, why }));
            } else {
                let wait = backoff(pending.attempts, sample, ErrorClass::Transient);
                effects.push(say(RevokeNote::Retry { token_id, why, wait }));
                effects.push(Effect::Revoke { due: later(now, wait), pending });
            }
        }
    }
    effects
}

/// The published token to revoke at shutdown, if any: with `revoke_on_exit`, unless Knox
/// refused revocation for good, and only a token Knox may manage.
pub(super) fn at_exit<'a>(cluster: &Cluster, state: &'a State) -> Option<&'a Token> {
    if !cluster.lifecycle.revoke_on_exit || state.revoke_refused {
        return None;
    }
    state.token.as_ref().filter(|t| t.managed || t.legacy)
}

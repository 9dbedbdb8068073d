//! Taking over a token published before this start (by an earlier run, or `once` in an init
//! container), so that a restart costs no token of the user's Knox quota.

use std::time::{Duration, Instant, SystemTime};

use super::effect::{Effect, Record};
use super::log::Note;
use super::slot::State;
use crate::config::{Auth, Cluster};
use crate::knox::{self, Expiry, Token};
use crate::output::Published;

/// The token `p`, read back from the cluster's json output, if it is this cluster's and
/// still fresh (the same bar as a new token's refresh point: [`Policy::keeps`]) at
/// `now_wall` on this host's clock, which is `now` on the monotonic clock. A token that
/// never expires is not taken over: the file does not tell enough about it. Its schedule is
/// rebuilt from when its current expiry was set (the last renewal, else its arrival).
///
/// [`Policy::keeps`]: crate::scheduler::Policy::keeps
pub(super) fn adopt(cluster: &Cluster, p: Published, now_wall: SystemTime, now: Instant) -> Option<Token> {
    let remaining = Duration::from_millis(u64::try_from(p.remaining_ms(now_wall)?).unwrap_or(0));
    if p.cluster != cluster.name || !cluster.policy.keeps(remaining, p.lifetime()?) {
        return None;
    }
    let claims = jsonwebtoken::dangerous::insecure_decode::<knox::wire::Claims>(p.jwt.expose()).ok()?.claims;
    // A token for another user (the config changed while we were stopped) is not ours.
    if let Auth::Basic { user, .. } = &cluster.auth {
        if claims.sub.as_deref().is_some_and(|sub| sub != user) {
            return None;
        }
    }
    let since = p.renewed_at.unwrap_or(p.acquired_at);
    // A wall clock set back since then makes the token look new: it counts from now.
    let age = now_wall.duration_since(since).unwrap_or_default();
    Some(Token {
        jwt: p.jwt,
        token_id: p.token_id,
        token_type: p.token_type,
        expires_in: Expiry::At(p.expires_at_ms?),
        jwt_exp: p.jwt_exp,
        subject: claims.sub,
        managed: p.managed,
        target_url: p.target_url,
        legacy: false,
        acquired_at: p.acquired_at,
        renewed_at: p.renewed_at,
        received: now.checked_sub(age).unwrap_or(now),
        knox_now_ms: crate::time::epoch_ms(since).saturating_add(p.knox_clock_offset_ms),
        clock_offset_ms: p.knox_clock_offset_ms,
        // Checked by the process that published it, if it says so.
        verified: p.verified.unwrap_or(crate::knox::Verified::Off),
    })
}

/// Holds an adopted `token` as if this start had published it (its generation is the one
/// read back), with `jitter` as its jitter draw: the first round counts it as done.
pub(super) fn keep(
    state: &mut State,
    cluster: &Cluster,
    token: Token,
    now: Instant,
    jitter: f64,
) -> Vec<Effect> {
    let held = state.hold(cluster, &token, jitter);
    let note = Note::Adopted {
        token_id: token.id().to_owned(),
        fingerprint: token.jwt.fingerprint(),
        generation: state.generation,
        next_refresh_in: held.refresh_at(&cluster.policy).map(|t| t.saturating_duration_since(now)),
    };
    let published = state.published(cluster, &token, state.generation);
    state.token = Some(token);
    state.held = Some(held);
    state.attempted = true;
    vec![
        Effect::Log(note),
        Effect::Record(Record::Published { published: Box::new(published), renewal: false }),
    ]
}

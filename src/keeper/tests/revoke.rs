//! Revoking superseded tokens: when, what Knox's answers lead to, and what goes at exit.

use std::time::Duration;

use super::super::revoke::{at_exit, settle, supersede, PendingRevoke, Revoked, REVOKE_ATTEMPTS};
use super::super::slot::{SlotId, State};
use super::{cluster, describe, holding, old_token, t0, token, H, MIN, S};
use crate::knox::answer::Revocation;
use crate::knox::{Flavor, KnoxError, Token};
use crate::secret::Secret;

#[test]
fn a_superseded_token_is_revoked_after_a_while_but_before_it_expires() {
    let t0 = t0();
    let c = cluster(""); // revoke_superseded_after = 2 min
    let gateway = cluster("consumers_validate = \"gateway\"\nrevoke_superseded_after = \"0s\"");
    let mut absurd = cluster("");
    absurd.lifecycle.revoke_superseded_after = Duration::MAX;
    let new = |c| holding(c, token(t0, Some(H)));
    let refused = State { revoke_refused: true, ..new(&c) };
    // The eviction guard found a token removed on the server: that one is gone already.
    let gone = |id: &str| {
        let mut s = new(&c);
        s.guard.gone = Some(id.to_owned());
        s
    };
    // Tokens that arrived `age` ago, valid for `lifetime` from then.
    let old = |age: Duration, lifetime| old_token(t0 - age, lifetime);
    let unmanaged = Token { managed: false, ..old(MIN, Some(H)) };
    let legacy = Token { managed: false, legacy: true, ..old(MIN, Some(H)) };
    let legacy_no_id = Token { token_id: None, ..legacy.clone() };
    let same = Token { jwt: Secret::new(super::NEW_JWT), ..old(MIN, Some(H)) };
    // (cluster, state after the replacement, old token) → revocation
    let cases: Vec<(&_, State, Token, Vec<&str>)> = vec![
        (&c, new(&c), old(50 * MIN, Some(H)), vec!["revoke id-0 by id-0 at 120s (try 1)"]),
        // No later than it expires: 90 s left, 30 s left, already expired.
        (&c, new(&c), old(H - 90 * S, Some(H)), vec!["revoke id-0 by id-0 at 90s (try 1)"]),
        (&c, new(&c), old(30 * S, Some(MIN)), vec!["revoke id-0 by id-0 at 30s (try 1)"]),
        (&c, new(&c), old(2 * H, Some(H)), vec!["revoke id-0 by id-0 at 0ns (try 1)"]),
        (&c, new(&c), old(MIN, None), vec!["revoke id-0 by id-0 at 120s (try 1)"]),
        (&gateway, new(&gateway), old(MIN, Some(H)), vec!["revoke id-0 by id-0 at 0ns (try 1)"]),
        // Before 1.6, by JWT, whether or not the JWT carried an id.
        (&c, new(&c), legacy, vec!["revoke id-0 by jwt at 120s (try 1)"]),
        (&c, new(&c), legacy_no_id, vec!["revoke - by jwt at 120s (try 1)"]),
        // Not revoked: unmanaged (Knox keeps no state), refused for good, the new token itself.
        (&c, new(&c), unmanaged, vec![]),
        (&c, refused, old(MIN, Some(H)), vec![]),
        (&c, new(&c), same, vec![]),
        (&c, gone("id-0"), old(MIN, Some(H)), vec![]),
        (&c, gone("id-7"), old(MIN, Some(H)), vec!["revoke id-0 by id-0 at 120s (try 1)"]),
        // A wait too long to add to the clock never comes; capped by expiry it does.
        (&absurd, new(&absurd), old(MIN, None), vec![]),
        (&absurd, new(&absurd), old(MIN, Some(H)), vec!["revoke id-0 by id-0 at 3540s (try 1)"]),
    ];
    for (i, (c, state, old, expected)) in cases.into_iter().enumerate() {
        let effect = supersede(&state, c, SlotId(1), old, t0);
        assert_eq!(describe(t0, effect.as_slice()), expected, "row {i}");
    }
}

/// What a revocation task hands back, besides the flavour.
type Answer = Result<Revocation, KnoxError>;

fn pending(attempts: u32) -> PendingRevoke {
    PendingRevoke {
        cluster: "vc".to_owned(),
        slot: SlotId(1),
        token_id: Some("id-0".to_owned()),
        body: Secret::new("id-0"),
        attempts,
    }
}

fn down() -> KnoxError {
    KnoxError::Transport { url: "https://knox".to_owned(), detail: "refused".to_owned() }
}

/// `check(tries before, answer, revocation refused before, "effects; ...", refused after)`
/// per row, for a cluster whose incarnation still exists.
fn check(rows: Vec<(u32, Answer, bool, &str, bool)>) {
    let t0 = t0();
    for (i, (attempts, result, refused_before, expected, refused_after)) in rows.into_iter().enumerate() {
        let mut state = State { revoke_refused: refused_before, ..State::default() };
        let answer = Revoked { flavor: Flavor::V1Post, result };
        let effects = settle(pending(attempts), answer, Some(&mut state), t0, 0.5);
        assert_eq!(describe(t0, &effects).join("; "), expected, "row {i}");
        assert_eq!(state.revoke_refused, refused_after, "row {i}");
        assert_eq!(state.flavor, Flavor::V1Post, "the flavour Knox answered to is kept: row {i}");
    }
}

#[test]
fn a_final_answer_ends_a_revocation_or_stops_them_all() {
    let last = REVOKE_ATTEMPTS - 1;
    let stopped = |not_authorized| {
        format!("record revoked ok=false; log revocation stopped at id-0 (not authorized: {not_authorized})")
    };
    let (stopped_403, stopped_off) = (stopped(true), stopped(false));
    check(vec![
        (0, Ok(Revocation::Revoked), false, "record revoked ok=true; log revoked id-0", false),
        (last, Ok(Revocation::Revoked), false, "record revoked ok=true; log revoked id-0", false),
        (0, Ok(Revocation::AlreadyGone), false, "record revoked ok=true; log already gone id-0", false),
        // Refused for good: revocation stops for the cluster, said once.
        (0, Ok(Revocation::NotAuthorized), false, &stopped_403, true),
        (0, Ok(Revocation::NotConfigured), false, &stopped_off, true),
        (2, Ok(Revocation::NotAuthorized), true, "record revoked ok=false", true),
        (last, Ok(Revocation::NotConfigured), true, "record revoked ok=false", true),
    ]);
}

#[test]
fn anything_else_is_retried_with_backoff_then_given_up() {
    let last = REVOKE_ATTEMPTS - 1;
    let unreachable = "cannot reach https://knox: refused";
    let (retry_down, gave_up_down) = (
        format!("log retry id-0 in 1s: {unreachable}; revoke id-0 by id-0 at 1s (try 3)"),
        format!("record revoked ok=false; log gave up id-0 after 5: {unreachable}"),
    );
    // A transient backoff with full jitter (sample 0.5): 0.5 s, 1 s, 2 s, 4 s.
    check(vec![
        (
            0,
            Ok(Revocation::Refused),
            false,
            "log retry id-0 in 500ms: Knox refused; revoke id-0 by id-0 at 500ms (try 2)",
            false,
        ),
        (1, Err(down()), false, &retry_down, false),
        (
            3,
            Ok(Revocation::Refused),
            false,
            "log retry id-0 in 4s: Knox refused; revoke id-0 by id-0 at 4s (try 5)",
            false,
        ),
        // The last try is counted as failed, and given up: the token expires on its own.
        (
            last,
            Ok(Revocation::Refused),
            false,
            "record revoked ok=false; log gave up id-0 after 5: Knox refused",
            false,
        ),
        (last, Err(down()), false, &gave_up_down, false),
        // A count past the limit (it cannot happen) still gives up, and does not overflow.
        (
            u32::MAX,
            Ok(Revocation::Refused),
            false,
            "record revoked ok=false; log gave up id-0 after 4294967295: Knox refused",
            false,
        ),
    ]);
}

#[test]
fn an_answer_for_a_replaced_cluster_changes_no_state() {
    let t0 = t0();
    // (answer) → effects: logged and counted under the cluster's name, retried as usual
    let cases: Vec<(Answer, Vec<&str>)> = vec![
        (Ok(Revocation::Revoked), vec!["record revoked ok=true", "log revoked id-0"]),
        (Ok(Revocation::NotAuthorized), vec!["record revoked ok=false"]),
        (
            Err(down()),
            vec![
                "log retry id-0 in 500ms: cannot reach https://knox: refused",
                "revoke id-0 by id-0 at 500ms (try 2)",
            ],
        ),
    ];
    for (i, (result, expected)) in cases.into_iter().enumerate() {
        let effects = settle(pending(0), Revoked { flavor: Flavor::V2, result }, None, t0, 0.5);
        assert_eq!(describe(t0, &effects), expected, "row {i}");
    }
}

#[test]
fn at_exit_the_published_managed_token_is_revoked_if_asked_for() {
    let t0 = t0();
    let on = cluster("revoke_on_exit = true");
    let off = cluster("");
    let held = |t: Token| holding(&on, t);
    let legacy = Token { managed: false, legacy: true, ..token(t0, Some(H)) };
    let unmanaged = Token { managed: false, ..token(t0, Some(H)) };
    // (cluster, state) → token revoked (its id)
    let cases = [
        (&on, held(token(t0, Some(H))), Some("id-1")),
        (&on, held(legacy), Some("id-1")),
        (&on, held(unmanaged), None),
        (&on, State { revoke_refused: true, ..held(token(t0, Some(H))) }, None),
        (&on, State::default(), None),
        (&off, held(token(t0, Some(H))), None),
    ];
    for (i, (c, state, expected)) in cases.into_iter().enumerate() {
        assert_eq!(at_exit(c, &state).map(Token::id), expected, "row {i}");
    }
}

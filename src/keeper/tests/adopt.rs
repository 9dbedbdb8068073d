//! Taking over a token published before this start.

use std::time::{Duration, SystemTime};

use super::super::adopt::{adopt, keep};
use super::super::slot::State;
use super::{cluster, describe, t0, token, H, MIN, S};
use crate::config::Validation;
use crate::knox::Token;
use crate::output::Published;
use crate::secret::Secret;

/// A JWT for alice (`{"sub":"alice","exp":1700000030,"knox.id":"id-1"}`).
const ALICE: &str =
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTcwMDAwMDAzMCwia25veC5pZCI6ImlkLTEifQ.c2ln";
/// A JWT for bob.
const BOB: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJib2IiLCJleHAiOjE3MDAwMDAwMzB9.c2ln";
/// A JWT without `sub`.
const NOBODY: &str = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjE3MDAwMDAwMzB9.c2ln";

/// What the json output holds for a token valid for `lifetime` from its arrival.
fn published(jwt: &str, lifetime: Option<Duration>) -> Published {
    let t = Token { jwt: Secret::new(jwt), ..token(t0(), lifetime) };
    Published::new("vc", &t, 7, Validation::Jwt)
}

#[test]
fn a_published_token_is_taken_over_while_fresh_and_ours() {
    let t0 = t0();
    let c = cluster(""); // min_remaining 60 s
    let arrived = published(ALICE, Some(H)).acquired_at;
    let other_cluster = Published { cluster: "vc-dev".to_owned(), ..published(ALICE, Some(H)) };
    let renewed = Published {
        // Acquired 3 h ago, renewed 10 min ago to expire 1 h after that.
        acquired_at: arrived - 3 * H + 10 * MIN,
        renewed_at: Some(arrived),
        ..published(ALICE, Some(H))
    };
    let knox_ahead = Published {
        expires_at_ms: Some(super::KNOX_NOW_MS + 5_000 + 3_600_000),
        knox_clock_offset_ms: 5_000,
        ..published(ALICE, Some(H))
    };
    let ms = Duration::from_millis;
    // (published, time since it arrived on this host's wall clock) → age it is adopted with
    let cases: Vec<(Published, Duration, Option<Duration>)> = vec![
        (published(ALICE, Some(H)), Duration::ZERO, Some(Duration::ZERO)),
        (published(ALICE, Some(H)), 30 * MIN, Some(30 * MIN)),
        // Fresh means at least the margin left: 60 s, or half the lifetime when shorter.
        (published(ALICE, Some(H)), 59 * MIN, Some(59 * MIN)),
        (published(ALICE, Some(H)), 59 * MIN + ms(1), None),
        (published(ALICE, Some(100 * S)), 50 * S, Some(50 * S)),
        (published(ALICE, Some(100 * S)), 50 * S + ms(1), None),
        (published(ALICE, Some(H)), 2 * H, None), // expired
        (published(ALICE, None), MIN, None),      // never expires: the file does not say enough
        (other_cluster, MIN, None),
        (published(BOB, Some(H)), MIN, None), // another user's: the config changed
        (published(NOBODY, Some(H)), MIN, Some(MIN)),
        (published("e30.e30.c2ln", Some(H)), MIN, None), // claims that do not decode
        // The schedule runs from the last renewal.
        (renewed, 10 * MIN, Some(10 * MIN)),
        // Knox's clock 5 s ahead: the expiry is on its clock, so 60 s left is 60 s left.
        (knox_ahead, 59 * MIN, Some(59 * MIN)),
    ];
    for (i, (p, age, expected)) in cases.into_iter().enumerate() {
        let (since, lifetime) = (p.renewed_at.unwrap_or(p.acquired_at), p.lifetime());
        let got = adopt(&c, p, since + age, t0);
        assert_eq!(got.as_ref().map(|t| t0 - t.received), expected, "row {i}");
        if let Some(t) = got {
            assert_eq!(t.token_id.as_deref(), Some("id-1"), "row {i}");
            assert!(!t.legacy && t.managed, "row {i}");
            assert_eq!(t.lifetime(Validation::Jwt), lifetime, "as from {since:?}: row {i}");
        }
    }
}

#[test]
fn a_wall_clock_set_back_makes_an_adopted_token_count_from_now() {
    let t0 = t0();
    let p = published(ALICE, Some(H));
    let back = p.acquired_at - 10 * MIN;
    let t = adopt(&cluster(""), p, back, t0).expect("still fresh");
    assert_eq!(t.received, t0);
    let epoch = adopt(&cluster(""), published(ALICE, Some(H)), SystemTime::UNIX_EPOCH, t0);
    assert_eq!(epoch.map(|t| t.received), Some(t0));
}

#[test]
fn an_adopted_token_counts_as_published_by_this_start() {
    let t0 = t0();
    let c = cluster("");
    // (lifetime, age) → effects
    let cases = [
        (Some(H), Duration::ZERO, vec!["log adopted g7 next Some(2880s)", "record published g7"]),
        (Some(H), 50 * MIN, vec!["log adopted g7 next Some(0ns)", "record published g7"]),
        (None, Duration::ZERO, vec!["log adopted g7 next None", "record published g7"]),
    ];
    for (lifetime, age, expected) in cases {
        let mut state = State { generation: 7, ..State::default() };
        let effects = keep(&mut state, &c, token(t0 - age, lifetime), t0, 0.0);
        assert_eq!(describe(t0, &effects), expected, "{lifetime:?} {age:?}");
        assert!(state.attempted && state.token.is_some(), "the first round counts it as done");
        assert_eq!(state.held.map(|h| h.issued), Some(t0 - age));
        assert_eq!(state.generation, 7);
    }
}

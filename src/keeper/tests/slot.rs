//! Which tokens are renewed, and a held token in monotonic time, before and after a reload.

use super::super::slot::{renewable, State};
use super::{cluster, holding, t0, token, H, S};
use crate::config::Validation;
use crate::knox::{Expiry, Token};
use crate::time::human;

#[test]
fn renewal_needs_a_managed_expiring_token_checked_by_the_gateway() {
    let t0 = t0();
    let managed = token(t0, Some(H));
    let unmanaged = Token { managed: false, ..token(t0, Some(H)) };
    let legacy = Token { managed: false, legacy: true, token_id: None, ..token(t0, Some(H)) };
    let never = Token { expires_in: Expiry::Never, ..token(t0, Some(H)) };
    let (gw, jwt) = (Validation::Gateway, Validation::Jwt);
    // (token, consumers validate, renewal refused before, renewable)
    let cases = [
        (&managed, gw, false, true),
        (&managed, gw, true, false),    // refused for good
        (&managed, jwt, false, false),  // consumers check exp, which renewal never moves
        (&unmanaged, gw, false, false), // Knox keeps no state to extend
        (&unmanaged, jwt, false, false),
        (&legacy, gw, false, true), // before 1.6 Knox does not say: try once
        (&legacy, gw, true, false),
        (&legacy, jwt, false, false),
        (&never, gw, false, false), // nothing to extend
        (&never, jwt, false, false),
    ];
    for (i, (t, v, refused, expected)) in cases.into_iter().enumerate() {
        assert_eq!(renewable(t, v, refused), expected, "row {i}: {v:?} refused={refused}");
    }
}

#[test]
fn a_held_token_runs_from_its_arrival_to_its_expiry() {
    let t0 = t0();
    let jwt = cluster("");
    let gateway = cluster("consumers_validate = \"gateway\"");
    // (cluster, lifetime, renewal refused, jitter) → (expires after, renewable)
    let cases = [
        (&jwt, Some(H), false, 0.0, Some(H), false),
        (&jwt, Some(30 * S), false, 0.5, Some(30 * S), false),
        (&jwt, None, false, 0.0, None, false),
        (&gateway, Some(H), false, 0.3, Some(H), true),
        (&gateway, Some(H), true, 0.3, Some(H), false),
        (&gateway, None, false, 0.0, None, false),
    ];
    for (c, lifetime, renew_refused, jitter, expires, renewable) in cases {
        let state = State { renew_refused, ..State::default() };
        let held = state.hold(c, &token(t0, lifetime), jitter);
        let row = format!("{:?} {lifetime:?} refused={renew_refused}", c.lifecycle.consumers_validate);
        assert_eq!(held.issued, t0, "{row}");
        assert_eq!(held.expires, expires.map(|l| t0 + l), "{row}");
        assert_eq!(held.jitter_sample, jitter, "{row}");
        assert_eq!(held.renewable, renewable, "{row}");
    }
}

#[test]
fn a_reload_reholds_the_token_with_its_jitter_draw() {
    let t0 = t0();
    let jwt = cluster("");
    let gateway = cluster("consumers_validate = \"gateway\"");
    let jittery = cluster("jitter = 0.1");
    // The token's JWT expires after 30 min, its server-side expiry after 1 h: which one
    // counts depends on who validates it.
    let short_jwt = || Token { jwt_exp: Some((super::KNOX_NOW_MS / 1000) + 1800), ..token(t0, Some(H)) };
    // (cluster before, after, held jitter) → (expires after, renewable, jitter kept)
    let cases = [
        (&jwt, &gateway, Some(0.25), 60 * super::MIN, true, 0.25),
        (&gateway, &jwt, Some(0.25), 30 * super::MIN, false, 0.25),
        (&jwt, &jittery, Some(0.75), 30 * super::MIN, false, 0.75),
        // Nothing held (cannot happen with a token, but the draw is then the new one).
        (&jwt, &gateway, None, 60 * super::MIN, true, 0.5),
    ];
    for (before, after, held_jitter, expires, renewable, jitter) in cases {
        let mut state = holding(before, short_jwt());
        match held_jitter {
            Some(j) => state.held.as_mut().unwrap().jitter_sample = j,
            None => state.held = None,
        }
        state.rehold(after, 0.5);
        let held = state.held.expect("a token is held");
        let row = format!("{held_jitter:?} → {}", human(expires));
        assert_eq!(held.expires, Some(t0 + expires), "{row}");
        assert_eq!(held.renewable, renewable, "{row}");
        assert_eq!(held.jitter_sample, jitter, "{row}");
    }
    // No token, nothing to hold.
    let mut state = State::default();
    state.rehold(&gateway, 0.5);
    assert_eq!(state.held, None);
}

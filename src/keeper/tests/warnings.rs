//! What a new token is warned about, and how often.

use std::time::Duration;

use super::super::slot::Said;
use super::super::warnings::{new_token, LIFESPAN_SLACK};
use super::{cluster, say, t0, token, H, MIN, S};
use crate::knox::Token;

#[test]
fn a_new_token_is_warned_about_once_per_cluster_or_once_per_token() {
    let t0 = t0();
    let plain = cluster("");
    let asks_1h = cluster("lifespan = \"PT1H\"");
    // min_valid raises the requested lifespan to cover itself plus min_remaining.
    let min_valid = cluster("min_valid = \"2h\"");
    let legacy = |l| Token { managed: false, legacy: true, token_id: None, ..token(t0, Some(l)) };
    let never = Token { expires_in: crate::knox::Expiry::Never, ..token(t0, Some(H)) };
    // (cluster, said before, token) → (notes, said after)
    let none = Said::default();
    let said_cap = Said { lifespan_cap: true, ..Said::default() };
    let said_legacy = Said { legacy: true, ..Said::default() };
    let cases = [
        (&plain, none, token(t0, Some(H)), vec![], none),
        (&plain, none, legacy(H), vec!["legacy"], said_legacy),
        (&plain, said_legacy, legacy(H), vec![], said_legacy),
        // Capped: 30 min issued for 1 h asked, said once per cluster.
        (&asks_1h, none, token(t0, Some(30 * MIN)), vec!["lifespan cap 1800s < 3600s"], said_cap),
        (&asks_1h, said_cap, token(t0, Some(30 * MIN)), vec![], said_cap),
        // Knox counts from its issue time, we from the answer's arrival: 5 s short is fine.
        (&asks_1h, none, token(t0, Some(H - LIFESPAN_SLACK)), vec![], none),
        (
            &asks_1h,
            none,
            token(t0, Some(H - LIFESPAN_SLACK - Duration::from_millis(1))),
            vec!["lifespan cap 3594.999s < 3600s"],
            said_cap,
        ),
        (&asks_1h, none, token(t0, Some(2 * H)), vec![], none),
        (&asks_1h, none, never.clone(), vec![], none),
        (&plain, none, token(t0, Some(S)), vec![], none), // no lifespan asked for
        (
            &asks_1h,
            none,
            legacy(10 * MIN),
            vec!["legacy", "lifespan cap 600s < 3600s"],
            Said { legacy: true, lifespan_cap: true, expired: false },
        ),
        // With min_valid, its own warning replaces the cap's, for every short token.
        (&min_valid, none, token(t0, Some(H)), vec!["short token 3600s < 7200s"], none),
        (&min_valid, said_cap, token(t0, Some(H)), vec!["short token 3600s < 7200s"], said_cap),
        (&min_valid, none, token(t0, Some(2 * H)), vec![], none),
        (&min_valid, none, token(t0, Some(3 * H)), vec![], none),
        (&min_valid, none, never, vec![], none),
    ];
    for (i, (c, said, t, notes, said_after)) in cases.into_iter().enumerate() {
        let mut said = said;
        let got: Vec<String> = new_token(&mut said, c, &t).iter().map(say).collect();
        assert_eq!(got, notes, "row {i}");
        assert_eq!(said, said_after, "row {i}");
    }
}

//! The first round (READY=1) and the STATUS= line.

use std::time::Duration;

use super::super::report::{first_round, status_line, FirstRound};
use super::super::slot::State;
use super::{cluster, holding, t0, token, H, MIN, S};

#[test]
fn the_first_round_is_complete_once_no_cluster_is_unattempted() {
    let t0 = t0();
    let c = cluster("");
    let held = || holding(&c, token(t0, Some(H)));
    let failed = || State { attempted: true, ..State::default() };
    // (unattempted, states) → round
    let cases = [
        (0, vec![], Some(FirstRound { published: 0, failed: 0 })),
        (0, vec![held()], Some(FirstRound { published: 1, failed: 0 })),
        (0, vec![held(), failed(), held()], Some(FirstRound { published: 2, failed: 1 })),
        (0, vec![failed(), failed()], Some(FirstRound { published: 0, failed: 2 })),
        (1, vec![held(), State::default()], None),
        (3, vec![State::default(); 3], None),
    ];
    for (unattempted, states, expected) in cases {
        assert_eq!(first_round(unattempted, states.iter()), expected, "{unattempted} of {}", states.len());
    }
}

#[test]
fn the_status_line_counts_fresh_stale_and_not_ready_clusters() {
    let t0 = t0();
    let c = cluster("");
    let held = |age| holding(&c, token(t0 - age, Some(H)));
    let stale = |age| State { stale: Some("boom".to_owned()), ..held(age) };
    // (states, next refresh) → line
    let cases = [
        (vec![], None, "0 clusters: 0 fresh, 0 stale, 0 not ready; next refresh in -"),
        (
            vec![held(MIN)],
            Some(t0 + 47 * MIN),
            "1 clusters: 1 fresh, 0 stale, 0 not ready; next refresh in 47m",
        ),
        // Fresh means min_remaining (60 s) left: exactly 60 s is fresh, 59 s is not.
        (vec![held(59 * MIN)], None, "1 clusters: 1 fresh, 0 stale, 0 not ready; next refresh in -"),
        (vec![held(59 * MIN + S)], None, "1 clusters: 0 fresh, 0 stale, 1 not ready; next refresh in -"),
        // Stale counts as stale even while its token is fresh.
        (
            vec![stale(50 * MIN), held(Duration::ZERO), State::default()],
            Some(t0 + 3 * S),
            "3 clusters: 1 fresh, 1 stale, 1 not ready; next refresh in 3s",
        ),
        // A next refresh already due shows as zero.
        (
            vec![State::default()],
            Some(t0 - S),
            "1 clusters: 0 fresh, 0 stale, 1 not ready; next refresh in 0ms",
        ),
    ];
    for (states, next, expected) in cases {
        assert_eq!(status_line(states.iter().map(|s| (&c, s)), next, t0), expected);
    }
}

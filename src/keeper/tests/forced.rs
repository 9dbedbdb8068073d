//! Requested refreshes (SIGUSR1): coalesced, spaced out, and joined with `plan`.

use std::time::{Duration, Instant};

use super::super::forced::{
    forced_request, gate_after, request, with_forced, Request, Requested, FORCED_REFRESH_GAP,
    FORCED_RETRY_GAP,
};
use super::super::slot::{Forced, State};
use super::t0;
use crate::scheduler::Action;

#[test]
fn requested_refreshes_are_coalesced_and_spaced() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    // (busy, gate, expected)
    let cases = [
        (false, None, Some(t0)),                   // the first request: now
        (false, Some(t0 - s(1)), Some(t0)),        // the gap is over: now
        (false, Some(t0 + s(4)), Some(t0 + s(4))), // inside the gap: deferred to its end
        (true, None, None),                        // in flight or pending: absorbed
        (true, Some(t0 + s(4)), None),
    ];
    for (busy, gate, expected) in cases {
        assert_eq!(forced_request(t0, busy, gate), expected, "{busy} {gate:?}");
    }
}

#[test]
fn a_requested_refresh_joins_the_plan() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let wait = |d| Action::WaitUntil(t0 + s(d));
    // (plan's action, requested refresh due, expected)
    let cases = [
        (wait(60), None, wait(60)),
        (Action::Idle, None, Action::Idle),
        (wait(60), Some(t0), Action::Acquire),
        (Action::Idle, Some(t0), Action::Acquire),
        (Action::Renew, Some(t0), Action::Acquire),
        (wait(60), Some(t0 + s(5)), wait(5)),
        (wait(3), Some(t0 + s(5)), wait(3)),
        (Action::Idle, Some(t0 + s(5)), wait(5)),
        (Action::Renew, Some(t0 + s(5)), Action::Renew),
        (Action::Acquire, Some(t0 + s(5)), Action::Acquire),
    ];
    for (action, forced, expected) in cases {
        assert_eq!(with_forced(action, t0, forced), expected, "{action:?} {forced:?}");
    }
}

#[test]
fn a_request_sets_when_the_cluster_refreshes() {
    let t0 = t0();
    let s = Duration::from_secs;
    // (in flight, already due, gate) → (answer, due afterwards)
    let cases = [
        (false, None, None, Request::Now, Some(t0)),
        (false, None, Some(t0), Request::Now, Some(t0)), // the gap ends exactly now
        (false, None, Some(t0 - s(30)), Request::Now, Some(t0)),
        (false, None, Some(t0 + s(1)), Request::Deferred, Some(t0 + s(1))),
        (false, None, Some(t0 + FORCED_REFRESH_GAP), Request::Deferred, Some(t0 + FORCED_REFRESH_GAP)),
        // An attempt in flight covers the request; it leaves nothing pending.
        (true, None, None, Request::Absorbed, None),
        (true, None, Some(t0 + s(4)), Request::Absorbed, None),
        // A pending request covers it, and keeps its own due time (never moved earlier).
        (false, Some(t0 + s(4)), None, Request::Absorbed, Some(t0 + s(4))),
        (false, Some(t0 + s(4)), Some(t0 + s(4)), Request::Absorbed, Some(t0 + s(4))),
        (true, Some(t0), None, Request::Absorbed, Some(t0)),
    ];
    for (in_flight, due, gate, answer, due_after) in cases {
        let mut state =
            State { in_flight, forced: Forced { due, in_flight: false, gate }, ..State::default() };
        let row = format!("in_flight={in_flight} due={due:?} gate={gate:?}");
        assert_eq!(request(&mut state, t0), answer, "{row}");
        assert_eq!(state.forced.due, due_after, "{row}");
        assert_eq!(state.forced.gate, gate, "the gate is the attempt's business: {row}");
    }
}

#[test]
fn the_gap_after_a_requested_attempt_depends_on_what_it_cost() {
    let t0 = t0();
    // A token gained costs the full gap; a failure cost no token, only the shortest retry.
    let cases = [(true, t0 + FORCED_REFRESH_GAP), (false, t0 + FORCED_RETRY_GAP)];
    for (acquired, expected) in cases {
        assert_eq!(gate_after(acquired, t0), expected, "acquired={acquired}");
    }
    assert_eq!(FORCED_REFRESH_GAP, Duration::from_secs(10));
    assert_eq!(FORCED_RETRY_GAP, Duration::from_millis(100));
}

#[test]
fn requests_are_counted_for_the_summary_line() {
    // (answers, expected now, deferred, absorbed)
    let cases: [(&[Request], usize, usize, usize); 5] = [
        (&[], 0, 0, 0),
        (&[Request::Now], 1, 0, 0),
        (&[Request::Now, Request::Now, Request::Deferred], 2, 1, 0),
        (&[Request::Absorbed, Request::Absorbed], 0, 0, 2),
        (&[Request::Deferred, Request::Absorbed, Request::Now], 1, 1, 1),
    ];
    for (answers, now, deferred, absorbed) in cases {
        let mut r = Requested::default();
        for &a in answers {
            r.add(a);
        }
        assert_eq!(r, Requested { now, deferred, absorbed }, "{answers:?}");
    }
}

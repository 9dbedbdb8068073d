//! Requested refreshes (SIGUSR1): coalesced, spaced out, and joined with `plan`.

use std::time::{Duration, Instant};

use super::super::forced::{forced_request, with_forced};
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

//! The loop's timers: when it wakes up, and the two queues.

use std::time::Duration;

use super::super::revoke::PendingRevoke;
use super::super::slot::SlotId;
use super::super::timers::{wake_at, Refreshes, Revocations, MAX_SLEEP};
use super::{t0, S};
use crate::secret::Secret;

#[test]
fn the_loop_wakes_at_the_earliest_due_instant_or_within_a_minute() {
    let t0 = t0();
    // (due instants as offsets from now; None: nothing due there) → offset of the wake-up
    let at = |d: Duration| Some(t0 + d);
    let past = t0 - 5 * S;
    let cases = [
        (vec![], MAX_SLEEP),
        (vec![None, None, None], MAX_SLEEP),
        (vec![at(10 * S), None, None], 10 * S),
        (vec![at(90 * S), at(30 * S), None], 30 * S),
        (vec![at(90 * S), at(120 * S), at(45 * S)], 45 * S), // the watchdog ping
        (vec![at(MAX_SLEEP)], MAX_SLEEP),
        (vec![at(MAX_SLEEP + S)], MAX_SLEEP), // at most a minute: suspends are noticed
        (vec![at(Duration::ZERO), at(S)], Duration::ZERO),
    ];
    for (due, expected) in cases {
        assert_eq!(wake_at(t0, due.clone()), t0 + expected, "{due:?}");
    }
    // A due instant in the past means at once.
    assert_eq!(wake_at(t0, [Some(past)]), past);
}

#[test]
fn refreshes_keep_one_entry_per_slot_earliest_first() {
    let t0 = t0();
    let (a, b) = (SlotId(1), SlotId(2));
    let (mut due_a, mut due_b) = (None, None);
    let mut q = Refreshes::default();
    assert_eq!(q.first(), None);
    q.set(a, &mut due_a, t0 + 30 * S);
    q.set(b, &mut due_b, t0 + 10 * S);
    assert_eq!((q.first(), due_a, due_b), (Some(t0 + 10 * S), Some(t0 + 30 * S), Some(t0 + 10 * S)));
    // Setting again replaces the slot's entry, earlier or later.
    q.set(b, &mut due_b, t0 + 40 * S);
    assert_eq!(q.first(), Some(t0 + 30 * S));
    q.set(a, &mut due_a, t0 + 50 * S);
    assert_eq!(q.first(), Some(t0 + 40 * S));
    // Nothing is due before its instant; at it, and after, in order.
    assert_eq!(q.pop_due(t0 + 39 * S), None);
    assert_eq!(q.pop_due(t0 + 40 * S), Some(b));
    assert_eq!(q.pop_due(t0 + 60 * S), Some(a));
    assert_eq!(q.pop_due(t0 + 60 * S), None);
    // Clearing removes the entry and the slot's key.
    q.set(a, &mut due_a, t0);
    q.clear(a, &mut due_a);
    assert_eq!((q.first(), due_a), (None, None));
    q.clear(a, &mut due_a); // twice is fine
                            // Two slots due at the same instant are both kept.
    let (mut d1, mut d2) = (None, None);
    q.set(a, &mut d1, t0);
    q.set(b, &mut d2, t0);
    assert_eq!((q.pop_due(t0), q.pop_due(t0), q.pop_due(t0)), (Some(a), Some(b), None));
}

#[test]
fn revocations_come_due_in_order_and_ties_in_the_order_queued() {
    let t0 = t0();
    let pending = |id: &str| PendingRevoke {
        cluster: "vc".to_owned(),
        slot: SlotId(1),
        token_id: Some(id.to_owned()),
        body: Secret::new(id),
        attempts: 0,
    };
    let mut q = Revocations::default();
    assert_eq!(q.first(), None);
    q.push(t0 + 20 * S, pending("c"));
    q.push(t0 + 10 * S, pending("a"));
    q.push(t0 + 10 * S, pending("b")); // same instant: after "a"
    assert_eq!(q.first(), Some(t0 + 10 * S));
    let ids = |q: &mut Revocations, now| {
        std::iter::from_fn(|| q.pop_due(now)).map(|p| p.id().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(ids(&mut q, t0), Vec::<String>::new());
    assert_eq!(ids(&mut q, t0 + 10 * S), ["a", "b"]);
    assert_eq!(q.first(), Some(t0 + 20 * S));
    q.push(t0, pending("d"));
    assert_eq!(q.drain().map(|p| p.id().to_owned()).collect::<Vec<_>>(), ["d", "c"]);
    assert_eq!(q.first(), None);
}

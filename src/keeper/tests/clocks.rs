//! Suspends and wall-clock jumps, and how a suspend moves a cluster's schedule.

use std::time::{Duration, SystemTime};

use super::super::clocks::{drift, shift_back, Clocks, Drift};
use super::super::slot::{Forced, State};
use super::{cluster, holding, t0, token, H, MIN, S};
use crate::scheduler::{ErrorClass, Failures};

#[test]
fn suspends_and_wall_clock_jumps_are_told_apart_from_time_passing() {
    let t0 = t0();
    let wall0 = SystemTime::UNIX_EPOCH + 20_000 * H;
    let boot0 = Some(1000 * S);
    let last = Clocks { mono: t0, boot: boot0, wall: wall0 };
    let ms = Duration::from_millis;
    // (monotonic, boot and wall time passed since `last`; None: that reading failed) → drift
    let later = |mono: Duration, boot: Option<Duration>, wall: i64| Clocks {
        mono: t0 + mono,
        boot: boot.map(|b| 1000 * S + b),
        wall: if wall >= 0 { wall0 + ms(wall.unsigned_abs()) } else { wall0 - ms(wall.unsigned_abs()) },
    };
    let cases = [
        // Time passing: all three clocks agree.
        (later(MIN, Some(MIN), 60_000), Drift::Steady),
        (later(Duration::ZERO, Some(Duration::ZERO), 0), Drift::Steady),
        // Boot time ahead of monotonic time: the host slept that long.
        (later(MIN, Some(MIN + 10 * S), 70_000), Drift::Suspended(10 * S)),
        (later(S, Some(8 * H + S), 8 * 3_600_000 + 1000), Drift::Suspended(8 * H)),
        // At most a second apart is the gap between the two readings, not a suspend.
        (later(MIN, Some(MIN + S), 60_000), Drift::Steady),
        (later(MIN, Some(MIN + S + ms(1)), 60_000), Drift::Suspended(S + ms(1))),
        // A suspend wins over the wall-clock jump it causes.
        (later(MIN, Some(MIN + H), 0), Drift::Suspended(H)),
        // Boot time behind monotonic time cannot be a suspend (saturates to zero).
        (later(MIN, Some(S), 60_000), Drift::Steady),
        // A failed boot-time reading hides a suspend; the wall clock then says it jumped.
        (later(MIN, None, 60_000 + 3_600_000), Drift::WallJumped(3600.0)),
        // The wall clock alone moved: more than 2 s either way is a jump.
        (later(MIN, Some(MIN), 60_000 + 2000), Drift::Steady),
        (later(MIN, Some(MIN), 60_000 + 2500), Drift::WallJumped(2.5)),
        (later(MIN, Some(MIN), 60_000 - 2500), Drift::WallJumped(-2.5)),
        (later(MIN, Some(MIN), -3_600_000), Drift::WallJumped(-3660.0)),
    ];
    for (i, (now, expected)) in cases.into_iter().enumerate() {
        assert_eq!(drift(&last, &now), expected, "row {i}: {now:?}");
    }
    // Without a boot-time reading before, only the wall clock is compared.
    let no_boot = Clocks { boot: None, ..last };
    assert_eq!(drift(&no_boot, &later(MIN, Some(MIN + H), 60_000)), Drift::Steady);
    // Monotonic time never runs backwards, but a reading taken out of order saturates.
    let before = Clocks { mono: t0 - S, boot: boot0, wall: wall0 };
    assert_eq!(drift(&last, &before), Drift::Steady);
}

#[test]
fn a_suspend_moves_every_instant_of_a_cluster_back() {
    let t0 = t0();
    let c = cluster("");
    let fresh = |forced: Forced, failures| State { forced, failures, ..holding(&c, token(t0, Some(H))) };
    let failed = |t| Some(Failures { count: 2, last: t, sample: 0.5, class: ErrorClass::Transient });
    // (state, slept) → every instant moved back by the expected amount
    let cases = [
        (fresh(Forced::default(), None), 10 * MIN, 10 * MIN),
        (fresh(Forced { due: Some(t0 + S), in_flight: false, gate: Some(t0 + 10 * S) }, failed(t0)), H, H),
        (fresh(Forced::default(), failed(t0 + MIN)), Duration::ZERO, Duration::ZERO),
        // An instant that cannot move back that far stays where it is.
        (
            fresh(Forced { due: Some(t0), in_flight: true, gate: Some(t0) }, failed(t0)),
            Duration::MAX,
            Duration::ZERO,
        ),
    ];
    for (i, (before, slept, moved)) in cases.into_iter().enumerate() {
        let mut after = before.clone();
        shift_back(&mut after, slept);
        let back = |t: std::time::Instant| t - moved;
        let (h0, h1) = (before.held.unwrap(), after.held.unwrap());
        assert_eq!(h1.issued, back(h0.issued), "row {i}");
        assert_eq!(h1.expires, h0.expires.map(back), "row {i}");
        assert_eq!((h1.jitter_sample, h1.renewable), (h0.jitter_sample, h0.renewable), "row {i}");
        assert_eq!(after.token.unwrap().received, back(before.token.unwrap().received), "row {i}");
        assert_eq!(after.failures.map(|f| f.last), before.failures.map(|f| back(f.last)), "row {i}");
        assert_eq!(after.forced.due, before.forced.due.map(back), "row {i}");
        assert_eq!(after.forced.gate, before.forced.gate.map(back), "row {i}");
        assert_eq!(after.forced.in_flight, before.forced.in_flight, "row {i}");
    }
    // Nothing held, nothing failed: nothing to move.
    let mut empty = State::default();
    shift_back(&mut empty, H);
    assert_eq!((empty.held, empty.failures, empty.forced), (None, None, Forced::default()));
}

//! Suspend and wall-clock jumps: what a reading of the three clocks says about the time since
//! the last one ([`drift`]), and how a suspend moves a cluster's schedule ([`shift_back`]).
//!
//! Schedules run on the monotonic clock, which stops while the host is suspended; tokens do
//! not stop expiring. `CLOCK_BOOTTIME` keeps counting during suspend, so the difference
//! between the two is the time slept. The wall clock is only watched, to say that its jumps
//! change nothing.

use std::time::{Duration, Instant, SystemTime};

use super::slot::State;

/// Boot time running ahead of monotonic time by more than this is a suspend; less is noise
/// between the two readings.
pub(super) const SUSPEND_MIN: Duration = Duration::from_secs(1);

/// A wall clock that moved more than this many seconds apart from monotonic time jumped.
pub(super) const WALL_JUMP_MIN_S: f64 = 2.0;

/// Readings of the three clocks, to tell suspend and wall-clock jumps from time passing.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clocks {
    pub(super) mono: Instant,
    /// `None` if the reading failed.
    pub(super) boot: Option<Duration>,
    pub(super) wall: SystemTime,
}

impl Clocks {
    /// Reads the clocks now.
    pub(super) fn read() -> Clocks {
        Clocks { mono: Instant::now(), boot: boottime(), wall: SystemTime::now() }
    }
}

/// `CLOCK_BOOTTIME`: like the monotonic clock, but it keeps counting while suspended. `None`
/// only if the kernel's answer is not a valid duration.
fn boottime() -> Option<Duration> {
    Duration::try_from(rustix::time::clock_gettime(rustix::time::ClockId::Boottime)).ok()
}

/// What happened between two readings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Drift {
    /// Time passed as it should.
    Steady,
    /// The host slept this long: every schedule is that much closer than it says.
    Suspended(Duration),
    /// The wall clock moved this many seconds more (or, negative, less) than monotonic time;
    /// schedules do not care.
    WallJumped(f64),
}

/// What happened between the readings `last` and `now`. A suspend wins over a wall-clock
/// jump (a suspend moves the wall clock too); a boot-time reading that failed hides suspends.
pub(super) fn drift(last: &Clocks, now: &Clocks) -> Drift {
    let mono = now.mono.saturating_duration_since(last.mono);
    if let (Some(b0), Some(b1)) = (last.boot, now.boot) {
        let slept = b1.saturating_sub(b0).saturating_sub(mono);
        if slept > SUSPEND_MIN {
            return Drift::Suspended(slept);
        }
    }
    let wall = match now.wall.duration_since(last.wall) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    };
    let jump = wall - mono.as_secs_f64();
    if jump.abs() > WALL_JUMP_MIN_S {
        Drift::WallJumped(jump)
    } else {
        Drift::Steady
    }
}

/// After a suspend of `d`, everything about a cluster's token is `d` closer than monotonic
/// time says: its issue and expiry, the last failure (so the backoff is over sooner), and a
/// requested refresh and its gap. An instant that cannot move back that far stays put.
pub(super) fn shift_back(state: &mut State, d: Duration) {
    let back = |t: &mut Instant| *t = t.checked_sub(d).unwrap_or(*t);
    if let Some(h) = &mut state.held {
        *h = h.shifted_back(d);
    }
    if let Some(t) = &mut state.token {
        back(&mut t.received);
    }
    if let Some(f) = &mut state.failures {
        back(&mut f.last);
    }
    for t in [&mut state.forced.due, &mut state.forced.gate].into_iter().flatten() {
        back(t);
    }
}

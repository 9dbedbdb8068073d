//! The loop's timers: the queue of clusters due for a refresh, the queue of revocations, and
//! the next instant the loop wakes up ([`wake_at`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::revoke::PendingRevoke;
use super::slot::SlotId;
use crate::scheduler::later;

/// The longest the loop sleeps without checking the clocks: a suspended host wakes up with
/// tokens that expired in its sleep, and this bounds how late that is noticed. One wake-up a
/// minute is far below the 0.1/s idle budget.
pub(super) const MAX_SLEEP: Duration = Duration::from_secs(60);

/// When the loop wakes up next, at `now`: the earliest of the `due` instants, and at most
/// [`MAX_SLEEP`] from now. A due instant in the past means at once.
pub(super) fn wake_at(now: Instant, due: impl IntoIterator<Item = Option<Instant>>) -> Instant {
    due.into_iter().flatten().fold(later(now, MAX_SLEEP), Instant::min)
}

/// Clusters waiting for their next step, earliest first. Each slot has at most one entry;
/// its key is kept in the slot's `due`, which only these methods change.
#[derive(Debug, Default)]
pub(super) struct Refreshes(BTreeSet<(Instant, SlotId)>);

impl Refreshes {
    /// Slot `id`, whose entry is keyed by `due`, wakes up at `t` instead.
    pub(super) fn set(&mut self, id: SlotId, due: &mut Option<Instant>, t: Instant) {
        self.clear(id, due);
        *due = Some(t);
        self.0.insert((t, id));
    }

    /// Slot `id`, whose entry is keyed by `due`, waits for nothing.
    pub(super) fn clear(&mut self, id: SlotId, due: &mut Option<Instant>) {
        if let Some(t) = due.take() {
            self.0.remove(&(t, id));
        }
    }

    /// The earliest entry's instant.
    pub(super) fn first(&self) -> Option<Instant> {
        self.0.first().map(|&(t, _)| t)
    }

    /// Removes and returns the earliest slot due at `now` (or before).
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<SlotId> {
        let &(t, id) = self.0.first()?;
        (t <= now).then(|| {
            self.0.remove(&(t, id));
            id
        })
    }
}

/// Superseded tokens waiting to be revoked, by due instant, then in the order queued.
#[derive(Debug, Default)]
pub(super) struct Revocations {
    queue: BTreeMap<(Instant, u64), PendingRevoke>,
    /// Tells apart revocations due at the same instant.
    seq: u64,
}

impl Revocations {
    /// Queues `pending` for `due`.
    pub(super) fn push(&mut self, due: Instant, pending: PendingRevoke) {
        self.seq += 1;
        self.queue.insert((due, self.seq), pending);
    }

    /// The earliest due instant.
    pub(super) fn first(&self) -> Option<Instant> {
        self.queue.keys().next().map(|&(t, _)| t)
    }

    /// Removes and returns the earliest revocation due at `now` (or before).
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<PendingRevoke> {
        let entry = self.queue.first_entry()?;
        (entry.key().0 <= now).then(|| entry.remove())
    }

    /// The ids of the queued revocations (those that have one).
    pub(super) fn ids(&self) -> impl Iterator<Item = &str> {
        self.queue.values().filter_map(|p| p.token_id.as_deref())
    }

    /// Removes and returns every revocation, earliest first.
    pub(super) fn drain(&mut self) -> impl Iterator<Item = PendingRevoke> {
        std::mem::take(&mut self.queue).into_values()
    }
}

//! The state the [`super::Sim`] handle and every connection share, behind one lock, and its
//! persistence to the state file when the lock is released.

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tracing::warn;

use super::store::TokenStore;
use super::{persist, Issued, RequestRecord, Scripted, SimOptions};

/// State shared by the [`super::Sim`] handle and every connection.
pub(super) struct Shared {
    state: Mutex<State>,
    /// Woken whenever a token is issued, for `wait_for_acquisitions`.
    pub(super) issued_changed: Notify,
}

/// Everything that changes while the sim runs, behind one lock so that each Knox operation
/// (e.g. the limit check and storing the new token) is atomic, as concurrent clients need.
pub(super) struct State {
    /// The options in effect; [`super::Sim::set_options`] changes them.
    pub(super) opts: SimOptions,
    pub(super) scripted: VecDeque<Scripted>,
    pub(super) requests: Vec<RequestRecord>,
    pub(super) issued: Vec<Issued>,
    /// Managed token state; empty while unmanaged.
    pub(super) store: TokenStore,
    /// Successful managed renewals.
    pub(super) renewals: usize,
    /// Revoked token ids, oldest first.
    pub(super) revocations: Vec<String>,
    /// Token-limit 403s answered.
    pub(super) limit_errors: usize,
    /// The store's generation last written to the state file (or that failed to be).
    saved_generation: u64,
}

impl State {
    /// Knox's `System.currentTimeMillis()`: local time plus the configured offset.
    pub(super) fn now_ms(&self) -> i64 {
        local_now_ms().saturating_add(self.opts.clock_offset)
    }

    /// Evicts what Knox's eviction task would have evicted by now (docs/knox.md §6.2).
    pub(super) fn sweep(&mut self) {
        let grace_ms = i64::try_from(self.opts.eviction_grace.as_millis()).unwrap_or(i64::MAX);
        let now = self.now_ms();
        self.store.sweep(now, grace_ms);
    }

    /// Writes the store to [`SimOptions::state_file`], if there is one and the store changed
    /// since the last write. A failed write is logged and retried with the next change only,
    /// so an unwritable file does not turn every request into a warning.
    fn save_if_changed(&mut self) {
        let Some(path) = &self.opts.state_file else { return };
        let generation = self.store.generation();
        if generation == self.saved_generation {
            return;
        }
        self.saved_generation = generation;
        if let Err(err) = persist::save(path, &self.store) {
            warn!(cause = %err, "simulator failed to save its token state");
        }
    }
}

impl Shared {
    /// Shared state starting from `store`, which is already in the state file if there is one.
    pub(super) fn new(opts: SimOptions, store: TokenStore) -> Shared {
        let state = State {
            opts,
            scripted: VecDeque::new(),
            requests: Vec::new(),
            issued: Vec::new(),
            saved_generation: store.generation(),
            store,
            renewals: 0,
            revocations: Vec::new(),
            limit_errors: 0,
        };
        Shared { state: Mutex::new(state), issued_changed: Notify::new() }
    }

    /// Locks the state. The lock is never held across an await, and a panic while holding it
    /// leaves the data consistent (every handler checks before it changes anything), so
    /// poisoning is ignored rather than spread to every later request.
    pub(super) fn state(&self) -> StateGuard<'_> {
        StateGuard(self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The locked [`State`]. Releasing it saves the token store to the state file if anything
/// changed it (issue, renewal, revocation, enable/disable, eviction), before the lock is
/// released, so writes never interleave and every change is on disk before the next request
/// sees it.
pub(super) struct StateGuard<'a>(MutexGuard<'a, State>);

impl Deref for StateGuard<'_> {
    type Target = State;

    fn deref(&self) -> &State {
        &self.0
    }
}

impl DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.0
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        self.0.save_if_changed();
    }
}

fn local_now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

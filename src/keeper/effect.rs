//! What the transitions ask for, and the loop carrying it out.
//!
//! A transition (`attempt::finish`, `revoke::settle`, `adopt::keep`, ...) changes a cluster's
//! state and returns [`Effect`]s. [`Keeper::perform`] does them, in order: it logs, records
//! telemetry, spawns tasks and sets timers, and decides nothing.

use std::time::Instant;

use super::attempt::{self, Step};
use super::log::Note;
use super::revoke::PendingRevoke;
use super::slot::{Slot, SlotId};
use super::tasks::{Io, Write};
use super::timers::Refreshes;
use super::Keeper;
use crate::output::Published;
use crate::telemetry::Telemetry;

/// One thing for the loop to do.
#[derive(Debug)]
pub(super) enum Effect {
    /// Log this line.
    Log(Note),
    /// Record this in the telemetry.
    Record(Record),
    /// Run the cluster's `on_change` hook for this generation.
    Hook { generation: u64 },
    /// Rewrite the json output (to say that it is stale).
    WriteJson(Box<Published>),
    /// Remove the expired token's files (`remove_expired`).
    RemoveFiles,
    /// Revoke a superseded token at `due`.
    Revoke { due: Instant, pending: PendingRevoke },
    /// The cluster's first attempt finished: one fewer for the first round.
    FirstAttempt,
    /// Ask what comes next for the cluster; then the STATUS= line and the first round may
    /// have changed.
    Replan,
}

/// A telemetry update.
#[derive(Debug)]
pub(super) enum Record {
    /// A token was published (renewed when `renewal`).
    Published {
        published: Box<Published>,
        renewal: bool,
    },
    AcquisitionFailed,
    /// A renewal failed with this code (Knox's, else the HTTP status, else "none").
    RenewalFailed(String),
    /// A revocation finished.
    Revoked {
        ok: bool,
    },
    /// The cluster went stale, or recovered (`None`).
    Stale(Option<String>),
    /// The eviction guard found the published token gone on the server.
    Evicted,
}

impl Record {
    /// Records this for `cluster`.
    fn record(self, telemetry: &Telemetry, cluster: &str) {
        match self {
            Record::Published { published, renewal } => telemetry.published(cluster, &published, renewal),
            Record::AcquisitionFailed => telemetry.acquisition_failed(cluster),
            Record::RenewalFailed(code) => telemetry.renewal_failed(cluster, code),
            Record::Revoked { ok } => telemetry.revoked(cluster, ok),
            Record::Stale(error) => telemetry.set_stale(cluster, error),
            Record::Evicted => telemetry.evicted(cluster),
        }
    }
}

impl Keeper {
    /// Carries out `effects`, which a transition of slot `id` (of the cluster `name`)
    /// returned. Effects that need the slot are skipped if it is gone.
    pub(super) fn perform(&mut self, id: SlotId, name: &str, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Log(note) => note.emit(name),
                Effect::Record(record) => record.record(&self.io.telemetry, name),
                Effect::Revoke { due, pending } => self.revokes.push(due, pending),
                Effect::FirstAttempt => self.unattempted = self.unattempted.saturating_sub(1),
                Effect::Replan => {
                    self.replan(id);
                    self.update_status();
                    self.check_first_round();
                }
                Effect::Hook { generation } => {
                    if let Some(slot) = self.slots.get(&id) {
                        self.io.hook(&slot.cluster, generation);
                    }
                }
                Effect::WriteJson(published) => {
                    if let Some(slot) = self.slots.get(&id) {
                        self.io.write(slot.cluster.clone(), Write::Json(published));
                    }
                }
                Effect::RemoveFiles => {
                    if let Some(slot) = self.slots.get(&id) {
                        self.io.write(slot.cluster.clone(), Write::Remove);
                    }
                }
            }
        }
    }

    /// Asks what comes next for slot `id`, and does it.
    pub(super) fn replan(&mut self, id: SlotId) {
        if let Some(slot) = self.slots.get_mut(&id) {
            schedule(slot, &mut self.refreshes, &self.io, Instant::now());
        }
    }

    /// Asks what comes next for every cluster, and does it.
    pub(super) fn replan_all(&mut self) {
        let now = Instant::now();
        for slot in self.slots.values_mut() {
            schedule(slot, &mut self.refreshes, &self.io, now);
        }
    }
}

/// Asks [`attempt::next`] what comes next for `slot` at `now`, and does it: start an
/// attempt, or set its timer.
pub(super) fn schedule(slot: &mut Slot, refreshes: &mut Refreshes, io: &Io, now: Instant) {
    refreshes.clear(slot.id, &mut slot.due);
    let (note, step) = attempt::next(&mut slot.state, &slot.cluster, now);
    if let Some(note) = note {
        note.emit(&slot.cluster.name);
    }
    match step {
        Some(Step::Start(start)) => io.attempt(slot, start),
        Some(Step::WakeAt(t)) => refreshes.set(slot.id, &mut slot.due, t),
        None => {}
    }
}

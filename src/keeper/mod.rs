//! The keeper: a state machine per cluster, inside a thin async loop.
//!
//! Every decision is a pure transition: an event (an attempt's or a revocation's outcome, a
//! timer, a refresh request, a suspend, a new config), a cluster's `slot::State` and the
//! instant it happens go in; the new state and a list of `effect::Effect`s come out. No
//! transition reads a clock, draws at random, or does IO, so each is table-tested
//! (`keeper/tests/`) the way `scheduler::plan` is:
//!
//! - `attempt`: what comes next for a cluster (through `plan`), and what an attempt's outcome
//!   leads to: the token held, the backoff, staleness, what to publish, log and revoke;
//! - `revoke`: when a superseded token is revoked, retried, given up, and revoked at exit;
//! - `forced`: refreshes requested by SIGUSR1, coalesced and spaced out;
//! - `clocks`: suspends (boot time against monotonic time) and the schedules they move;
//! - `adopt`: taking over a token published before this start;
//! - `warnings`: what a new token is warned about, once;
//! - `reload`: what a new config means for each running cluster;
//! - `report`: the first round (READY=1) and the STATUS= line;
//! - `census`: the eviction guard's judgement of one `getUserTokens` list per gateway and
//!   user, its budget, and what a token found gone does to its cluster;
//! - `sweep`: which tokens of that list are this installation's orphans.
//!
//! `slot` holds the state they read and write, and `log` every line they ask for (as data,
//! turned into its `tracing` call in one place).
//!
//! The loop (this file, with `effect`, `timers` and `guard`) waits for whichever comes first: the
//! next due instant, an outcome, a new config, a refresh request, or shutdown. It feeds the
//! event to a transition and performs the effects; `tasks` holds the work that waits on Knox
//! or the disk. Nothing polls: an idle keeper wakes once per refresh, and at most once a
//! minute to notice that the host was suspended (monotonic time stops during suspend;
//! tokens do not).
//!
//! An attempt acquires or renews a token (at most `max_concurrent_requests` Knox requests in
//! flight across all clusters), then publishes it through `sink`. A replaced managed token
//! is revoked a little later (`revoke_superseded_after`), so the user stays under Knox's
//! per-user token limit.

mod adopt;
mod attempt;
mod census;
mod clocks;
mod effect;
mod forced;
mod guard;
mod log;
mod reload;
mod report;
mod revoke;
mod slot;
mod sweep;
mod tasks;
mod timers;
mod warnings;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot, watch, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::{Cluster, Config};
use crate::knox::Clients;
use crate::telemetry::Telemetry;
use crate::{output, sink, systemd};

pub use forced::FORCED_REFRESH_GAP;
pub use report::FirstRound;
pub(crate) use tasks::publish;

use attempt::Draws;
use clocks::{Clocks, Drift};
use log::RevokeNote;
use revoke::{PendingRevoke, Revoked};
use slot::{Slot, SlotId, State};
use tasks::{ExitRevoke, Io, Outcome};
use timers::{Refreshes, Revocations};

/// The running keeper: per-cluster state and the queues of due times.
pub struct Keeper {
    config: Arc<Config>,
    clients: Arc<Clients>,
    /// One per cluster, by incarnation.
    slots: BTreeMap<SlotId, Slot>,
    /// The last slot id given out.
    last_id: u64,
    /// The clusters waiting for their next step.
    refreshes: Refreshes,
    /// Superseded tokens waiting to be revoked.
    revokes: Revocations,
    io: Io,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
    first_round: Option<oneshot::Sender<FirstRound>>,
    /// The last reading, to notice suspends.
    clocks: Clocks,
    /// Clusters that have not finished an attempt yet (for the first round).
    unattempted: usize,
    /// The systemd watchdog interval, and when it was last pinged.
    watchdog: Option<(Duration, Instant)>,
    /// The eviction guard's and the orphan sweep's censuses ([`guard`]).
    censuses: guard::Censuses,
}

impl Keeper {
    /// A keeper for `config`. `first_round` fires once every cluster has published or failed.
    pub fn new(
        config: Arc<Config>,
        clients: Arc<Clients>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
        first_round: oneshot::Sender<FirstRound>,
        telemetry: Arc<Telemetry>,
    ) -> anyhow::Result<Keeper> {
        let (tx, outcomes) = mpsc::unbounded_channel();
        let permits = Arc::new(Semaphore::new(config.max_concurrent_requests));
        let mut keeper = Keeper {
            config: config.clone(),
            clients,
            slots: BTreeMap::new(),
            last_id: 0,
            refreshes: Refreshes::default(),
            revokes: Revocations::default(),
            io: Io { permits, tx, tracker, shutdown, telemetry },
            outcomes,
            first_round: Some(first_round),
            clocks: Clocks::read(),
            unattempted: 0,
            watchdog: systemd::watchdog_interval().map(|i| (i, Instant::now())),
            censuses: guard::Censuses::default(),
        };
        for cluster in &config.clusters {
            let slot = keeper.new_slot(cluster.clone())?;
            keeper.unattempted += usize::from(!slot.state.attempted);
            keeper.slots.insert(slot.id, slot);
        }
        Ok(keeper)
    }

    /// A new incarnation of `cluster`: temp files of an interrupted publish swept, the
    /// generation read back from its json output, and a still-fresh published token taken
    /// over ([`adopt::adopt`]).
    fn new_slot(&mut self, cluster: Arc<Cluster>) -> anyhow::Result<Slot> {
        let client = self.clients.get(&cluster.transport)?;
        let removed = sink::sweep_temp_files(&cluster);
        if removed > 0 {
            info!(cluster = %cluster.name, removed, "removed temp files left by an interrupted publish");
        }
        // Generations keep counting across restarts; an unreadable file just restarts at 0.
        let published = output::read_published(&cluster).ok().flatten();
        let generation = published.as_ref().map_or(0, |p| p.generation);
        let last_eviction = published.as_ref().and_then(|p| p.last_eviction.clone());
        let now = Instant::now();
        let token = published.and_then(|p| adopt::adopt(&cluster, p, SystemTime::now(), now));
        self.last_id += 1;
        let id = SlotId(self.last_id);
        let mut state = State { generation, ..State::default() };
        state.guard.last = last_eviction;
        if let Some(token) = token {
            let effects = adopt::keep(&mut state, &cluster, token, now, fastrand::f64());
            self.perform(id, &cluster.name, effects);
        }
        Ok(Slot { id, cluster, client, due: None, state })
    }

    /// Runs until `shutdown`. New configs arrive on `configs`; `refresh` asks for every
    /// cluster to be refreshed now (SIGUSR1).
    pub async fn run(mut self, mut configs: watch::Receiver<Arc<Config>>, refresh: Arc<Notify>) {
        self.replan_all();
        // Every cluster may have kept a fresh token from before a restart.
        self.check_first_round();
        loop {
            // With a watchdog, wake when the next ping is due (counted from the last ping, so
            // an earlier wake-up does not postpone it).
            let ping = self.watchdog.map(|(interval, last)| systemd::next_ping(last, interval));
            let due = [self.refreshes.first(), self.revokes.first(), self.census_wake(), ping];
            let wake = timers::wake_at(Instant::now(), due);
            tokio::select! {
                biased;
                () = self.io.shutdown.cancelled() => break,
                Some(outcome) = self.outcomes.recv() => self.on_outcome(outcome),
                Ok(()) = configs.changed() => {
                    let config = configs.borrow_and_update().clone();
                    self.apply(config);
                }
                () = refresh.notified() => self.refresh_all(),
                () = tokio::time::sleep_until(wake.into()) => {
                    self.check_clocks();
                    self.run_due();
                }
            }
            self.after_wake();
        }
        self.revoke_on_exit().await;
        debug!("keeper loop stopped");
    }

    /// Liveness, the watchdog and the metrics textfile, after every wake-up of the loop.
    fn after_wake(&mut self) {
        self.io.telemetry.loop_ran();
        if let Some((interval, last)) = &mut self.watchdog {
            let now = Instant::now();
            if systemd::next_ping(*last, *interval) <= now {
                systemd::watchdog();
                *last = now;
            }
        }
        if let Some((path, text)) = self.io.telemetry.textfile_update(SystemTime::now()) {
            self.io.tracker.spawn_blocking(move || {
                // Read by node_exporter, which runs as another user.
                if let Err(e) = sink::write_atomic(&path, text.as_bytes(), 0o644) {
                    warn!(path = %path.display(), "cannot write the metrics textfile: {e}");
                }
            });
        }
    }

    /// Starts what is due now and re-arms the rest.
    fn run_due(&mut self) {
        let now = Instant::now();
        while let Some(id) = self.refreshes.pop_due(now) {
            if let Some(slot) = self.slots.get_mut(&id) {
                slot.due = None;
            }
            self.replan(id);
        }
        while let Some(pending) = self.revokes.pop_due(now) {
            match self.slots.get(&pending.slot) {
                Some(slot) => {
                    self.censuses.revoking.extend(pending.token_id.clone());
                    self.io.revoke(slot, pending);
                }
                None => RevokeNote::ClusterGone { token_id: pending.id().to_owned() }.emit(&pending.cluster),
            }
        }
        self.run_censuses(now);
    }

    /// Notices a suspend and moves every schedule earlier by the time slept ([`clocks`]).
    fn check_clocks(&mut self) {
        let now = Clocks::read();
        let last = std::mem::replace(&mut self.clocks, now);
        match clocks::drift(&last, &now) {
            Drift::Suspended(slept) => {
                log::suspended(slept);
                for slot in self.slots.values_mut() {
                    clocks::shift_back(&mut slot.state, slept);
                }
                self.replan_all();
            }
            Drift::WallJumped(jump_s) => log::wall_jumped(jump_s),
            Drift::Steady => {}
        }
    }

    fn on_outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Attempt { slot: id, done } => {
                // An outcome of a replaced or removed incarnation is dropped.
                let Some(slot) = self.slots.get_mut(&id) else { return };
                let name = slot.cluster.name.clone();
                let effects =
                    attempt::finish(&mut slot.state, &slot.cluster, id, done, Instant::now(), Draws::new());
                self.perform(id, &name, effects);
            }
            Outcome::Revoke { pending, answer } => self.on_revoke(pending, answer),
            Outcome::Census(done) => self.on_census(*done),
            Outcome::Swept(swept) => self.on_swept(swept),
        }
    }

    fn on_revoke(&mut self, pending: PendingRevoke, answer: Revoked) {
        if let Some(token_id) = &pending.token_id {
            self.censuses.revoking.remove(token_id);
        }
        let (id, name) = (pending.slot, pending.cluster.clone());
        let state = self.slots.get_mut(&id).map(|s| &mut s.state);
        let effects = revoke::settle(pending, answer, state, Instant::now(), fastrand::f64());
        self.perform(id, &name, effects);
    }

    /// SIGUSR1: every cluster acquires a new token, now or at the end of its gap since the
    /// last requested refresh ([`forced::request`]). A cluster with an attempt in flight, or a
    /// requested refresh pending, is left as it is: that one covers this request too.
    fn refresh_all(&mut self) {
        let now = Instant::now();
        let mut requested = forced::Requested::default();
        for slot in self.slots.values_mut() {
            let request = forced::request(&mut slot.state, now);
            requested.add(request);
            if request != forced::Request::Absorbed {
                effect::schedule(slot, &mut self.refreshes, &self.io, now);
            }
        }
        log::refresh_requested(requested);
    }

    /// At shutdown, with `revoke_on_exit`: the published token and those waiting for
    /// revocation are revoked, within a small time budget.
    async fn revoke_on_exit(&mut self) {
        let exit = |slot: &Slot, token_id: Option<String>, body| ExitRevoke {
            cluster: slot.cluster.clone(),
            client: slot.client.clone(),
            flavor: slot.state.flavor,
            token_id,
            body,
        };
        let mut work = Vec::new();
        for slot in self.slots.values() {
            if let Some(t) = revoke::at_exit(&slot.cluster, &slot.state) {
                work.push(exit(slot, t.token_id.clone(), t.revocation_body()));
            }
        }
        for pending in self.revokes.drain() {
            match self.slots.get(&pending.slot).filter(|s| s.cluster.lifecycle.revoke_on_exit) {
                Some(slot) => work.push(exit(slot, pending.token_id, pending.body)),
                None => RevokeNote::LeftAtExit { token_id: pending.id().to_owned() }.emit(&pending.cluster),
            }
        }
        self.io.revoke_at_exit(work).await;
    }

    /// READY=1 once every cluster has published or failed once ([`report::first_round`]).
    fn check_first_round(&mut self) {
        if self.first_round.is_none() {
            return;
        }
        let Some(round) = report::first_round(self.unattempted, self.slots.values().map(|s| &s.state)) else {
            return;
        };
        if let Some(tx) = self.first_round.take() {
            let _ = tx.send(round);
        }
        // The censuses start once every cluster has had its first go.
        self.censuses.rescan_now(Instant::now(), self.census_every());
    }

    /// One STATUS= line for systemd ([`report::status_line`]).
    fn update_status(&self) {
        if !systemd::enabled() {
            return;
        }
        let clusters = self.slots.values().map(|s| (&*s.cluster, &s.state));
        systemd::status(&report::status_line(clusters, self.refreshes.first(), Instant::now()));
    }
}

//! The async loop around `scheduler::plan`: one timer for the next due event, attempts
//! spawned as tasks, their outcomes fed back into the plan.
//!
//! Like mini-redis's `purge_expired_tasks`, the loop computes the next instant and then waits
//! for whichever comes first: that instant, an outcome, a new config, a refresh request, or
//! shutdown. Nothing polls: an idle keeper wakes once per refresh, and at most once a minute
//! to notice that the host was suspended (monotonic time stops during suspend; tokens do
//! not).
//!
//! An attempt acquires or renews a token (at most `max_concurrent_requests` Knox requests in
//! flight across all clusters), then publishes it through `sink`. Only the wait for a permit
//! and the HTTP request race shutdown; a publish that has started finishes, so shutdown never
//! leaves a half-done set of files. A replaced managed token is revoked a little later
//! (`revoke_superseded_after`), so the user stays under Knox's per-user token limit.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot, watch, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::config::{Cluster, Config, Validation};
use crate::knox::answer::{self, Reason, Renewal, Revocation};
use crate::knox::{Clients, Expiry, Flavor, KnoxClient, KnoxError, Op, Token};
use crate::output::{rfc3339, Published};
use crate::scheduler::{backoff, plan, Action, ErrorClass, Failures, Held, View};
use crate::secret::Secret;
use crate::telemetry::Telemetry;
use crate::{hooks, knox, output, sink, systemd};

/// The longest the loop sleeps without checking the clocks: a suspended host wakes up with
/// tokens that expired in its sleep, and this bounds how late that is noticed. One wake-up a
/// minute is far below the 0.1/s idle budget.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// A revocation that keeps failing is given up after this many tries; the token expires on
/// its own anyway.
const REVOKE_ATTEMPTS: u32 = 5;

/// How long shutdown spends on `revoke_on_exit` revocations.
const EXIT_REVOKE_BUDGET: Duration = Duration::from_secs(5);

/// After a refresh requested by SIGUSR1 got a token, the next requested one for that cluster
/// waits this long: a script that sends SIGUSR1 in a loop gets one token per cluster per 10 s,
/// not one per signal (Knox's per-user limit is 10 by default, docs/knox.md §9.3).
pub const FORCED_REFRESH_GAP: Duration = Duration::from_secs(10);

/// After a requested refresh failed, the next requested one waits this long: Knox's answer
/// cost no token, so a retry after fixing a password comes at once, but never in a tight loop.
const FORCED_RETRY_GAP: Duration = crate::scheduler::MIN_RETRY;

/// What the first round produced, for READY=1 and the readiness log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstRound {
    /// Clusters whose token was published.
    pub published: usize,
    /// Clusters whose first attempt failed.
    pub failed: usize,
}

/// The running keeper: per-cluster state and the queues of due times.
pub struct Keeper {
    config: Arc<Config>,
    clients: Arc<Clients>,
    slots: HashMap<String, Slot>,
    /// (due, slot id): the first entry is the next refresh.
    queue: BTreeSet<(Instant, u64)>,
    /// Superseded tokens waiting to be revoked, by (due, sequence number).
    revokes: BTreeMap<(Instant, u64), PendingRevoke>,
    ids: HashMap<u64, String>,
    next_id: u64,
    permits: Arc<Semaphore>,
    outcomes_tx: mpsc::UnboundedSender<Outcome>,
    outcomes_rx: mpsc::UnboundedReceiver<Outcome>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    first_round: Option<oneshot::Sender<FirstRound>>,
    clocks: Clocks,
    telemetry: Arc<Telemetry>,
    /// Clusters that have not finished an attempt yet (for the first round).
    unattempted: usize,
    /// The systemd watchdog interval, and when it was last pinged.
    watchdog: Option<(Duration, Instant)>,
}

/// One cluster's state.
struct Slot {
    /// New for every incarnation (a changed source after reload gets a new one), so outcomes
    /// of attempts started for an old incarnation are recognised and dropped.
    id: u64,
    cluster: Arc<Cluster>,
    client: KnoxClient,
    token: Option<Token>,
    held: Option<Held>,
    failures: Option<Failures>,
    /// The generation of the last publish (read back from the json output at start).
    generation: u64,
    in_flight: bool,
    due: Option<Instant>,
    /// Whether one attempt has finished (for the first round).
    attempted: bool,
    /// Whether the expiry of the held token was already logged.
    expiry_logged: bool,
    /// The renew/revoke API flavour this gateway answered to (docs/knox.md §1.2).
    flavor: Flavor,
    /// Renewal was refused for good (not whitelisted, or tokens are not managed).
    renew_refused: bool,
    /// Revocation was refused for good (not authorized, or not configured).
    revoke_refused: bool,
    /// Knox before 1.6 was noticed and said so.
    legacy_logged: bool,
    /// Whether the cap on the requested `lifespan` has been logged for this cluster.
    lifespan_cap_logged: bool,
    /// The json output says stale, with this error.
    stale: Option<String>,
    /// The expired token's files were removed (`remove_expired`).
    expired_removed: bool,
    /// A refresh was requested (SIGUSR1) and is due at this instant ([`forced_request`]).
    forced: Option<Instant>,
    /// The attempt in flight was requested (SIGUSR1).
    forced_in_flight: bool,
    /// Requested refreshes wait until then (the gap after the last one).
    forced_gate: Option<Instant>,
}

impl Slot {
    fn view(&self) -> View {
        View { held: self.held, failures: self.failures }
    }

    fn validation(&self) -> Validation {
        self.cluster.lifecycle.consumers_validate
    }

    /// Whether a token is renewed rather than replaced: managed, expiring, consumers going
    /// through the gateway, and renewal not refused (docs/knox.md §9.2). Knox before 1.6 does
    /// not say whether a token is managed (no `token_id` either), so renewal is tried once;
    /// an unmanaged token's echo stops it.
    fn renewable(&self, token: &Token) -> bool {
        (token.managed || token.legacy)
            && token.expires_in != Expiry::Never
            && self.validation() == Validation::Gateway
            && !self.renew_refused
    }

    fn hold(&self, token: &Token) -> Held {
        Held {
            issued: token.received,
            expires: token.expires_at(self.validation()),
            jitter_sample: fastrand::f64(),
            renewable: self.renewable(token),
        }
    }
}

/// A superseded token to revoke.
struct PendingRevoke {
    cluster: String,
    slot_id: u64,
    /// For log lines.
    token_id: Option<String>,
    /// What Knox is sent ([`Token::revocation_body`]).
    body: Secret,
    attempts: u32,
}

impl PendingRevoke {
    fn id(&self) -> &str {
        self.token_id.as_deref().unwrap_or("-")
    }
}

/// Clones a spawned task takes along.
struct TaskCtx {
    cluster: Arc<Cluster>,
    client: KnoxClient,
    flavor: Flavor,
    permits: Arc<Semaphore>,
    shutdown: CancellationToken,
    tx: mpsc::UnboundedSender<Outcome>,
}

/// What an attempt does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    Acquire,
    Renew,
}

/// What a task reports back to the loop.
enum Outcome {
    Attempt { id: u64, generation: u64, work: Work, flavor: Flavor, result: Result<Attempted, AttemptError> },
    Revoke { flavor: Flavor, pending: PendingRevoke, result: Result<Revocation, KnoxError> },
}

/// What an attempt achieved.
enum Attempted {
    /// A new token, published.
    Acquired(Token),
    /// The held token, renewed (its json rewritten).
    Renewed(Token),
    /// Knox will not renew it; it has to be replaced.
    RenewRefused(Reason),
}

/// Why an attempt produced nothing.
pub(crate) enum AttemptError {
    /// Knox said no, or could not be reached.
    Knox(KnoxError),
    /// Every output failed; the token was not published anywhere.
    Publish(String),
    /// Shutdown came first.
    Cancelled,
}

/// Readings of the three clocks, to tell suspend and wall-clock jumps from time passing.
#[derive(Clone, Copy)]
struct Clocks {
    mono: Instant,
    boot: Option<Duration>,
    wall: SystemTime,
}

impl Clocks {
    fn now() -> Clocks {
        Clocks { mono: Instant::now(), boot: boottime(), wall: SystemTime::now() }
    }
}

/// `CLOCK_BOOTTIME`: like the monotonic clock, but it keeps counting while suspended. `None`
/// only if the kernel's answer is not a valid duration.
fn boottime() -> Option<Duration> {
    Duration::try_from(rustix::time::clock_gettime(rustix::time::ClockId::Boottime)).ok()
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
        let (outcomes_tx, outcomes_rx) = mpsc::unbounded_channel();
        let mut keeper = Keeper {
            permits: Arc::new(Semaphore::new(config.max_concurrent_requests)),
            config: config.clone(),
            clients,
            slots: HashMap::new(),
            queue: BTreeSet::new(),
            revokes: BTreeMap::new(),
            ids: HashMap::new(),
            next_id: 0,
            outcomes_tx,
            outcomes_rx,
            tracker,
            shutdown,
            first_round: Some(first_round),
            clocks: Clocks::now(),
            telemetry,
            unattempted: 0,
            watchdog: systemd::watchdog_interval().map(|i| (i, Instant::now())),
        };
        for cluster in &config.clusters {
            let slot = keeper.new_slot(cluster.clone())?;
            keeper.unattempted += usize::from(!slot.attempted);
            keeper.slots.insert(cluster.name.clone(), slot);
        }
        Ok(keeper)
    }

    fn new_slot(&mut self, cluster: Arc<Cluster>) -> anyhow::Result<Slot> {
        let client = self.clients.get(&cluster.transport)?;
        let removed = sink::sweep_temp_files(&cluster);
        if removed > 0 {
            info!(cluster = %cluster.name, removed, "removed temp files left by an interrupted publish");
        }
        // Generations keep counting across restarts; an unreadable file just restarts at 0.
        let published = output::read_published(&cluster).ok().flatten();
        let generation = published.as_ref().map_or(0, |p| p.generation);
        let token = published.and_then(|p| adopt(&cluster, p));
        self.next_id += 1;
        self.ids.insert(self.next_id, cluster.name.clone());
        let mut slot = Slot {
            id: self.next_id,
            cluster,
            client,
            token: None,
            held: None,
            failures: None,
            generation,
            in_flight: false,
            due: None,
            attempted: false,
            expiry_logged: false,
            flavor: Flavor::default(),
            renew_refused: false,
            revoke_refused: false,
            legacy_logged: false,
            lifespan_cap_logged: false,
            stale: None,
            expired_removed: false,
            forced: None,
            forced_in_flight: false,
            forced_gate: None,
        };
        if let Some(token) = token {
            let held = slot.hold(&token);
            info!(
                cluster = %slot.cluster.name,
                token_id = %token.id(),
                fingerprint = %token.jwt.fingerprint(),
                generation,
                next_refresh_in = %held.refresh_at(&slot.cluster.policy).map_or_else(|| "never".to_owned(), |t| human(t.saturating_duration_since(Instant::now()))),
                "kept the published token: it is still fresh"
            );
            self.telemetry.published(
                &slot.cluster.name,
                &Published::new(&slot.cluster.name, &token, generation, slot.validation()),
                false,
            );
            slot.token = Some(token);
            slot.held = Some(held);
            slot.attempted = true;
        }
        Ok(slot)
    }

    /// Runs until `shutdown`. New configs arrive on `configs`; `refresh` asks for every
    /// cluster to be refreshed now (SIGUSR1).
    pub async fn run(mut self, mut configs: watch::Receiver<Arc<Config>>, refresh: Arc<Notify>) {
        let names: Vec<String> = self.slots.keys().cloned().collect();
        for name in names {
            self.replan(&name);
        }
        // Every cluster may have kept a fresh token from before a restart.
        self.check_first_round();
        loop {
            // With a watchdog, wake when the next ping is due (counted from the last ping, so
            // an earlier wake-up does not postpone it).
            let ping = self.watchdog.map(|(interval, last)| systemd::next_ping(last, interval));
            let wake =
                [self.queue.first().map(|&(t, _)| t), self.revokes.keys().next().map(|&(t, _)| t), ping]
                    .into_iter()
                    .flatten()
                    .fold(Instant::now() + MAX_SLEEP, Instant::min);
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                Some(outcome) = self.outcomes_rx.recv() => self.on_outcome(outcome),
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
        self.telemetry.loop_ran();
        if let Some((interval, last)) = &mut self.watchdog {
            let now = Instant::now();
            if systemd::next_ping(*last, *interval) <= now {
                systemd::watchdog();
                *last = now;
            }
        }
        if let Some((path, text)) = self.telemetry.textfile_update(SystemTime::now()) {
            self.tracker.spawn_blocking(move || {
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
        while let Some(&(t, id)) = self.queue.first() {
            if t > now {
                break;
            }
            self.queue.remove(&(t, id));
            if let Some(name) = self.ids.get(&id).cloned() {
                if let Some(slot) = self.slots.get_mut(&name) {
                    slot.due = None;
                }
                self.replan(&name);
            }
        }
        while let Some(entry) = self.revokes.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let pending = entry.remove();
            self.start_revoke(pending);
        }
    }

    /// Notices a suspend (boot time ran ahead of monotonic time) and moves every schedule
    /// earlier by the time slept; notices wall-clock jumps, which schedules ignore.
    fn check_clocks(&mut self) {
        let now = Clocks::now();
        let last = std::mem::replace(&mut self.clocks, now);
        let mono = now.mono.saturating_duration_since(last.mono);
        if let (Some(b0), Some(b1)) = (last.boot, now.boot) {
            let slept = b1.saturating_sub(b0).saturating_sub(mono);
            if slept > Duration::from_secs(1) {
                warn!(slept = %human(slept), "the host was suspended; re-planning every cluster");
                self.shift_back(slept);
                return;
            }
        }
        let wall = match now.wall.duration_since(last.wall) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        };
        if (wall - mono.as_secs_f64()).abs() > 2.0 {
            info!(
                jump_s = wall - mono.as_secs_f64(),
                "the wall clock jumped; schedules run on the monotonic clock and are unaffected"
            );
        }
    }

    /// After a suspend of `d`, every token is `d` closer to expiry than monotonic time says.
    fn shift_back(&mut self, d: Duration) {
        for slot in self.slots.values_mut() {
            if let Some(h) = &mut slot.held {
                *h = h.shifted_back(d);
            }
            if let Some(t) = &mut slot.token {
                t.received = t.received.checked_sub(d).unwrap_or(t.received);
            }
            if let Some(f) = &mut slot.failures {
                f.last = f.last.checked_sub(d).unwrap_or(f.last);
            }
            for t in [&mut slot.forced, &mut slot.forced_gate].into_iter().flatten() {
                *t = t.checked_sub(d).unwrap_or(*t);
            }
        }
        let names: Vec<String> = self.slots.keys().cloned().collect();
        for name in names {
            self.replan(&name);
        }
    }

    /// Asks `plan` what to do for `name` and does it: start an attempt, or queue a wake-up.
    fn replan(&mut self, name: &str) {
        let Some(slot) = self.slots.get_mut(name) else { return };
        if let Some(due) = slot.due.take() {
            self.queue.remove(&(due, slot.id));
        }
        if slot.in_flight {
            return;
        }
        let now = Instant::now();
        if let (Some(h), false) = (slot.held, slot.expiry_logged) {
            if h.expires.is_some_and(|e| e <= now) {
                slot.expiry_logged = true;
                error!(cluster = %slot.cluster.name, "the published token has expired and no new one could be acquired");
            }
        }
        match with_forced(plan(now, &slot.view(), &slot.cluster.policy), now, slot.forced) {
            Action::Acquire => self.start_attempt(name, Work::Acquire),
            Action::Renew => self.start_attempt(name, Work::Renew),
            Action::WaitUntil(t) => {
                slot.due = Some(t);
                self.queue.insert((t, slot.id));
            }
            Action::Idle => {}
        }
    }

    /// Starts an acquisition or a renewal.
    fn start_attempt(&mut self, name: &str, work: Work) {
        let Some(slot) = self.slots.get_mut(name) else { return };
        let renew = match (work, &slot.token) {
            (Work::Renew, Some(token)) => Some(token.clone()),
            _ => None,
        };
        slot.in_flight = true;
        // Any attempt absorbs a requested refresh; it counts as requested only if it was due.
        let forced = slot.forced.take();
        slot.forced_in_flight = work == Work::Acquire && forced.is_some_and(|t| t <= Instant::now());
        let id = slot.id;
        // The generation was read back from the published json: it may be anything.
        let generation = if renew.is_some() { slot.generation } else { slot.generation.saturating_add(1) };
        let TaskCtx { cluster, client, mut flavor, permits, shutdown, tx } = self.task_ctx(name);
        self.tracker.spawn(async move {
            let result = match renew {
                Some(token) => {
                    renew_token(&cluster, &client, &permits, token, generation, &mut flavor, &shutdown).await
                }
                None => {
                    acquire(&cluster, &client, &permits, generation, &shutdown).await.map(Attempted::Acquired)
                }
            };
            // The loop may be gone at shutdown; the outcome no longer matters then.
            let _ = tx.send(Outcome::Attempt { id, generation, work, flavor, result });
        });
    }

    /// What a task for `name`'s cluster needs. The slot must exist.
    fn task_ctx(&self, name: &str) -> TaskCtx {
        let slot = &self.slots[name];
        TaskCtx {
            cluster: slot.cluster.clone(),
            client: slot.client.clone(),
            flavor: slot.flavor,
            permits: self.permits.clone(),
            shutdown: self.shutdown.clone(),
            tx: self.outcomes_tx.clone(),
        }
    }

    fn start_revoke(&mut self, pending: PendingRevoke) {
        if self.slots.get(&pending.cluster).is_none_or(|s| s.id != pending.slot_id) {
            debug!(cluster = %pending.cluster, token_id = %pending.id(), "not revoking: the cluster was removed");
            return;
        }
        let TaskCtx { cluster, client, mut flavor, permits, shutdown, tx } = self.task_ctx(&pending.cluster);
        self.tracker.spawn(async move {
            let result = tokio::select! {
                r = revoke(&cluster, &client, &permits, &pending.body, &mut flavor) => r,
                () = shutdown.cancelled() => return,
            };
            let _ = tx.send(Outcome::Revoke { flavor, pending, result });
        });
    }

    fn on_outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Attempt { id, generation, work, flavor, result } => {
                self.on_attempt(id, generation, work, flavor, result);
            }
            Outcome::Revoke { flavor, pending, result } => self.on_revoke(flavor, pending, result),
        }
    }

    fn on_attempt(
        &mut self,
        id: u64,
        generation: u64,
        work: Work,
        flavor: Flavor,
        result: Result<Attempted, AttemptError>,
    ) {
        let Some(name) = self.ids.get(&id).cloned() else { return };
        let Some(slot) = self.slots.get_mut(&name) else { return };
        if slot.id != id {
            return;
        }
        slot.in_flight = false;
        if std::mem::take(&mut slot.forced_in_flight) && !matches!(result, Err(AttemptError::Cancelled)) {
            let gap = if matches!(result, Ok(Attempted::Acquired(_))) {
                FORCED_REFRESH_GAP
            } else {
                FORCED_RETRY_GAP
            };
            slot.forced_gate = Some(Instant::now() + gap);
        }
        if !slot.attempted {
            slot.attempted = true;
            self.unattempted = self.unattempted.saturating_sub(1);
        }
        slot.flavor = flavor;
        let now = Instant::now();
        let mut superseded = None;
        match result {
            Ok(Attempted::Acquired(token)) => {
                let held = slot.hold(&token);
                log_published(slot, &token, generation, &held, "token published");
                warn_about_new_token(slot, &token);
                let published = Published::new(&slot.cluster.name, &token, generation, slot.validation());
                self.telemetry.published(&slot.cluster.name, &published, false);
                if let Some(hook) = slot.cluster.on_change.clone() {
                    let (name, telemetry) = (slot.cluster.name.clone(), self.telemetry.clone());
                    let shutdown = self.shutdown.clone();
                    self.tracker.spawn(async move {
                        for error in hooks::run(&name, generation, &hook, &shutdown).await {
                            telemetry.hook_failed(&name);
                            warn!(cluster = %name, "on_change failed: {error}");
                        }
                    });
                }
                superseded = slot.token.replace(token);
                slot.generation = generation;
                slot.held = Some(held);
                slot.failures = None;
                slot.expiry_logged = false;
                slot.stale = None;
                slot.expired_removed = false;
            }
            Ok(Attempted::Renewed(token)) => {
                let held = slot.hold(&token);
                log_published(slot, &token, slot.generation, &held, "token renewed");
                let published =
                    Published::new(&slot.cluster.name, &token, slot.generation, slot.validation());
                self.telemetry.published(&slot.cluster.name, &published, true);
                slot.token = Some(token);
                slot.held = Some(held);
                slot.failures = None;
                slot.expiry_logged = false;
                slot.stale = None;
            }
            Ok(Attempted::RenewRefused(reason)) => {
                self.telemetry.renewal_failed(&slot.cluster.name, reason.code().to_owned());
                renew_refused(slot, reason);
            }
            Err(AttemptError::Cancelled) => return,
            Err(err) => self.on_failure(&name, work, &err, now),
        }
        if let Some(old) = superseded {
            self.supersede(&name, old);
        }
        self.replan(&name);
        self.update_status();
        self.check_first_round();
    }

    /// An attempt failed: count it, log one line, and mark the json stale past the refresh
    /// point.
    fn on_failure(&mut self, name: &str, work: Work, err: &AttemptError, now: Instant) {
        let Some(slot) = self.slots.get_mut(name) else { return };
        let (message, status, class) = match err {
            AttemptError::Knox(e) => (e.to_string(), e.status(), e.class()),
            AttemptError::Publish(e) => (e.clone(), None, ErrorClass::Transient),
            AttemptError::Cancelled => return,
        };
        match work {
            Work::Acquire => self.telemetry.acquisition_failed(&slot.cluster.name),
            Work::Renew => self.telemetry.renewal_failed(
                &slot.cluster.name,
                status.map_or_else(|| "none".to_owned(), |s| s.to_string()),
            ),
        }
        let count = slot.failures.map_or(1, |f| f.count.saturating_add(1));
        slot.failures = Some(Failures { count, last: now, sample: fastrand::f64(), class });
        let left = match slot.held.and_then(|h| h.expires) {
            Some(e) if e > now => {
                format!("the last good token stays published, {} left", human(e - now))
            }
            Some(_) => "the last good token has expired".to_owned(),
            None if slot.held.is_some() => "the last good token stays published".to_owned(),
            None => "no token is published yet".to_owned(),
        };
        let retry_in = match plan(now, &slot.view(), &slot.cluster.policy) {
            Action::WaitUntil(t) => human(t - now),
            _ => "now".to_owned(),
        };
        if class == ErrorClass::Quota || count >= 3 {
            error!(cluster = %slot.cluster.name, status, failures = count, retry_in = %retry_in, "refresh failed: {message}; {left}");
        } else {
            warn!(cluster = %slot.cluster.name, status, failures = count, retry_in = %retry_in, "refresh failed: {message}; {left}");
        }
        self.mark_stale(name, &message, now);
    }

    /// Past the refresh point with refreshing failing: the json says so, and with
    /// `remove_expired` an expired token's files go away.
    fn mark_stale(&mut self, name: &str, message: &str, now: Instant) {
        let Some(slot) = self.slots.get_mut(name) else { return };
        let (Some(held), Some(token)) = (slot.held, &slot.token) else { return };
        let past_refresh = held.refresh_at(&slot.cluster.policy).is_some_and(|t| t <= now);
        if past_refresh && slot.stale.as_deref() != Some(message) {
            slot.stale = Some(message.to_owned());
            self.telemetry.set_stale(name, slot.stale.clone());
            let mut published = Published::new(&slot.cluster.name, token, slot.generation, slot.validation());
            published.stale = true;
            published.last_error = Some(message.to_owned());
            let cluster = slot.cluster.clone();
            self.tracker.spawn(async move {
                let name = cluster.name.clone();
                match tokio::task::spawn_blocking(move || sink::publish_json(&cluster, &published)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(errors)) => log_output_errors(&name, &errors),
                    Err(e) => error!(cluster = %name, "publish task failed: {e}"),
                }
            });
        }
        let expired = held.expires.is_some_and(|e| e <= now);
        if expired && slot.cluster.lifecycle.remove_expired && !slot.expired_removed {
            slot.expired_removed = true;
            let cluster = slot.cluster.clone();
            self.tracker.spawn(async move {
                let name = cluster.name.clone();
                match tokio::task::spawn_blocking(move || sink::remove_token_files(&cluster)).await {
                    Ok(Ok(n)) => warn!(cluster = %name, removed = n, "removed the expired token's files (remove_expired)"),
                    Ok(Err(errors)) => log_output_errors(&name, &errors),
                    Err(e) => error!(cluster = %name, "remove task failed: {e}"),
                }
            });
        }
    }

    /// Queues the revocation of a token its successor replaced (managed tokens only, or any
    /// token of a pre-1.6 Knox, which does not say).
    fn supersede(&mut self, name: &str, old: Token) {
        let Some(slot) = self.slots.get(name) else { return };
        let is_new = slot.token.as_ref().is_some_and(|t| t.jwt == old.jwt);
        let revocable = old.managed || old.legacy;
        if is_new || !revocable || slot.revoke_refused {
            return;
        }
        // Readers cannot use the old token past its expiry anyway, and expired tokens still
        // count toward the limit for a day: revoke no later than it expires. With short-lived
        // tokens (Knox's default 30 s) this keeps the user well under the limit.
        let now = Instant::now();
        let left =
            old.expires_at(slot.validation()).map_or(Duration::MAX, |e| e.saturating_duration_since(now));
        // A wait too long to add to the clock (an absurd configured value) never comes.
        let Some(due) = now.checked_add(slot.cluster.lifecycle.revoke_superseded_after.min(left)) else {
            return;
        };
        let pending = PendingRevoke {
            cluster: name.to_owned(),
            slot_id: slot.id,
            token_id: old.token_id.clone(),
            body: old.revocation_body(),
            attempts: 0,
        };
        self.queue_revoke(due, pending);
    }

    fn queue_revoke(&mut self, due: Instant, pending: PendingRevoke) {
        self.next_id += 1;
        self.revokes.insert((due, self.next_id), pending);
    }

    fn on_revoke(
        &mut self,
        flavor: Flavor,
        mut pending: PendingRevoke,
        result: Result<Revocation, KnoxError>,
    ) {
        let ok = matches!(result, Ok(Revocation::Revoked | Revocation::AlreadyGone));
        let last_try = pending.attempts + 1 >= REVOKE_ATTEMPTS;
        if ok || last_try || matches!(result, Ok(Revocation::NotAuthorized | Revocation::NotConfigured)) {
            self.telemetry.revoked(&pending.cluster, ok);
        }
        let slot = self.slots.get_mut(&pending.cluster).filter(|s| s.id == pending.slot_id);
        let token_id = pending.id().to_owned();
        let cluster = pending.cluster.clone();
        match result {
            Ok(Revocation::Revoked) => info!(cluster, token_id, "superseded token revoked"),
            Ok(Revocation::AlreadyGone) => {
                debug!(cluster, token_id, "superseded token already unknown to Knox")
            }
            Ok(r @ (Revocation::NotAuthorized | Revocation::NotConfigured)) => {
                if let Some(slot) = slot {
                    slot.flavor = flavor;
                    if !slot.revoke_refused {
                        warn!(
                            cluster,
                            token_id,
                            "Knox refused to revoke a superseded token ({}); superseded tokens are no longer \
                             revoked for this cluster and count toward the per-user token limit until they expire",
                            if r == Revocation::NotAuthorized { "not authorized" } else { "token management is off" }
                        );
                    }
                    slot.revoke_refused = true;
                }
            }
            Ok(Revocation::Refused) | Err(_) => {
                let why = match &result {
                    Err(e) => e.to_string(),
                    _ => "Knox refused".to_owned(),
                };
                pending.attempts += 1;
                if pending.attempts >= REVOKE_ATTEMPTS {
                    warn!(
                        cluster,
                        token_id,
                        "giving up revoking a superseded token after {} tries: {why}",
                        pending.attempts
                    );
                } else {
                    let wait = backoff(pending.attempts, fastrand::f64(), ErrorClass::Transient);
                    debug!(cluster, token_id, "revoking failed ({why}); retrying in {}", human(wait));
                    if let Some(slot) = self.slots.get_mut(&pending.cluster) {
                        slot.flavor = flavor;
                    }
                    self.queue_revoke(Instant::now() + wait, pending);
                }
                return;
            }
        }
        if let Some(slot) = self.slots.get_mut(&cluster) {
            slot.flavor = flavor;
        }
    }

    /// At shutdown, with `revoke_on_exit`: the published token and those waiting for
    /// revocation are revoked, within a small time budget.
    async fn revoke_on_exit(&mut self) {
        let mut work = Vec::new();
        for slot in self.slots.values().filter(|s| s.cluster.lifecycle.revoke_on_exit && !s.revoke_refused) {
            if let Some(t) = slot.token.as_ref().filter(|t| t.managed || t.legacy) {
                work.push((
                    slot.cluster.clone(),
                    slot.client.clone(),
                    slot.flavor,
                    t.token_id.clone(),
                    t.revocation_body(),
                ));
            }
        }
        for pending in std::mem::take(&mut self.revokes).into_values() {
            match self.slots.get(&pending.cluster).filter(|s| s.cluster.lifecycle.revoke_on_exit) {
                Some(slot) => work.push((
                    slot.cluster.clone(),
                    slot.client.clone(),
                    slot.flavor,
                    pending.token_id.clone(),
                    pending.body.clone(),
                )),
                None => {
                    debug!(cluster = %pending.cluster, token_id = %pending.id(), "left unrevoked at exit")
                }
            }
        }
        if work.is_empty() {
            return;
        }
        let permits = self.permits.clone();
        let all = async {
            for (cluster, client, mut flavor, token_id, body) in work {
                let id = token_id.as_deref().unwrap_or("-");
                match revoke(&cluster, &client, &permits, &body, &mut flavor).await {
                    Ok(Revocation::Revoked | Revocation::AlreadyGone) => {
                        info!(cluster = %cluster.name, token_id = id, "token revoked at exit")
                    }
                    Ok(r) => warn!(cluster = %cluster.name, token_id = id, "could not revoke at exit: {r:?}"),
                    Err(e) => warn!(cluster = %cluster.name, token_id = id, "could not revoke at exit: {e}"),
                }
            }
        };
        if tokio::time::timeout(EXIT_REVOKE_BUDGET, all).await.is_err() {
            warn!("revocations at exit did not finish within {}", human(EXIT_REVOKE_BUDGET));
        }
    }

    fn check_first_round(&mut self) {
        // Counting is O(clusters); the unattempted count keeps this O(1) per outcome until the
        // round is complete (10,000 clusters would otherwise cost 10^8 checks).
        if self.first_round.is_none() || self.unattempted > 0 {
            return;
        }
        let published = self.slots.values().filter(|s| s.held.is_some()).count();
        let round = FirstRound { published, failed: self.slots.len() - published };
        if let Some(tx) = self.first_round.take() {
            let _ = tx.send(round);
        }
    }

    /// One STATUS= line for systemd.
    fn update_status(&self) {
        if !systemd::enabled() {
            return;
        }
        let now = Instant::now();
        let stale = self.slots.values().filter(|s| s.stale.is_some()).count();
        let ok = self
            .slots
            .values()
            .filter(|s| s.stale.is_none() && s.held.is_some_and(|h| h.is_fresh(now, &s.cluster.policy)))
            .count();
        let next = self.queue.first().map(|&(t, _)| human(t.saturating_duration_since(now)));
        let line = format!(
            "{} clusters: {ok} fresh, {stale} stale, {} not ready; next refresh in {}",
            self.slots.len(),
            self.slots.len() - ok - stale,
            next.as_deref().unwrap_or("-")
        );
        systemd::status(&line);
    }

    /// SIGUSR1: every cluster acquires a new token, now or at the end of its gap since the
    /// last requested refresh ([`forced_request`]). A cluster with an attempt in flight, or a
    /// requested refresh pending, is left as it is: that one covers this request too.
    fn refresh_all(&mut self) {
        let now = Instant::now();
        let (mut now_count, mut deferred, mut absorbed) = (0usize, 0usize, 0usize);
        let names: Vec<String> = self.slots.keys().cloned().collect();
        for name in names {
            let Some(slot) = self.slots.get_mut(&name) else { continue };
            match forced_request(now, slot.in_flight || slot.forced.is_some(), slot.forced_gate) {
                None => absorbed += 1,
                Some(at) => {
                    if at <= now {
                        now_count += 1;
                    } else {
                        deferred += 1;
                    }
                    slot.forced = Some(at);
                    self.replan(&name);
                }
            }
        }
        if now_count + deferred > 0 {
            info!(
                now = now_count,
                deferred,
                already = absorbed,
                "refresh requested: refreshing {now_count} clusters now, {deferred} when their {}s \
                 since the last requested refresh are up",
                FORCED_REFRESH_GAP.as_secs()
            );
        } else {
            debug!(clusters = absorbed, "refresh requested: every cluster is refreshing or has one pending");
        }
    }

    /// Swaps in a new config: unchanged clusters keep everything, clusters whose Knox source
    /// is unchanged keep their token (and republish it if their outputs changed), the rest
    /// start afresh; removed clusters are dropped.
    fn apply(&mut self, config: Arc<Config>) {
        if Arc::ptr_eq(&config, &self.config) {
            return;
        }
        let mut old = std::mem::take(&mut self.slots);
        let (mut kept, mut changed, mut added) = (0, 0, 0);
        let mut to_plan = Vec::new();
        for cluster in &config.clusters {
            let name = cluster.name.clone();
            match old.remove(&name) {
                Some(slot) if *slot.cluster == **cluster => {
                    kept += 1;
                    self.slots.insert(name, slot);
                }
                Some(mut slot) if slot.cluster.same_source(cluster) => {
                    changed += 1;
                    let republish = slot.cluster.outputs != cluster.outputs;
                    slot.cluster = cluster.clone();
                    // The policy may have changed what the held token's expiry is.
                    if let Some(token) = slot.token.clone() {
                        let jitter = slot.held.map_or_else(fastrand::f64, |h| h.jitter_sample);
                        slot.held = Some(Held { jitter_sample: jitter, ..slot.hold(&token) });
                    }
                    if republish {
                        self.republish(&slot);
                    }
                    self.slots.insert(name.clone(), slot);
                    to_plan.push(name);
                }
                other => match self.new_slot(cluster.clone()) {
                    Ok(slot) => {
                        match other {
                            Some(old_slot) => {
                                self.forget(&old_slot);
                                changed += 1;
                            }
                            None => added += 1,
                        }
                        self.slots.insert(name.clone(), slot);
                        to_plan.push(name);
                    }
                    // Validation checked this already; if it fails now (a ca_file removed
                    // since), the old slot, if any, keeps refreshing under its old settings.
                    Err(e) => {
                        error!(cluster = %name, "cannot apply the new settings, keeping the old ones: {e:#}");
                        if let Some(old_slot) = other {
                            kept += 1;
                            self.slots.insert(name, old_slot);
                        }
                    }
                },
            }
        }
        let removed = old.len();
        for slot in old.into_values() {
            info!(cluster = %slot.cluster.name, "cluster removed from the config; its files are left as they are");
            self.forget(&slot);
        }
        if config.max_concurrent_requests != self.config.max_concurrent_requests {
            // In-flight attempts hold permits of the old semaphore and release them there.
            self.permits = Arc::new(Semaphore::new(config.max_concurrent_requests));
        }
        self.telemetry.set_clusters(&config);
        self.unattempted = self.slots.values().filter(|s| !s.attempted).count();
        self.config = config;
        let in_use: Vec<_> = self.slots.values().map(|s| &s.cluster.transport).collect();
        self.clients.retain(&in_use);
        info!(kept, changed, added, removed, "config applied");
        for name in to_plan {
            self.replan(&name);
        }
    }

    fn forget(&mut self, slot: &Slot) {
        if let Some(due) = slot.due {
            self.queue.remove(&(due, slot.id));
        }
        self.ids.remove(&slot.id);
    }

    /// Writes the held token to a slot's (new) outputs, after a reload changed them.
    fn republish(&mut self, slot: &Slot) {
        let Some(token) = &slot.token else { return };
        let cluster = slot.cluster.clone();
        let published = Published::new(&cluster.name, token, slot.generation, slot.validation());
        self.tracker.spawn(async move {
            let name = cluster.name.clone();
            match tokio::task::spawn_blocking(move || sink::publish(&cluster, &published)).await {
                Ok(Ok(())) => info!(cluster = %name, "token republished to the new outputs"),
                Ok(Err(errors)) => log_output_errors(&name, &errors),
                Err(e) => error!(cluster = %name, "publish task failed: {e}"),
            }
        });
    }
}

/// When a refresh requested at `now` (SIGUSR1) happens: `None` if the cluster is `busy` (an
/// attempt in flight, or a requested refresh pending, covers this request too); otherwise now,
/// or when the gap since the last requested refresh ends (`gate`). Deferred, never dropped.
fn forced_request(now: Instant, busy: bool, gate: Option<Instant>) -> Option<Instant> {
    if busy {
        return None;
    }
    Some(gate.map_or(now, |g| g.max(now)))
}

/// `plan`'s `action` for a cluster with a requested refresh due at `forced`: plan's own action
/// when it acts now (an attempt absorbs the request; a due request turns a renewal into an
/// acquisition, which is what was asked for), an acquisition once the request is due, and
/// otherwise a wake-up at the earlier of the two.
fn with_forced(action: Action, now: Instant, forced: Option<Instant>) -> Action {
    let Some(at) = forced else { return action };
    match action {
        Action::Acquire => Action::Acquire,
        _ if at <= now => Action::Acquire,
        Action::Renew => Action::Renew,
        Action::WaitUntil(t) => Action::WaitUntil(t.min(at)),
        Action::Idle => Action::WaitUntil(at),
    }
}

/// A token published before this start (by an earlier run, or `once` in an init
/// container), taken over if it is still fresh and is this cluster's: restarting must not
/// cost a token of the user's Knox quota. Its schedule is rebuilt from when it arrived.
fn adopt(cluster: &Cluster, p: Published) -> Option<Token> {
    let now_wall = SystemTime::now();
    let remaining = Duration::from_millis(u64::try_from(p.remaining_ms(now_wall)?).unwrap_or(0));
    if p.cluster != cluster.name || !cluster.policy.keeps(remaining, p.lifetime()?) {
        return None;
    }
    let claims = jsonwebtoken::dangerous::insecure_decode::<knox::wire::Claims>(p.jwt.expose()).ok()?.claims;
    // A token for another user (the config changed while we were stopped) is not ours.
    if let crate::config::Auth::Basic { user, .. } = &cluster.auth {
        if claims.sub.as_deref().is_some_and(|sub| sub != user) {
            return None;
        }
    }
    // The schedule runs from when the current expiry was set: the last renewal, else arrival.
    let since = p.renewed_at.unwrap_or(p.acquired_at);
    let age = now_wall.duration_since(since).unwrap_or_default();
    Some(Token {
        jwt: p.jwt,
        token_id: p.token_id,
        token_type: p.token_type,
        expires_in: Expiry::At(p.expires_at_ms?),
        jwt_exp: p.jwt_exp,
        subject: claims.sub,
        managed: p.managed,
        target_url: p.target_url,
        legacy: false,
        acquired_at: p.acquired_at,
        renewed_at: p.renewed_at,
        received: Instant::now().checked_sub(age).unwrap_or_else(Instant::now),
        knox_now_ms: knox::epoch_ms(since).saturating_add(p.knox_clock_offset_ms),
        clock_offset_ms: p.knox_clock_offset_ms,
    })
}

/// Says once per cluster that Knox issued a shorter token than the configured `lifespan`
/// asked for: the topology's `knox.token.ttl` caps it silently (docs/knox.md §2.1).
/// With `min_valid` set, its own warning (once per token) says this and more.
fn log_lifespan_cap(slot: &mut Slot, token: &Token) {
    if slot.lifespan_cap_logged || slot.cluster.lifecycle.min_valid.is_some() {
        return;
    }
    let asked = slot.cluster.lifespan.as_deref().and_then(crate::config::iso_duration);
    let (Some(asked), Some(got)) = (asked, token.lifetime(slot.validation())) else { return };
    // Knox counts from its issue time, we from the answer's arrival: allow for the difference.
    if got.saturating_add(LIFESPAN_SLACK) < asked {
        slot.lifespan_cap_logged = true;
        warn!(
            cluster = %slot.cluster.name,
            token_id = %token.id(),
            "Knox issued a token valid for {}, less than the requested lifespan {}: the topology's \
             knox.token.ttl caps the requested lifespan (said once per cluster)",
            human(got),
            human(asked)
        );
    }
}

/// The warnings a new token may call for: an old Knox, a capped lifespan, less than
/// `min_valid`. Each is said once (per cluster, or per token).
fn warn_about_new_token(slot: &mut Slot, token: &Token) {
    if token.legacy && !slot.legacy_logged {
        slot.legacy_logged = true;
        warn!(
            cluster = %slot.cluster.name,
            "Knox answered without token_id or managed, so it is older than 1.6: renewal and \
             revocation are decided by HTTP status alone, and superseded tokens are revoked by \
             their JWT (which only whitelisted callers may do there)"
        );
    }
    log_lifespan_cap(slot, token);
    if let (Some(min_valid), Some(lifetime)) =
        (slot.cluster.lifecycle.min_valid, token.lifetime(slot.validation()))
    {
        if lifetime < min_valid {
            warn!(
                cluster = %slot.cluster.name,
                token_id = %token.id(),
                "Knox issued a token valid for {}, less than min_valid {}: the topology's \
                 knox.token.ttl caps the requested lifespan",
                human(lifetime),
                human(min_valid)
            );
        }
    }
}

/// Knox would not renew the held token: log why, stop renewing for good if it never will,
/// and let `plan` say acquire.
fn renew_refused(slot: &mut Slot, reason: Reason) {
    let token_id = slot.token.as_ref().map_or("-", |t| t.id()).to_owned();
    match reason {
        Reason::InvalidToken => error!(
            cluster = %slot.cluster.name,
            token_id,
            "renewal refused: {}; re-acquiring", reason.describe()
        ),
        _ => {
            info!(cluster = %slot.cluster.name, token_id, "renewal refused: {}; re-acquiring", reason.describe())
        }
    }
    if matches!(reason, Reason::NotAuthorized | Reason::NotExtended) {
        if !slot.renew_refused {
            warn!(cluster = %slot.cluster.name, "renewal stopped for this cluster: {}; tokens are replaced by re-acquisition instead", reason.describe());
        }
        slot.renew_refused = true;
    }
    // The refresh point has passed (renewal was due): plan() now says acquire.
    if let Some(h) = &mut slot.held {
        h.renewable = false;
    }
    slot.failures = None;
}

/// How much shorter than the requested lifespan a token may be before it counts as capped.
const LIFESPAN_SLACK: Duration = Duration::from_secs(5);

/// The one info line per refresh.
fn log_published(slot: &Slot, token: &Token, generation: u64, held: &Held, what: &str) {
    let now = Instant::now();
    let next = held.refresh_at(&slot.cluster.policy);
    info!(
        cluster = %slot.cluster.name,
        url = %slot.cluster.token_url,
        token_id = %token.id(),
        fingerprint = %token.jwt.fingerprint(),
        generation,
        expires_at = %token.expiry_ms(slot.validation()).map_or_else(|| "never".to_owned(), |ms| rfc3339(knox::from_epoch_ms(ms))),
        next_refresh_in = %next.map_or_else(|| "never".to_owned(), |t| human(t.saturating_duration_since(now))),
        "{what}"
    );
}

/// Acquires and publishes one token.
async fn acquire(
    cluster: &Arc<Cluster>,
    client: &KnoxClient,
    permits: &Semaphore,
    generation: u64,
    shutdown: &CancellationToken,
) -> Result<Token, AttemptError> {
    let token = {
        let _permit = tokio::select! {
            p = permits.acquire() => p.map_err(|_| AttemptError::Cancelled)?,
            () = shutdown.cancelled() => return Err(AttemptError::Cancelled),
        };
        tokio::select! {
            r = client.acquire(cluster) => r.map_err(AttemptError::Knox)?,
            () = shutdown.cancelled() => return Err(AttemptError::Cancelled),
        }
    };
    publish(cluster, &token, generation).await?;
    Ok(token)
}

/// Renews `token` (docs/knox.md §3) and, when the expiry moved, rewrites the json output.
async fn renew_token(
    cluster: &Arc<Cluster>,
    client: &KnoxClient,
    permits: &Semaphore,
    mut token: Token,
    generation: u64,
    flavor: &mut Flavor,
    shutdown: &CancellationToken,
) -> Result<Attempted, AttemptError> {
    let current = token.server_expiry_ms().unwrap_or(i64::MAX);
    let (status, body) = {
        let _permit = tokio::select! {
            p = permits.acquire() => p.map_err(|_| AttemptError::Cancelled)?,
            () = shutdown.cancelled() => return Err(AttemptError::Cancelled),
        };
        tokio::select! {
            r = client.token_op(cluster, Op::Renew, &token.jwt, flavor) => r.map_err(AttemptError::Knox)?,
            () = shutdown.cancelled() => return Err(AttemptError::Cancelled),
        }
    };
    match answer::renewal(status.as_u16(), &answer::parse(&body), current) {
        Renewal::Extended(ms) => {
            token.renewed(ms, Instant::now(), SystemTime::now());
            let published =
                Published::new(&cluster.name, &token, generation, cluster.lifecycle.consumers_validate);
            let c = cluster.clone();
            match tokio::task::spawn_blocking(move || sink::publish_json(&c, &published)).await {
                Ok(Ok(())) => {}
                Ok(Err(errors)) => log_output_errors(&cluster.name, &errors),
                Err(e) => error!(cluster = %cluster.name, "publish task failed: {e}"),
            }
            Ok(Attempted::Renewed(token))
        }
        Renewal::Reacquire(reason) => Ok(Attempted::RenewRefused(reason)),
    }
}

/// Revokes a token by id (or JWT) with a permit.
async fn revoke(
    cluster: &Cluster,
    client: &KnoxClient,
    permits: &Semaphore,
    body: &Secret,
    flavor: &mut Flavor,
) -> Result<Revocation, KnoxError> {
    let Ok(_permit) = permits.acquire().await else { return Ok(Revocation::Refused) };
    let (status, text) = client.token_op(cluster, Op::Revoke, body, flavor).await?;
    Ok(answer::revocation(status.as_u16(), &answer::parse(&text)))
}

/// Publishes `token` on the blocking pool (fsync blocks). Succeeds if at least one output
/// was written; failed outputs are logged.
pub(crate) async fn publish(
    cluster: &Arc<Cluster>,
    token: &Token,
    generation: u64,
) -> Result<(), AttemptError> {
    let published = Published::new(&cluster.name, token, generation, cluster.lifecycle.consumers_validate);
    let c = cluster.clone();
    let result = tokio::task::spawn_blocking(move || sink::publish(&c, &published))
        .await
        .map_err(|e| AttemptError::Publish(format!("publish task failed: {e}")))?;
    match result {
        Ok(()) => Ok(()),
        Err(errors) => {
            log_output_errors(&cluster.name, &errors);
            if errors.len() == cluster.outputs.len() {
                Err(AttemptError::Publish(format!("none of the {} outputs could be written", errors.len())))
            } else {
                Ok(())
            }
        }
    }
}

fn log_output_errors(cluster: &str, errors: &[sink::OutputError]) {
    for e in errors {
        error!(cluster, path = %e.path.display(), "output skipped: {}", e.error);
    }
}

/// A duration for people: "42m", "2h 5m", "1d 3h", "30s", "800ms".
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => match (s / 3600, s % 3600 / 60) {
            (h, 0) => format!("{h}h"),
            (h, m) => format!("{h}h {m}m"),
        },
        _ => match (s / 86_400, s % 86_400 / 3600) {
            (d, 0) => format!("{d}d"),
            (d, h) => format!("{d}d {h}h"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::{forced_request, human, with_forced, Action};
    use std::time::{Duration, Instant};

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
    fn human_durations() {
        let check = |secs: u64, want: &str| assert_eq!(human(Duration::from_secs(secs)), want);
        check(0, "0ms");
        check(59, "59s");
        check(42 * 60 + 10, "42m");
        check(3600, "1h");
        check(2 * 3600 + 5 * 60, "2h 5m");
        check(86_400 + 3 * 3600, "1d 3h");
        assert_eq!(human(Duration::from_millis(800)), "800ms");
    }
}

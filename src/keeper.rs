//! The async loop around `scheduler::plan`: one timer for the next due cluster, attempts
//! spawned as tasks, their outcomes fed back into the plan.
//!
//! Like mini-redis's `purge_expired_tasks`, the loop computes the next instant and then waits
//! for whichever comes first: that instant, an attempt's outcome, a new config, a refresh
//! request, or shutdown. Nothing polls: an idle keeper wakes once per refresh.
//!
//! An attempt acquires a token (at most `max_concurrent_requests` in flight across all
//! clusters), then publishes it through `sink`. Only the wait for a permit and the HTTP
//! request race shutdown; a publish that has started finishes, so shutdown never leaves a
//! half-done set of files.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::config::{Cluster, Config};
use crate::knox::{Clients, KnoxClient, KnoxError, Token};
use crate::output::{rfc3339, Published};
use crate::scheduler::{plan, Action, Failures, Held, View};
use crate::{knox, output, sink, systemd};

/// What the first round produced, for READY=1 and the readiness log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstRound {
    /// Clusters whose token was published.
    pub published: usize,
    /// Clusters whose first attempt failed.
    pub failed: usize,
}

/// The running keeper: per-cluster state and the queue of due times.
pub struct Keeper {
    config: Arc<Config>,
    clients: Arc<Clients>,
    slots: HashMap<String, Slot>,
    /// (due, slot id): the first entry is the next wake-up.
    queue: BTreeSet<(Instant, u64)>,
    ids: HashMap<u64, String>,
    next_id: u64,
    permits: Arc<Semaphore>,
    outcomes_tx: mpsc::UnboundedSender<Outcome>,
    outcomes_rx: mpsc::UnboundedReceiver<Outcome>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    first_round: Option<oneshot::Sender<FirstRound>>,
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
}

impl Slot {
    fn view(&self) -> View {
        View { held: self.held, failures: self.failures }
    }
}

/// An attempt's result, sent back to the loop.
struct Outcome {
    id: u64,
    generation: u64,
    result: Result<Token, AttemptError>,
}

/// Why an attempt produced no token.
pub(crate) enum AttemptError {
    /// Knox said no, or could not be reached.
    Knox(KnoxError),
    /// Every output failed; the token was not published anywhere.
    Publish(String),
    /// Shutdown came first.
    Cancelled,
}

impl Keeper {
    /// A keeper for `config`. `first_round` fires once every cluster has published or failed.
    pub fn new(
        config: Arc<Config>,
        clients: Arc<Clients>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
        first_round: oneshot::Sender<FirstRound>,
    ) -> anyhow::Result<Keeper> {
        let (outcomes_tx, outcomes_rx) = mpsc::unbounded_channel();
        let mut keeper = Keeper {
            permits: Arc::new(Semaphore::new(config.max_concurrent_requests)),
            config: config.clone(),
            clients,
            slots: HashMap::new(),
            queue: BTreeSet::new(),
            ids: HashMap::new(),
            next_id: 0,
            outcomes_tx,
            outcomes_rx,
            tracker,
            shutdown,
            first_round: Some(first_round),
        };
        for cluster in &config.clusters {
            let slot = keeper.new_slot(cluster.clone())?;
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
        let generation = output::read_published(&cluster).ok().flatten().map_or(0, |p| p.generation);
        self.next_id += 1;
        self.ids.insert(self.next_id, cluster.name.clone());
        Ok(Slot {
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
        })
    }

    /// Runs until `shutdown`. New configs arrive on `configs`; `refresh` asks for every
    /// cluster to be refreshed now (SIGUSR1).
    pub async fn run(mut self, mut configs: watch::Receiver<Arc<Config>>, refresh: Arc<Notify>) {
        let names: Vec<String> = self.slots.keys().cloned().collect();
        for name in names {
            self.replan(&name);
        }
        loop {
            let next = self.queue.first().map(|&(t, _)| t);
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                Some(outcome) = self.outcomes_rx.recv() => self.on_outcome(outcome),
                Ok(()) = configs.changed() => {
                    let config = configs.borrow_and_update().clone();
                    self.apply(config);
                }
                () = refresh.notified() => self.refresh_all(),
                () = sleep_until_opt(next) => self.run_due(),
            }
        }
        debug!("keeper loop stopped");
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
        match plan(now, &slot.view(), &slot.cluster.policy) {
            Action::Acquire => self.start_attempt(name),
            Action::WaitUntil(t) => {
                slot.due = Some(t);
                self.queue.insert((t, slot.id));
            }
            Action::Idle => {}
        }
    }

    fn start_attempt(&mut self, name: &str) {
        let Some(slot) = self.slots.get_mut(name) else { return };
        slot.in_flight = true;
        let id = slot.id;
        let generation = slot.generation + 1;
        let cluster = slot.cluster.clone();
        let client = slot.client.clone();
        let permits = self.permits.clone();
        let shutdown = self.shutdown.clone();
        let tx = self.outcomes_tx.clone();
        self.tracker.spawn(async move {
            let result = attempt(&cluster, &client, &permits, generation, &shutdown).await;
            // The loop may be gone at shutdown; the outcome no longer matters then.
            let _ = tx.send(Outcome { id, generation, result });
        });
    }

    fn on_outcome(&mut self, outcome: Outcome) {
        let Some(name) = self.ids.get(&outcome.id).cloned() else { return };
        let Some(slot) = self.slots.get_mut(&name) else { return };
        if slot.id != outcome.id {
            return;
        }
        slot.in_flight = false;
        slot.attempted = true;
        let now = Instant::now();
        match outcome.result {
            Ok(token) => {
                let held = Held {
                    issued: token.received,
                    expires: token.expires_at(),
                    jitter_sample: fastrand::f64(),
                };
                let next = held.refresh_at(&slot.cluster.policy);
                info!(
                    cluster = %slot.cluster.name,
                    url = %slot.cluster.token_url,
                    token_id = %token.id(),
                    fingerprint = %token.jwt.fingerprint(),
                    generation = outcome.generation,
                    expires_at = %token.expiry_ms().map_or_else(|| "never".to_owned(), |ms| rfc3339(knox::from_epoch_ms(ms))),
                    next_refresh_in = %next.map_or_else(|| "never".to_owned(), |t| human(t.saturating_duration_since(now))),
                    "token published"
                );
                slot.generation = outcome.generation;
                slot.held = Some(held);
                slot.token = Some(token);
                slot.failures = None;
                slot.expiry_logged = false;
            }
            Err(AttemptError::Cancelled) => return,
            Err(err) => {
                let count = slot.failures.map_or(1, |f| f.count.saturating_add(1));
                let failures = Failures { count, last: now, sample: fastrand::f64() };
                slot.failures = Some(failures);
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
                let (message, status) = match &err {
                    AttemptError::Knox(e) => (e.to_string(), e.status()),
                    AttemptError::Publish(e) => (e.clone(), None),
                    AttemptError::Cancelled => unreachable!("handled above"),
                };
                let token_limit = matches!(err, AttemptError::Knox(KnoxError::TokenLimitExceeded { .. }));
                if token_limit || count >= 3 {
                    error!(cluster = %slot.cluster.name, status, failures = count, retry_in = %retry_in, "refresh failed: {message}; {left}");
                } else {
                    warn!(cluster = %slot.cluster.name, status, failures = count, retry_in = %retry_in, "refresh failed: {message}; {left}");
                }
            }
        }
        self.replan(&name);
        self.update_status();
        self.check_first_round();
    }

    fn check_first_round(&mut self) {
        if self.first_round.is_none() || !self.slots.values().all(|s| s.attempted) {
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
        let ok = self
            .slots
            .values()
            .filter(|s| s.held.is_some_and(|h| h.is_fresh(now, &s.cluster.policy)))
            .count();
        let next = self.queue.first().map(|&(t, _)| human(t.saturating_duration_since(now)));
        let line = format!(
            "{} clusters: {ok} fresh, {} not; next refresh in {}",
            self.slots.len(),
            self.slots.len() - ok,
            next.as_deref().unwrap_or("-")
        );
        systemd::status(&line);
    }

    /// SIGUSR1: every cluster not already refreshing is refreshed now.
    fn refresh_all(&mut self) {
        info!(clusters = self.slots.len(), "refreshing every cluster now");
        let names: Vec<String> = self.slots.keys().cloned().collect();
        for name in names {
            let Some(slot) = self.slots.get_mut(&name) else { continue };
            if slot.in_flight {
                continue;
            }
            if let Some(due) = slot.due.take() {
                self.queue.remove(&(due, slot.id));
            }
            self.start_attempt(&name);
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
        let published = Published::new(&cluster.name, token, slot.generation);
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

/// Acquires and publishes one token.
async fn attempt(
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

/// Publishes `token` on the blocking pool (fsync blocks). Succeeds if at least one output
/// was written; failed outputs are logged.
pub(crate) async fn publish(
    cluster: &Arc<Cluster>,
    token: &Token,
    generation: u64,
) -> Result<(), AttemptError> {
    let published = Published::new(&cluster.name, token, generation);
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

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
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
    use super::human;
    use std::time::Duration;

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

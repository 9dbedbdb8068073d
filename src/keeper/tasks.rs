//! The work the loop hands to tasks, because it waits on Knox or on the disk: acquiring,
//! renewing and revoking tokens, writing and removing files, running `on_change` hooks.
//!
//! A task reports what happened on the outcomes channel and decides nothing: what an answer
//! means is for `attempt` and `revoke`. Only the wait for a permit and the HTTP request race
//! shutdown; a publish that has started finishes, so shutdown never leaves a half-done set
//! of files.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use super::attempt::{AttemptError, Attempted, Done, Start, Work};
use super::census::{self, CensusError, GroupKey, Listed};
use super::revoke::{PendingRevoke, Revoked};
use super::slot::{Slot, SlotId};
use super::sweep::Orphan;
use crate::config::{Cluster, Identity};
use crate::hooks;
use crate::knox::answer::{self, Renewal, Revocation};
use crate::knox::labels::Purpose;
use crate::knox::{Flavor, KnoxClient, KnoxError, Op, Token};
use crate::output::{Eviction, Published};
use crate::secret::Secret;
use crate::sink::{self, OutputError};
use crate::telemetry::Telemetry;
use crate::time::{epoch_ms, human};

/// How long shutdown spends on `revoke_on_exit` revocations.
const EXIT_REVOKE_BUDGET: Duration = Duration::from_secs(5);

/// What a task reports back to the loop.
#[derive(Debug)]
pub(super) enum Outcome {
    /// An attempt of slot `slot` finished.
    Attempt { slot: SlotId, done: Done },
    /// Knox answered a revocation (or could not be reached).
    Revoke { pending: PendingRevoke, answer: Revoked },
    /// A census of a group's tokens came back.
    Census(Box<CensusDone>),
    /// The orphan sweep's revocations finished.
    Swept(Swept),
}

/// A census's answer, with when it was sent.
#[derive(Debug)]
pub(super) struct CensusDone {
    pub(super) key: GroupKey,
    /// The cluster it went through.
    pub(super) via: SlotId,
    /// Taken before the request waited for its permit.
    pub(super) sent: Instant,
    /// The same, on this host's wall clock, epoch ms.
    pub(super) sent_ms: i64,
    pub(super) result: Result<Vec<Listed>, CensusError>,
}

/// What Knox answered to each revocation of the orphan sweep.
#[derive(Debug)]
pub(super) struct Swept {
    pub(super) results: Vec<(Orphan, Result<Revocation, KnoxError>)>,
}

/// What tasks share: the request permits, the channel back to the loop, the tracker that
/// shutdown waits on, and the telemetry.
pub(super) struct Io {
    /// `max_concurrent_requests` permits: Knox requests in flight across all clusters.
    pub(super) permits: Arc<Semaphore>,
    pub(super) tx: mpsc::UnboundedSender<Outcome>,
    pub(super) tracker: TaskTracker,
    pub(super) shutdown: CancellationToken,
    pub(super) telemetry: Arc<Telemetry>,
}

/// Files to write or remove for a cluster, on the blocking pool.
#[derive(Debug)]
pub(super) enum Write {
    /// Rewrite the json output only.
    Json(Box<Published>),
    /// Write every output again, after a reload changed them.
    Republish(Box<Published>),
    /// Remove the expired token's files (`remove_expired`).
    Remove,
}

/// A token to revoke at shutdown.
pub(super) struct ExitRevoke {
    pub(super) cluster: Arc<Cluster>,
    pub(super) client: KnoxClient,
    pub(super) flavor: Flavor,
    /// For log lines.
    pub(super) token_id: Option<String>,
    /// What Knox is sent ([`Token::revocation_body`]).
    pub(super) body: Secret,
}

impl Io {
    /// Starts an attempt for `slot`; its [`Done`] comes back as an [`Outcome`].
    pub(super) fn attempt(&self, slot: &Slot, start: Start) {
        let (id, cluster, client, mut flavor) =
            (slot.id, slot.cluster.clone(), slot.client.clone(), slot.state.flavor);
        let (permits, shutdown, tx) = (self.permits.clone(), self.shutdown.clone(), self.tx.clone());
        self.tracker.spawn(async move {
            let (work, generation, result) = match start {
                Start::Acquire { generation, eviction } => {
                    let result =
                        acquire(&cluster, &client, &permits, (generation, eviction), &shutdown).await;
                    (Work::Acquire, generation, result.map(Attempted::Acquired))
                }
                Start::Renew { token, generation, eviction } => {
                    let renewal = Renewing { token: *token, generation, eviction };
                    let result =
                        renew_token(&cluster, &client, &permits, renewal, &mut flavor, &shutdown).await;
                    (Work::Renew, generation, result)
                }
            };
            // The loop may be gone at shutdown; the outcome no longer matters then.
            let _ = tx.send(Outcome::Attempt { slot: id, done: Done { generation, work, flavor, result } });
        });
    }

    /// Starts revoking `pending` through `slot`'s client; Knox's answer comes back as an
    /// [`Outcome`]. Shutdown drops it.
    pub(super) fn revoke(&self, slot: &Slot, pending: PendingRevoke) {
        let (cluster, client, mut flavor) = (slot.cluster.clone(), slot.client.clone(), slot.state.flavor);
        let (permits, shutdown, tx) = (self.permits.clone(), self.shutdown.clone(), self.tx.clone());
        self.tracker.spawn(async move {
            let result = tokio::select! {
                r = revoke(&cluster, &client, &permits, &pending.body, &mut flavor) => r,
                () = shutdown.cancelled() => return,
            };
            let _ = tx.send(Outcome::Revoke { pending, answer: Revoked { flavor, result } });
        });
    }

    /// Lists `key`'s user's tokens through `slot`'s cluster (docs/knox.md §4.3); the answer,
    /// read for `identity`, comes back as an [`Outcome`]. Shutdown drops it.
    pub(super) fn census(&self, slot: &Slot, key: GroupKey, identity: Identity) {
        let (via, cluster, client) = (slot.id, slot.cluster.clone(), slot.client.clone());
        let (permits, shutdown, tx) = (self.permits.clone(), self.shutdown.clone(), self.tx.clone());
        self.tracker.spawn(async move {
            let (sent, sent_ms) = (Instant::now(), epoch_ms(SystemTime::now()));
            let result = match with_permit(&permits, &shutdown, client.user_tokens(&cluster, &key.user)).await
            {
                Err(_) => return,
                Ok(Err(e)) => Err(census::request_failed(&e)),
                Ok(Ok((status, body))) => census::read(status.as_u16(), &body, &identity),
            };
            let _ = tx.send(Outcome::Census(Box::new(CensusDone { key, via, sent, sent_ms, result })));
        });
    }

    /// Revokes `orphans` by id through `slot`'s cluster, one at a time, each with a permit;
    /// Knox's answers come back as an [`Outcome`]. Shutdown drops them.
    pub(super) fn sweep(&self, slot: &Slot, orphans: Vec<Orphan>) {
        let (cluster, client, mut flavor) = (slot.cluster.clone(), slot.client.clone(), slot.state.flavor);
        let (permits, shutdown, tx) = (self.permits.clone(), self.shutdown.clone(), self.tx.clone());
        self.tracker.spawn(async move {
            let mut results = Vec::with_capacity(orphans.len());
            for orphan in orphans {
                let body = Secret::new(orphan.token_id.clone());
                let result = tokio::select! {
                    r = revoke(&cluster, &client, &permits, &body, &mut flavor) => r,
                    () = shutdown.cancelled() => return,
                };
                results.push((orphan, result));
            }
            let _ = tx.send(Outcome::Swept(Swept { results }));
        });
    }

    /// Runs `cluster`'s `on_change` hook (if it has one) for `generation`. Failures are
    /// logged and counted, and never delay refreshing.
    pub(super) fn hook(&self, cluster: &Cluster, generation: u64) {
        let Some(hook) = cluster.on_change.clone() else { return };
        let (name, telemetry, shutdown) =
            (cluster.name.clone(), self.telemetry.clone(), self.shutdown.clone());
        self.tracker.spawn(async move {
            for error in hooks::run(&name, generation, &hook, &shutdown).await {
                telemetry.hook_failed(&name);
                warn!(cluster = %name, "on_change failed: {error}");
            }
        });
    }

    /// Writes (or removes) `cluster`'s files in a task of its own.
    pub(super) fn write(&self, cluster: Arc<Cluster>, write: Write) {
        self.tracker.spawn(async move {
            let name = cluster.name.clone();
            match write {
                Write::Json(p) => {
                    blocking(&name, "publish", move || sink::publish_json(&cluster, &p)).await;
                }
                Write::Republish(p) => {
                    if blocking(&name, "publish", move || sink::publish(&cluster, &p)).await.is_some() {
                        info!(cluster = %name, "token republished to the new outputs");
                    }
                }
                Write::Remove => {
                    if let Some(n) = blocking(&name, "remove", move || sink::remove_token_files(&cluster)).await {
                        warn!(cluster = %name, removed = n, "removed the expired token's files (remove_expired)");
                    }
                }
            }
        });
    }

    /// Revokes `work` one by one, within [`EXIT_REVOKE_BUDGET`].
    pub(super) async fn revoke_at_exit(&self, work: Vec<ExitRevoke>) {
        if work.is_empty() {
            return;
        }
        let all = async {
            for ExitRevoke { cluster, client, mut flavor, token_id, body } in work {
                let id = token_id.as_deref().unwrap_or("-");
                match revoke(&cluster, &client, &self.permits, &body, &mut flavor).await {
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
}

/// Runs `request` with one of the `permits`, unless shutdown comes first (while it waits
/// for a permit, or during the request).
async fn with_permit<T>(
    permits: &Semaphore,
    shutdown: &CancellationToken,
    request: impl Future<Output = T>,
) -> Result<T, AttemptError> {
    let _permit = tokio::select! {
        p = permits.acquire() => p.map_err(|_| AttemptError::Cancelled)?,
        () = shutdown.cancelled() => return Err(AttemptError::Cancelled),
    };
    tokio::select! {
        r = request => Ok(r),
        () = shutdown.cancelled() => Err(AttemptError::Cancelled),
    }
}

/// Acquires and publishes one token as `generation`, with the last eviction.
async fn acquire(
    cluster: &Arc<Cluster>,
    client: &KnoxClient,
    permits: &Semaphore,
    (generation, eviction): (u64, Option<Eviction>),
    shutdown: &CancellationToken,
) -> Result<Token, AttemptError> {
    let token = with_permit(permits, shutdown, client.acquire_for(cluster, Purpose::Keep { generation }))
        .await?
        .map_err(AttemptError::Knox)?;
    publish_record(cluster, Published::for_cluster(cluster, &token, generation, eviction)).await?;
    Ok(token)
}

/// A renewal to do: the token, its generation and the last eviction (for its json).
struct Renewing {
    token: Token,
    generation: u64,
    eviction: Option<Eviction>,
}

/// Renews `token` (docs/knox.md §3) and, when the expiry moved, rewrites the json output.
async fn renew_token(
    cluster: &Arc<Cluster>,
    client: &KnoxClient,
    permits: &Semaphore,
    renewing: Renewing,
    flavor: &mut Flavor,
    shutdown: &CancellationToken,
) -> Result<Attempted, AttemptError> {
    let Renewing { mut token, generation, eviction } = renewing;
    let current = token.server_expiry_ms().unwrap_or(i64::MAX);
    let request = client.token_op(cluster, Op::Renew, &token.jwt, flavor);
    let (status, body) = with_permit(permits, shutdown, request).await?.map_err(AttemptError::Knox)?;
    match answer::renewal(status.as_u16(), &answer::parse(&body), current) {
        Renewal::Extended(ms) => {
            token.renewed(ms, Instant::now(), SystemTime::now());
            let published = Published::for_cluster(cluster, &token, generation, eviction);
            let c = cluster.clone();
            blocking(&cluster.name, "publish", move || sink::publish_json(&c, &published)).await;
            Ok(Attempted::Renewed(token))
        }
        Renewal::Reacquire(reason) => Ok(Attempted::RenewRefused(reason)),
    }
}

/// Revokes a token by `body` (its id, or its JWT) with a permit.
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
    publish_record(cluster, Published::for_cluster(cluster, token, generation, None)).await
}

/// Publishes `published` on the blocking pool: [`publish`] for a record already made.
async fn publish_record(cluster: &Arc<Cluster>, published: Published) -> Result<(), AttemptError> {
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

/// Runs the sink call `call` for `cluster` on the blocking pool (fsync blocks) and returns
/// its value, or `None` after logging the outputs that failed, or the task (`what`) that
/// failed.
async fn blocking<T: Send + 'static>(
    cluster: &str,
    what: &str,
    call: impl FnOnce() -> Result<T, Vec<OutputError>> + Send + 'static,
) -> Option<T> {
    match tokio::task::spawn_blocking(call).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(errors)) => {
            log_output_errors(cluster, &errors);
            None
        }
        Err(e) => {
            error!(cluster = %cluster, "{what} task failed: {e}");
            None
        }
    }
}

fn log_output_errors(cluster: &str, errors: &[OutputError]) {
    for e in errors {
        error!(cluster, path = %e.path.display(), "output skipped: {}", e.error);
    }
}

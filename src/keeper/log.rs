//! What the keeper's decisions say: every log line a transition asks for, as data, and the
//! one place that turns each into its `tracing` call.
//!
//! The messages and fields are a contract: the black-box tests and the interop suite grep
//! them, and operators alert on them. A note carries ids, counts and durations, never a
//! token: what is safe to log is decided here, once.

use std::time::Duration;

use tracing::{debug, error, info, warn};

use super::forced::{Requested, FORCED_REFRESH_GAP};
use crate::knox::answer::Reason;
use crate::time::human;
use crate::time::{from_epoch_ms, rfc3339};

/// One log line about one cluster, decided by a transition.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Note {
    /// The one info line per refresh: "token published", or "token renewed".
    Published(Publication),
    /// A token published before this start was taken over.
    Adopted { token_id: String, fingerprint: String, generation: u64, next_refresh_in: Option<Duration> },
    /// The held token expired and nothing replaced it (once per token).
    Expired,
    /// Knox is older than 1.6 (once per cluster).
    Legacy,
    /// Knox issued less than the requested lifespan (once per cluster).
    LifespanCap { token_id: String, got: Duration, asked: Duration },
    /// Knox issued less than `min_valid` (once per token).
    ShortToken { token_id: String, lifetime: Duration, min_valid: Duration },
    /// Knox would not renew the held token.
    RenewalRefused { token_id: String, reason: Reason },
    /// ...and never will: renewal stops for the cluster.
    RenewalStopped { reason: Reason },
    /// An attempt failed.
    RefreshFailed(Failure),
    /// About a superseded token's revocation.
    Revoke(RevokeNote),
    /// The eviction guard found the published token gone on the server (`disabled` or
    /// `removed`).
    Evicted { token_id: String, reason: &'static str },
}

/// A token was published (acquired or renewed).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Publication {
    pub(super) renewal: bool,
    pub(super) url: String,
    pub(super) token_id: String,
    pub(super) fingerprint: String,
    pub(super) generation: u64,
    /// Epoch ms on Knox's clock, `None` for never.
    pub(super) expires_at_ms: Option<i64>,
    /// `None` for never.
    pub(super) next_refresh_in: Option<Duration>,
}

/// An attempt failed.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Failure {
    pub(super) message: String,
    pub(super) status: Option<u16>,
    /// Failures in a row, this one included.
    pub(super) failures: u32,
    /// `None` for now.
    pub(super) retry_in: Option<Duration>,
    /// What is still published.
    pub(super) left: String,
    /// An error rather than a warning.
    pub(super) loud: bool,
}

/// One log line about revoking a superseded token; `token_id` is `-` when it has none.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum RevokeNote {
    /// Revoked.
    Revoked { token_id: String },
    /// Knox no longer knew it.
    AlreadyGone { token_id: String },
    /// Knox refused for good: revocation stops for the cluster (said once).
    Stopped { token_id: String, not_authorized: bool },
    /// The last try failed too.
    GaveUp { token_id: String, attempts: u32, why: String },
    /// A try failed; another follows after `wait`.
    Retry { token_id: String, why: String, wait: Duration },
    /// Its cluster was removed (or replaced) before it was due.
    ClusterGone { token_id: String },
    /// Shutdown came with `revoke_on_exit` off for its cluster (or the cluster gone).
    LeftAtExit { token_id: String },
}

/// "never", or how long from now.
fn in_or_never(d: Option<Duration>) -> String {
    d.map_or_else(|| "never".to_owned(), human)
}

impl Note {
    /// Logs this line for `cluster`.
    pub(super) fn emit(&self, cluster: &str) {
        match self {
            Note::Published(p) => p.emit(cluster),
            Note::Adopted { token_id, fingerprint, generation, next_refresh_in } => info!(
                cluster = %cluster,
                token_id = %token_id,
                fingerprint = %fingerprint,
                generation,
                next_refresh_in = %in_or_never(*next_refresh_in),
                "kept the published token: it is still fresh"
            ),
            Note::Expired => {
                error!(cluster = %cluster, "the published token has expired and no new one could be acquired")
            }
            Note::Legacy => warn!(
                cluster = %cluster,
                "Knox answered without token_id or managed, so it is older than 1.6: renewal and \
                 revocation are decided by HTTP status alone, and superseded tokens are revoked by \
                 their JWT (which only whitelisted callers may do there)"
            ),
            Note::LifespanCap { token_id, got, asked } => warn!(
                cluster = %cluster,
                token_id = %token_id,
                "Knox issued a token valid for {}, less than the requested lifespan {}: the topology's \
                 knox.token.ttl caps the requested lifespan (said once per cluster)",
                human(*got),
                human(*asked)
            ),
            Note::ShortToken { token_id, lifetime, min_valid } => warn!(
                cluster = %cluster,
                token_id = %token_id,
                "Knox issued a token valid for {}, less than min_valid {}: the topology's \
                 knox.token.ttl caps the requested lifespan",
                human(*lifetime),
                human(*min_valid)
            ),
            Note::RenewalRefused { token_id, reason: reason @ Reason::InvalidToken } => {
                error!(cluster = %cluster, token_id, "renewal refused: {}; re-acquiring", reason.describe())
            }
            Note::RenewalRefused { token_id, reason } => {
                info!(cluster = %cluster, token_id, "renewal refused: {}; re-acquiring", reason.describe())
            }
            Note::RenewalStopped { reason } => warn!(
                cluster = %cluster,
                "renewal stopped for this cluster: {}; tokens are replaced by re-acquisition instead",
                reason.describe()
            ),
            Note::RefreshFailed(f) => f.emit(cluster),
            Note::Revoke(note) => note.emit(cluster),
            Note::Evicted { token_id, reason } => warn!(
                cluster = %cluster,
                token_id = %token_id,
                reason = %reason,
                "published token revoked on the server, replacing it"
            ),
        }
    }
}

impl Publication {
    fn emit(&self, cluster: &str) {
        let Publication { renewal, url, token_id, fingerprint, generation, expires_at_ms, next_refresh_in } =
            self;
        info!(
            cluster = %cluster,
            url = %url,
            token_id = %token_id,
            fingerprint = %fingerprint,
            generation,
            expires_at = %expires_at_ms.map_or_else(|| "never".to_owned(), |ms| rfc3339(from_epoch_ms(ms))),
            next_refresh_in = %in_or_never(*next_refresh_in),
            "{}",
            if *renewal { "token renewed" } else { "token published" }
        );
    }
}

impl Failure {
    fn emit(&self, cluster: &str) {
        let Failure { message, status, failures, retry_in, left, loud } = self;
        let retry_in = retry_in.map_or_else(|| "now".to_owned(), human);
        if *loud {
            error!(cluster = %cluster, status, failures, retry_in = %retry_in, "refresh failed: {message}; {left}");
        } else {
            warn!(cluster = %cluster, status, failures, retry_in = %retry_in, "refresh failed: {message}; {left}");
        }
    }
}

impl RevokeNote {
    /// Logs this line for `cluster`.
    pub(super) fn emit(&self, cluster: &str) {
        match self {
            RevokeNote::Revoked { token_id } => info!(cluster, token_id, "superseded token revoked"),
            RevokeNote::AlreadyGone { token_id } => {
                debug!(cluster, token_id, "superseded token already unknown to Knox")
            }
            RevokeNote::Stopped { token_id, not_authorized } => warn!(
                cluster,
                token_id,
                "Knox refused to revoke a superseded token ({}); superseded tokens are no longer \
                 revoked for this cluster and count toward the per-user token limit until they expire",
                if *not_authorized { "not authorized" } else { "token management is off" }
            ),
            RevokeNote::GaveUp { token_id, attempts, why } => warn!(
                cluster,
                token_id, "giving up revoking a superseded token after {attempts} tries: {why}"
            ),
            RevokeNote::Retry { token_id, why, wait } => {
                debug!(cluster, token_id, "revoking failed ({why}); retrying in {}", human(*wait))
            }
            RevokeNote::ClusterGone { token_id } => {
                debug!(cluster = %cluster, token_id = %token_id, "not revoking: the cluster was removed")
            }
            RevokeNote::LeftAtExit { token_id } => {
                debug!(cluster = %cluster, token_id = %token_id, "left unrevoked at exit")
            }
        }
    }
}

/// A suspend was noticed: every schedule moves earlier by `slept`.
pub(super) fn suspended(slept: Duration) {
    warn!(slept = %human(slept), "the host was suspended; re-planning every cluster");
}

/// The wall clock moved `jump_s` seconds more than the monotonic clock.
pub(super) fn wall_jumped(jump_s: f64) {
    info!(jump_s, "the wall clock jumped; schedules run on the monotonic clock and are unaffected");
}

/// The one line per refresh request (SIGUSR1), over every cluster.
pub(super) fn refresh_requested(r: Requested) {
    let Requested { now, deferred, absorbed } = r;
    if now + deferred > 0 {
        info!(
            now,
            deferred,
            already = absorbed,
            "refresh requested: refreshing {now} clusters now, {deferred} when their {}s \
             since the last requested refresh are up",
            FORCED_REFRESH_GAP.as_secs()
        );
    } else {
        debug!(clusters = absorbed, "refresh requested: every cluster is refreshing or has one pending");
    }
}

//! One cluster's state as plain data: what the keeper's decisions read and write.
//!
//! [`State`] holds no handle, no clock and no channel, so every transition (`attempt`,
//! `revoke`, `forced`, `clocks`, `adopt`) is a function of it, the cluster's config and the
//! instant it is given. [`Slot`] adds what the loop needs to act for the cluster.

use std::sync::Arc;
use std::time::Instant;

use crate::config::{Cluster, Validation};
use crate::knox::{Expiry, Flavor, KnoxClient, Token};
use crate::output::{Eviction, Published};
use crate::scheduler::{Failures, Held, View};

/// One incarnation of a cluster. A reload that changes the cluster's Knox source starts a
/// new one, so the outcomes and revocations of the old one are recognised and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct SlotId(pub(super) u64);

/// One cluster, as the loop keeps it.
pub(super) struct Slot {
    pub(super) id: SlotId,
    pub(super) cluster: Arc<Cluster>,
    pub(super) client: KnoxClient,
    /// When the loop's timer is set for this cluster: the key of its entry in
    /// [`Refreshes`](super::timers::Refreshes).
    pub(super) due: Option<Instant>,
    pub(super) state: State,
}

/// What the decisions know about one cluster.
#[derive(Debug, Clone, Default)]
pub(super) struct State {
    /// The published token.
    pub(super) token: Option<Token>,
    /// The published token in monotonic time, as `plan` reads it.
    pub(super) held: Option<Held>,
    /// Set while refreshing keeps failing.
    pub(super) failures: Option<Failures>,
    /// The generation of the last publish (read back from the json output at start).
    pub(super) generation: u64,
    /// An attempt is in flight: its outcome, not a timer, is what comes next.
    pub(super) in_flight: bool,
    /// Whether one attempt has finished (for the first round).
    pub(super) attempted: bool,
    /// The renew/revoke API flavour this gateway answered to (docs/knox.md §1.2).
    pub(super) flavor: Flavor,
    /// Renewal was refused for good (not whitelisted, or tokens are not managed).
    pub(super) renew_refused: bool,
    /// Revocation was refused for good (not authorized, or not configured).
    pub(super) revoke_refused: bool,
    /// The json output says stale, with this error.
    pub(super) stale: Option<String>,
    /// The expired token's files were removed (`remove_expired`).
    pub(super) expired_removed: bool,
    /// Refreshes requested by SIGUSR1.
    pub(super) forced: Forced,
    /// What has been said already, so that it is said once.
    pub(super) said: Said,
    /// What the eviction guard found (see `census`).
    pub(super) guard: Guarded,
}

/// The eviction guard's part of a cluster's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Guarded {
    /// The published token was found gone: acquire a new one now.
    pub(super) due: bool,
    /// When the guard last asked for a replacement (at most one per interval).
    pub(super) replaced_at: Option<Instant>,
    /// The id of a published token found removed: once replaced, it is not revoked again.
    pub(super) gone: Option<String>,
    /// The last eviction, for `status` (written into the json output).
    pub(super) last: Option<Eviction>,
}

/// Refreshes requested by SIGUSR1 (see `forced`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Forced {
    /// A requested refresh is due at this instant.
    pub(super) due: Option<Instant>,
    /// The attempt in flight was requested, and was due when it started.
    pub(super) in_flight: bool,
    /// Requested refreshes wait until then (the gap after the last one).
    pub(super) gate: Option<Instant>,
}

/// Warnings and errors that are logged once, not at every wake-up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Said {
    /// That the held token expired (once per token).
    pub(super) expired: bool,
    /// That Knox is older than 1.6 (once per cluster).
    pub(super) legacy: bool,
    /// That the topology caps the requested `lifespan` (once per cluster).
    pub(super) lifespan_cap: bool,
}

impl State {
    /// What `plan` reads.
    pub(super) fn view(&self) -> View {
        View { held: self.held, failures: self.failures }
    }

    /// `token` in monotonic time, with `jitter` as its jitter draw.
    pub(super) fn hold(&self, cluster: &Cluster, token: &Token, jitter: f64) -> Held {
        let v = cluster.lifecycle.consumers_validate;
        Held {
            issued: token.received,
            expires: token.expires_at(v),
            jitter_sample: jitter,
            renewable: renewable(token, v, self.renew_refused),
        }
    }

    /// The record for publishing `token` as `generation` of `cluster`, with the last
    /// eviction.
    pub(super) fn published(&self, cluster: &Cluster, token: &Token, generation: u64) -> Published {
        Published::for_cluster(cluster, token, generation, self.guard.last.clone())
    }

    /// After a reload changed the cluster's settings but not its Knox source: the policy
    /// may have changed which expiry counts and whether the token is renewed. The jitter
    /// draw stays (`draw` is used only when nothing is held), so re-planning after a reload
    /// gives the same refresh point.
    pub(super) fn rehold(&mut self, cluster: &Cluster, draw: f64) {
        if let Some(token) = &self.token {
            let jitter = self.held.map_or(draw, |h| h.jitter_sample);
            self.held = Some(self.hold(cluster, token, jitter));
        }
    }
}

/// Whether a token is renewed rather than replaced: managed, expiring, consumers going
/// through the gateway, and renewal not refused (docs/knox.md §9.2). Knox before 1.6 does
/// not say whether a token is managed (no `token_id` either), so renewal is tried once; an
/// unmanaged token's echo stops it.
pub(super) fn renewable(token: &Token, v: Validation, renew_refused: bool) -> bool {
    (token.managed || token.legacy)
        && token.expires_in != Expiry::Never
        && v == Validation::Gateway
        && !renew_refused
}

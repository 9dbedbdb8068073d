//! What the keeper tells systemd: when the first round is complete (READY=1) and the STATUS=
//! line. Both are computed from the clusters' states; sending them is the loop's job.

use std::time::Instant;

use super::slot::State;
use crate::config::Cluster;
use crate::time::human;

/// What the first round produced, for READY=1 and the readiness log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstRound {
    /// Clusters whose token was published.
    pub published: usize,
    /// Clusters whose first attempt failed.
    pub failed: usize,
}

/// The first round, once it is complete: no cluster is `unattempted` (every one has
/// published, failed once, or kept a token from before the start). The count is kept by the
/// loop so that this costs O(1) per outcome until then (10,000 clusters would otherwise
/// cost 10^8 checks).
pub(super) fn first_round<'a>(
    unattempted: usize,
    states: impl ExactSizeIterator<Item = &'a State>,
) -> Option<FirstRound> {
    if unattempted > 0 {
        return None;
    }
    let total = states.len();
    let published = states.filter(|s| s.held.is_some()).count();
    Some(FirstRound { published, failed: total - published })
}

/// The STATUS= line at `now`, with the next refresh at `next`. A cluster is fresh when its
/// token has `min_remaining` left and refreshing is not failing past the refresh point.
pub(super) fn status_line<'a>(
    clusters: impl Iterator<Item = (&'a Cluster, &'a State)>,
    next: Option<Instant>,
    now: Instant,
) -> String {
    let (mut total, mut fresh, mut stale) = (0, 0, 0);
    for (cluster, state) in clusters {
        total += 1;
        if state.stale.is_some() {
            stale += 1;
        } else if state.held.is_some_and(|h| h.is_fresh(now, &cluster.policy)) {
            fresh += 1;
        }
    }
    let next = next.map(|t| human(t.saturating_duration_since(now)));
    format!(
        "{total} clusters: {fresh} fresh, {stale} stale, {} not ready; next refresh in {}",
        total - fresh - stale,
        next.as_deref().unwrap_or("-")
    )
}

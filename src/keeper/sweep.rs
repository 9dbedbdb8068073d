//! The orphan sweep, as a pure decision ([`orphans`]): which tokens of a census (`census`)
//! are this installation's, on this host, and held by nothing, so that they only count
//! toward the user's token limit (docs/knox.md §9.3) and should be revoked.
//!
//! A token is an orphan when its labels say this installation (`labels::is_mine`) and this
//! host (`tk_host`, or on Knox 1.6 the comment, docs/knox.md §2.5), no cluster publishes it,
//! no revocation of it is pending, it was issued before the census was sent, and no cluster of
//! the group is acquiring (whose token may be in the list before its answer is here). A token
//! `exec` acquired for its child is never an orphan: it is in use and never published.

use std::collections::BTreeSet;

use super::census::Listed;

/// At most this many tokens are revoked per sweep; the next sweep takes the rest.
pub(super) const MAX_PER_SWEEP: usize = 32;

/// A token to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Orphan {
    pub(super) token_id: String,
    /// The cluster its labels name, for the log line (else the group's first cluster).
    pub(super) label: String,
    /// The configured cluster it is counted under: the labelled one if it is configured and
    /// in the group, else the group's first.
    pub(super) counted: String,
}

/// What a sweep looks at.
#[derive(Debug, Clone, Copy)]
pub(super) struct Scope<'a> {
    /// This host's label (`Identity::host`).
    pub(super) host: &'a str,
    /// The ids that are held: published by a cluster, or waiting for (or in) revocation.
    pub(super) held: &'a BTreeSet<String>,
    /// Knox's clock when the census was sent, epoch ms: later tokens are left alone.
    pub(super) sent_knox_ms: i64,
    /// Whether a cluster of the group has an attempt in flight: then nothing is swept.
    pub(super) acquiring: bool,
    /// The group's clusters, in config order (at least one).
    pub(super) clusters: &'a [String],
}

/// Knox's clock when a census was sent at `sent_ms` (this host's clock, epoch ms), given the
/// offset measured at the last acquisition (Knox's clock minus ours, from its `Date` header,
/// `knox::client::knox_clock`). That header has one-second resolution, so an offset within a
/// second is no measurement: the clocks count as equal, and a leftover acquired half a second
/// before the census is not taken for a token issued after it.
pub(super) fn census_knox_ms(sent_ms: i64, offset_ms: i64) -> i64 {
    if offset_ms.unsigned_abs() <= 1000 {
        sent_ms
    } else {
        sent_ms.saturating_add(offset_ms)
    }
}

/// The orphans of `listed`, at most [`MAX_PER_SWEEP`], in Knox's order (oldest first).
pub(super) fn orphans(listed: &[Listed], scope: &Scope<'_>) -> Vec<Orphan> {
    let Some(first) = scope.clusters.first() else { return Vec::new() };
    if scope.acquiring {
        return Vec::new();
    }
    listed
        .iter()
        .filter(|t| t.mine && !t.exec && t.host.as_deref() == Some(scope.host))
        .filter(|t| !scope.held.contains(&t.id))
        .filter(|t| t.issued_ms.is_some_and(|ms| ms < scope.sent_knox_ms))
        .take(MAX_PER_SWEEP)
        .map(|t| {
            let label = t.cluster.clone().unwrap_or_else(|| first.clone());
            let counted = if scope.clusters.contains(&label) { label.clone() } else { first.clone() };
            Orphan { token_id: t.id.clone(), label, counted }
        })
        .collect()
}

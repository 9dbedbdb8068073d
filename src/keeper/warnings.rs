//! The warnings a new token may call for, each said once: an old Knox (once per cluster), a
//! topology that caps the requested lifespan (once per cluster), a token shorter than
//! `min_valid` (once per token, since each such token is a problem of its own).

use std::time::Duration;

use super::log::Note;
use super::slot::Said;
use crate::config::{iso_duration, Cluster};
use crate::knox::Token;

/// How much shorter than the requested lifespan a token may be before it counts as capped:
/// Knox counts from its issue time, we from the answer's arrival.
pub(super) const LIFESPAN_SLACK: Duration = Duration::from_secs(5);

/// The warnings `token`, just acquired, calls for; `said` remembers the once-per-cluster ones.
pub(super) fn new_token(said: &mut Said, cluster: &Cluster, token: &Token) -> Vec<Note> {
    let mut notes = Vec::new();
    if token.legacy && !said.legacy {
        said.legacy = true;
        notes.push(Note::Legacy);
    }
    notes.extend(lifespan_cap(said, cluster, token));
    let lifetime = token.lifetime(cluster.lifecycle.consumers_validate);
    if let (Some(min_valid), Some(lifetime)) = (cluster.lifecycle.min_valid, lifetime) {
        if lifetime < min_valid {
            notes.push(Note::ShortToken { token_id: token.id().to_owned(), lifetime, min_valid });
        }
    }
    notes
}

/// Knox issued a shorter token than the configured `lifespan` asked for: the topology's
/// `knox.token.ttl` caps it silently (docs/knox.md §2.1). With `min_valid` set, its own
/// warning says this and more.
fn lifespan_cap(said: &mut Said, cluster: &Cluster, token: &Token) -> Option<Note> {
    if said.lifespan_cap || cluster.lifecycle.min_valid.is_some() {
        return None;
    }
    let asked = cluster.lifespan.as_deref().and_then(iso_duration)?;
    let got = token.lifetime(cluster.lifecycle.consumers_validate)?;
    if got.saturating_add(LIFESPAN_SLACK) >= asked {
        return None;
    }
    said.lifespan_cap = true;
    Some(Note::LifespanCap { token_id: token.id().to_owned(), got, asked })
}

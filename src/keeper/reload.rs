//! A new config, cluster by cluster: what each change means for a running cluster
//! ([`reconcile`]), and swapping the config in ([`Keeper::apply`]).
//!
//! An unchanged cluster keeps everything. A cluster with the same Knox source (URL,
//! lifespan, TLS settings, credentials) keeps its token, and publishes it again if its
//! outputs changed. Any other cluster starts afresh; removed clusters are dropped, their
//! files left in place.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use tracing::{error, info};

use super::slot::{Slot, SlotId};
use super::tasks::Write;
use super::Keeper;
use crate::config::{Cluster, Config};

/// What a reload does to a cluster that was running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    /// Nothing changed: it keeps everything.
    Same,
    /// The settings changed but not the Knox source: it keeps its token, and publishes it
    /// again when `republish` (its outputs changed).
    Retarget { republish: bool },
    /// The Knox source changed: it starts afresh.
    Replace,
}

/// What the new settings `new` of a running cluster (under `old`) mean for it.
pub(super) fn reconcile(old: &Cluster, new: &Cluster) -> Change {
    if old == new {
        Change::Same
    } else if old.same_source(new) {
        Change::Retarget { republish: old.outputs != new.outputs }
    } else {
        Change::Replace
    }
}

/// How many clusters a reload kept, changed, added and removed, for its log line.
#[derive(Debug, Default)]
struct Counts {
    kept: usize,
    changed: usize,
    added: usize,
}

impl Keeper {
    /// Swaps in a new config ([`reconcile`] says what happens to each cluster).
    pub(super) fn apply(&mut self, config: Arc<Config>) {
        if Arc::ptr_eq(&config, &self.config) {
            return;
        }
        let mut old: HashMap<String, Slot> =
            std::mem::take(&mut self.slots).into_values().map(|s| (s.cluster.name.clone(), s)).collect();
        let mut counts = Counts::default();
        let mut to_plan = Vec::new();
        for cluster in &config.clusters {
            to_plan.extend(self.take_over(old.remove(&cluster.name), cluster, &mut counts));
        }
        let removed = old.len();
        for mut slot in old.into_values() {
            info!(cluster = %slot.cluster.name, "cluster removed from the config; its files are left as they are");
            self.refreshes.clear(slot.id, &mut slot.due);
        }
        if config.max_concurrent_requests != self.config.max_concurrent_requests {
            // In-flight attempts hold permits of the old semaphore and release them there.
            self.io.permits = Arc::new(Semaphore::new(config.max_concurrent_requests));
        }
        self.io.telemetry.set_clusters(&config);
        self.unattempted = self.slots.values().filter(|s| !s.state.attempted).count();
        self.config = config;
        let in_use: Vec<_> = self.slots.values().map(|s| &s.cluster.transport).collect();
        self.clients.retain(&in_use);
        let Counts { kept, changed, added } = counts;
        info!(kept, changed, added, removed, "config applied");
        if self.first_round.is_none() {
            self.censuses.rescan_now(Instant::now(), self.census_every());
        }
        for id in to_plan {
            self.replan(id);
        }
    }

    /// Runs `cluster` from now on, in place of `old` (its running slot, if any). Returns
    /// the slot's id if it has to be re-planned.
    fn take_over(
        &mut self,
        old: Option<Slot>,
        cluster: &Arc<Cluster>,
        counts: &mut Counts,
    ) -> Option<SlotId> {
        let change = old.as_ref().map(|slot| reconcile(&slot.cluster, cluster));
        match (old, change) {
            (Some(slot), Some(Change::Same)) => {
                counts.kept += 1;
                self.slots.insert(slot.id, slot);
                None
            }
            (Some(mut slot), Some(Change::Retarget { republish })) => {
                counts.changed += 1;
                slot.cluster = cluster.clone();
                slot.state.rehold(cluster, fastrand::f64());
                if let (true, Some(token)) = (republish, &slot.state.token) {
                    let published = slot.state.published(cluster, token, slot.state.generation);
                    self.io.write(cluster.clone(), Write::Republish(Box::new(published)));
                }
                let id = slot.id;
                self.slots.insert(id, slot);
                Some(id)
            }
            (old, _) => match self.new_slot(cluster.clone()) {
                Ok(slot) => {
                    match old {
                        Some(mut old) => {
                            self.refreshes.clear(old.id, &mut old.due);
                            counts.changed += 1;
                        }
                        None => counts.added += 1,
                    }
                    let id = slot.id;
                    self.slots.insert(id, slot);
                    Some(id)
                }
                // Validation checked this already; if it fails now (a ca_file removed
                // since), the old slot, if any, keeps refreshing under its old settings.
                Err(e) => {
                    error!(cluster = %cluster.name, "cannot apply the new settings, keeping the old ones: {e:#}");
                    let old = old?;
                    counts.kept += 1;
                    self.slots.insert(old.id, old);
                    None
                }
            },
        }
    }
}

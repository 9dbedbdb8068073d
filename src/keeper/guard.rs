//! The eviction guard and the orphan sweep in the loop: when each group's census is due
//! ([`Censuses`]), sending it through one of the group's clusters, and carrying out what
//! `census::judge` and `sweep::orphans` decide about its answer. Nothing is decided here.
//!
//! A group is the clusters of one gateway and user (`census::group_key`). Its membership is
//! worked out again every interval, after the first round and after a reload, so the loop
//! does O(clusters) work once per interval, not per wake-up.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use tracing::{debug, info, warn};

use super::census::{self, CensusError, GroupKey, Halt, Member, Verdict};
use super::slot::SlotId;
use super::sweep::{self, Orphan, Scope};
use super::tasks::{CensusDone, Swept};
use super::Keeper;
use crate::knox::answer::Revocation;
use crate::scheduler::later;
use crate::time::human;

/// The census groups and what the sweep must leave alone.
#[derive(Debug, Default)]
pub(super) struct Censuses {
    groups: BTreeMap<GroupKey, Group>,
    /// When the groups' membership is next worked out; `None` before the first round.
    scan_at: Option<Instant>,
    /// Ids whose revocation is in flight.
    pub(super) revoking: BTreeSet<String>,
}

/// One group's census bookkeeping.
#[derive(Debug)]
struct Group {
    /// Its clusters, in config order.
    members: Vec<SlotId>,
    /// When its next census is due.
    next: Instant,
    in_flight: bool,
    /// The census calls of the last hour (`census::budget_allows`).
    calls: VecDeque<Instant>,
    /// The ids the last census listed.
    seen: BTreeSet<String>,
    /// Stopped until a reload (no token management, or no such API).
    stopped: bool,
    /// Whether the last failure was said (once until a census succeeds).
    said_failure: bool,
    /// Tokens said to be unjudged (once each).
    said_unjudged: BTreeSet<String>,
    /// When the sweep next runs from a census.
    sweep_due: Instant,
    /// Round robin over the clusters the census goes through.
    turn: usize,
}

impl Group {
    fn new(now: Instant) -> Group {
        Group {
            members: Vec::new(),
            next: now,
            in_flight: false,
            calls: VecDeque::new(),
            seen: BTreeSet::new(),
            stopped: false,
            said_failure: false,
            said_unjudged: BTreeSet::new(),
            sweep_due: now,
            turn: 0,
        }
    }
}

impl Censuses {
    /// The first round is complete (or a reload applied): work the groups out now, start
    /// again after a census that found no API, and take the next census within `every` (the
    /// interval may have changed; the hourly budget still holds).
    pub(super) fn rescan_now(&mut self, now: Instant, every: Option<Duration>) {
        self.scan_at = Some(now);
        for g in self.groups.values_mut() {
            g.stopped = false;
            g.said_failure = false;
            if let Some(every) = every {
                g.next = g.next.min(later(now, every));
            }
        }
    }
}

impl Keeper {
    /// How often a group's census runs: the shorter of the guard's and the sweep's intervals;
    /// `None` when both are off.
    pub(super) fn census_every(&self) -> Option<Duration> {
        let (guard, sweep) = (self.config.eviction_check_interval, self.config.orphan_sweep_interval);
        guard.into_iter().chain(sweep).min()
    }

    /// When the loop has census work next.
    pub(super) fn census_wake(&self) -> Option<Instant> {
        self.census_every()?;
        let c = &self.censuses;
        let groups = c.groups.values().filter(|g| !g.in_flight && !g.stopped).map(|g| g.next);
        groups.chain(c.scan_at).min()
    }

    /// Sends the censuses that are due at `now`.
    pub(super) fn run_censuses(&mut self, now: Instant) {
        let Some(every) = self.census_every() else { return };
        if self.censuses.scan_at.is_some_and(|t| t <= now) {
            self.rescan(now, every);
        }
        let due: Vec<GroupKey> = self
            .censuses
            .groups
            .iter()
            .filter(|(_, g)| g.next <= now && !g.in_flight && !g.stopped)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.send_census(key, now, every);
        }
    }

    /// Works out every group's clusters again.
    fn rescan(&mut self, now: Instant, every: Duration) {
        let mut members: BTreeMap<GroupKey, Vec<SlotId>> = BTreeMap::new();
        for slot in self.slots.values() {
            if let Some(key) = census::group_key(&slot.cluster, slot.state.token.as_ref()) {
                members.entry(key).or_default().push(slot.id);
            }
        }
        let groups = &mut self.censuses.groups;
        groups.retain(|k, _| members.contains_key(k));
        for (key, ids) in members {
            groups.entry(key).or_insert_with(|| Group::new(now)).members = ids;
        }
        self.censuses.scan_at = Some(later(now, every));
    }

    /// Sends `key`'s census through its next managed cluster, if the budget allows.
    fn send_census(&mut self, key: GroupKey, now: Instant, every: Duration) {
        let Some(group) = self.censuses.groups.get_mut(&key) else { return };
        let vias: Vec<SlotId> = group
            .members
            .iter()
            .copied()
            .filter(|id| self.slots.get(id).is_some_and(|s| census::guarded(&s.state)))
            .collect();
        if vias.is_empty() {
            // No managed token in the group (yet): nothing to guard, and maybe no API.
            group.next = later(now, every);
            return;
        }
        if let Err(at) = census::budget_allows(&mut group.calls, now, every) {
            debug!(origin = %key.origin, user = %key.user, "census budget for the hour is spent; next in {}", human(at - now));
            group.next = at;
            return;
        }
        let via = vias[group.turn % vias.len()];
        group.turn = group.turn.wrapping_add(1);
        group.calls.push_back(now);
        group.in_flight = true;
        if let Some(slot) = self.slots.get(&via) {
            debug!(cluster = %slot.cluster.name, user = %key.user, "listing the user's tokens (getUserTokens)");
            self.io.census(slot, key, self.config.identity.clone());
        }
    }

    /// A census came back.
    pub(super) fn on_census(&mut self, done: CensusDone) {
        let now = Instant::now();
        let CensusDone { key, via, sent, sent_ms, result } = done;
        let every = self.census_every();
        let Some(group) = self.censuses.groups.get_mut(&key) else { return };
        group.in_flight = false;
        let Some(every) = every else { return };
        let listed = match result {
            Ok(listed) => listed,
            Err(error) => {
                census_failed(group, &key, &error, now, every);
                return;
            }
        };
        group.said_failure = false;
        group.next = later(now, every);
        let sweep_due = self.config.orphan_sweep_interval.is_some() && group.sweep_due <= now;
        if let Some(interval) = self.config.eviction_check_interval {
            self.judge_group(&key, via, &listed, sent, now, interval);
        }
        let Some(group) = self.censuses.groups.get_mut(&key) else { return };
        group.seen = listed.iter().map(|t| t.id.clone()).collect();
        group.said_unjudged.retain(|id| group.seen.contains(id));
        if sweep_due {
            group.sweep_due = later(now, self.config.orphan_sweep_interval.unwrap_or(every));
            self.sweep_group(&key, via, &listed, sent_ms);
        }
    }

    /// The guard: judges every published managed token of the group by the census.
    fn judge_group(
        &mut self,
        key: &GroupKey,
        via: SlotId,
        listed: &[census::Listed],
        sent: Instant,
        now: Instant,
        interval: Duration,
    ) {
        let Some(group) = self.censuses.groups.get_mut(key) else { return };
        let via_url = self.slots.get(&via).map(|s| s.cluster.token_url.clone());
        let mut gone = Vec::new();
        for id in &group.members {
            let Some(slot) = self.slots.get(id) else { continue };
            let (Some(token), Some(held)) = (&slot.state.token, slot.state.held) else { continue };
            if !census::guarded(&slot.state) {
                continue;
            }
            let member = Member {
                token_id: token.id(),
                received: token.received,
                expires: held.expires,
                own_url: via_url.as_ref() == Some(&slot.cluster.token_url),
                in_flight: slot.state.in_flight,
                replaced_at: slot.state.guard.replaced_at,
            };
            match census::judge(&member, listed, &group.seen, sent, now, interval) {
                Verdict::Fine => {}
                Verdict::Gone(why) => gone.push((*id, why)),
                Verdict::Throttled(why) => debug!(
                    cluster = %slot.cluster.name, token_id = %token.id(), reason = why.as_str(),
                    "published token gone on the server, but it was replaced less than {} ago", human(interval)
                ),
                Verdict::Unjudged => {
                    if group.said_unjudged.insert(token.id().to_owned()) {
                        debug!(
                            cluster = %slot.cluster.name, token_id = %token.id(),
                            "not in the user's token list, which came through another topology: not judged"
                        );
                    }
                }
            }
        }
        let wall = SystemTime::now();
        for (id, why) in gone {
            let Some(slot) = self.slots.get_mut(&id) else { continue };
            let name = slot.cluster.name.clone();
            let effects = census::evicted(&mut slot.state, why, now, wall);
            self.perform(id, &name, effects);
        }
    }

    /// The sweep: revokes this installation's tokens on this host that nothing holds.
    fn sweep_group(&mut self, key: &GroupKey, via: SlotId, listed: &[census::Listed], sent_ms: i64) {
        let Some(group) = self.censuses.groups.get(key) else { return };
        let Some(via_slot) = self.slots.get(&via) else { return };
        let mut held: BTreeSet<String> =
            self.slots.values().filter_map(|s| s.state.token.as_ref()?.token_id.clone()).collect();
        held.extend(self.revokes.ids().map(str::to_owned));
        held.extend(self.censuses.revoking.iter().cloned());
        let members: Vec<_> = group.members.iter().filter_map(|id| self.slots.get(id)).collect();
        let clusters: Vec<String> = members.iter().map(|s| s.cluster.name.clone()).collect();
        let offset = via_slot.state.token.as_ref().map_or(0, |t| t.clock_offset_ms);
        let scope = Scope {
            host: &self.config.identity.host,
            held: &held,
            sent_knox_ms: sweep::census_knox_ms(sent_ms, offset),
            // A cluster whose user is not known yet (no token) may be acquiring one for it.
            acquiring: self.slots.values().any(|s| {
                s.state.in_flight
                    && census::group_key(&s.cluster, s.state.token.as_ref()).is_none_or(|k| &k == key)
            }),
            clusters: &clusters,
        };
        let orphans = sweep::orphans(listed, &scope);
        debug!(
            user = %key.user, listed = listed.len(), orphans = orphans.len(), acquiring = scope.acquiring,
            "orphan sweep"
        );
        if !orphans.is_empty() {
            self.censuses.revoking.extend(orphans.iter().map(|o| o.token_id.clone()));
            self.io.sweep(via_slot, orphans);
        }
    }

    /// The sweep's revocations came back.
    pub(super) fn on_swept(&mut self, swept: Swept) {
        for (Orphan { token_id, label, counted }, result) in swept.results {
            self.censuses.revoking.remove(&token_id);
            match result {
                Ok(Revocation::Revoked) => {
                    info!(cluster = %label, token_id = %token_id, "orphan token revoked");
                    self.io.telemetry.orphan_swept(&counted);
                }
                Ok(Revocation::AlreadyGone) => {
                    debug!(cluster = %label, token_id = %token_id, "orphan token already unknown to Knox")
                }
                Ok(r) => {
                    warn!(cluster = %label, token_id = %token_id, "could not revoke an orphan token: {r:?}")
                }
                Err(e) => {
                    warn!(cluster = %label, token_id = %token_id, "could not revoke an orphan token: {e}")
                }
            }
        }
    }
}

/// A census failed: say so once, and stop or wait as `census::after_failure` says.
fn census_failed(group: &mut Group, key: &GroupKey, error: &CensusError, now: Instant, every: Duration) {
    let first = !std::mem::replace(&mut group.said_failure, true);
    match census::after_failure(error, now, every) {
        Halt::Stopped => group.stopped = true,
        Halt::Until(t) => group.next = t,
    }
    let (origin, user) = (&key.origin, &key.user);
    match error {
        CensusError::NoApi(why) if first => info!(
            %origin, %user,
            "{why}: the eviction guard and the orphan sweep stop for this gateway and user until a reload"
        ),
        CensusError::Denied(why) if first => warn!(
            %origin, %user,
            "{why}: the eviction guard and the orphan sweep try again in an hour"
        ),
        CensusError::Transient(why) if first => {
            info!(%origin, %user, "listing the user's tokens failed: {why}; trying again in {}", human(every))
        }
        CensusError::Transient(why) => {
            debug!(%origin, %user, "listing the user's tokens failed again: {why}; trying again in {}", human(every))
        }
        _ => {}
    }
}

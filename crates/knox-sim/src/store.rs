//! The managed token state, kept as Knox's `DefaultTokenStateService` keeps it (docs/knox.md §3,
//! §4, §6): per token its owner, issue time, server-side expiry, max-lifetime deadline and
//! enabled flag, with eviction of expired tokens after a grace period.
//!
//! Nothing here reads a clock: every operation that depends on time takes Knox's "now" in epoch
//! milliseconds, so the simulator's clock offset applies to all of it.
//!
//! Every change bumps a generation counter, so that `persist` can write the store to the state
//! file after each change and only then.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// One token Knox stores in managed mode. Its serde form is the simulator's state file entry
/// (`persist`), which only ever holds tokens Knox knows.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StoredToken {
    /// `token_id`, the `knox.id` claim.
    pub(super) id: String,
    /// Metadata `userName`: the token's subject, whom the per-user limit counts against.
    pub(super) user: String,
    /// `System.currentTimeMillis()` at issue.
    pub(super) issue_ms: i64,
    /// Server-side expiry: `expires_in` at issue, then moved by each renewal (§3.2); -1 for never.
    pub(super) expiry_ms: i64,
    /// Issue time plus `knox.token.exp.max-lifetime`; `None` is Knox ≥2.1.0's unbounded -1.
    pub(super) max_lifetime_ms: Option<i64>,
    /// Metadata `enabled`, flipped by enable/disable (§4.2).
    pub(super) enabled: bool,
    /// Metadata `comment` (`null` when the request's comment was blank).
    pub(super) comment: Option<String>,
    /// `md_<name>=<value>` acquisition parameters, in request order (§2.1).
    pub(super) custom: Vec<(String, String)>,
    /// Revoked tokens are removed from Knox's store; the record stays here only for the
    /// simulator's own bookkeeping and is unknown to every Knox operation.
    #[serde(skip)]
    revoked: bool,
    /// Like `revoked`, for tokens evicted after expiry plus grace.
    #[serde(skip)]
    evicted: bool,
}

impl StoredToken {
    /// A freshly issued, enabled token.
    pub(super) fn new(
        id: String,
        user: String,
        issue_ms: i64,
        expiry_ms: i64,
        max_lifetime_ms: Option<i64>,
    ) -> Self {
        StoredToken {
            id,
            user,
            issue_ms,
            expiry_ms,
            max_lifetime_ms,
            enabled: true,
            comment: None,
            custom: Vec::new(),
            revoked: false,
            evicted: false,
        }
    }

    /// Whether Knox still knows the token.
    fn known(&self) -> bool {
        !self.revoked && !self.evicted
    }

    /// The value `getUserTokens?md_<name>=...` filters on (`KnoxToken.getMetadataValue`).
    pub(super) fn metadata_value(&self, name: &str) -> Option<&str> {
        match name {
            "userName" => Some(&self.user),
            "comment" => self.comment.as_deref(),
            _ => self.custom.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()),
        }
    }
}

/// All tokens Knox stores, in issue order.
#[derive(Default)]
pub(super) struct TokenStore {
    tokens: Vec<StoredToken>,
    /// Position of each token id in `tokens`.
    index: HashMap<String, usize>,
    /// The earliest server-side expiry among known, expiring tokens, so that most sweeps are a
    /// single comparison even after thousands of rotations.
    earliest_expiry_ms: Option<i64>,
    /// Bumped by every change to what Knox knows: issue, renewal, revocation, enable/disable and
    /// eviction.
    generation: u64,
}

impl TokenStore {
    /// Stores a newly issued token, or a token read back from the state file.
    pub(super) fn add(&mut self, token: StoredToken) {
        self.note_expiry(token.expiry_ms);
        self.index.insert(token.id.clone(), self.tokens.len());
        self.tokens.push(token);
        self.generation += 1;
    }

    /// Forgets a token entirely, as if it had never been issued (a failed signing).
    pub(super) fn remove(&mut self, id: &str) {
        if let Some(token) = self.index.get(id).and_then(|&i| self.tokens.get_mut(i)) {
            token.revoked = true;
            self.generation += 1;
        }
    }

    /// A number that changes whenever the known tokens or any of their fields change.
    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    /// Every token Knox knows, in the order they were stored.
    pub(super) fn known(&self) -> impl Iterator<Item = &StoredToken> {
        self.tokens.iter().filter(|t| t.known())
    }

    /// The token `id`, if Knox knows it (not revoked, not evicted).
    pub(super) fn get(&self, id: &str) -> Option<&StoredToken> {
        self.index.get(id).and_then(|&i| self.tokens.get(i)).filter(|t| t.known())
    }

    /// Like [`TokenStore::get`], for the setters below, which count the change.
    fn get_mut(&mut self, id: &str) -> Option<&mut StoredToken> {
        self.index.get(id).and_then(|&i| self.tokens.get_mut(i)).filter(|t| t.known())
    }

    /// Moves a known token's server-side expiry (renewal, §3.2).
    pub(super) fn set_expiry(&mut self, id: &str, expiry_ms: i64) {
        if let Some(token) = self.get_mut(id) {
            token.expiry_ms = expiry_ms;
            self.note_expiry(expiry_ms);
            self.generation += 1;
        }
    }

    /// Sets a known token's enabled flag (enable/disable, §4.2).
    pub(super) fn set_enabled(&mut self, id: &str, enabled: bool) {
        if let Some(token) = self.get_mut(id) {
            token.enabled = enabled;
            self.generation += 1;
        }
    }

    /// Revokes a known token; false if Knox does not know it. Knox removes revoked tokens from
    /// its store (`DefaultTokenStateService.revokeToken`), so they stop counting toward the limit.
    pub(super) fn revoke(&mut self, id: &str) -> bool {
        match self.get_mut(id) {
            Some(token) => {
                token.revoked = true;
                self.generation += 1;
                true
            }
            None => false,
        }
    }

    /// Evicts every token whose expiry plus `grace_ms` has passed at `now_ms`
    /// (`DefaultTokenStateService.needsEviction`). Knox runs this every
    /// `gateway.knox.token.eviction.interval` (5 min); the simulator runs it before every
    /// operation, so a token is evicted exactly at expiry + grace. Eviction is permanent even
    /// if the clock offset later moves back. Never-expiring tokens (-1) are never evicted.
    pub(super) fn sweep(&mut self, now_ms: i64, grace_ms: i64) {
        match self.earliest_expiry_ms {
            Some(earliest) if earliest.saturating_add(grace_ms) <= now_ms => {}
            _ => return,
        }
        let mut earliest = None;
        for token in self.tokens.iter_mut().filter(|t| t.known() && t.expiry_ms != -1) {
            if token.expiry_ms.saturating_add(grace_ms) <= now_ms {
                token.evicted = true;
                self.generation += 1;
            } else {
                earliest = Some(earliest.map_or(token.expiry_ms, |e: i64| e.min(token.expiry_ms)));
            }
        }
        self.earliest_expiry_ms = earliest;
    }

    /// Known tokens, sorted by issue time then id (Knox's `KnoxToken` ordering, §4.3).
    pub(super) fn sorted(&self) -> Vec<&StoredToken> {
        let mut tokens: Vec<&StoredToken> = self.tokens.iter().filter(|t| t.known()).collect();
        tokens.sort_by(|a, b| (a.issue_ms, &a.id).cmp(&(b.issue_ms, &b.id)));
        tokens
    }

    /// `getTokens(user)`: the user's known tokens, expired-but-not-evicted ones included, oldest
    /// first. This is what the per-user limit counts (§6, §9.3).
    pub(super) fn user_tokens(&self, user: &str) -> Vec<&StoredToken> {
        let mut tokens = self.sorted();
        tokens.retain(|t| t.user == user);
        tokens
    }

    fn note_expiry(&mut self, expiry_ms: i64) {
        if expiry_ms != -1 {
            self.earliest_expiry_ms = Some(self.earliest_expiry_ms.map_or(expiry_ms, |e| e.min(expiry_ms)));
        }
    }
}

/// `Tokens.getTokenIDDisplayText`: a UUID shown as its first and last groups, anything else as
/// Java's `null` (docs/knox.md §5.1).
pub(super) fn id_display(id: &str) -> String {
    match (id.len() == 36, id.split_once('-'), id.rsplit_once('-')) {
        (true, Some((first, _)), Some((_, last))) => format!("{first}...{last}"),
        _ => "null".to_owned(),
    }
}

/// `KnoxToken`'s `yyyy-MM-dd'T'HH:mm:ss.SSSZ` (`SimpleDateFormat`), in UTC as a gateway running
/// with `TZ=UTC` prints it, e.g. `2021-11-11T10:15:10.123+0000`.
pub(super) fn knox_date(epoch_ms: i64) -> String {
    let (days, ms_of_day) = (epoch_ms.div_euclid(86_400_000), epoch_ms.rem_euclid(86_400_000));
    let (year, month, day) = civil_from_days(days);
    let (h, m, s, ms) =
        (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60, ms_of_day / 1000 % 60, ms_of_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}+0000")
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), after Howard Hinnant's
/// `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

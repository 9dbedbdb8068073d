//! Talking to Knox's KNOXTOKEN service: the HTTP client, its wire types and errors, and
//! [`Token`], what a successful acquisition yields.
//!
//! The reference for everything here is `docs/knox.md`; comments cite its sections.
//!
//! Everything Knox sends is checked where it enters, here, so later code never sees it raw:
//! the token's bytes ([`jwt::Jwt`]), the strings that reach log lines and terminals (a
//! `token_id` must be [`is_token_id`], `token_type`, `target_url` and `sub` must have nothing
//! to escape, or they count as absent, with a warning), every body's size
//! ([`client::MAX_BODY`]), and every time, kept within [`MAX_EPOCH_MS`] so that nothing
//! downstream overflows or fails to render.

pub mod answer;
pub mod client;
pub mod error;
pub mod jwt;
pub mod labels;
pub mod verify;
pub mod wire;

use std::time::{Duration, Instant, SystemTime};

pub use client::{Clients, Flavor, KnoxClient, Op};
pub use error::KnoxError;
pub use jwt::Jwt;
pub use verify::Verified;

use crate::config::{Auth, Cluster, Validation};
use crate::secret::Secret;
#[cfg(doc)] // For the doc links here, which predate `crate::time`.
use crate::time::MAX_EPOCH_MS;
use crate::time::{clamp_epoch_ms, epoch_ms};

/// An issued token and what we know about it. Not serde: it crosses no boundary as a whole.
#[derive(Debug, Clone)]
pub struct Token {
    /// The serialized JWT (`access_token`), always the bytes of a [`Jwt`]: it comes from
    /// `client::parse_token` or from a published file read back by
    /// [`crate::output::read_published`], which both check it with [`Jwt::parse`].
    pub jwt: Secret,
    /// `token_id` (= the JWT's `knox.id`); absent before Knox 1.6. Always [`is_token_id`]: an
    /// id Knox sends that is not counts as absent (with a warning), so log lines and
    /// terminals can show it as it is.
    pub token_id: Option<String>,
    /// `token_type`, trimmed ("Bearer"), a short word of `[A-Za-z0-9._-]`.
    pub token_type: String,
    /// The server-side expiry, `expires_in` (docs/knox.md §2.3).
    pub expires_in: Expiry,
    /// The JWT's `exp` claim in epoch seconds, if present, floored and at most the last second
    /// of 9999. Renewal never moves it (§3.2).
    pub jwt_exp: Option<i64>,
    /// The JWT's `sub`, if it has nothing to escape.
    pub subject: Option<String>,
    /// `managed == "true"`: Knox keeps server-side state (renewal, revocation, limits).
    pub managed: bool,
    /// `target_url`, if the topology sets one and it has nothing to escape.
    pub target_url: Option<String>,
    /// The answer had neither `token_id` nor `managed`: Knox before 1.6, which has no error
    /// codes, renews and revokes only for whitelisted callers, and revokes only by the full JWT
    /// (docs/knox.md §1.2, §2.2, §4.1, §10).
    pub legacy: bool,
    /// This host's wall clock when the answer arrived.
    pub acquired_at: SystemTime,
    /// This host's wall clock at the last renewal, if it was renewed: the server-side expiry
    /// was set then (to now + Knox's renew interval), so its lifetime counts from there.
    pub renewed_at: Option<SystemTime>,
    /// The monotonic instant the answer arrived; schedules are relative to it.
    pub received: Instant,
    /// Knox's clock when the answer arrived (or the last renewal), epoch ms, estimated from
    /// its `Date` header.
    pub knox_now_ms: i64,
    /// Knox's clock minus ours, in ms, as estimated at acquisition.
    pub clock_offset_ms: i64,
    /// How it was verified before it was handed out (`knox::verify`); `Off` for a token read
    /// back from a file.
    pub verified: Verified,
}

/// When a token stops working, on Knox's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// `expires_in == -1`: never (and the JWT has no `exp`).
    Never,
    /// Epoch milliseconds on Knox's clock, within `0..=`[`MAX_EPOCH_MS`].
    At(i64),
}

impl Token {
    /// The server-side expiry in epoch ms on Knox's clock (`expires_in`, moved by renewal),
    /// or `None` if it never expires.
    pub fn server_expiry_ms(&self) -> Option<i64> {
        match self.expires_in {
            Expiry::Never => None,
            Expiry::At(ms) => Some(ms),
        }
    }

    /// The expiry that matters to consumers, in epoch ms on Knox's clock. When they check the
    /// JWT themselves it is the earlier of `expires_in` and `exp` (renewal never moves `exp`,
    /// docs/knox.md §3.2); through the gateway it is the server-side expiry of a token Knox
    /// manages (or may manage: a pre-1.6 answer does not say). An unmanaged token has no
    /// server-side state, so the gateway checks its JWT's `exp`: that bounds it in every mode.
    pub fn expiry_ms(&self, v: Validation) -> Option<i64> {
        let server = self.server_expiry_ms();
        let jwt = self.jwt_exp.map(|s| s.saturating_mul(1000));
        let server_decides = v == Validation::Gateway && (self.managed || self.legacy);
        match (server, jwt) {
            (Some(a), _) if server_decides => Some(a),
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The lifetime left when the token arrived (or was last renewed), measured on Knox's
    /// clock; `None` if it never expires. Zero if it arrived already expired.
    pub fn lifetime(&self, v: Validation) -> Option<Duration> {
        let ms = self.expiry_ms(v)?.saturating_sub(self.knox_now_ms);
        Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
    }

    /// The monotonic instant it expires, if it does (or if that instant is beyond what the
    /// monotonic clock can represent).
    pub fn expires_at(&self, v: Validation) -> Option<Instant> {
        self.lifetime(v).and_then(|l| self.received.checked_add(l))
    }

    /// Records a renewal: the server-side expiry is now `expires_ms` (clamped into
    /// `0..=`[`MAX_EPOCH_MS`]), as of `received` (Knox's clock estimated with the offset
    /// measured at acquisition).
    pub fn renewed(&mut self, expires_ms: i64, received: Instant, at: SystemTime) {
        self.expires_in = Expiry::At(clamp_epoch_ms(expires_ms));
        self.received = received;
        self.renewed_at = Some(at);
        self.knox_now_ms = clamp_epoch_ms(epoch_ms(at).saturating_add(self.clock_offset_ms));
    }

    /// What Knox is sent to revoke this token (docs/knox.md §4.1): its id from Knox 1.6 on;
    /// before 1.6 (`legacy`), or without an id, the full JWT, which is all those versions
    /// accept, even when the JWT's claims carry a `knox.id`.
    pub fn revocation_body(&self) -> Secret {
        match &self.token_id {
            Some(id) if !self.legacy => Secret::new(id.clone()),
            _ => self.jwt.clone(),
        }
    }

    /// The token id for log lines, or `-` when Knox sent none. Safe to print as it is: ids
    /// are checked with [`is_token_id`] when they arrive.
    pub fn id(&self) -> &str {
        self.token_id.as_deref().unwrap_or("-")
    }
}

/// The longest token id accepted.
pub const MAX_TOKEN_ID: usize = 128;

/// The Knox user whose tokens `cluster`'s are (the per-user limit, `getUserTokens`): the
/// Basic user, else the subject of its token, when there is one.
pub fn owner(cluster: &Cluster, token: Option<&Token>) -> Option<String> {
    match &cluster.auth {
        Auth::Basic { user, .. } => Some(user.clone()),
        _ => token.and_then(|t| t.subject.clone()),
    }
}

/// Whether `id` is a plausible Knox token id: 1 to [`MAX_TOKEN_ID`] characters of
/// `[A-Za-z0-9._-]` (Knox's ids are UUIDs). Such an id can be printed, logged and sent as it is.
pub fn is_token_id(id: &str) -> bool {
    (1..=MAX_TOKEN_ID).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::from_epoch_ms;

    fn token(managed: bool, expires_in: Expiry, jwt_exp: Option<i64>) -> Token {
        Token {
            jwt: Secret::new("e30.e30.c2ln"),
            token_id: None,
            token_type: "Bearer".into(),
            expires_in,
            jwt_exp,
            subject: None,
            managed,
            target_url: None,
            legacy: false,
            renewed_at: None,
            acquired_at: SystemTime::UNIX_EPOCH,
            received: Instant::now(),
            knox_now_ms: 1_000_000,
            clock_offset_ms: 0,
            verified: Verified::Off,
        }
    }

    #[test]
    fn unmanaged_tokens_never_outlive_their_jwt_exp() {
        // Knox does not track an unmanaged token: the gateway checks its JWT's exp, even when
        // the consumers go through the gateway.
        let t = token(false, Expiry::At(10_000_000), Some(5_000));
        for v in [Validation::Jwt, Validation::Gateway] {
            assert_eq!(t.expiry_ms(v), Some(5_000_000), "{v:?}");
        }
        let t = token(false, Expiry::Never, Some(5_000));
        assert_eq!(t.expiry_ms(Validation::Gateway), Some(5_000_000));
        // A managed token's server-side expiry is what the gateway checks; renewal moves it.
        let t = token(true, Expiry::At(10_000_000), Some(5_000));
        assert_eq!(t.expiry_ms(Validation::Gateway), Some(10_000_000));
        assert_eq!(t.expiry_ms(Validation::Jwt), Some(5_000_000));
    }

    #[test]
    fn revocation_body_is_the_id_from_knox_1_6_and_the_jwt_before() {
        // (token_id, legacy, expected body)
        let cases = [
            (Some("id-1"), false, "id-1"),
            (None, false, "e30.e30.c2ln"),
            // Before 1.6 the id may come from the JWT's knox.id, but Knox revokes only by JWT.
            (Some("id-1"), true, "e30.e30.c2ln"),
            (None, true, "e30.e30.c2ln"),
        ];
        for (token_id, legacy, expected) in cases {
            let t =
                Token { token_id: token_id.map(str::to_owned), legacy, ..token(true, Expiry::Never, None) };
            assert_eq!(t.revocation_body().expose(), expected, "{token_id:?} legacy={legacy}");
        }
    }

    #[test]
    fn epoch_conversions_are_total() {
        for ms in [i64::MIN, -1, 0, 1, 253_402_300_799_999, i64::MAX] {
            let _ = from_epoch_ms(ms);
        }
        assert_eq!(epoch_ms(from_epoch_ms(1_700_000_000_123)), 1_700_000_000_123);
        assert_eq!(epoch_ms(from_epoch_ms(-1_500)), -1_500);
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        assert_eq!(epoch_ms(far), i64::MAX);
        let mut t = token(true, Expiry::At(1), None);
        t.clock_offset_ms = i64::MAX;
        t.renewed(i64::MAX, Instant::now(), far);
        assert_eq!(t.server_expiry_ms(), Some(253_402_300_799_999));
        assert!(t.lifetime(Validation::Gateway).is_some());
    }
}

//! Talking to Knox's KNOXTOKEN service: the HTTP client, its wire types and errors, and
//! [`Token`], what a successful acquisition yields.
//!
//! The reference for everything here is `docs/knox.md`; comments cite its sections.

pub mod answer;
pub mod client;
pub mod error;
pub mod wire;

use std::time::{Duration, Instant, SystemTime};

pub use client::{Clients, Flavor, KnoxClient, Op};
pub use error::KnoxError;

use crate::config::Validation;
use crate::secret::Secret;

/// An issued token and what we know about it. Not serde: it crosses no boundary as a whole.
#[derive(Debug, Clone)]
pub struct Token {
    /// The serialized JWT (`access_token`).
    pub jwt: Secret,
    /// `token_id` (= the JWT's `knox.id`); absent before Knox 1.6.
    pub token_id: Option<String>,
    /// `token_type`, trimmed ("Bearer").
    pub token_type: String,
    /// The server-side expiry, `expires_in` (docs/knox.md §2.3).
    pub expires_in: Expiry,
    /// The JWT's `exp` claim in epoch seconds, if present. Renewal never moves it (§3.2).
    pub jwt_exp: Option<i64>,
    /// The JWT's `sub`.
    pub subject: Option<String>,
    /// `managed == "true"`: Knox keeps server-side state (renewal, revocation, limits).
    pub managed: bool,
    /// `target_url`, if the topology sets one.
    pub target_url: Option<String>,
    /// The answer had neither `token_id` nor `managed`: Knox before 1.6, which has no error
    /// codes, renews and revokes only for whitelisted callers, and revokes only by the full JWT
    /// (docs/knox.md §1.2, §2.2, §4.1, §10).
    pub legacy: bool,
    /// This host's wall clock when the answer arrived.
    pub acquired_at: SystemTime,
    /// The monotonic instant the answer arrived; schedules are relative to it.
    pub received: Instant,
    /// Knox's clock when the answer arrived (or the last renewal), epoch ms, estimated from
    /// its `Date` header.
    pub knox_now_ms: i64,
    /// Knox's clock minus ours, in ms, as estimated at acquisition.
    pub clock_offset_ms: i64,
}

/// When a token stops working, on Knox's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// `expires_in == -1`: never (and the JWT has no `exp`).
    Never,
    /// Epoch milliseconds on Knox's clock.
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
    /// docs/knox.md §3.2); through the gateway it is the server-side expiry.
    pub fn expiry_ms(&self, v: Validation) -> Option<i64> {
        let server = self.server_expiry_ms();
        let jwt = self.jwt_exp.map(|s| s.saturating_mul(1000));
        match (v, server, jwt) {
            (Validation::Jwt, Some(a), Some(b)) => Some(a.min(b)),
            (Validation::Gateway, Some(a), _) => Some(a),
            (_, a, b) => a.or(b),
        }
    }

    /// The lifetime left when the token arrived (or was last renewed), measured on Knox's
    /// clock; `None` if it never expires. Zero if it arrived already expired.
    pub fn lifetime(&self, v: Validation) -> Option<Duration> {
        let ms = self.expiry_ms(v)?.saturating_sub(self.knox_now_ms);
        Some(Duration::from_millis(ms.max(0) as u64))
    }

    /// The monotonic instant it expires, if it does.
    pub fn expires_at(&self, v: Validation) -> Option<Instant> {
        self.lifetime(v).map(|l| self.received + l)
    }

    /// Records a renewal: the server-side expiry is now `expires_ms`, as of `received`
    /// (Knox's clock estimated with the offset measured at acquisition).
    pub fn renewed(&mut self, expires_ms: i64, received: Instant, at: SystemTime) {
        self.expires_in = Expiry::At(expires_ms);
        self.received = received;
        self.knox_now_ms = epoch_ms(at) + self.clock_offset_ms;
    }

    /// The token id for log lines, or `-` when Knox sent none.
    pub fn id(&self) -> &str {
        self.token_id.as_deref().unwrap_or("-")
    }
}

/// Milliseconds since the Unix epoch (negative before it).
pub fn epoch_ms(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// `SystemTime` at epoch ms `ms`.
pub fn from_epoch_ms(ms: i64) -> SystemTime {
    if ms >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

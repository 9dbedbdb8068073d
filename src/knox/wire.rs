//! Knox's JSON exactly as it is on the wire (docs/knox.md §2.2, §8.1), and nothing else.
//!
//! These are the only serde types besides the config's raw layer. They mirror the server
//! loosely on purpose: every field is optional and `managed`/`expires_in` accept the string
//! and number spellings seen across Knox versions, so that a missing field is reported by
//! `knox::client` with a clear message instead of a serde error.
//!
//! The one exception to "as sent" is the times of `getUserTokens`, which are clamped as they
//! are read (`epoch_ms_or_never`) so that no reader can overflow on them.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// The acquisition response body (docs/knox.md §2.2). Field order is not stable (a Java
/// `HashMap`), which serde does not care about.
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    /// The serialized JWT. Absent on Knox ≤ 2.0's 200 "Unable to acquire token." answer (§2.4).
    pub access_token: Option<String>,
    /// The `knox.id` UUID; absent before Knox 1.6.
    pub token_id: Option<String>,
    /// `"true"`/`"false"` as a JSON string; absent before Knox 1.6.
    pub managed: Option<Value>,
    /// `"Bearer"` (one old docs example has a trailing space).
    pub token_type: Option<String>,
    /// Epoch milliseconds on Knox's clock, or -1 for never (docs/knox.md §2.3).
    pub expires_in: Option<Value>,
    /// `knox.token.target.url`, if configured on the topology.
    pub target_url: Option<String>,
}

/// The JWT claims token-keeper reads (docs/knox.md §8.1), as sent; `knox::verify` checks the
/// signature (§8.5). [`super::jwt::Jwt`] reads them checked.
#[derive(Debug, Deserialize)]
pub struct Claims {
    /// Expiry in epoch **seconds**, truncated from `expires_in`; absent for never-expiring
    /// tokens.
    pub exp: Option<Value>,
    /// The user the token is for.
    pub sub: Option<String>,
    /// The token id.
    #[serde(rename = "knox.id")]
    pub knox_id: Option<String>,
}

/// `getUserTokens` (docs/knox.md §4.3): `{"tokens":[...]}`, sorted by issue time.
#[derive(Debug, Deserialize)]
pub struct UserTokens {
    /// The tokens, expired-but-not-evicted ones included.
    pub tokens: Vec<UserToken>,
}

/// One token of a `getUserTokens` answer. The formatted time fields are ignored in favour
/// of the `*Long` epoch-ms ones.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserToken {
    /// The `knox.id`.
    pub token_id: String,
    /// Issue time, epoch ms.
    #[serde(default, deserialize_with = "epoch_ms_or_never")]
    pub issue_time_long: Option<i64>,
    /// Server-side expiry, epoch ms, or -1 for never.
    #[serde(default, deserialize_with = "epoch_ms_or_never")]
    pub expiration_long: Option<i64>,
    /// Max lifetime, epoch ms, or -1 for unbounded.
    #[serde(default, deserialize_with = "epoch_ms_or_never")]
    pub max_lifetime_long: Option<i64>,
    /// Owner, flags and usage; its shape varies by Knox version.
    #[serde(default)]
    pub metadata: Option<TokenMetadata>,
}

/// The metadata fields `tokens list` shows.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenMetadata {
    /// Whether the token is enabled.
    pub enabled: Option<Value>,
    /// When the token was last used (a formatted date, or absent).
    pub last_used_at: Option<Value>,
    /// The free-text comment given at acquisition (Knox 1.6 and later).
    pub comment: Option<String>,
    /// The `md_<name>=<value>` pairs given at acquisition (Knox 2.0 and later), an object of
    /// strings as Knox sends it; anything else counts as none.
    #[serde(default)]
    pub custom_metadata_map: Option<Value>,
}

/// An epoch-ms time of `getUserTokens`: a negative one is -1 (never, unbounded), one after
/// 9999 is [`crate::time::MAX_EPOCH_MS`] (with a warning), a fraction is floored, and anything
/// that is not a number is absent.
fn epoch_ms_or_never<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let ms = match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i,
            // `as` saturates: a float past i64 becomes i64::MAX, clamped below.
            (None, Some(f)) if f.is_finite() => f.floor() as i64,
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    if ms < 0 {
        return Ok(Some(-1));
    }
    if ms > crate::time::MAX_EPOCH_MS {
        tracing::warn!("getUserTokens sent a time after 9999-12-31 ({ms}): clamped to 9999-12-31T23:59:59Z");
        return Ok(Some(crate::time::MAX_EPOCH_MS));
    }
    Ok(Some(ms))
}

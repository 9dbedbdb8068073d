//! Knox's JSON exactly as it is on the wire (docs/knox.md §2.2, §8.1), and nothing else.
//!
//! These are the only serde types besides the config's raw layer. They mirror the server
//! loosely on purpose: every field is optional and `managed`/`expires_in` accept the string
//! and number spellings seen across Knox versions, so that a missing field is reported by
//! `knox::client` with a clear message instead of a serde error.

use serde::Deserialize;
use serde_json::Value;

/// The acquisition response body (docs/knox.md §2.2). Field order is not stable (a Java
/// `HashMap`), which serde does not care about.
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    /// The serialized JWT. Absent on Knox ≤ 2.0's 200 "Unable to acquire token." answer.
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

/// The JWT claims token-keeper reads (docs/knox.md §8.1). The signature is not verified: the
/// token came over TLS from the gateway we trust, and consumers verify it where it matters.
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
    pub issue_time_long: Option<i64>,
    /// Server-side expiry, epoch ms, or -1 for never.
    pub expiration_long: Option<i64>,
    /// Max lifetime, epoch ms, or -1 for unbounded.
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
    /// The free-text comment given at acquisition.
    pub comment: Option<String>,
}

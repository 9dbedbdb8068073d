//! Verifying an issued token before anyone sees it (docs/knox.md §8): its RSA signature and
//! `kid` against Knox's key, its `iss`, and that `exp` and `expires_in` agree.
//!
//! Where the key comes from, in order: the key pinned in the config (`public_cert_file` or
//! `jwks_file`), Knox's JWKS (`.../knoxtoken/api/v1/jwks.json` next to the token URL, fetched
//! with the cluster's credentials, docs/knox.md §8.3), or the `endpoint_public_cert` of the
//! acquisition answer (docs/knox.md §2.2). Only a pinned key holds against a man in the
//! middle: the other two come over the same connection as the token.
//!
//! `verify = "auto"` (the default) checks with whatever key it gets, and publishes a token it
//! could find no key for with a warning (once per cluster); a key that is there but does not
//! verify the token is always a failure. `require` fails without a key; `off` checks nothing.
//!
//! The JWKS is cached per URL; a token whose `kid` the cache does not know (Knox rotated its
//! key) triggers a refetch, at most one per [`REFETCH_AFTER`] per URL ([`should_fetch`]).
//! An unreadable JWKS is cached as such, so it too is asked again at most once a minute.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use reqwest::Url;
use serde_json::Value;

use super::{KnoxError, Token};
use crate::config::{Cluster, VerifyMode};
use crate::keys::{self, RsaKey};

/// The least time between two fetches of one JWKS URL.
pub const REFETCH_AFTER: Duration = Duration::from_secs(60);

/// `exp` and `expires_in` may differ by this much before the token is refused: Knox sets both
/// from one instant (docs/knox.md §2.3), so more is a forged or mixed-up answer.
pub const MAX_EXP_DISAGREEMENT_MS: i64 = 5 * 60 * 1000;

/// How the published token was verified (`status --json`'s `verified`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// With the key pinned in the config.
    Pinned,
    /// With Knox's JWKS.
    Jwks,
    /// With the certificate in the acquisition answer.
    EndpointCert,
    /// `auto` found no key: published unchecked, with a warning.
    Unverified,
    /// `verify = "off"`.
    Off,
}

impl Verified {
    /// The name in the json output and `status --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verified::Pinned => "pinned",
            Verified::Jwks => "jwks",
            Verified::EndpointCert => "endpoint_cert",
            Verified::Unverified => "unverified",
            Verified::Off => "off",
        }
    }

    /// The value [`Verified::as_str`] names.
    pub fn from_name(name: &str) -> Option<Verified> {
        [Verified::Pinned, Verified::Jwks, Verified::EndpointCert, Verified::Unverified, Verified::Off]
            .into_iter()
            .find(|v| v.as_str() == name)
    }
}

/// Which check a token failed, and why (never quoting the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `signature`, `kid`, `alg`, `iss`, `exp`, `expires_in` or `key`.
    pub check: &'static str,
    /// What was wrong.
    pub detail: String,
}

fn fail(check: &'static str, detail: impl Into<String>) -> Failure {
    Failure { check, detail: detail.into() }
}

/// A JWT taken apart for checking: what is signed, the signature, and the header and claim
/// fields the checks read.
#[derive(Debug)]
pub struct Signed {
    input: Vec<u8>,
    signature: Vec<u8>,
    /// The header's `alg`.
    pub alg: Option<String>,
    /// The header's `kid`.
    pub kid: Option<String>,
    /// The `iss` claim.
    pub iss: Option<String>,
}

impl Signed {
    /// Splits a token that `Jwt::parse` accepted (three base64url segments, JSON objects).
    pub fn split(jwt: &str) -> Result<Signed, Failure> {
        let mut parts = jwt.split('.');
        let (Some(h), Some(c), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(fail("signature", "the token is not three segments"));
        };
        let object = |seg: &str| -> Option<serde_json::Map<String, Value>> {
            let bytes = URL_SAFE_NO_PAD.decode(seg).ok()?;
            serde_json::from_slice(&bytes).ok()
        };
        let header = object(h).ok_or_else(|| fail("signature", "the header is not JSON"))?;
        let claims = object(c).ok_or_else(|| fail("signature", "the claims are not JSON"))?;
        let signature =
            URL_SAFE_NO_PAD.decode(s).map_err(|_| fail("signature", "the signature is not base64url"))?;
        let text =
            |m: &serde_json::Map<String, Value>, k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
        Ok(Signed {
            input: format!("{h}.{c}").into_bytes(),
            signature,
            alg: text(&header, "alg"),
            kid: text(&header, "kid"),
            iss: text(&claims, "iss"),
        })
    }

    /// Whether `key` is one this token may be checked with: the one its `kid` names, or any
    /// key when it has none.
    fn names(&self, key: &RsaKey) -> bool {
        self.kid.as_deref().is_none_or(|kid| key.is_named(kid))
    }

    /// Whether some key of `keys` is one this token names and verifies it: a cache that has
    /// none is stale for this token.
    pub fn covered_by(&self, keys: &[RsaKey]) -> bool {
        keys.iter().any(|k| self.names(k) && self.verified_by(k))
    }

    fn verified_by(&self, key: &RsaKey) -> bool {
        key.verifies(self.alg.as_deref().unwrap_or_default(), &self.input, &self.signature)
    }
}

/// Checks the signature and `kid` of `s` against `keys` (from `source`, for messages).
pub fn check_signature(s: &Signed, keys: &[RsaKey], source: &str) -> Result<(), Failure> {
    if keys::rsa_algorithm(s.alg.as_deref().unwrap_or_default()).is_none() {
        let alg = s.alg.as_deref().map_or("none".to_owned(), |a| crate::text::quote(a, 20));
        return Err(fail(
            "alg",
            format!("the token is signed with {alg}, not an RSA algorithm, so no public key can check it"),
        ));
    }
    let named: Vec<&RsaKey> = keys.iter().filter(|k| s.names(k)).collect();
    if named.is_empty() {
        let kid = s.kid.as_deref().map_or_else(String::new, |k| crate::text::quote(k, 80));
        return Err(fail("kid", format!("no key of {source} has the token's kid {kid}")));
    }
    if named.iter().any(|k| s.verified_by(k)) {
        return Ok(());
    }
    let alg = s.alg.as_deref().unwrap_or_default();
    Err(fail("signature", format!("the {alg} signature does not verify with the key of {source}")))
}

/// Checks `iss` (when `issuer` is set), that the token is not expired on Knox's clock, and
/// that `exp` and `expires_in` agree within [`MAX_EXP_DISAGREEMENT_MS`].
pub fn check_claims(s: &Signed, token: &Token, issuer: Option<&str>) -> Result<(), Failure> {
    if let Some(want) = issuer {
        if s.iss.as_deref() != Some(want) {
            let got = s.iss.as_deref().map_or("none".to_owned(), |i| crate::text::quote(i, 80));
            return Err(fail("iss", format!("the token's issuer is {got}, not {want:?}")));
        }
    }
    if let Some(exp) = token.jwt_exp {
        let exp_ms = exp.saturating_mul(1000);
        if exp_ms <= token.knox_now_ms {
            return Err(fail("exp", "the token is already expired on Knox's clock"));
        }
        if let Some(server) = token.server_expiry_ms() {
            let apart = server.saturating_sub(exp_ms).saturating_abs();
            if apart > MAX_EXP_DISAGREEMENT_MS {
                return Err(fail(
                    "expires_in",
                    format!("expires_in and the JWT's exp are {} s apart (more than 5 min)", apart / 1000),
                ));
            }
        }
    }
    Ok(())
}

/// Whether to fetch a JWKS URL now: when nothing is cached yet; or when the cached answer is
/// not usable for this token (no key its `kid` names, or the JWKS was unreadable) and there
/// was no refetch in the last [`REFETCH_AFTER`], so Knox rotating its key costs one refetch
/// and a stream of tokens with unknown kids at most one a minute.
pub fn should_fetch(cached: bool, usable: bool, last_refetch: Option<Instant>, now: Instant) -> bool {
    match last_refetch {
        _ if !cached => true,
        _ if usable => false,
        None => true,
        Some(at) => now.saturating_duration_since(at) >= REFETCH_AFTER,
    }
}

/// `.../knoxtoken/api/v1/jwks.json` for a token URL (docs/knox.md §1.1, §8.3): next to
/// `api/v1/token` or `api/v2/token`, or next to the URL's last segment otherwise.
pub fn jwks_url(token_url: &Url) -> Url {
    let (mut url, root) = super::client::service_root(token_url);
    let base = match root {
        Ok(root) => format!("{root}/api/v1"),
        Err(path) => path.rsplit_once('/').map_or(String::new(), |(head, _)| head.to_owned()),
    };
    url.set_path(&format!("{base}/jwks.json"));
    url
}

/// One JWKS URL's cached answer.
#[derive(Debug, Clone)]
struct Cached {
    /// The last fetch that replaced a cached answer, if any.
    last_refetch: Option<Instant>,
    /// The keys, or why there are none (not JSON, 500...).
    keys: Result<Vec<RsaKey>, String>,
}

/// The JWKS cache and the clusters already warned about unverified tokens, shared by the
/// clones of one `KnoxClient`.
#[derive(Debug, Default, Clone)]
pub struct KeyCache {
    inner: Arc<Mutex<CacheState>>,
}

#[derive(Debug, Default)]
struct CacheState {
    jwks: HashMap<Url, Cached>,
    warned: HashSet<String>,
}

impl KeyCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Verifies `token` (whose acquisition answer was `body`, from `url`) as `cluster` says, and
/// returns how; the error names the failed check and the URL, never the token.
pub(super) async fn verify(
    client: &super::KnoxClient,
    cluster: &Cluster,
    token: &Token,
    body: &str,
    url: &str,
) -> Result<Verified, KnoxError> {
    let v = &cluster.verify;
    if v.mode == VerifyMode::Off {
        return Ok(Verified::Off);
    }
    let unverified =
        |f: Failure| KnoxError::Unverified { url: url.to_owned(), check: f.check, detail: f.detail };
    let signed = Signed::split(token.jwt.expose()).map_err(unverified)?;
    let how = if let Some(pinned) = &v.pinned {
        check_signature(&signed, &pinned.keys, &pinned.source).map_err(unverified)?;
        Verified::Pinned
    } else if let Some((keys, source)) = jwks_keys(client, cluster, &signed).await {
        check_signature(&signed, &keys, &source).map_err(unverified)?;
        Verified::Jwks
    } else if let Some(key) = endpoint_key(body, url) {
        check_signature(&signed, std::slice::from_ref(&key), &format!("endpoint_public_cert of {url}"))
            .map_err(unverified)?;
        Verified::EndpointCert
    } else if v.mode == VerifyMode::Require {
        return Err(unverified(fail(
            "key",
            "no key to check the token with: the JWKS is unreadable and the answer has no usable \
             endpoint_public_cert (pin one with public_cert_file or jwks_file)",
        )));
    } else {
        if client.keys.lock().warned.insert(cluster.name.clone()) {
            tracing::warn!(
                cluster = %cluster.name,
                url,
                "the token is published unverified: Knox's JWKS is unreadable and its answer has no \
                 usable endpoint_public_cert (pin a key with public_cert_file, or set verify = \"require\")"
            );
        }
        Verified::Unverified
    };
    check_claims(&signed, token, v.issuer.as_deref()).map_err(unverified)?;
    Ok(how)
}

/// The JWKS keys for `signed`, from the cache or fetched as [`should_fetch`] says, with the
/// URL for messages; `None` when the JWKS is unreadable.
async fn jwks_keys(
    client: &super::KnoxClient,
    cluster: &Cluster,
    signed: &Signed,
) -> Option<(Vec<RsaKey>, String)> {
    let url = jwks_url(&cluster.token_url);
    let cached = client.keys.lock().jwks.get(&url).cloned();
    let usable = cached.as_ref().is_some_and(|c| c.keys.as_ref().is_ok_and(|k| signed.covered_by(k)));
    let now = Instant::now();
    let last_refetch = cached.as_ref().and_then(|c| c.last_refetch);
    let entry = if should_fetch(cached.is_some(), usable, last_refetch, now) {
        let keys = client.get_jwks(cluster, &url).await.and_then(|body| keys::from_jwks(&body, url.as_str()));
        match &keys {
            Ok(k) => {
                tracing::debug!(cluster = %cluster.name, url = %url, keys = k.len(), "fetched Knox's JWKS")
            }
            Err(e) => tracing::info!(cluster = %cluster.name, "Knox's JWKS is not usable: {e}"),
        }
        let entry = Cached { last_refetch: if cached.is_some() { Some(now) } else { None }, keys };
        client.keys.lock().jwks.insert(url.clone(), entry.clone());
        entry
    } else {
        cached?
    };
    entry.keys.ok().map(|k| (k, url.to_string()))
}

/// The key of the answer's `endpoint_public_cert`, if it has a usable one.
fn endpoint_key(body: &str, url: &str) -> Option<RsaKey> {
    let value: Value = serde_json::from_str(body).ok()?;
    let cert = value.get("endpoint_public_cert")?.as_str()?;
    match keys::from_endpoint_cert(cert, url) {
        Ok(k) => Some(k),
        Err(e) => {
            tracing::debug!("{e}");
            None
        }
    }
}

#[cfg(test)]
mod tests;

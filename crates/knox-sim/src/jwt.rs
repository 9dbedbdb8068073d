//! The simulator's token signing: the bundled dev key, the JWTs it issues, the JWKS document that
//! publishes the matching public key (docs/knox.md §8.3) in its JSON and pre-2.1.0 forms, claim
//! reading for renew and revoke, and signature verification for the Bearer topology.
//!
//! `rotated_key.pem` (what the topology signs with after a key rotation) and `foreign_key.pem`
//! (a key the topology never publishes, to sign tokens a client must refuse) are public dev-only
//! keys too, each with a self-signed certificate (`*_cert.pem`) that `endpoint_public_cert`
//! carries.
//!
//! `dev_key.pem` is a PUBLIC, DEV-ONLY RSA key pair, committed on purpose, in the spirit of
//! `vault server -dev`: anyone can read it, so a token it signs proves nothing. Only the simulator
//! uses it; the daemon itself never signs anything. `dev_cert.pem` is an equally public
//! self-signed certificate for that key (`127.0.0.1` and `localhost`, valid 2000-2126), so that
//! `knox-sim --tls-cert crates/knox-sim/src/dev_cert.pem --tls-key crates/knox-sim/src/dev_key.pem`
//! serves HTTPS with a PKCS#1 key.

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Map, Value};

use crate::SimKey;

/// A parsed key pair and the public parts derived from it, built once per process because RSA
/// key parsing is slow in debug builds.
struct KeyPair {
    encoding: EncodingKey,
    /// The public half, for verifying the tokens the simulator issued.
    decoding: DecodingKey,
    /// RFC 7638 SHA-256 thumbprint of the public key, which is how Knox computes `kid` (§8.2).
    kid: String,
    /// Base64url modulus and exponent for the JWKS document.
    n: String,
    e: String,
    /// The self-signed certificate of the key, Base64 DER without PEM armour, as Knox sends
    /// `endpoint_public_cert` (docs/knox.md §2.2).
    cert_b64: String,
}

fn key_pair(key_pem: &[u8], cert_pem: &str) -> KeyPair {
    // The keys are compiled in, so these either always or never work; the JWKS round-trip test
    // in `tests.rs` makes sure they always do.
    let encoding = EncodingKey::from_rsa_pem(key_pem).expect("a bundled key is a valid PKCS#1 RSA key");
    let jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256)
        .expect("the public half of a parsed RSA key can always be extracted");
    let kid = jwk.thumbprint(ThumbprintHash::SHA256);
    let AlgorithmParameters::RSA(rsa) = jwk.algorithm else {
        unreachable!("an RSA encoding key always yields RSA JWK parameters")
    };
    let decoding = DecodingKey::from_rsa_components(&rsa.n, &rsa.e)
        .expect("the public half of a parsed RSA key is a valid RSA public key");
    let cert_b64: String = cert_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    KeyPair { encoding, decoding, kid, n: rsa.n, e: rsa.e, cert_b64 }
}

/// The bundled key pair `key` stands for.
fn keys(key: SimKey) -> &'static KeyPair {
    static DEV: OnceLock<KeyPair> = OnceLock::new();
    static ROTATED: OnceLock<KeyPair> = OnceLock::new();
    static FOREIGN: OnceLock<KeyPair> = OnceLock::new();
    match key {
        SimKey::Dev => {
            DEV.get_or_init(|| key_pair(include_bytes!("dev_key.pem"), include_str!("dev_cert.pem")))
        }
        SimKey::Rotated => ROTATED
            .get_or_init(|| key_pair(include_bytes!("rotated_key.pem"), include_str!("rotated_cert.pem"))),
        SimKey::Foreign => FOREIGN
            .get_or_init(|| key_pair(include_bytes!("foreign_key.pem"), include_str!("foreign_cert.pem"))),
    }
}

/// The `kid` Knox would give tokens signed with `key`: its RFC 7638 thumbprint (§8.2).
pub(crate) fn kid(key: SimKey) -> String {
    keys(key).kid.clone()
}

/// `endpoint_public_cert` for a topology whose signing key is `key` (docs/knox.md §2.2).
pub(super) fn endpoint_public_cert(key: SimKey) -> String {
    keys(key).cert_b64.clone()
}

/// Signs a token the way Knox's `DefaultTokenAuthorityService` does with its defaults
/// (docs/knox.md §8.1): RS256, `typ` JWT, `kid` and `jku` in the header and again as claims, `iss`
/// KNOXSSO, and no `iat`, `nbf` or `jti`. `key` signs it and names it in `kid`.
pub(super) fn issue(
    key: SimKey,
    user: &str,
    token_id: &str,
    expires_in: i64,
    managed: bool,
    jku: &str,
) -> jsonwebtoken::errors::Result<String> {
    let key = keys(key);
    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some("JWT".to_owned());
    header.kid = Some(key.kid.clone());
    header.jku = Some(jku.to_owned());
    let mut claims = json!({
        "sub": user,
        "jku": jku,
        "kid": key.kid,
        "iss": "KNOXSSO",
        "managed.token": managed.to_string(),
        "knox.id": token_id,
    });
    // docs/knox.md §2.3: a never-expiring token has no `exp` at all; otherwise nimbus truncates
    // the millisecond expiry to whole seconds.
    if expires_in != -1 {
        claims["exp"] = json!(expires_in / 1000);
    }
    jsonwebtoken::encode(&header, &claims, &key.encoding)
}

/// Signs `claims` with `key` (RS256), with `kid` in the header if given: tokens for tests of
/// clients that verify (a wrong kid, a missing one, another issuer).
pub(crate) fn sign(key: SimKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &keys(key).encoding).expect("a bundled key signs any JSON")
}

/// The JWKS body (docs/knox.md §8.3) publishing `key`, as valid JSON (observed on Knox 1.6.1
/// and 2.0.0 with credentials).
pub(super) fn jwks_json(key: SimKey) -> String {
    let key = keys(key);
    let jwk = json!({"kty": "RSA", "e": key.e, "use": "sig", "kid": key.kid, "alg": "RS256", "n": key.n});
    json!({ "keys": [jwk] }).to_string()
}

/// The same document as Knox's sources before 2.1.0 write it: `JWKSet.toJSONObject().toString()`,
/// a Java `Map.toString()` that is not JSON (docs/knox.md §8.3, KNOX-2938), in the key order of
/// §8.3.
pub(super) fn jwks_map_string(key: SimKey) -> String {
    let key = keys(key);
    format!("{{keys=[{{kty=RSA, e={}, use=sig, kid={}, alg=RS256, n={}}}]}}", key.e, key.kid, key.n)
}

/// Reads a JWT's claims without checking its signature, as Knox's `new JWTToken(token)` does on
/// the renew and revoke paths (docs/knox.md §3.1, §4.1). The error is nimbus' message, which Knox
/// passes on to the caller.
pub(super) fn unverified_claims(token: &str) -> Result<Map<String, Value>, &'static str> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_signature)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("Invalid serialized unsecured/JWS/JWE object: Missing part delimiters");
    };
    let decode = |part: &str| {
        let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
        serde_json::from_slice::<Map<String, Value>>(&bytes).ok()
    };
    decode(header).ok_or("Invalid JWS header: Invalid JSON object")?;
    decode(payload).ok_or("Payload of JWS object is not a valid JSON object")
}

/// Verifies a JWT's RS256 signature against the simulator's own key, as Knox's JWTProvider
/// verifies tokens its token authority issued, and returns its claims. No claim is checked here:
/// expiry depends on Knox's clock and on the token state, which the caller knows. `None` for
/// anything that is not a JWT signed by this key with RS256.
pub(super) fn verified_claims(key: SimKey, token: &str) -> Option<Map<String, Value>> {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &keys(key).decoding, &validation).ok()?;
    Some(data.claims)
}

//! RSA public keys, read from the forms Knox and its admins hand them out in, and RSA
//! signature checks against them (docs/knox.md §8).
//!
//! A leaf: it knows nothing of the rest of the daemon. Keys come from a PEM certificate, a
//! PEM `PUBLIC KEY` (SubjectPublicKeyInfo) or `RSA PUBLIC KEY` (PKCS#1), the same in DER, a
//! PEM-less Base64 DER certificate (Knox's `endpoint_public_cert`, docs/knox.md §2.2), or a
//! JWKS document (docs/knox.md §8.3). Every reader is bounds-checked and never panics: what
//! is wrong is said with the source's name (a file or a URL), never with the input's bytes.
//!
//! Knox names its signing key by the RFC 7638 SHA-256 thumbprint of the public key
//! (docs/knox.md §8.2); [`RsaKey::thumbprint`] computes it, so a token's `kid` can be
//! matched against a certificate that carries no name.
//!
//! Signatures are checked with `ring` (already in the daemon through rustls): RS256, Knox's
//! default, and the other RSA algorithms `knox.token.sigalg` allows ([`rsa_algorithm`]).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// The largest key file, JWKS or certificate read: real ones are a few KiB.
pub const MAX_KEY_BYTES: usize = 256 * 1024;

/// The most keys one source may hold.
const MAX_KEYS: usize = 64;

/// One RSA public key.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaKey {
    /// The modulus, big-endian, no leading zero bytes.
    n: Vec<u8>,
    /// The public exponent, big-endian, no leading zero bytes.
    e: Vec<u8>,
    /// The `kid` a JWKS gave it, if any.
    pub kid: Option<String>,
    /// The RFC 7638 SHA-256 thumbprint, base64url: how Knox names it (docs/knox.md §8.2).
    pub thumbprint: String,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaKey({} bits, kid {:?}, thumbprint {})", self.bits(), self.kid, self.thumbprint)
    }
}

impl RsaKey {
    /// A key from its modulus and exponent (big-endian; leading zero bytes are dropped).
    pub fn new(n: &[u8], e: &[u8], kid: Option<String>) -> Result<RsaKey, String> {
        let n = strip_zeros(n);
        let e = strip_zeros(e);
        if n.is_empty() || e.is_empty() {
            return Err("the RSA key's modulus or exponent is zero".into());
        }
        if n.len() > 1024 || e.len() > 8 {
            return Err("the RSA key is larger than 8192 bits or its exponent is absurd".into());
        }
        let thumbprint = thumbprint(n, e);
        Ok(RsaKey { n: n.to_vec(), e: e.to_vec(), kid, thumbprint })
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        let lead = self.n.first().map_or(0, |b| 8 - b.leading_zeros() as usize);
        (self.n.len().saturating_sub(1)) * 8 + lead
    }

    /// Whether a token's `kid` names this key: the JWKS entry's `kid`, or the thumbprint.
    pub fn is_named(&self, kid: &str) -> bool {
        self.kid.as_deref() == Some(kid) || self.thumbprint == kid
    }

    /// Whether `signature` is this key's signature of `message` with the JWS algorithm `alg`
    /// (one [`rsa_algorithm`] knows; any other never verifies).
    pub fn verifies(&self, alg: &str, message: &[u8], signature: &[u8]) -> bool {
        let Some(params) = rsa_algorithm(alg) else { return false };
        let key = ring::signature::RsaPublicKeyComponents { n: &self.n, e: &self.e };
        key.verify(params, message, signature).is_ok()
    }
}

/// The RSA signature algorithms Knox may sign with (`knox.token.sigalg`, docs/knox.md §6.1):
/// RS256 (the default), RS384, RS512 and PS256, PS384, PS512, each with a 2048 to 8192-bit key.
pub fn rsa_algorithm(alg: &str) -> Option<&'static ring::signature::RsaParameters> {
    use ring::signature as s;
    Some(match alg {
        "RS256" => &s::RSA_PKCS1_2048_8192_SHA256,
        "RS384" => &s::RSA_PKCS1_2048_8192_SHA384,
        "RS512" => &s::RSA_PKCS1_2048_8192_SHA512,
        "PS256" => &s::RSA_PSS_2048_8192_SHA256,
        "PS384" => &s::RSA_PSS_2048_8192_SHA384,
        "PS512" => &s::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

/// The RFC 7638 SHA-256 thumbprint of an RSA key: base64url of SHA-256 over
/// `{"e":"..","kty":"RSA","n":".."}` (members in that order, no whitespace).
pub fn thumbprint(n: &[u8], e: &[u8]) -> String {
    let json = format!(
        "{{\"e\":\"{}\",\"kty\":\"RSA\",\"n\":\"{}\"}}",
        URL_SAFE_NO_PAD.encode(strip_zeros(e)),
        URL_SAFE_NO_PAD.encode(strip_zeros(n))
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(json.as_bytes()))
}

/// Reads the keys of a key file: PEM (`CERTIFICATE`, `PUBLIC KEY`, `RSA PUBLIC KEY` blocks,
/// several allowed), DER (a certificate or a SubjectPublicKeyInfo), or a JWKS document.
/// `source` names the file in messages.
pub fn from_file_bytes(bytes: &[u8], source: &str) -> Result<Vec<RsaKey>, String> {
    if bytes.len() > MAX_KEY_BYTES {
        return Err(format!("{source}: larger than {MAX_KEY_BYTES} bytes"));
    }
    let text = std::str::from_utf8(bytes).ok();
    match text.map(str::trim_start) {
        Some(t) if t.starts_with('{') => from_jwks(t, source),
        Some(t) if t.contains("-----BEGIN") => from_pem(t, source),
        _ => from_der(bytes).map(|k| vec![k]).map_err(|e| {
            format!("{source}: neither PEM, a JWKS document nor a DER certificate or public key ({e})")
        }),
    }
}

/// Reads every `CERTIFICATE`, `PUBLIC KEY` and `RSA PUBLIC KEY` block of a PEM text; fails on
/// a private key, an unknown block, or a text without any block.
pub fn from_pem(text: &str, source: &str) -> Result<Vec<RsaKey>, String> {
    let mut keys = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + "-----BEGIN ".len()..];
        let label_end =
            after.find("-----").ok_or_else(|| format!("{source}: a PEM BEGIN line is cut off"))?;
        let label = &after[..label_end];
        let body_start = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let end = body_start
            .find(&end_marker)
            .ok_or_else(|| format!("{source}: the PEM block {label:?} has no END line"))?;
        let b64: String = body_start[..end].chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let der = STANDARD
            .decode(b64.as_bytes())
            .map_err(|_| format!("{source}: the PEM block {label:?} is not Base64"))?;
        let key = match label {
            "CERTIFICATE" => from_cert_der(&der),
            "PUBLIC KEY" => from_spki_der(&der),
            "RSA PUBLIC KEY" => from_pkcs1_der(&der, None),
            l if l.contains("PRIVATE KEY") => {
                return Err(format!(
                    "{source}: holds a private key; give the certificate or the public key instead"
                ))
            }
            l => return Err(format!("{source}: a PEM block {l:?} is not a certificate or public key")),
        }
        .map_err(|e| format!("{source}: the PEM block {label:?}: {e}"))?;
        keys.push(key);
        if keys.len() > MAX_KEYS {
            return Err(format!("{source}: more than {MAX_KEYS} keys"));
        }
        rest = &body_start[end + end_marker.len()..];
    }
    if keys.is_empty() {
        return Err(format!("{source}: no PEM certificate or public key in it"));
    }
    Ok(keys)
}

/// Reads Knox's `endpoint_public_cert` (docs/knox.md §2.2): the certificate as Base64 DER
/// without PEM armour, or PEM when the topology sets `knox.token.target.endpoint.cert.pem`.
pub fn from_endpoint_cert(value: &str, source: &str) -> Result<RsaKey, String> {
    if value.contains("-----BEGIN") {
        let keys = from_pem(value, source)?;
        return keys.into_iter().next().ok_or_else(|| format!("{source}: no certificate"));
    }
    let b64: String = value.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = STANDARD
        .decode(b64.as_bytes())
        .map_err(|_| format!("{source}: endpoint_public_cert is not Base64"))?;
    from_cert_der(&der).map_err(|e| format!("{source}: endpoint_public_cert is not a certificate: {e}"))
}

/// A DER certificate, or failing that a DER SubjectPublicKeyInfo.
pub fn from_der(der: &[u8]) -> Result<RsaKey, String> {
    from_cert_der(der).or_else(|cert_err| from_spki_der(der).map_err(|_| cert_err))
}

/// Reads a JWKS document (docs/knox.md §8.3): `{"keys":[{"kty":"RSA","n":..,"e":..,"kid":..}]}`.
/// Keys of other types are skipped; an RSA key with a bad `n` or `e` is an error, as is a
/// document without any RSA key.
pub fn from_jwks(text: &str, source: &str) -> Result<Vec<RsaKey>, String> {
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("{source}: not a JSON document ({e})"))?;
    let entries = doc
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| format!("{source}: a JSON document without a \"keys\" array, so not a JWKS"))?;
    let mut keys = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if entry.get("kty").and_then(serde_json::Value::as_str) != Some("RSA") {
            continue;
        }
        let field = |name: &str| -> Result<Vec<u8>, String> {
            let v = entry.get(name).and_then(serde_json::Value::as_str);
            let v = v.ok_or_else(|| format!("{source}: key {i} has no string \"{name}\""))?;
            URL_SAFE_NO_PAD
                .decode(v.trim_end_matches('='))
                .map_err(|_| format!("{source}: key {i}'s \"{name}\" is not base64url"))
        };
        let kid = entry.get("kid").and_then(serde_json::Value::as_str).map(str::to_owned);
        let key =
            RsaKey::new(&field("n")?, &field("e")?, kid).map_err(|e| format!("{source}: key {i}: {e}"))?;
        keys.push(key);
        if keys.len() > MAX_KEYS {
            return Err(format!("{source}: more than {MAX_KEYS} keys"));
        }
    }
    if keys.is_empty() {
        return Err(format!("{source}: the JWKS holds no RSA key"));
    }
    Ok(keys)
}

// --- DER -------------------------------------------------------------------------------

/// One DER element: its tag and contents.
struct Tlv<'a> {
    tag: u8,
    body: &'a [u8],
}

/// Reads one DER element from the front of `input`, returning it and what follows.
fn tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), String> {
    let (&tag, rest) = input.split_first().ok_or("the DER ends early")?;
    if tag & 0x1f == 0x1f {
        return Err("a DER tag in the long form".into());
    }
    let (&first, mut rest) = rest.split_first().ok_or("the DER ends inside a length")?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return Err("a DER length that is indefinite or too long".into());
        }
        let (bytes, after) = (rest.get(..count).ok_or("the DER ends inside a length")?, &rest[count..]);
        rest = after;
        bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    let body = rest.get(..len).ok_or("a DER element is longer than its input")?;
    Ok((Tlv { tag, body }, &rest[len..]))
}

/// The element at the front of `input` if it has `tag`.
fn expect<'a>(input: &'a [u8], tag: u8, what: &str) -> Result<(Tlv<'a>, &'a [u8]), String> {
    let (t, rest) = tlv(input).map_err(|e| format!("{what}: {e}"))?;
    if t.tag != tag {
        return Err(format!("{what}: expected DER tag 0x{tag:02x}, found 0x{:02x}", t.tag));
    }
    Ok((t, rest))
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;
/// `rsaEncryption`, 1.2.840.113549.1.1.1.
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// The public key of an X.509 certificate (RFC 5280 §4.1).
pub fn from_cert_der(der: &[u8]) -> Result<RsaKey, String> {
    let (cert, _) = expect(der, SEQUENCE, "certificate")?;
    let (tbs, _) = expect(cert.body, SEQUENCE, "tbsCertificate")?;
    let mut rest = tbs.body;
    // [0] EXPLICIT version, optional.
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.1;
    }
    for what in ["serialNumber", "signature", "issuer", "validity", "subject"] {
        rest = tlv(rest).map_err(|e| format!("{what}: {e}"))?.1;
    }
    let (spki, _) = tlv(rest).map_err(|e| format!("subjectPublicKeyInfo: {e}"))?;
    if spki.tag != SEQUENCE {
        return Err("subjectPublicKeyInfo is not a SEQUENCE".into());
    }
    spki_body(spki.body)
}

/// A SubjectPublicKeyInfo (`PUBLIC KEY`) holding an RSA key.
pub fn from_spki_der(der: &[u8]) -> Result<RsaKey, String> {
    let (spki, _) = expect(der, SEQUENCE, "SubjectPublicKeyInfo")?;
    spki_body(spki.body)
}

fn spki_body(body: &[u8]) -> Result<RsaKey, String> {
    let (alg, rest) = expect(body, SEQUENCE, "algorithm")?;
    let (oid, _) = expect(alg.body, OID, "algorithm")?;
    if oid.body != RSA_ENCRYPTION {
        return Err("the public key is not an RSA key (only RS256 is supported)".into());
    }
    let (bits, _) = expect(rest, BIT_STRING, "subjectPublicKey")?;
    match bits.body.split_first() {
        Some((0, key)) => from_pkcs1_der(key, None),
        _ => Err("subjectPublicKey: a BIT STRING with unused bits".into()),
    }
}

/// A PKCS#1 `RSAPublicKey`: `SEQUENCE { n INTEGER, e INTEGER }`.
fn from_pkcs1_der(der: &[u8], kid: Option<String>) -> Result<RsaKey, String> {
    let (seq, _) = expect(der, SEQUENCE, "RSAPublicKey")?;
    let (n, rest) = expect(seq.body, INTEGER, "modulus")?;
    let (e, _) = expect(rest, INTEGER, "publicExponent")?;
    RsaKey::new(n.body, e.body, kid)
}

#[cfg(test)]
mod tests;

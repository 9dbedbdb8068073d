//! [`Jwt`]: a token whose every byte was checked, and the claims token-keeper reads from it.
//!
//! Consumers `source`, `eval` and `curl -H @file` the published token, and systemd parses it
//! in an `EnvironmentFile=`: one quote, newline, CR, backslash or NUL in it would change what
//! those files mean. So a token is accepted only in the JWS compact serialization, exactly
//! three non-empty base64url segments of `[A-Za-z0-9_-]` joined by dots (no padding, no
//! whitespace), at most [`MAX_LEN`] bytes, whose header and claims decode to JSON objects.
//! Such a token can be put between single quotes, after `=`, or after `Bearer ` as it is.
//!
//! There is no option to accept an unsigned token (`alg: none`, an empty signature): Knox
//! always signs, and an unsigned token is either a bug or an attack.
//!
//! The signature is not checked here: `knox::verify` checks it against Knox's key before an
//! acquired token leaves the client (docs/knox.md §8.5).

use base64::Engine as _;
use serde_json::{Map, Value};

use super::is_token_id;
use crate::secret::Secret;
use crate::time::MAX_EPOCH_MS;

/// The largest token accepted, in bytes. Knox's tokens are about 1 KiB (a few KiB with
/// `knox.groups`).
pub const MAX_LEN: usize = 64 * 1024;

/// The longest `sub` claim kept.
const MAX_SUBJECT: usize = 256;

/// A JWT checked byte by byte (see the module docs); only [`Jwt::parse`] makes one. Its
/// `Debug` shows no byte of the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwt {
    secret: Secret,
    claims: Claims,
}

/// The claims token-keeper reads (docs/knox.md §8.1), each one range- or charset-checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// `exp` in epoch seconds, floored if it has a fraction, at most the last second of 9999.
    pub exp: Option<i64>,
    /// `sub`, if it is a short string with nothing to escape.
    pub sub: Option<String>,
    /// `knox.id`, if it is a plausible token id ([`is_token_id`]).
    pub knox_id: Option<String>,
    /// What was clamped or left out, for a warning; never quotes the token.
    pub notes: Vec<String>,
}

/// Why a string is not a usable JWT. The message names the part and the offset, never a
/// byte of the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Longer than [`MAX_LEN`].
    #[error("it is {0} bytes long, more than the {MAX_LEN} allowed")]
    TooLong(usize),
    /// Not three dot-separated segments.
    #[error("it has {0} dot-separated segments, not 3 (header.claims.signature)")]
    Segments(usize),
    /// A segment is empty.
    #[error("its {0} is empty{suffix}", suffix = unsigned_note(.0))]
    Empty(&'static str),
    /// A byte that is not base64url.
    #[error("its {part} has byte 0x{byte:02x} at offset {offset}, which is not base64url (A-Z a-z 0-9 - _)")]
    Byte {
        /// `header`, `claims` or `signature`.
        part: &'static str,
        /// The byte.
        byte: u8,
        /// Its offset in the token.
        offset: usize,
    },
    /// The header or claims do not decode to a JSON object.
    #[error("its {0} is not a base64url-encoded JSON object")]
    NotJson(&'static str),
    /// A claim is unusable.
    #[error("{0}")]
    Claim(String),
}

fn unsigned_note(part: &str) -> &'static str {
    if part == "signature" {
        " (an unsigned token, which is never accepted)"
    } else {
        ""
    }
}

impl Jwt {
    /// Checks `s` as the module docs say and reads its claims. This is the only way to make
    /// a [`Jwt`], and it has no option to accept an unsigned token (an empty signature).
    pub fn parse(s: &str) -> Result<Jwt, JwtError> {
        if s.len() > MAX_LEN {
            return Err(JwtError::TooLong(s.len()));
        }
        let segments: Vec<&str> = s.split('.').collect();
        let [header, claims, signature] = segments[..] else {
            return Err(JwtError::Segments(segments.len()));
        };
        const PARTS: [&str; 3] = ["header", "claims", "signature"];
        for (part, segment) in PARTS.into_iter().zip([header, claims, signature]) {
            if segment.is_empty() {
                return Err(JwtError::Empty(part));
            }
        }
        // Three segments, so at most two dots: `part` stays within PARTS.
        let mut part = 0;
        for (offset, byte) in s.bytes().enumerate() {
            if byte == b'.' {
                part += 1;
            } else if !(byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_') {
                let part = PARTS.get(part).copied().unwrap_or("signature");
                return Err(JwtError::Byte { part, byte, offset });
            }
        }
        decode_object(header, "header")?;
        let claims = read_claims(&decode_object(claims, "claims")?)?;
        Ok(Jwt { secret: Secret::new(s), claims })
    }

    /// The token, for the HTTP client and the outputs.
    pub fn expose(&self) -> &str {
        self.secret.expose()
    }

    /// The token as a [`Secret`].
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// The checked claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }
}

fn decode_object(segment: &str, part: &'static str) -> Result<Map<String, Value>, JwtError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtError::NotJson(part))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::NotJson(part)),
    }
}

fn read_claims(map: &Map<String, Value>) -> Result<Claims, JwtError> {
    let mut claims = Claims::default();
    claims.exp = match map.get("exp") {
        None | Some(Value::Null) => None,
        Some(v) => Some(read_exp(v, &mut claims.notes)?),
    };
    claims.sub = match map.get("sub") {
        Some(Value::String(s)) if s.len() <= MAX_SUBJECT && crate::text::is_plain(s) => Some(s.clone()),
        None | Some(Value::Null) => None,
        Some(_) => {
            claims.notes.push(format!(
                "the JWT's sub is not a string of at most {MAX_SUBJECT} bytes without control characters: ignored"
            ));
            None
        }
    };
    claims.knox_id = match map.get("knox.id") {
        Some(Value::String(s)) if is_token_id(s) => Some(s.clone()),
        None | Some(Value::Null) => None,
        Some(_) => {
            claims.notes.push(
                "the JWT's knox.id is not a plausible token id ([A-Za-z0-9._-], at most 128): ignored".into(),
            );
            None
        }
    };
    Ok(claims)
}

/// `exp` (a NumericDate: seconds, maybe with a fraction, RFC 7519 §2), floored, and clamped to
/// the last second of 9999 with a note. Before 1970, or not a number, it is an error.
fn read_exp(v: &Value, notes: &mut Vec<String>) -> Result<i64, JwtError> {
    let Value::Number(n) = v else {
        return Err(JwtError::Claim("the JWT's exp is not a number".into()));
    };
    let secs = match (n.as_i64(), n.as_f64()) {
        (Some(i), _) => i,
        // `as` saturates: a float past i64 becomes i64::MAX, clamped below.
        (None, Some(f)) if f.is_finite() => f.floor() as i64,
        _ => return Err(JwtError::Claim("the JWT's exp is not a number".into())),
    };
    let max = MAX_EPOCH_MS / 1000;
    if secs < 0 {
        return Err(JwtError::Claim("the JWT's exp is before 1970".into()));
    }
    if secs > max {
        notes.push(format!("the JWT's exp {n} is after 9999-12-31: clamped to 9999-12-31T23:59:59Z"));
        return Ok(max);
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(b: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    fn token(claims: &str, signature: &str) -> String {
        format!("{}.{}.{signature}", seg(br#"{"alg":"RS256"}"#), seg(claims.as_bytes()))
    }

    #[test]
    fn accepts_exactly_three_base64url_segments() {
        let ok = token(r#"{"sub":"alice","exp":1700000030,"knox.id":"id-1"}"#, "c2ln-_0");
        let jwt = Jwt::parse(&ok).unwrap();
        assert_eq!(jwt.expose(), ok);
        assert_eq!(jwt.claims().exp, Some(1_700_000_030));
        assert_eq!(jwt.claims().sub.as_deref(), Some("alice"));
        assert_eq!(jwt.claims().knox_id.as_deref(), Some("id-1"));
        assert_eq!(format!("{jwt:?}").matches("c2ln").count(), 0, "Debug shows no token byte");

        let check = |s: &str, want: JwtError| assert_eq!(Jwt::parse(s).unwrap_err(), want, "{s:?}");
        let (h, rest) = ok.split_once('.').unwrap();
        let c = rest.split('.').next().unwrap();
        check(&format!("{ok}'"), JwtError::Byte { part: "signature", byte: b'\'', offset: ok.len() });
        check(&format!("{ok}\n"), JwtError::Byte { part: "signature", byte: b'\n', offset: ok.len() });
        check(&format!("{ok}="), JwtError::Byte { part: "signature", byte: b'=', offset: ok.len() });
        check(&format!(" {ok}"), JwtError::Byte { part: "header", byte: b' ', offset: 0 });
        check(&format!("{h}.{c}."), JwtError::Empty("signature"));
        check(&format!("{h}..c2ln"), JwtError::Empty("claims"));
        check(&format!("{h}.{c}"), JwtError::Segments(2));
        check(&format!("{ok}.x"), JwtError::Segments(4));
        check("", JwtError::Segments(1));
        check(&format!("{h}.{}.c2ln", seg(b"[1]")), JwtError::NotJson("claims"));
        check(&format!("{}.{c}.c2ln", seg(b"nope")), JwtError::NotJson("header"));
        let long = token("{}", &"A".repeat(MAX_LEN));
        assert!(Jwt::parse(&long) == Err(JwtError::TooLong(long.len())), "a token over {MAX_LEN} bytes");
        assert!(JwtError::Empty("signature").to_string().contains("never accepted"));
    }

    #[test]
    fn claims_are_range_and_charset_checked() {
        let claims = |c: &str| Jwt::parse(&token(c, "c2ln")).map(|j| j.claims().clone());
        assert_eq!(claims(r#"{"exp":1700000030.9}"#).unwrap().exp, Some(1_700_000_030));
        let far = claims(r#"{"exp":1e17}"#).unwrap();
        assert_eq!(far.exp, Some(253_402_300_799));
        assert!(far.notes[0].contains("9999"), "{:?}", far.notes);
        assert!(claims(r#"{"exp":-1}"#).is_err());
        assert!(claims(r#"{"exp":"soon"}"#).is_err());
        assert_eq!(claims(r#"{"exp":null}"#).unwrap().exp, None);
        let odd = claims(r#"{"sub":"a\nb","knox.id":"x\u001b[2J"}"#).unwrap();
        assert_eq!((odd.sub, odd.knox_id, odd.notes.len()), (None, None, 2));
        assert_eq!(claims(r#"{"sub":7}"#).unwrap().sub, None);
    }
}

//! Knox's answers to renew, revoke, enable and disable, and what each one means for us.
//!
//! These bodies are concatenated by hand in `TokenResource` without escaping (docs/knox.md
//! §5.1): a message with a quote in it makes invalid JSON, and Knox before 1.6 sends no
//! `code`. So the body is parsed as JSON when it is JSON, and read field by field when it is
//! not; when even that fails, the HTTP status decides.
//!
//! What comes out is safe to use as it is: the message is escaped and shortened for logs and
//! terminals, and the expiry is clamped into 1970 to 9999.

use serde_json::Value;

/// The fields of a renew/revoke/enable/disable answer, as far as they could be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// `renewed`, `revoked` or `setEnabledFlag`: "true" or "false".
    pub ok: Option<bool>,
    /// `expires` (epoch ms, a JSON *string*) on a successful renewal, clamped into
    /// `0..=`[`crate::time::MAX_EPOCH_MS`] (with a warning).
    pub expires: Option<i64>,
    /// `error`, the message: escaped ([`crate::text::escape`]) and at most
    /// [`MAX_MESSAGE`] characters, so it can be logged and printed as it is.
    pub error: Option<String>,
    /// `code` (docs/knox.md §5.2); absent before Knox 1.6.
    pub code: Option<i64>,
}

/// The longest Knox message kept, in characters.
pub const MAX_MESSAGE: usize = 300;

/// Reads `body`, tolerating Knox's unescaped, hand-made JSON.
pub fn parse(body: &str) -> Answer {
    let Raw { ok, expires, error, code } = parse_raw(body);
    Answer {
        ok,
        expires: expires.as_deref().and_then(expiry_ms),
        error: error.map(|e| crate::text::quote(&e, MAX_MESSAGE)),
        code,
    }
}

/// `expires` as epoch ms, clamped into 1970 to 9999; a fraction is floored.
fn expiry_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    // `as` saturates: a float past i64 becomes i64::MAX, clamped below.
    let ms = text.parse::<i64>().ok().or_else(|| {
        let f = text.parse::<f64>().ok().filter(|f| f.is_finite())?;
        Some(f.floor() as i64)
    })?;
    let clamped = crate::time::clamp_epoch_ms(ms);
    if clamped != ms {
        tracing::warn!("Knox's renewal answer has expires {ms}, outside 1970 to 9999: clamped to {clamped}");
    }
    Some(clamped)
}

/// The fields as Knox wrote them.
struct Raw {
    ok: Option<bool>,
    expires: Option<String>,
    error: Option<String>,
    code: Option<i64>,
}

fn parse_raw(body: &str) -> Raw {
    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(body) {
        let text = |k: &str| match map.get(k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            _ => None,
        };
        let ok = ["renewed", "revoked", "setEnabledFlag"]
            .iter()
            .find_map(|k| text(k))
            .map(|v| v.eq_ignore_ascii_case("true"));
        return Raw {
            ok,
            expires: text("expires"),
            error: text("error"),
            code: map.get("code").and_then(Value::as_i64),
        };
    }
    // Not JSON: read the fields the way Knox writes them, `"name": "value"` / `"code": 30`.
    let field = |name: &str| -> Option<String> {
        let key = format!("\"{name}\"");
        let rest = body.get(body.find(&key)?..)?.strip_prefix(&key)?;
        let rest = rest.trim_start().strip_prefix(':')?.trim_start();
        match rest.strip_prefix('"') {
            // The value runs to the quote that ends its line (the message may hold quotes).
            Some(s) => {
                let line_end = s.find('\n').unwrap_or(s.len());
                let line = &s[..line_end];
                let end = line.rfind('"')?;
                Some(line[..end].to_owned())
            }
            None => {
                let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '-')).unwrap_or(rest.len());
                (end > 0).then(|| rest[..end].to_owned())
            }
        }
    };
    let ok = ["renewed", "revoked", "setEnabledFlag"]
        .iter()
        .find_map(|k| field(k))
        .map(|v| v.eq_ignore_ascii_case("true"));
    Raw {
        ok,
        expires: field("expires"),
        error: field("error"),
        code: field("code").and_then(|v| v.parse().ok()),
    }
}

/// What a renewal answer means (docs/knox.md §3.4, §5, §9.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// The server-side expiry moved to this epoch-ms instant (Knox's clock).
    Extended(i64),
    /// Renewing this token further is pointless or refused: replace it by acquiring a new one.
    Reacquire(Reason),
}

/// Why a token has to be re-acquired instead of renewed (the codes: docs/knox.md §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// 200, but the expiry is unchanged: an unmanaged token echoing its own `exp`.
    NotExtended,
    /// 403 code 20: the caller is not in `knox.token.renewer.whitelist`. Renewal is stopped
    /// for the cluster, not just this token.
    NotAuthorized,
    /// 400 code 30 "renewal limit": the token's max lifetime is near.
    RenewalLimit,
    /// 400 code 30 "Unknown token": revoked, evicted, or issued by another HA node.
    UnknownToken,
    /// 400 code 90: the server-side expiry has passed.
    Expired,
    /// 400 code 40: Knox could not parse what we sent; a bug on our side.
    InvalidToken,
    /// Anything else Knox refused (decided by the HTTP status).
    Refused,
}

impl Reason {
    /// The Knox error code behind it (or "200" for a renewal that did not extend), for the
    /// `renewals_total` metric's `code` label.
    pub fn code(self) -> &'static str {
        match self {
            Reason::NotExtended => "200",
            Reason::NotAuthorized => "20",
            Reason::RenewalLimit | Reason::UnknownToken => "30",
            Reason::Expired => "90",
            Reason::InvalidToken => "40",
            Reason::Refused => "other",
        }
    }

    /// For log lines.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::NotExtended => "renewal left the expiry unchanged (unmanaged token?)",
            Reason::NotAuthorized => "not authorized to renew (not in knox.token.renewer.whitelist)",
            Reason::RenewalLimit => "the token reached its maximum lifetime",
            Reason::UnknownToken => "Knox no longer knows the token",
            Reason::Expired => "the token expired on the server",
            Reason::InvalidToken => "Knox could not parse the token we sent (please report this as a bug)",
            Reason::Refused => "Knox refused the renewal",
        }
    }
}

/// Maps a renewal answer with HTTP `status` to one decision. `current_ms` is the token's
/// server-side expiry before the call. Network errors, 401 and 5xx never get here: they are
/// errors to retry.
pub fn renewal(status: u16, answer: &Answer, current_ms: i64) -> Renewal {
    if status == 200 && answer.ok != Some(false) {
        // Knox sets the expiry to now + knox.token.exp.renew-interval, however early the call:
        // with an interval shorter than the token's ttl the new expiry is *earlier* than the
        // current one, and that is still a renewal (docs/knox.md §3.2; seen on the real
        // gateway, docs/INTEROP.md).
        // Only an unchanged expiry is the echo of an unmanaged token's own `exp`.
        return match answer.expires {
            Some(ms) if ms != current_ms => Renewal::Extended(ms),
            _ => Renewal::Reacquire(Reason::NotExtended),
        };
    }
    let error = answer.error.as_deref().unwrap_or("");
    let reason = match (answer.code, status) {
        (Some(20), _) => Reason::NotAuthorized,
        (Some(30), _) if error.starts_with("Unknown token") => Reason::UnknownToken,
        (Some(30), _) if error.contains("renewal limit") => Reason::RenewalLimit,
        (Some(90), _) => Reason::Expired,
        (Some(40), _) => Reason::InvalidToken,
        // Knox before 1.6 has no codes (docs/knox.md §5.1): the message, then the status, decide.
        (None, _) if error.starts_with("Unknown token") => Reason::UnknownToken,
        (None, _) if error.contains("renewal limit") => Reason::RenewalLimit,
        (None, 403) => Reason::NotAuthorized,
        _ => Reason::Refused,
    };
    Renewal::Reacquire(reason)
}

/// What a revocation answer means (docs/knox.md §4.1; the codes: §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// Revoked.
    Revoked,
    /// Knox does not know it (code 50): already revoked or evicted. Nothing left to do.
    AlreadyGone,
    /// 403 (code 20): we may not revoke; pre-1.6 Knox lets only whitelisted callers.
    NotAuthorized,
    /// Token management is off (code 10): unmanaged tokens cannot be revoked.
    NotConfigured,
    /// Anything else.
    Refused,
}

/// Maps a revocation answer with HTTP `status` to its meaning.
pub fn revocation(status: u16, answer: &Answer) -> Revocation {
    match (status, answer.code) {
        (200, _) if answer.ok != Some(false) => Revocation::Revoked,
        (_, Some(50)) => Revocation::AlreadyGone,
        (_, Some(10)) => Revocation::NotConfigured,
        (403, _) | (_, Some(20)) => Revocation::NotAuthorized,
        (_, None) if answer.error.as_deref().is_some_and(|e| e.starts_with("Unknown token")) => {
            Revocation::AlreadyGone
        }
        (_, None) if answer.error.as_deref().is_some_and(|e| e.contains("not configured")) => {
            Revocation::NotConfigured
        }
        _ => Revocation::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(ok: Option<bool>, expires: Option<i64>, error: Option<&str>, code: Option<i64>) -> Answer {
        Answer { ok, expires, error: error.map(str::to_owned), code }
    }

    #[test]
    fn parses_knox_bodies_valid_or_not() {
        let check = |body: &str, want: Answer| assert_eq!(parse(body), want, "{body:?}");
        check(
            "{\n  \"renewed\": \"true\",\n  \"expires\": \"1700000000000\"\n}\n",
            a(Some(true), Some(1_700_000_000_000), None, None),
        );
        check(
            "{\n  \"renewed\": \"false\",\n  \"error\": \"Expired tokens must not be renewed.\",\n  \"code\": 90\n}\n",
            a(Some(false), None, Some("Expired tokens must not be renewed."), Some(90)),
        );
        // Unescaped quotes in the message: invalid JSON, still read.
        check(
            "{\n  \"renewed\": \"false\",\n  \"error\": \"Cannot parse \"abc\" as JWT\",\n  \"code\": 40\n}\n",
            a(Some(false), None, Some("Cannot parse \"abc\" as JWT"), Some(40)),
        );
        // Knox before 1.6: no code.
        check(
            "{\n  \"renewed\": \"false\",\n  \"error\": \"Caller (bob) not authorized to renew tokens.\"\n}\n",
            a(Some(false), None, Some("Caller (bob) not authorized to renew tokens."), None),
        );
        check("{\"revoked\": \"true\"}", a(Some(true), None, None, None));
        check("{\"setEnabledFlag\": \"true\", \"isEnabled\": \"false\"}", a(Some(true), None, None, None));
        check("<html><body>Error 405</body></html>", Answer::default());
        check("", Answer::default());
    }

    #[test]
    fn knox_messages_are_safe_to_print() {
        for body in [
            "{\"renewed\":\"false\",\"error\":\"x\\u001b[2J\\n2030-01-01 forged\\u202e\",\"code\":30}",
            "{\n  \"revoked\": \"false\",\n  \"error\": \"Unknown token: \u{1b}[2J \"q\" \u{9b}\",\n  \"code\": 50\n}\n",
        ] {
            let error = parse(body).error.unwrap();
            assert!(!error.chars().any(|c| c.is_control() || c == '\u{202e}'), "{error:?}");
        }
        let long = format!("{{\"error\": \"{}\"}}", "x".repeat(100_000));
        assert!(parse(&long).error.unwrap().len() < 1_000);
    }

    #[test]
    fn absurd_renewal_expiries_are_clamped() {
        let end = Some(253_402_300_799_999);
        assert_eq!(parse(r#"{"renewed":"true","expires":"99999999999999999"}"#).expires, end);
        assert_eq!(
            parse("{\n  \"renewed\": \"true\",\n  \"expires\": \"9999999999999999999999\"\n}").expires,
            end
        );
        assert_eq!(parse(r#"{"renewed":"true","expires":-7}"#).expires, Some(0));
    }

    #[test]
    fn every_renew_outcome_maps_to_one_decision() {
        let now = 1_000;
        let check = |status: u16, answer: Answer, want: Renewal| {
            assert_eq!(renewal(status, &answer, now), want, "{status} {answer:?}");
        };
        use Reason::*;
        check(200, a(Some(true), Some(2_000), None, None), Renewal::Extended(2_000));
        check(200, a(Some(true), Some(1_000), None, None), Renewal::Reacquire(NotExtended));
        // A renew interval shorter than the ttl moves the expiry earlier: still renewed.
        check(200, a(Some(true), Some(600), None, None), Renewal::Extended(600));
        check(200, a(Some(true), None, None, None), Renewal::Reacquire(NotExtended));
        check(
            403,
            a(Some(false), None, Some("Caller (alice) not authorized to renew tokens."), Some(20)),
            Renewal::Reacquire(NotAuthorized),
        );
        check(
            400,
            a(Some(false), None, Some("The renewal limit for the token has been exceeded"), Some(30)),
            Renewal::Reacquire(RenewalLimit),
        );
        check(
            400,
            a(Some(false), None, Some("Unknown token: d161cac1...a3dd"), Some(30)),
            Renewal::Reacquire(UnknownToken),
        );
        check(400, a(Some(false), None, Some("null"), Some(30)), Renewal::Reacquire(Refused));
        check(
            400,
            a(Some(false), None, Some("Expired tokens must not be renewed."), Some(90)),
            Renewal::Reacquire(Expired),
        );
        check(
            400,
            a(Some(false), None, Some("Invalid serialized unsecured/JWS/JWE object"), Some(40)),
            Renewal::Reacquire(InvalidToken),
        );
        // No code (Knox < 1.6), or no parseable body at all: the status decides.
        check(
            403,
            a(Some(false), None, Some("Caller (alice) not authorized to renew tokens."), None),
            Renewal::Reacquire(NotAuthorized),
        );
        check(403, Answer::default(), Renewal::Reacquire(NotAuthorized));
        check(400, a(Some(false), None, Some("Unknown token: x"), None), Renewal::Reacquire(UnknownToken));
        check(400, Answer::default(), Renewal::Reacquire(Refused));
    }

    #[test]
    fn revocation_outcomes() {
        let check =
            |status: u16, answer: Answer, want: Revocation| assert_eq!(revocation(status, &answer), want);
        check(200, a(Some(true), None, None, None), Revocation::Revoked);
        check(400, a(Some(false), None, Some("Unknown token: x"), Some(50)), Revocation::AlreadyGone);
        check(
            403,
            a(Some(false), None, Some("Caller (bob) not authorized to revoke tokens."), Some(20)),
            Revocation::NotAuthorized,
        );
        check(
            400,
            a(Some(false), None, Some("Token revocation support is not configured"), Some(10)),
            Revocation::NotConfigured,
        );
        check(403, Answer::default(), Revocation::NotAuthorized);
        check(
            400,
            a(Some(false), None, Some("Token revocation support is not configured"), None),
            Revocation::NotConfigured,
        );
        check(500, Answer::default(), Revocation::Refused);
    }
}

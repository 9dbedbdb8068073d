//! `KnoxError`: every way a request to Knox can fail, in the classes the keeper acts on.

use std::time::Duration;

use reqwest::StatusCode;

/// A failed Knox request. Messages name the URL and status and never hold a token, password
/// or cookie: bodies are cut to a short snippet with anything JWT-shaped blanked out. What
/// Knox sent is shown escaped ([`crate::text::escape`]), so a message is always one line.
#[derive(Debug, thiserror::Error)]
pub enum KnoxError {
    /// Could not connect, or the connection broke.
    #[error("cannot reach {url}: {detail}")]
    Transport {
        /// The request URL.
        url: String,
        /// The transport error chain.
        detail: String,
    },
    /// The gateway's certificate was not accepted. Not transient: retrying will not help
    /// until `ca_file` (or the gateway's certificate) changes.
    #[error(
        "TLS to {url} failed: {detail} (does ca_file name the CA that signed the gateway's certificate?)"
    )]
    Tls {
        /// The request URL.
        url: String,
        /// The TLS error chain.
        detail: String,
    },
    /// No answer within the configured timeout.
    #[error("no answer from {url} within {}", humantime::format_duration(*after))]
    Timeout {
        /// The request URL.
        url: String,
        /// The timeout.
        after: Duration,
    },
    /// 401: the credentials were rejected (or the LDAP behind Knox is down; docs/knox.md §7.1).
    #[error("{url} rejected the credentials (401 Unauthorized){}", challenge.as_ref().map(|c| format!("; it asks for {c}")).unwrap_or_default())]
    Unauthorized {
        /// The request URL.
        url: String,
        /// The `WWW-Authenticate` scheme, if any.
        challenge: Option<String>,
    },
    /// A redirect, which Knox sends to browser SSO when a cookie is missing or invalid
    /// (docs/knox.md §7.3, §9.6).
    #[error("{url} answered {status} redirecting to {location}: the topology wants browser SSO (a missing or expired cookie?); redirects are not followed")]
    Redirect {
        /// The request URL.
        url: String,
        /// 301/302/303/307/308.
        status: StatusCode,
        /// The `Location` header, without its query string.
        location: String,
    },
    /// The per-user token limit (docs/knox.md §2.4, §9.3).
    #[error("{url} refused: per-user token limit exceeded (403); revoke unused tokens for this user or raise knox.token.limit.per.user")]
    TokenLimitExceeded {
        /// The request URL.
        url: String,
    },
    /// 404 from a `.../knoxtoken/api/v2/token` URL: Knox before 2.1 has only the v1 API
    /// (docs/knox.md §1.2).
    #[error(
        "{url} answered 404 Not Found: this Knox has no v2 API (it is older than 2.1); use {v1} as token_url"
    )]
    NoV2Api {
        /// The request URL.
        url: String,
        /// The same URL with `api/v1`.
        v1: String,
    },
    /// Another 4xx (403 client cert, 400 bad request, 404 wrong path...).
    #[error("{url} answered {status}: {snippet}")]
    Rejected {
        /// The request URL.
        url: String,
        /// The status.
        status: StatusCode,
        /// The start of the body.
        snippet: String,
    },
    /// 5xx or 429: Knox is having a bad minute.
    #[error("{url} answered {status}: {snippet}")]
    Server {
        /// The request URL.
        url: String,
        /// The status.
        status: StatusCode,
        /// The start of the body.
        snippet: String,
    },
    /// A 2xx whose body is not a usable token, or any answer whose body is larger than
    /// [`super::client::MAX_BODY`].
    #[error("{url} answered {status} but {reason}: {snippet}")]
    UnexpectedBody {
        /// The request URL.
        url: String,
        /// The status.
        status: StatusCode,
        /// What is wrong with it.
        reason: String,
        /// The start of the body.
        snippet: String,
    },
    /// The token failed a check of `knox::verify` (docs/knox.md §8): it is never published.
    #[error("{url} answered a token that failed the {check} check: {detail}; it is not published")]
    Unverified {
        /// The request URL.
        url: String,
        /// `signature`, `kid`, `alg`, `iss`, `exp`, `expires_in` or `key`.
        check: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The credential file could not be read.
    #[error("cannot read {what} {path}: {detail}")]
    Credentials {
        /// "password_file" etc.
        what: &'static str,
        /// The file.
        path: String,
        /// The IO error.
        detail: String,
    },
}

impl KnoxError {
    /// Whether trying again soon may help (network, timeouts, 5xx, 429). `once` keeps
    /// retrying only these; the daemon retries everything, with backoff.
    pub fn is_transient(&self) -> bool {
        matches!(self, KnoxError::Transport { .. } | KnoxError::Timeout { .. } | KnoxError::Server { .. })
    }

    /// How soon trying again can help.
    pub fn class(&self) -> crate::scheduler::ErrorClass {
        use crate::scheduler::ErrorClass;
        match self {
            _ if self.is_transient() => ErrorClass::Transient,
            KnoxError::TokenLimitExceeded { .. } => ErrorClass::Quota,
            _ => ErrorClass::Rejected,
        }
    }

    /// The HTTP status, if there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            KnoxError::Unauthorized { .. } => Some(401),
            KnoxError::TokenLimitExceeded { .. } => Some(403),
            KnoxError::NoV2Api { .. } => Some(404),
            KnoxError::Redirect { status, .. }
            | KnoxError::Rejected { status, .. }
            | KnoxError::Server { status, .. }
            | KnoxError::UnexpectedBody { status, .. } => Some(status.as_u16()),
            _ => None,
        }
    }
}

/// The first 160 characters of `body` on one line, with anything that looks like a JWT
/// (`eyJ...`) replaced by `<jwt>`, for error messages. Line breaks and tabs become spaces,
/// and every other control or bidi character is escaped ([`crate::text::escape`]).
pub fn snippet(body: &str) -> String {
    const MAX: usize = 160;
    let mut out = String::new();
    let mut rest = body.trim();
    while let Some(i) = rest.find("eyJ") {
        out.push_str(&rest[..i]);
        out.push_str("<jwt>");
        let after = &rest[i..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=')))
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    let one_line: String =
        out.chars().map(|c| if matches!(c, '\n' | '\r' | '\t') { ' ' } else { c }).collect();
    if one_line.is_empty() {
        return "(empty body)".to_owned();
    }
    crate::text::escape(&crate::text::shorten(&one_line, MAX)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::snippet;

    #[test]
    fn snippet_blanks_jwts_and_truncates() {
        let check = |body: &str, want: &str| assert_eq!(snippet(body), want, "body {body:?}");
        check("", "(empty body)");
        check(
            "{ \"Unable to get token - token limit exceeded.\" }",
            "{ \"Unable to get token - token limit exceeded.\" }",
        );
        check("{\"access_token\":\"eyJhbGc.eyJzdWIi.c2ln\"}", "{\"access_token\":\"<jwt>\"}");
        check("a\nb\tc", "a b c");
        let long = "x".repeat(500);
        assert_eq!(snippet(&long).len(), 163);
    }

    #[test]
    fn snippet_shows_no_control_or_bidi_characters() {
        for body in
            ["a\u{1b}[31mb", "a\u{202e}b", "a\u{9b}31mb", "a\u{7f}b", "a\u{2066}b\u{2069}", "a\nb\r\n"]
        {
            let s = snippet(body);
            assert!(
                !s.chars().any(|c| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')),
                "{body:?} -> {s:?}"
            );
        }
    }
}

//! Doctor's rows that need HTTP, in table order: tls, knox (which API and verbs answer),
//! credentials, managed (`getTssStatus`), renew (only with `--renew-trial`), token-limit
//! (`getUserTokens`), clock, and cleanup (the test token revoked, docs/knox.md §4.1).
//!
//! One token is acquired, and every later row works from that answer; a row that needs a
//! token Knox did not issue is skipped, saying why.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;

use super::network::proxy_var;
use super::{shown, Mark, Row};
use crate::config::{Auth, Cluster, Validation};
use crate::knox::answer::{self, Reason, Renewal, Revocation};
use crate::knox::labels::Purpose;
use crate::knox::{wire, Flavor, KnoxClient, KnoxError, Op, Token};
use crate::secret::shown_path;
use crate::time::human;
use crate::time::{epoch_ms, from_epoch_ms, rfc3339};

/// Knox's default `gateway.knox.token.limit.per.user` (docs/knox.md §6.2). Knox does not expose
/// the configured limit, so the count is compared with the default and says so.
const KNOX_DEFAULT_TOKEN_LIMIT: usize = 10;

/// Warn from this many held tokens: at rotation the keeper holds two for a while (the new one
/// and the superseded one until it is revoked), and the user's other clients need room too.
const TOKEN_LIMIT_WARN: usize = 8;

/// Knox keeps an expired token, and counts it toward the limit, this long before evicting it
/// (`gateway.knox.token.eviction.grace.period`, docs/knox.md §6.2).
const EVICTION_GRACE_MS: i64 = 86_400_000;

/// Clock offsets up to this are ordinary NTP drift and not worth a word.
const CLOCK_WARN: Duration = Duration::from_secs(30);

/// Knox's clock is read from the `Date` header, which has one-second resolution: a smaller
/// offset cannot be told apart from none.
const CLOCK_RESOLUTION: Duration = Duration::from_secs(1);

/// The rows that need HTTP, in table order.
pub(super) struct KnoxRows {
    tls: Row,
    knox: Row,
    credentials: Row,
    verify: Row,
    managed: Row,
    renew: Row,
    limit: Row,
    clock: Row,
    cleanup: Row,
}

impl KnoxRows {
    /// Every row skipped, saying `why`.
    pub(super) fn skipped(why: &str) -> KnoxRows {
        let skip = |name| Row::new(Mark::Skip, name, why);
        KnoxRows {
            tls: skip("tls"),
            knox: skip("knox"),
            credentials: skip("credentials"),
            verify: skip("verify"),
            managed: skip("managed"),
            renew: skip("renew"),
            limit: skip("token-limit"),
            clock: skip("clock"),
            cleanup: skip("cleanup"),
        }
    }

    /// The rows in table order.
    pub(super) fn into_rows(self) -> Vec<Row> {
        vec![
            self.tls,
            self.knox,
            self.credentials,
            self.verify,
            self.managed,
            self.renew,
            self.limit,
            self.clock,
            self.cleanup,
        ]
    }
}

/// Acquires a test token and runs every probe that needs HTTP, in table order.
pub(super) async fn knox_checks(c: &Cluster, renew_trial: bool) -> Vec<Row> {
    let url = shown(&c.token_url);
    let client = match KnoxClient::new(&c.transport) {
        Ok(client) => client,
        Err(e) => {
            let mut rows = KnoxRows::skipped("no HTTP client (see tls)");
            rows.tls = Row::new(Mark::Fail, "tls", format!("{e:#}"));
            return rows.into_rows();
        }
    };
    let acquired = client.acquire_for(c, Purpose::Doctor).await;
    let mut rows = KnoxRows::skipped("needs a token, and Knox issued none (see above)");
    rows.tls = tls_row(c, &acquired);
    let accepted = matches!(acquired, Ok(_) | Err(KnoxError::TokenLimitExceeded { .. }));
    rows.credentials = credentials_row(c, &acquired);
    if let Some(row) = verify_row(&acquired) {
        rows.verify = row;
    }

    // Which API answers, and whether tokens are managed: getTssStatus on v2 (Knox ≥ 2.1), else v1
    // (docs/knox.md §1.2, §4.4).
    let tss = if accepted { Some(tss_probe(c, &client).await) } else { None };
    let token = acquired.as_ref().ok();
    let managed = token.filter(|t| !t.legacy).map(|t| t.managed).or_else(|| tss.as_ref()?.enabled);
    if accepted {
        rows.managed = managed_row(c, token, tss.as_ref());
    }

    let mut flavor = Flavor::default();
    let mut verbs: Vec<String> = Vec::new();
    if let Some(t) = token {
        rows.renew = renew_row(c, &client, t, managed, renew_trial, &mut flavor, &mut verbs).await;
        rows.clock = clock_row(c, t);
    }
    if accepted {
        let limit_hit = matches!(acquired, Err(KnoxError::TokenLimitExceeded { .. }));
        rows.limit = limit_row(c, &client, token, managed, limit_hit).await;
    }
    if let Some(t) = token {
        rows.cleanup = cleanup_row(c, &client, t, managed, &mut flavor, &mut verbs).await;
    }
    rows.knox = knox_row(c, &url, &acquired, tss.as_ref(), &verbs);
    rows.into_rows()
}

fn tls_row(c: &Cluster, acquired: &Result<Token, KnoxError>) -> Row {
    let t = &c.transport;
    if !t.https {
        return Row::new(Mark::Pass, "tls", "n/a (http on loopback)");
    }
    let trust = match &t.ca_file {
        Some(ca) => format!("ca_file {} and the system roots", ca.display()),
        None => "the system roots (no ca_file)".to_owned(),
    };
    let host = c.token_url.host_str().unwrap_or("?");
    let port = c.token_url.port_or_known_default().unwrap_or(443);
    match acquired {
        Err(KnoxError::Tls { detail, .. }) => {
            // The chain ends with the reason ("invalid peer certificate: UnknownIssuer").
            let reason = detail.rsplit("): ").next().unwrap_or(detail);
            Row::new(
                Mark::Fail,
                "tls",
                format!(
                    "the certificate of {host}:{port} does not verify against {trust}: {reason}; does \
                     ca_file name the CA that signed the gateway's certificate?"
                ),
            )
        }
        Err(KnoxError::Credentials { .. }) => {
            Row::new(Mark::Skip, "tls", "no request was sent (the credentials could not be read)")
        }
        Err(KnoxError::Transport { detail, .. }) if looks_like_tls(detail) => {
            let reason = detail.rsplit("): ").next().unwrap_or(detail);
            Row::new(Mark::Fail, "tls", format!("TLS handshake with {host}:{port} failed: {reason}"))
        }
        Err(KnoxError::Transport { .. } | KnoxError::Timeout { .. }) => {
            Row::new(Mark::Skip, "tls", "no HTTP answer (see knox)")
        }
        _ if t.insecure_skip_tls_verify => Row::new(
            Mark::Warn,
            "tls",
            format!(
                "the certificate of {host}:{port} is not verified: insecure_skip_tls_verify is set, so \
                 anyone on the network path can read the credentials"
            ),
        ),
        _ => Row::new(Mark::Pass, "tls", format!("certificate of {host}:{port} verified against {trust}")),
    }
}

fn looks_like_tls(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    d.contains("handshake") || d.contains("tls") || d.contains("alert")
}

/// How the test token was verified (docs/knox.md §8.5), or why it was refused; `None` when
/// Knox issued no token to check.
fn verify_row(acquired: &Result<Token, KnoxError>) -> Option<Row> {
    use crate::knox::Verified;
    Some(match acquired {
        Ok(t) => match t.verified {
            Verified::Unverified => Row::new(
                Mark::Warn,
                "verify",
                "no key to check the token with (JWKS unreadable, no endpoint_public_cert): pin public_cert_file",
            ),
            Verified::Off => Row::new(Mark::Warn, "verify", "verify = \"off\": tokens are not checked"),
            v => Row::new(Mark::Pass, "verify", format!("signature, kid and expiry checked with the {} key", v.as_str())),
        },
        Err(e @ KnoxError::Unverified { .. }) => Row::new(Mark::Fail, "verify", e.to_string()),
        Err(_) => return None,
    })
}

fn credentials_row(c: &Cluster, acquired: &Result<Token, KnoxError>) -> Row {
    let who = describe_auth(&c.auth);
    match acquired {
        Ok(t) => {
            let life = t
                .lifetime(c.lifecycle.consumers_validate)
                .map_or_else(|| "never expires".to_owned(), |l| format!("valid for {}", human(l)));
            Row::new(
                Mark::Pass,
                "credentials",
                format!("{who} accepted: test token {} issued ({life})", t.id()),
            )
        }
        Err(KnoxError::TokenLimitExceeded { .. }) => Row::new(
            Mark::Pass,
            "credentials",
            format!("{who} accepted, but Knox refused a new token (see token-limit)"),
        ),
        // Not `{e}`: it names the file, which `who` already shows only if it exists.
        Err(KnoxError::Credentials { what, detail, .. }) => {
            Row::new(Mark::Fail, "credentials", format!("{who}: cannot read the {what}: {detail}"))
        }
        Err(e @ (KnoxError::Unauthorized { .. } | KnoxError::Redirect { .. })) => {
            Row::new(Mark::Fail, "credentials", format!("{who}: {e}"))
        }
        Err(_) => Row::new(Mark::Skip, "credentials", "Knox did not say (see above)"),
    }
}

/// The method and the secret's file, shown only if it exists (`secret::shown_path`).
fn describe_auth(auth: &Auth) -> String {
    match auth {
        Auth::Basic { user, password_file } => {
            format!("basic user {user} (password_file {})", shown_path(password_file))
        }
        Auth::Cookie { cookie_file, cookie_name } => {
            format!("cookie {cookie_name} (cookie_file {})", shown_path(cookie_file))
        }
        Auth::Bearer { token_file } => format!("bearer (token_file {})", shown_path(token_file)),
    }
}

/// What `getTssStatus` told.
struct Tss {
    /// Whether `v2/token/getTssStatus` answered: `Some(true)` 200, `Some(false)` 404 (no v2
    /// API: Knox before 2.1), `None` neither.
    v2: Option<bool>,
    /// `tokenManagementEnabled`, if an answer had it.
    enabled: Option<bool>,
    /// For the managed row: the backend and TTL, or why there is no answer.
    detail: String,
}

async fn tss_probe(c: &Cluster, client: &KnoxClient) -> Tss {
    let (v2_present, answer) = match tss_get(client, c, true).await {
        Ok((StatusCode::OK, body)) => (Some(true), Ok((StatusCode::OK, body))),
        Ok((StatusCode::NOT_FOUND, _)) => (Some(false), tss_get(client, c, false).await),
        _ => (None, tss_get(client, c, false).await),
    };
    let (enabled, detail) = match answer {
        Ok((StatusCode::OK, body)) => match serde_json::from_str::<serde_json::Value>(&body) {
            Ok(v) => {
                let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
                let enabled = field("tokenManagementEnabled").map(|s| s.eq_ignore_ascii_case("true"));
                let mut parts = vec![format!(
                    "getTssStatus says tokenManagementEnabled={}",
                    field("tokenManagementEnabled").unwrap_or_else(|| "(absent)".into())
                )];
                if let Some(b) = field("actualTssBackend") {
                    parts.push(format!("backend {b}"));
                }
                if let Some(s) = field("maximumLifetimeSeconds").and_then(|s| s.parse::<i64>().ok()) {
                    parts.push(match s {
                        s if s < 0 => "knox.token.ttl unlimited".to_owned(),
                        s => format!("knox.token.ttl {}", human(Duration::from_secs(s.unsigned_abs()))),
                    });
                }
                (enabled, parts.join(", "))
            }
            Err(_) => (None, "getTssStatus answered 200 with a body that is not JSON".to_owned()),
        },
        Ok((status, _)) => (None, format!("getTssStatus answered {status}")),
        Err(e) => (None, format!("getTssStatus failed: {e}")),
    };
    Tss { v2: v2_present, enabled, detail }
}

fn managed_row(c: &Cluster, token: Option<&Token>, tss: Option<&Tss>) -> Row {
    let tss_enabled = tss.and_then(|t| t.enabled);
    let token_managed = token.filter(|t| !t.legacy).map(|t| t.managed);
    let mut parts = Vec::new();
    if let Some(t) = tss {
        parts.push(t.detail.clone());
    }
    match token {
        Some(t) if t.legacy => parts.push("the token has no managed field (Knox before 1.6)".to_owned()),
        Some(t) => parts.push(format!("the token says managed={}", t.managed)),
        None => {}
    }
    let managed = token_managed.or(tss_enabled);
    let (mut mark, verdict) = match managed {
        Some(true) => (Mark::Pass, "yes: renewal, revocation and the per-user token limit apply"),
        Some(false) => {
            (Mark::Pass, "no: tokens cannot be renewed or revoked, and no per-user token limit applies")
        }
        None => (Mark::Pass, "unknown"),
    };
    if let (Some(a), Some(b)) = (tss_enabled, token_managed) {
        if a != b {
            parts.push(
                "they disagree: the topology's KNOXTOKEN service overrides the gateway; the token decides"
                    .to_owned(),
            );
        }
    }
    if managed == Some(false) && c.lifecycle.consumers_validate == Validation::Gateway {
        mark = Mark::Warn;
        parts
            .push("consumers_validate = \"gateway\" wants renewal, so tokens are re-acquired instead".into());
    }
    Row::new(mark, "managed", format!("{verdict} ({})", parts.join("; ")))
}

#[allow(clippy::too_many_arguments)] // One call site; a struct would only rename the arguments.
async fn renew_row(
    c: &Cluster,
    client: &KnoxClient,
    t: &Token,
    managed: Option<bool>,
    renew_trial: bool,
    flavor: &mut Flavor,
    verbs: &mut Vec<String>,
) -> Row {
    if managed == Some(false) {
        return Row::new(
            Mark::Pass,
            "renew",
            "n/a: Knox does not renew unmanaged tokens (it only echoes the JWT's exp)",
        );
    }
    let Some(current) = t.server_expiry_ms() else {
        return Row::new(Mark::Pass, "renew", "n/a: the token never expires, so it is never renewed");
    };
    if !renew_trial {
        return Row::new(Mark::Skip, "renew", "not tried: pass --renew-trial to renew the test token once");
    }
    let note = if c.lifecycle.consumers_validate == Validation::Jwt {
        " (this cluster does not rely on renewal: consumers_validate = \"jwt\")"
    } else {
        ""
    };
    match client.token_op(c, Op::Renew, &t.jwt, flavor).await {
        Ok((status, body)) => {
            let via = verb(Op::Renew, *flavor);
            verbs.push(format!("renew took {via}"));
            let a = answer::parse(&body);
            match answer::renewal(status.as_u16(), &a, current) {
                Renewal::Extended(ms) => Row::new(
                    Mark::Pass,
                    "renew",
                    format!(
                        "{via} renewed the test token: server-side expiry {} → {}{}",
                        rfc3339(from_epoch_ms(current)),
                        rfc3339(from_epoch_ms(ms)),
                        if ms < current {
                            " (earlier: Knox renews to now + knox.token.exp.renew-interval, which is \
                             shorter than this topology's knox.token.ttl)"
                        } else {
                            ""
                        }
                    ),
                ),
                Renewal::Reacquire(reason) => {
                    let knox = a.error.map(|e| format!(": {e}")).unwrap_or_default();
                    let code = a.code.map(|c| format!(" code {c}")).unwrap_or_default();
                    let what = match reason {
                        Reason::NotAuthorized => {
                            "not authorized to renew (not in knox.token.renewer.whitelist)"
                        }
                        r => r.describe(),
                    };
                    Row::new(
                        Mark::Fail,
                        "renew",
                        format!("{what}: {via} answered {status}{code}{knox}{note}"),
                    )
                }
            }
        }
        Err(e) => Row::new(Mark::Fail, "renew", format!("{e}{note}")),
    }
}

/// Decides on Knox's clock offset, as `KnoxClient` measured it from the `Date` header.
///
/// The keeper measures lifetimes on Knox's clock, so its own schedule does not suffer; but a
/// consumer that checks `exp` with this host's clock disagrees with Knox by the offset. Up to
/// [`CLOCK_WARN`] that is ordinary drift (✔); beyond it, a warning; beyond `min_remaining`
/// (the validity the keeper guarantees at refresh) the offset eats the guarantee (✘).
fn clock_row(c: &Cluster, t: &Token) -> Row {
    let offset = Duration::from_millis(t.clock_offset_ms.unsigned_abs());
    let min_remaining = c.policy.min_remaining;
    if offset <= CLOCK_RESOLUTION {
        return Row::new(
            Mark::Pass,
            "clock",
            "Knox's clock agrees with this host's to within 1s (Date header of the token answer)",
        );
    }
    let side = if t.clock_offset_ms > 0 { "ahead of" } else { "behind" };
    let said = format!("Knox's clock is {} {side} this host's (Date header)", human(offset));
    if offset > min_remaining {
        Row::new(
            Mark::Fail,
            "clock",
            format!(
                "{said}: more than min_remaining ({}), so consumers that check exp with this host's \
                 clock may see a fresh token as expired or an expired one as valid; fix NTP on one side",
                human(min_remaining)
            ),
        )
    } else if offset > CLOCK_WARN {
        Row::new(
            Mark::Warn,
            "clock",
            format!("{said}: within min_remaining ({}) but more than NTP drift", human(min_remaining)),
        )
    } else {
        Row::new(Mark::Pass, "clock", said)
    }
}

/// The token-limit row's name.
const LIMIT: &str = "token-limit";

/// What the token-limit row says when Knox refused the test token for the limit.
const LIMIT_REFUSED: &str = "Knox refused a new token: per-user token limit exceeded (403)";

/// Counts the user's tokens (`getUserTokens`) against Knox's default per-user limit
/// (docs/knox.md §6.2); a failure when Knox refused the test token for the limit.
async fn limit_row(
    c: &Cluster,
    client: &KnoxClient,
    token: Option<&Token>,
    managed: Option<bool>,
    limit_hit: bool,
) -> Row {
    if managed == Some(false) && !limit_hit {
        return Row::new(Mark::Pass, LIMIT, "n/a: Knox counts only managed tokens");
    }
    let Some(user) = crate::knox::owner(c, token) else {
        let mark = if limit_hit { Mark::Fail } else { Mark::Skip };
        return Row::new(
            mark,
            LIMIT,
            if limit_hit { LIMIT_REFUSED } else { "no user name to list tokens for" },
        );
    };
    let list = match user_tokens(c, client, &user, limit_hit).await {
        Ok(list) => list,
        Err(row) => return row,
    };
    let own = token.and_then(|t| t.token_id.as_deref());
    let knox_now = token.map_or_else(|| epoch_ms(SystemTime::now()), |t| t.knox_now_ms);
    let (held, expired) = count_held(&list, own, knox_now);
    let expired_note = if expired > 0 {
        format!(", {expired} of them expired but counted until evicted 24h after expiry")
    } else {
        String::new()
    };
    let besides = if own.is_some() { " besides doctor's test token" } else { "" };
    let counted = format!(
        "{user} holds {held} token{}{besides}{expired_note} (Knox's default limit is {KNOX_DEFAULT_TOKEN_LIMIT})",
        if held == 1 { "" } else { "s" }
    );
    if limit_hit {
        Row::new(
            Mark::Fail,
            LIMIT,
            format!(
                "{LIMIT_REFUSED}; {counted}: revoke unused ones (`token-keeper tokens list`, `tokens revoke ID`)"
            ),
        )
    } else if held >= TOKEN_LIMIT_WARN {
        Row::new(
            Mark::Warn,
            LIMIT,
            format!("{counted}: little headroom; the keeper holds two at each rotation until it revokes the old one"),
        )
    } else {
        Row::new(Mark::Pass, LIMIT, counted)
    }
}

/// `user`'s tokens as `getUserTokens` lists them, or the row that ends the check: n/a when
/// token management is off, skipped before Knox 1.6, else a warning (a failure when the limit
/// was hit) saying why they cannot be counted.
async fn user_tokens(
    c: &Cluster,
    client: &KnoxClient,
    user: &str,
    limit_hit: bool,
) -> Result<wire::UserTokens, Row> {
    let listed = match client.user_tokens(c, user).await {
        Ok((StatusCode::OK, body)) => match serde_json::from_str::<wire::UserTokens>(&body) {
            Ok(list) => Ok(list),
            Err(e) => Err(format!("getUserTokens answered 200 with a body that is not a token list: {e}")),
        },
        Ok((StatusCode::SERVICE_UNAVAILABLE, _)) if !limit_hit => {
            return Err(Row::new(
                Mark::Pass,
                LIMIT,
                "n/a: token management is off (getUserTokens answered 503)",
            ))
        }
        Ok((StatusCode::NOT_FOUND, _)) if !limit_hit => {
            return Err(Row::new(
                Mark::Skip,
                LIMIT,
                "Knox before 1.6 has no getUserTokens, so the tokens cannot be counted",
            ))
        }
        Ok((status, _)) => Err(format!("getUserTokens?userName={user} answered {status}")),
        Err(e) => Err(e.to_string()),
    };
    listed.map_err(|why| {
        if limit_hit {
            Row::new(Mark::Fail, LIMIT, format!("{LIMIT_REFUSED}; {why}"))
        } else {
            Row::new(Mark::Warn, LIMIT, format!("cannot count {user}'s tokens: {why}"))
        }
    })
}

/// How many of `list`'s tokens besides `own` Knox counts toward the limit at `knox_now`
/// (epoch ms on its clock), and how many of those have expired: an expired token counts
/// until it is evicted, [`EVICTION_GRACE_MS`] after its expiry.
fn count_held(list: &wire::UserTokens, own: Option<&str>, knox_now: i64) -> (usize, usize) {
    let mut held = 0usize;
    let mut expired = 0usize;
    for t in list.tokens.iter().filter(|t| Some(t.token_id.as_str()) != own) {
        match t.expiration_long {
            Some(ms) if ms >= 0 && ms.saturating_add(EVICTION_GRACE_MS) <= knox_now => {} // evicted at the next sweep
            Some(ms) if ms >= 0 && ms <= knox_now => {
                held = held.saturating_add(1);
                expired = expired.saturating_add(1);
            }
            _ => held = held.saturating_add(1),
        }
    }
    (held, expired)
}

async fn cleanup_row(
    c: &Cluster,
    client: &KnoxClient,
    t: &Token,
    managed: Option<bool>,
    flavor: &mut Flavor,
    verbs: &mut Vec<String>,
) -> Row {
    const NAME: &str = "cleanup";
    let until = t.server_expiry_ms().map_or_else(
        || "it never expires".to_owned(),
        |ms| format!("it expires at {}", rfc3339(from_epoch_ms(ms))),
    );
    if managed == Some(false) {
        return Row::new(
            Mark::Pass,
            NAME,
            format!(
                "n/a: unmanaged test token {} cannot be revoked and counts toward no limit; {until}",
                t.id()
            ),
        );
    }
    // Knox before 1.6 revokes only by the full JWT (docs/knox.md §4.1).
    let body = t.revocation_body();
    match client.token_op(c, Op::Revoke, &body, flavor).await {
        Ok((status, text)) => {
            let via = verb(Op::Revoke, *flavor);
            verbs.push(format!("revoke took {via}"));
            let a = answer::parse(&text);
            let knox = a.error.clone().map(|e| format!(" ({e})")).unwrap_or_default();
            match answer::revocation(status.as_u16(), &a) {
                Revocation::Revoked => {
                    Row::new(Mark::Pass, NAME, format!("{via} revoked doctor's test token {}", t.id()))
                }
                Revocation::AlreadyGone => {
                    Row::new(Mark::Pass, NAME, format!("Knox no longer knows the test token {}{knox}", t.id()))
                }
                Revocation::NotConfigured => Row::new(
                    Mark::Pass,
                    NAME,
                    format!("n/a: token management is off, so the test token {} counts toward no limit", t.id()),
                ),
                Revocation::NotAuthorized if t.legacy => Row::new(
                    Mark::Warn,
                    NAME,
                    format!(
                        "Knox before 1.6 lets only whitelisted callers revoke: {via} answered {status}{knox}; \
                         the test token stays until {until}"
                    ),
                ),
                Revocation::NotAuthorized | Revocation::Refused => Row::new(
                    Mark::Fail,
                    NAME,
                    format!(
                        "Knox refused to revoke doctor's test token {}: {via} answered {status}{knox}; it counts \
                         toward the user's limit until {until}, and the keeper's revocation of superseded \
                         tokens will be refused the same way",
                        t.id()
                    ),
                ),
            }
        }
        Err(e) => Row::new(Mark::Fail, NAME, format!("revoking doctor's test token {} failed: {e}", t.id())),
    }
}

fn knox_row(
    c: &Cluster,
    url: &str,
    acquired: &Result<Token, KnoxError>,
    tss: Option<&Tss>,
    verbs: &[String],
) -> Row {
    const NAME: &str = "knox";
    let mut notes = Vec::new();
    match tss.and_then(|t| t.v2) {
        Some(true) => notes.push("v2 API present (Knox 2.1 or later)".to_owned()),
        Some(false) => notes.push("no v2 API (Knox before 2.1)".to_owned()),
        None => {}
    }
    if let Ok(t) = acquired {
        if t.legacy {
            notes.push("the answer has no token_id or managed field (Knox before 1.6)".to_owned());
        }
    }
    notes.extend(verbs.iter().cloned());
    let notes = if notes.is_empty() { String::new() } else { format!(": {}", notes.join(", ")) };
    match acquired {
        Ok(_) => Row::new(Mark::Pass, NAME, format!("KNOXTOKEN at {url} issued a token{notes}")),
        Err(KnoxError::TokenLimitExceeded { .. }) => Row::new(
            Mark::Pass,
            NAME,
            format!("KNOXTOKEN at {url} answered (403 token limit exceeded){notes}"),
        ),
        Err(e @ KnoxError::NoV2Api { .. }) => Row::new(Mark::Fail, NAME, e.to_string()),
        Err(e @ KnoxError::Rejected { status: StatusCode::NOT_FOUND, .. }) => Row::new(
            Mark::Fail,
            NAME,
            format!(
                "{e}: no KNOXTOKEN service at this path; check the gateway path and topology in token_url"
            ),
        ),
        Err(KnoxError::Transport { detail, .. }) if c.transport.https && looks_like_tls(detail) => {
            Row::new(Mark::Skip, NAME, "TLS failed (see tls)")
        }
        Err(
            e @ (KnoxError::Rejected { .. }
            | KnoxError::Server { .. }
            | KnoxError::UnexpectedBody { .. }
            | KnoxError::Transport { .. }
            | KnoxError::Timeout { .. }),
        ) => {
            let via = match (e, proxy_var(&c.token_url)) {
                (KnoxError::Transport { .. } | KnoxError::Timeout { .. }, Some(v)) => {
                    format!(" (through the proxy in ${v})")
                }
                _ => String::new(),
            };
            Row::new(Mark::Fail, NAME, format!("{e}{via}"))
        }
        Err(KnoxError::Tls { .. }) => Row::new(Mark::Skip, NAME, "TLS failed (see tls)"),
        Err(_) => Row::new(Mark::Skip, NAME, "the credentials were not accepted (see credentials)"),
    }
}

/// The method and path an operation took with `flavor`, for the table.
fn verb(op: Op, flavor: Flavor) -> String {
    let path = match op {
        Op::Renew => "renew",
        Op::Revoke => "revoke",
        Op::Enable => "enable",
        Op::Disable => "disable",
    };
    let (method, api) = match (op, flavor) {
        (Op::Enable | Op::Disable, Flavor::V2) => ("PUT", "v2"),
        (Op::Enable | Op::Disable, _) => ("PUT", "v1"),
        (_, Flavor::V1Post) => ("POST", "v1"),
        (Op::Renew, Flavor::V2) => ("PUT", "v2"),
        (Op::Renew, Flavor::V1Put) => ("PUT", "v1"),
        (Op::Revoke, Flavor::V2) => ("DELETE", "v2"),
        (Op::Revoke, Flavor::V1Put) => ("DELETE", "v1"),
    };
    format!("{method} {api}/token/{path}")
}

/// `GET .../token/getTssStatus` (docs/knox.md §4.4) with the cluster's credentials: Knox's status
/// and body, or the failure as text.
async fn tss_get(client: &KnoxClient, c: &Cluster, v2: bool) -> Result<(StatusCode, String), String> {
    client.tss_status(c, v2).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_per_flavor() {
        let check = |op: Op, f: Flavor, want: &str| assert_eq!(verb(op, f), want);
        check(Op::Renew, Flavor::V2, "PUT v2/token/renew");
        check(Op::Revoke, Flavor::V2, "DELETE v2/token/revoke");
        check(Op::Revoke, Flavor::V1Put, "DELETE v1/token/revoke");
        check(Op::Renew, Flavor::V1Post, "POST v1/token/renew");
    }
    #[test]
    fn held_tokens_count_until_evicted() {
        const DAY: i64 = EVICTION_GRACE_MS;
        let now = 10 * DAY;
        let list: wire::UserTokens = serde_json::from_value(serde_json::json!({"tokens": [
            {"tokenId": "own", "expirationLong": now + 1},   // doctor's test token: not counted
            {"tokenId": "live", "expirationLong": now + 1},
            {"tokenId": "never", "expirationLong": -1},
            {"tokenId": "absent"},
            {"tokenId": "now", "expirationLong": now},        // expired, counted
            {"tokenId": "grace", "expirationLong": now - DAY + 1}, // expired, counted
            {"tokenId": "evicted", "expirationLong": now - DAY},   // evicted at the next sweep
        ]}))
        .unwrap();
        // (own token, held, expired)
        for (own, want) in [(Some("own"), (5, 2)), (None, (6, 2)), (Some("live"), (5, 2))] {
            assert_eq!(count_held(&list, own, now), want, "{own:?}");
        }
    }
}

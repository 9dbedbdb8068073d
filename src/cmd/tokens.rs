//! `token-keeper tokens list|revoke|enable|disable`: Knox's token management API (docs/knox.md
//! §4) from the command line, with a cluster's configured URL and credentials.
//!
//! Knox's error codes (§5) become exit codes and one-line messages, so scripts can tell "already
//! disabled" from "not allowed" without parsing Knox's hand-made JSON.
//!
//! Whatever Knox sends reaches the terminal escaped ([`crate::text`]): a token id or a
//! message with a newline or an ESC in it shows as one inert line, and `--json` output
//! escapes the characters `serde_json` leaves raw. Times are clamped as they are read
//! (`knox::wire`), and every body is capped (`knox::client::MAX_BODY`).

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use reqwest::StatusCode;

use crate::config::{self, Cluster, Env};
use crate::knox::answer::{self, Answer};
use crate::knox::labels::is_mine;
use crate::knox::{wire, Flavor, Jwt, KnoxClient, Op};
use crate::output;
use crate::secret::Secret;
use crate::text;
use crate::time::{from_epoch_ms, rfc3339};

mod mine;

/// What to do with the token API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Action {
    /// `getUserTokens?userName=<user>`.
    List {
        /// Print Knox's JSON instead of a table.
        json: bool,
        /// Only this installation's tokens (`knox::labels::is_mine`).
        mine: bool,
        /// Whose tokens (default: the cluster's user).
        user: Option<String>,
    },
    /// Revoke a token by id.
    Revoke(String),
    /// Revoke every token of this installation (`mine`).
    RevokeMine,
    /// Enable a disabled token.
    Enable(String),
    /// Disable a token.
    Disable(String),
}

/// Exit codes of `tokens` (besides 0 ok, 1 runtime failure, 2 usage or config error).
pub(super) mod exit {
    /// Knox does not know the token (code 50).
    pub(crate) const UNKNOWN_TOKEN: u8 = 3;
    /// Not authorized (code 20, or 403).
    pub(crate) const NOT_AUTHORIZED: u8 = 4;
    /// Already in the requested state (codes 60, 70).
    pub(crate) const ALREADY: u8 = 5;
    /// Token management is not configured on the topology (code 10, or 503 for listing).
    pub(crate) const NOT_CONFIGURED: u8 = 6;
    /// Any other refusal (codes 40, 80, 90, or none).
    pub(crate) const REFUSED: u8 = 7;
}

/// Runs `action` against `cluster` (or the default cluster) of the config at `config_path`.
pub(super) async fn run(
    config_path: &Path,
    cluster: Option<&str>,
    action: Action,
) -> anyhow::Result<ExitCode> {
    let config = config::load(config_path, &Env::from_process())?;
    let one = |c: Option<&str>| -> anyhow::Result<(&Cluster, KnoxClient)> {
        let c = config.pick(config_path, c).map_err(anyhow::Error::msg)?;
        Ok((c, KnoxClient::new(&c.transport)?))
    };
    match action {
        Action::List { json, mine, user } => {
            let (c, client) = one(cluster)?;
            let ours = &config.identity.installation_id;
            list(c, &client, Listing { json, mine, ours }, user).await
        }
        Action::RevokeMine => mine::revoke_all(&config, config_path, cluster).await,
        Action::Revoke(id) => {
            let (c, client) = one(cluster)?;
            change(c, &client, Op::Revoke, &id).await
        }
        Action::Enable(id) => {
            let (c, client) = one(cluster)?;
            change(c, &client, Op::Enable, &id).await
        }
        Action::Disable(id) => {
            let (c, client) = one(cluster)?;
            change(c, &client, Op::Disable, &id).await
        }
    }
}

/// Whose tokens to list: `--user`, else the Basic user, else the published token's subject.
pub(super) fn owner(cluster: &Cluster, user: Option<String>) -> anyhow::Result<String> {
    if let Some(u) = user {
        return Ok(u);
    }
    if let Some(user) = crate::knox::owner(cluster, None) {
        return Ok(user);
    }
    let published = output::read_published(cluster)?;
    let subject = published.and_then(|p| Jwt::parse(p.jwt.expose()).ok()?.claims().sub.clone());
    subject.with_context(|| {
        format!("cluster {:?} authenticates without a user name and has no published token to take it from: pass --user", cluster.name)
    })
}

/// How `tokens list` prints.
struct Listing<'a> {
    /// Knox's JSON instead of a table.
    json: bool,
    /// Only the tokens of the installation `ours`.
    mine: bool,
    /// This installation's id.
    ours: &'a str,
}

async fn list(
    cluster: &Cluster,
    client: &KnoxClient,
    how: Listing<'_>,
    user: Option<String>,
) -> anyhow::Result<ExitCode> {
    let user = owner(cluster, user)?;
    // --mine filters here, not with Knox's md_ filter: 1.6 ignores that filter, and a token
    // labelled only by its comment (issued by 1.6 before an upgrade) would be left out.
    let (parsed, body) = match user_tokens(cluster, client, &user).await? {
        Ok(listed) => listed,
        Err((code, message)) => return Ok(refusal(code, &message)),
    };
    let mine: Vec<bool> = parsed.tokens.iter().map(|t| is_mine(t.metadata.as_ref(), how.ours)).collect();
    let mut out = std::io::stdout().lock();
    if how.json {
        // Knox's own JSON, checked above to be a token list, on one line; with --mine, the
        // others are left out of its `tokens`.
        let mut value: serde_json::Value = serde_json::from_str(&body)?;
        if how.mine {
            if let Some(tokens) = value.get_mut("tokens").and_then(|t| t.as_array_mut()) {
                let mut keep = mine.iter();
                tokens.retain(|_| keep.next().copied().unwrap_or(false));
            }
        }
        writeln!(out, "{}", text::escape_json(&value.to_string()))?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{:<38} {:<22} {:<22} {:<22} {:<8} {:<5} LAST USED",
        "TOKEN ID", "ISSUED", "EXPIRES", "MAX LIFETIME", "ENABLED", "MINE"
    )?;
    for (t, &ours) in parsed.tokens.iter().zip(&mine) {
        if ours || !how.mine {
            writeln!(out, "{}", token_row(t, ours))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Knox's list of `user`'s tokens, parsed, with its body; or the exit code and message of a
/// refusal (503: no token management, 403: not allowed, any other non-success).
pub(super) async fn user_tokens(
    cluster: &Cluster,
    client: &KnoxClient,
    user: &str,
) -> anyhow::Result<Result<(wire::UserTokens, String), (u8, String)>> {
    let (status, body) = client.user_tokens(cluster, user).await?;
    if status == StatusCode::SERVICE_UNAVAILABLE {
        let why = "token management is not configured on this topology (getUserTokens answered 503)";
        return Ok(Err((exit::NOT_CONFIGURED, why.into())));
    }
    if status == StatusCode::FORBIDDEN {
        return Ok(Err((exit::NOT_AUTHORIZED, format!("not authorized to list the tokens of {user:?}"))));
    }
    if !status.is_success() {
        let why = format!("getUserTokens answered {status}: {}", crate::knox::error::snippet(&body));
        return Ok(Err((exit::REFUSED, why)));
    }
    let parsed: wire::UserTokens = serde_json::from_str(&body)
        .with_context(|| format!("getUserTokens answered {status} with a body that is not a token list"))?;
    Ok(Ok((parsed, body)))
}

/// One line of `tokens list`: every value from Knox escaped and shortened, times in RFC 3339
/// (clamped by `wire` to 1970-9999); `mine` says whether this installation holds it.
fn token_row(t: &wire::UserToken, mine: bool) -> String {
    let time = |ms: Option<i64>, never: &str| match ms {
        Some(ms) if ms >= 0 => rfc3339(from_epoch_ms(ms)),
        Some(_) => never.to_owned(),
        None => "-".to_owned(),
    };
    let shown = |s: &str| text::quote(s, 64);
    let meta = t.metadata.as_ref();
    let enabled = match meta.and_then(|m| m.enabled.as_ref()) {
        Some(serde_json::Value::Bool(b)) => b.to_string(),
        Some(serde_json::Value::String(s)) => shown(s),
        _ => "-".to_owned(),
    };
    let last_used = match meta.and_then(|m| m.last_used_at.as_ref()) {
        Some(serde_json::Value::String(s)) => shown(s),
        Some(serde_json::Value::Number(n)) => {
            n.as_i64().map_or_else(|| shown(&n.to_string()), |ms| rfc3339(from_epoch_ms(ms)))
        }
        _ => "-".to_owned(),
    };
    format!(
        "{:<38} {:<22} {:<22} {:<22} {:<8} {:<5} {last_used}",
        shown(&t.token_id),
        time(t.issue_time_long, "-"),
        time(t.expiration_long, "never"),
        time(t.max_lifetime_long, "unbounded"),
        enabled,
        if mine { "yes" } else { "no" }
    )
}

async fn change(cluster: &Cluster, client: &KnoxClient, op: Op, id: &str) -> anyhow::Result<ExitCode> {
    if id.trim().is_empty() {
        bail!("a token id is required");
    }
    let mut flavor = Flavor::default();
    let (status, body) = client.token_op(cluster, op, &Secret::new(id.trim()), &mut flavor).await?;
    let parsed = answer::parse(&body);
    if status.is_success() && parsed.ok != Some(false) {
        // Knox's answer as it is, line by line, with anything that could drive the terminal
        // escaped.
        let mut out = std::io::stdout().lock();
        for line in body.lines() {
            writeln!(out, "{}", text::escape(line))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (code, message) = explain(op, status.as_u16(), &parsed);
    Ok(refusal(code, &message))
}

/// The exit code and one-line message for a refused `op` (docs/knox.md §4.1, §4.2, §5).
pub(super) fn explain(op: Op, status: u16, a: &Answer) -> (u8, String) {
    let verb = match op {
        Op::Revoke => "revoke",
        Op::Enable => "enable",
        Op::Disable => "disable",
        Op::Renew => "renew",
    };
    let knox = a.error.as_deref().map(|e| format!(" (Knox: {e})")).unwrap_or_default();
    match (a.code, status) {
        (Some(50), _) => (
            exit::UNKNOWN_TOKEN,
            "token is unknown to Knox (already revoked, or evicted after expiry)".into(),
        ),
        (Some(60), _) => (exit::ALREADY, "token is already disabled".into()),
        (Some(70), _) => (exit::ALREADY, "token is already enabled".into()),
        (Some(10), _) => (exit::NOT_CONFIGURED, "token management is not configured on this topology".into()),
        (Some(20), _) | (None, 403) => {
            (exit::NOT_AUTHORIZED, format!("not authorized to {verb} this token{knox}"))
        }
        (Some(80), _) => (exit::REFUSED, "a disabled KnoxSSO cookie cannot be enabled".into()),
        (Some(40), _) => (exit::REFUSED, format!("Knox could not parse the token id{knox}")),
        _ => (exit::REFUSED, format!("Knox refused to {verb} the token: {status}{knox}")),
    }
}

pub(super) fn refusal(code: u8, message: &str) -> ExitCode {
    tracing::error!("{message}");
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knox_codes_become_exit_codes() {
        let a = |code: Option<i64>, error: &str| Answer {
            ok: Some(false),
            expires: None,
            error: Some(error.into()),
            code,
        };
        let check = |op: Op, status: u16, answer: Answer, code: u8, fragment: &str| {
            let (c, m) = explain(op, status, &answer);
            assert_eq!(c, code, "{m}");
            assert!(m.contains(fragment), "{m}");
        };
        check(Op::Disable, 400, a(Some(60), "Token is already disabled"), exit::ALREADY, "already disabled");
        check(Op::Enable, 400, a(Some(70), "Token is already enabled"), exit::ALREADY, "already enabled");
        check(Op::Revoke, 400, a(Some(50), "Unknown token: a...b"), exit::UNKNOWN_TOKEN, "unknown");
        check(
            Op::Revoke,
            403,
            a(Some(20), "Caller (bob) not authorized to revoke tokens."),
            exit::NOT_AUTHORIZED,
            "not authorized to revoke",
        );
        check(Op::Revoke, 403, Answer::default(), exit::NOT_AUTHORIZED, "not authorized to revoke");
        check(
            Op::Disable,
            400,
            a(Some(10), "Unable to disable tokens because token management is not configured"),
            exit::NOT_CONFIGURED,
            "not configured",
        );
        check(
            Op::Enable,
            400,
            a(Some(80), "Disabled KnoxSSO Cookies cannot not be enabled"),
            exit::REFUSED,
            "KnoxSSO",
        );
        check(Op::Revoke, 400, Answer::default(), exit::REFUSED, "400");
    }
}

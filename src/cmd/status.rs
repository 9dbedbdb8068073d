//! `token-keeper status [--json]`: what each cluster's published files hold, read back from
//! disk, so it works whether or not the daemon runs.

use std::io::Write as _;
use std::path::Path;
use std::time::SystemTime;

use crate::config::{self, Cluster, Config, Env};
use crate::output::{self, Freshness};
use crate::text;
use crate::time::{from_epoch_ms, human, rfc3339, signed};

/// `token-keeper status`: one line per cluster; returns whether all are fresh. What the
/// published files hold is shown escaped ([`crate::text::escape`]): they may carry what Knox
/// sent.
pub(super) fn run(config_path: &Path, json: bool) -> anyhow::Result<bool> {
    let config = config::load(config_path, &Env::from_process())?;
    let now = SystemTime::now();
    if json {
        return status_json(&config, now);
    }
    let mut out = std::io::stdout().lock();
    // The id that labels this installation's tokens in Knox (`tokens list --mine`); it is
    // `[A-Za-z0-9._-]` (config::installation), so it is printed as it is.
    let derived = if config.installation_id_derived { " (derived)" } else { "" };
    writeln!(out, "installation_id: {}{derived}", config.identity.installation_id)?;
    writeln!(
        out,
        "{:<20} {:<38} {:<22} {:>8} {:>10}  STATE",
        "CLUSTER", "TOKEN ID", "EXPIRES", "LEFT", "KNOX CLOCK"
    )?;
    let mut all_fresh = true;
    for c in &config.clusters {
        let published = output::read_published(c);
        let eviction = published.as_ref().ok().and_then(|p| p.as_ref()?.last_eviction.clone());
        let (id, expires, left, clock, state) = match published {
            Ok(None) => ("-".into(), "-".into(), "-".into(), "-".into(), "not published".to_owned()),
            Err(e) => ("-".into(), "-".into(), "-".into(), "-".into(), format!("unreadable: {e:#}")),
            Ok(Some(p)) => {
                let id = p.token_id.clone().unwrap_or_else(|| "-".into());
                let freshness = p.freshness(now, c.policy.min_remaining);
                let expires = p.expires_at_ms.map_or_else(|| "never".into(), |at| rfc3339(from_epoch_ms(at)));
                let (left, state) = match freshness {
                    Freshness::NeverExpires => ("-".into(), "fresh"),
                    Freshness::Fresh(left) => (human(left), "fresh"),
                    Freshness::Expiring(left) => (human(left), "expiring"),
                    Freshness::Expired => ("0s".into(), "expired"),
                };
                // A stale token still works, but will not be replaced in time.
                let state = if p.stale && freshness != Freshness::Expired {
                    format!("stale: {}", p.last_error.as_deref().unwrap_or("refreshing keeps failing"))
                } else {
                    state.to_owned()
                };
                (id, expires, left, signed(p.knox_clock_offset_ms), state)
            }
        };
        all_fresh &= state == "fresh";
        let (id, state) = (text::quote(&id, 64), text::escape(&state));
        writeln!(out, "{:<20} {:<38} {:<22} {:>8} {:>10}  {state}", c.name, id, expires, left, clock)?;
        if let Some(e) = eviction {
            // The reason and id are plain words (checked when read back).
            writeln!(
                out,
                "{:<20} last eviction: token {} was {} on the server, noticed {} and replaced",
                "",
                e.token_id,
                e.reason,
                rfc3339(e.at)
            )?;
        }
    }
    Ok(all_fresh)
}

/// `status --json`: an array with one object per cluster: `cluster`, `state` (`fresh`,
/// `expiring`, `stale`, `expired`, `not_published`, `unreadable`), `fresh`, `token_id`,
/// `expires_at`, `expires_at_ms`, `remaining_seconds`, `knox_clock_offset_ms`, `generation`,
/// `verified` (`pinned`, `jwks`, `endpoint_cert`, `unverified`, `off`, or null when the files
/// do not say), `error`, `last_eviction` (`reason`, `at`, `token_id`, or null: the last token
/// the eviction guard found revoked on the server and replaced), and `installation_id` in
/// every row (the array leaves no room for a field of the
/// whole).
fn status_json(config: &Config, now: SystemTime) -> anyhow::Result<bool> {
    use serde_json::Value;
    let mut all_fresh = true;
    let mut rows = Vec::new();
    for c in &config.clusters {
        let mut row = status_row(c, now);
        row["installation_id"] = Value::from(config.identity.installation_id.as_str());
        all_fresh &= row["fresh"] == Value::Bool(true);
        rows.push(row);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", text::escape_json(&Value::Array(rows).to_string()))?;
    Ok(all_fresh)
}

/// One cluster's object of `status --json`, without `installation_id`.
fn status_row(c: &Cluster, now: SystemTime) -> serde_json::Value {
    use serde_json::json;
    match output::read_published(c) {
        Ok(None) => json!({"cluster": c.name, "state": "not_published", "fresh": false}),
        Err(e) => {
            json!({"cluster": c.name, "state": "unreadable", "fresh": false, "error": format!("{e:#}")})
        }
        Ok(Some(p)) => {
            let remaining = p.remaining_ms(now);
            let state = match p.freshness(now, c.policy.min_remaining) {
                Freshness::Expired => "expired",
                _ if p.stale => "stale",
                Freshness::Expiring(_) => "expiring",
                Freshness::Fresh(_) | Freshness::NeverExpires => "fresh",
            };
            json!({
                "cluster": c.name,
                "state": state,
                "fresh": state == "fresh",
                "token_id": p.token_id,
                "expires_at": p.expires_at_ms.map(|ms| rfc3339(from_epoch_ms(ms))),
                "expires_at_ms": p.expires_at_ms.unwrap_or(-1),
                "remaining_seconds": remaining.map(|ms| ms.max(0) / 1000),
                "knox_clock_offset_ms": p.knox_clock_offset_ms,
                "generation": p.generation,
                "verified": p.verified.map(|v| v.as_str()),
                "error": p.last_error,
                "last_eviction": p.last_eviction.as_ref().map(|e| json!({
                    "reason": e.reason,
                    "at": rfc3339(e.at),
                    "token_id": e.token_id,
                })),
            })
        }
    }
}

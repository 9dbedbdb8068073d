//! `token-keeper status [--json]`: what each cluster's published files hold, read back from
//! disk, so it works whether or not the daemon runs.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::config::{self, Config, Env};
use crate::keeper::human;
use crate::output::{self, rfc3339};
use crate::text;

/// `token-keeper status`: one line per cluster; returns whether all are fresh. What the
/// published files hold is shown escaped ([`crate::text::escape`]): they may carry what Knox
/// sent.
pub fn run(config_path: &Path, json: bool) -> anyhow::Result<bool> {
    let config = config::load(config_path, &Env::from_process())?;
    let now = SystemTime::now();
    if json {
        return status_json(&config, now);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<20} {:<38} {:<22} {:>8} {:>10}  STATE",
        "CLUSTER", "TOKEN ID", "EXPIRES", "LEFT", "KNOX CLOCK"
    )?;
    let mut all_fresh = true;
    for c in &config.clusters {
        let (id, expires, left, clock, state) = match output::read_published(c) {
            Ok(None) => ("-".into(), "-".into(), "-".into(), "-".into(), "not published".to_owned()),
            Err(e) => ("-".into(), "-".into(), "-".into(), "-".into(), format!("unreadable: {e:#}")),
            Ok(Some(p)) => {
                let id = p.token_id.clone().unwrap_or_else(|| "-".into());
                let (expires, left, state) = match (p.expires_at_ms, p.remaining_ms(now)) {
                    (Some(at), Some(ms)) => {
                        let state = if ms <= 0 {
                            "expired"
                        } else if u128::from(ms.unsigned_abs()) < c.policy.min_remaining.as_millis() {
                            "expiring"
                        } else {
                            "fresh"
                        };
                        let left = if ms > 0 {
                            human(Duration::from_millis(ms.unsigned_abs()))
                        } else {
                            "0s".into()
                        };
                        (rfc3339(crate::knox::from_epoch_ms(at)), left, state.to_owned())
                    }
                    _ => ("never".into(), "-".into(), "fresh".to_owned()),
                };
                // A stale token still works, but will not be replaced in time.
                let state = match (p.stale, &state[..]) {
                    (true, "fresh" | "expiring") => {
                        format!("stale: {}", p.last_error.as_deref().unwrap_or("refreshing keeps failing"))
                    }
                    _ => state,
                };
                (id, expires, left, signed(p.knox_clock_offset_ms), state)
            }
        };
        all_fresh &= state == "fresh";
        let (id, state) = (text::quote(&id, 64), text::escape(&state));
        writeln!(out, "{:<20} {:<38} {:<22} {:>8} {:>10}  {state}", c.name, id, expires, left, clock)?;
    }
    Ok(all_fresh)
}

/// `status --json`: an array with one object per cluster: `cluster`, `state` (`fresh`,
/// `expiring`, `stale`, `expired`, `not_published`, `unreadable`), `fresh`, `token_id`,
/// `expires_at`, `expires_at_ms`, `remaining_seconds`, `knox_clock_offset_ms`, `generation`,
/// `error`.
fn status_json(config: &Config, now: SystemTime) -> anyhow::Result<bool> {
    use serde_json::{json, Value};
    let mut all_fresh = true;
    let mut rows = Vec::new();
    for c in &config.clusters {
        let row = match output::read_published(c) {
            Ok(None) => json!({"cluster": c.name, "state": "not_published", "fresh": false}),
            Err(e) => {
                json!({"cluster": c.name, "state": "unreadable", "fresh": false, "error": format!("{e:#}")})
            }
            Ok(Some(p)) => {
                let remaining = p.remaining_ms(now);
                let state = match remaining {
                    Some(ms) if ms <= 0 => "expired",
                    _ if p.stale => "stale",
                    Some(ms) if u128::from(ms.unsigned_abs()) < c.policy.min_remaining.as_millis() => {
                        "expiring"
                    }
                    _ => "fresh",
                };
                json!({
                    "cluster": c.name,
                    "state": state,
                    "fresh": state == "fresh",
                    "token_id": p.token_id,
                    "expires_at": p.expires_at_ms.map(|ms| rfc3339(crate::knox::from_epoch_ms(ms))),
                    "expires_at_ms": p.expires_at_ms.unwrap_or(-1),
                    "remaining_seconds": remaining.map(|ms| ms.max(0) / 1000),
                    "knox_clock_offset_ms": p.knox_clock_offset_ms,
                    "generation": p.generation,
                    "error": p.last_error,
                })
            }
        };
        all_fresh &= row["fresh"] == Value::Bool(true);
        rows.push(row);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", text::escape_json(&Value::Array(rows).to_string()))?;
    Ok(all_fresh)
}

/// Knox's clock offset for people: "+2h", "-90s", "0s" (below a second is noise: the
/// `Date` header has one-second resolution).
fn signed(ms: i64) -> String {
    if ms.unsigned_abs() < 1000 {
        return "0s".into();
    }
    let sign = if ms < 0 { '-' } else { '+' };
    // Rounded to the second: the estimate is the middle of a `Date` second.
    format!("{sign}{}", human(Duration::from_secs(ms.unsigned_abs().saturating_add(500) / 1000)))
}

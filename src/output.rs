//! The bytes of each output format, and reading a published token back.
//!
//! Rendering is pure; writing is `sink`'s job. The formats are a contract with consumers'
//! scripts, so they are pinned byte for byte by tests:
//! - `raw`: the JWT, no trailing newline (`open().read()` works as-is);
//! - `header`: `Authorization: Bearer <jwt>\n` (`curl -H @file`);
//! - `env`: `CDE_TOKEN=<jwt>\n` (systemd `EnvironmentFile=`, `docker --env-file`);
//! - `shell`: `export CDE_TOKEN='<jwt>'\n` (`source`);
//! - `json`: one object and a newline (see [`render`]).

use std::time::SystemTime;

use anyhow::{bail, Context as _};
use serde_json::Value;

use crate::config::{Cluster, Format, Validation};
use crate::knox::{from_epoch_ms, wire, Token};
use crate::secret::Secret;

/// What every format is rendered from: the token and its publish metadata.
#[derive(Debug, Clone)]
pub struct Published {
    /// The JWT.
    pub jwt: Secret,
    /// `token_type`.
    pub token_type: String,
    /// `token_id`, if Knox sent one.
    pub token_id: Option<String>,
    /// Effective expiry, epoch ms on Knox's clock; `None` for never.
    pub expires_at_ms: Option<i64>,
    /// The JWT's `exp`, epoch seconds.
    pub jwt_exp: Option<i64>,
    /// Whether Knox manages the token's state.
    pub managed: bool,
    /// `target_url`, if any.
    pub target_url: Option<String>,
    /// The cluster's name.
    pub cluster: String,
    /// Counts up by one per publish of this cluster, across restarts.
    pub generation: u64,
    /// When the token arrived, this host's clock.
    pub acquired_at: SystemTime,
    /// Set while refreshing keeps failing past the refresh point: the token still works, but
    /// will not be replaced in time unless Knox recovers.
    pub stale: bool,
    /// The last refresh error, when stale.
    pub last_error: Option<String>,
    /// Knox's clock minus this host's, in ms, as measured when the token arrived. The expiry
    /// is on Knox's clock; readers add this to their own clock to compare.
    pub knox_clock_offset_ms: i64,
}

impl Published {
    /// The record for publishing `token` as generation `generation` of `cluster`, whose
    /// consumers validate it as `v`.
    pub fn new(cluster: &str, token: &Token, generation: u64, v: Validation) -> Published {
        Published {
            jwt: token.jwt.clone(),
            token_type: token.token_type.clone(),
            token_id: token.token_id.clone(),
            expires_at_ms: token.expiry_ms(v),
            jwt_exp: token.jwt_exp,
            managed: token.managed,
            target_url: token.target_url.clone(),
            cluster: cluster.to_owned(),
            generation,
            acquired_at: token.acquired_at,
            stale: false,
            last_error: None,
            knox_clock_offset_ms: token.clock_offset_ms,
        }
    }

    /// From its arrival to its expiry, both on Knox's clock (zero if that makes no sense), or
    /// `None` if it never expires.
    pub fn lifetime(&self) -> Option<std::time::Duration> {
        let issued_ms = crate::knox::epoch_ms(self.acquired_at).saturating_add(self.knox_clock_offset_ms);
        let ms = self.expires_at_ms?.saturating_sub(issued_ms);
        Some(std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
    }

    /// Time left at `now` (this host's clock, corrected to Knox's by the measured offset), or
    /// `None` if it never expires. Negative when expired.
    pub fn remaining_ms(&self, now: SystemTime) -> Option<i64> {
        self.expires_at_ms.map(|e| e - (crate::knox::epoch_ms(now) + self.knox_clock_offset_ms))
    }
}

/// Renders `p` in `format`; `env_var` names the variable for `env` and `shell`.
///
/// The json object has the keys, in this order: `access_token`, `token_type`, `token_id`,
/// `expires_at` (RFC 3339 UTC, or null for never), `expires_at_ms` (epoch ms, or -1),
/// `jwt_exp` (epoch seconds or null), `managed`, `target_url` (or null), `cluster`,
/// `generation`, `acquired_at` (RFC 3339 UTC), `knox_clock_offset_ms` (Knox's clock minus
/// this host's, as measured at acquisition), and, only while refreshing keeps failing past
/// the refresh point, `stale` (true) and `last_error`. `expires_at` is the expiry that
/// matters to the consumers: the earlier of Knox's `expires_in` and the JWT's `exp`, or the
/// server-side expiry when they validate through the gateway.
pub fn render(format: Format, p: &Published, env_var: &str) -> Vec<u8> {
    let jwt = p.jwt.expose();
    match format {
        Format::Raw => jwt.as_bytes().to_vec(),
        Format::Header => format!("Authorization: Bearer {jwt}\n").into_bytes(),
        Format::Env => format!("{env_var}={jwt}\n").into_bytes(),
        // A JWT is base64url and dots: no quote can occur inside, so single quotes suffice.
        Format::Shell => format!("export {env_var}='{jwt}'\n").into_bytes(),
        Format::Json => {
            let s = |v: &str| Value::String(v.to_owned()).to_string();
            let opt = |v: Option<&str>| v.map_or_else(|| "null".to_owned(), s);
            let expires_at =
                p.expires_at_ms.map(|ms| s(&rfc3339(from_epoch_ms(ms)))).unwrap_or_else(|| "null".into());
            let stale = match (&p.stale, &p.last_error) {
                (true, e) => format!(",\"stale\":true,\"last_error\":{}", opt(e.as_deref())),
                (false, _) => String::new(),
            };
            format!(
                "{{\"access_token\":{},\"token_type\":{},\"token_id\":{},\"expires_at\":{},\
                 \"expires_at_ms\":{},\"jwt_exp\":{},\"managed\":{},\"target_url\":{},\
                 \"cluster\":{},\"generation\":{},\"acquired_at\":{},\"knox_clock_offset_ms\":{}{stale}}}\n",
                s(jwt),
                s(&p.token_type),
                opt(p.token_id.as_deref()),
                expires_at,
                p.expires_at_ms.unwrap_or(-1),
                p.jwt_exp.map_or_else(|| "null".to_owned(), |e| e.to_string()),
                p.managed,
                opt(p.target_url.as_deref()),
                s(&p.cluster),
                p.generation,
                s(&rfc3339(p.acquired_at)),
                p.knox_clock_offset_ms,
            )
            .into_bytes()
        }
    }
}

/// RFC 3339 UTC with second precision, e.g. `2026-11-23T04:21:45Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Reads back what `cluster` last published, or `None` if nothing is published yet.
///
/// The json output holds everything; without one, the first other output is read and the
/// JWT's claims supply the expiry and id.
pub fn read_published(cluster: &Cluster) -> anyhow::Result<Option<Published>> {
    let output = cluster
        .outputs
        .iter()
        .find(|o| o.format == Format::Json)
        .or_else(|| cluster.outputs.first())
        .context("cluster has no outputs")?;
    let bytes = match std::fs::read(&output.path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", output.path.display())),
    };
    let text = String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", output.path.display()))?;
    let parsed = match output.format {
        Format::Json => parse_json(&text, &cluster.name),
        f => parse_wrapped(f, &text, &output.env_var, &cluster.name),
    };
    parsed.map(Some).with_context(|| {
        format!("{} is not a token-keeper {} output", output.path.display(), output.format.as_str())
    })
}

fn parse_json(text: &str, cluster: &str) -> anyhow::Result<Published> {
    let v: Value = serde_json::from_str(text)?;
    let str_of = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let jwt = str_of("access_token").context("no access_token")?;
    let acquired_at = str_of("acquired_at")
        .and_then(|t| humantime::parse_rfc3339(&t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Ok(Published {
        jwt: Secret::new(jwt),
        token_type: str_of("token_type").unwrap_or_else(|| "Bearer".into()),
        token_id: str_of("token_id"),
        expires_at_ms: v.get("expires_at_ms").and_then(Value::as_i64).filter(|&ms| ms >= 0),
        jwt_exp: v.get("jwt_exp").and_then(Value::as_i64),
        managed: v.get("managed").and_then(Value::as_bool).unwrap_or(false),
        target_url: str_of("target_url"),
        cluster: str_of("cluster").unwrap_or_else(|| cluster.to_owned()),
        generation: v.get("generation").and_then(Value::as_u64).unwrap_or(0),
        acquired_at,
        stale: v.get("stale").and_then(Value::as_bool).unwrap_or(false),
        last_error: str_of("last_error"),
        knox_clock_offset_ms: v.get("knox_clock_offset_ms").and_then(Value::as_i64).unwrap_or(0),
    })
}

fn parse_wrapped(format: Format, text: &str, env_var: &str, cluster: &str) -> anyhow::Result<Published> {
    let jwt = match format {
        Format::Raw => Some(text.trim()),
        Format::Header => text.trim_end().strip_prefix("Authorization: Bearer "),
        Format::Env => text.trim_end().strip_prefix(env_var).and_then(|r| r.strip_prefix('=')),
        Format::Shell => text
            .trim_end()
            .strip_prefix("export ")
            .and_then(|r| r.strip_prefix(env_var))
            .and_then(|r| r.strip_prefix("='"))
            .and_then(|r| r.strip_suffix('\'')),
        Format::Json => None,
    };
    let Some(jwt) = jwt.filter(|j| !j.is_empty()) else { bail!("unexpected layout") };
    let claims = jsonwebtoken::dangerous::insecure_decode::<wire::Claims>(jwt)
        .map_err(|e| anyhow::anyhow!("the token is not a JWT ({e})"))?
        .claims;
    let jwt_exp = claims.exp.and_then(|v| v.as_i64());
    Ok(Published {
        jwt: Secret::new(jwt),
        token_type: "Bearer".into(),
        token_id: claims.knox_id,
        expires_at_ms: jwt_exp.map(|s| s * 1000),
        jwt_exp,
        managed: false,
        target_url: None,
        cluster: cluster.to_owned(),
        generation: 0,
        acquired_at: SystemTime::UNIX_EPOCH,
        stale: false,
        last_error: None,
        knox_clock_offset_ms: 0,
    })
}

#[cfg(test)]
mod tests;

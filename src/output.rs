//! The bytes of each output format, and reading a published token back.
//!
//! Rendering is pure; writing is `sink`'s job. The formats are a contract with consumers'
//! scripts, so they are pinned byte for byte by tests:
//! - `raw`: the JWT, no trailing newline (`open().read()` works as-is);
//! - `header`: `Authorization: Bearer <jwt>\n` (`curl -H @file`);
//! - `env`: `CDE_TOKEN=<jwt>\n` (systemd `EnvironmentFile=`, `docker --env-file`);
//! - `shell`: `export CDE_TOKEN='<jwt>'\n` (`source`);
//! - `json`: one object and a newline (see [`render`]).
//!
//! No byte that Knox (or a file read back) supplies can change what a file means: raw,
//! header, env and shell carry only a token that [`Jwt::parse`] accepted (base64url and two
//! dots, so nothing to quote), and every string in the json goes through `serde_json`. The
//! reader applies the same checks to what it reads back, and keeps every number in range.

use std::time::{Duration, SystemTime};

use anyhow::{bail, Context as _};
use serde_json::Value;

use crate::config::{Cluster, Format, Validation};
use crate::knox::client::MAX_CLOCK_SKEW_MS;
use crate::knox::{is_token_id, Jwt, Token, Verified};
use crate::secret::Secret;
use crate::time::{clamp_epoch_ms, epoch_ms, from_epoch_ms, rfc3339};

/// What every format is rendered from: the token and its publish metadata.
#[derive(Debug, Clone)]
pub struct Published {
    /// The JWT: the bytes of a [`Jwt`] (it comes from a [`Token`] or from [`read_published`],
    /// which both check it). [`render`] checks it again and renders nothing else.
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
    /// When it was last renewed (this host's clock), if ever: its current lifetime starts
    /// there, not at `acquired_at`.
    pub renewed_at: Option<SystemTime>,
    /// How the token was verified before it was published (`knox::verify`); `None` when the
    /// file does not say (written before verification existed, or not the json output).
    pub verified: Option<Verified>,
    /// The last time the eviction guard found the cluster's published token revoked,
    /// disabled or evicted on the server, kept across publishes for `status`.
    pub last_eviction: Option<Eviction>,
}

/// A published token found gone on the server, and replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    /// `disabled` or `removed`.
    pub reason: String,
    /// When it was noticed (this host's clock).
    pub at: SystemTime,
    /// The gone token's id, or `-`.
    pub token_id: String,
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
            renewed_at: token.renewed_at,
            verified: Some(token.verified),
            last_eviction: None,
        }
    }

    /// [`Published::new`] for `cluster`, as its consumers validate, carrying `last_eviction`
    /// over from the record it replaces.
    pub fn for_cluster(
        cluster: &Cluster,
        token: &Token,
        generation: u64,
        last_eviction: Option<Eviction>,
    ) -> Published {
        let v = cluster.lifecycle.consumers_validate;
        Published { last_eviction, ..Published::new(&cluster.name, token, generation, v) }
    }

    /// From its arrival (or its last renewal, which set the expiry anew) to its expiry, both
    /// on Knox's clock (zero if that makes no sense), or `None` if it never expires.
    pub fn lifetime(&self) -> Option<std::time::Duration> {
        let since = self.renewed_at.unwrap_or(self.acquired_at);
        let issued_ms = epoch_ms(since).saturating_add(self.knox_clock_offset_ms);
        let ms = self.expires_at_ms?.saturating_sub(issued_ms);
        Some(std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
    }

    /// Time left at `now` (this host's clock, corrected to Knox's by the measured offset), or
    /// `None` if it never expires. Negative when expired.
    pub fn remaining_ms(&self, now: SystemTime) -> Option<i64> {
        let knox_now = epoch_ms(now).saturating_add(self.knox_clock_offset_ms);
        self.expires_at_ms.map(|e| e.saturating_sub(knox_now))
    }

    /// What the token is worth at `now` to a cluster that wants `min_remaining` left: the one
    /// rule behind `status`, `status --json` and `once`'s "kept". (`exec` and a restarting
    /// daemon ask `Policy::margin`/`Policy::keeps` instead, which also count short tokens.)
    pub fn freshness(&self, now: SystemTime, min_remaining: Duration) -> Freshness {
        match self.remaining_ms(now) {
            None => Freshness::NeverExpires,
            Some(ms) if ms <= 0 => Freshness::Expired,
            Some(ms) => {
                let left = Duration::from_millis(ms.unsigned_abs());
                if left < min_remaining {
                    Freshness::Expiring(left)
                } else {
                    Freshness::Fresh(left)
                }
            }
        }
    }
}

/// [`Published::freshness`]: how much a published token has left, against the cluster's
/// `min_remaining`. Staleness (refreshing keeps failing) is the json's own flag, orthogonal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// No expiry at all.
    NeverExpires,
    /// At least `min_remaining` left.
    Fresh(Duration),
    /// Still valid, with less than `min_remaining` left.
    Expiring(Duration),
    /// Zero or less left.
    Expired,
}

impl Freshness {
    /// Whether the token needs no replacing yet.
    pub fn is_fresh(self) -> bool {
        matches!(self, Freshness::NeverExpires | Freshness::Fresh(_))
    }
}

/// Renders `p` in `format`; `env_var` names the variable for `env` and `shell`.
///
/// The json object has the keys, in this order: `access_token`, `token_type`, `token_id`,
/// `expires_at` (RFC 3339 UTC, or null for never), `expires_at_ms` (epoch ms, or -1),
/// `jwt_exp` (epoch seconds or null), `managed`, `target_url` (or null), `cluster`,
/// `generation`, `acquired_at` (RFC 3339 UTC), `knox_clock_offset_ms` (Knox's clock minus
/// this host's, as measured at acquisition), `renewed_at` (RFC 3339 UTC, only once the token
/// has been renewed: its current lifetime starts there), `last_eviction` (`reason`, `at`,
/// `token_id`: only once the eviction guard has replaced a token found gone on the server),
/// and, only while refreshing keeps failing past the refresh point, `stale` (true) and
/// `last_error`. `expires_at` is the expiry that
/// matters to the consumers: the earlier of Knox's `expires_in` and the JWT's `exp`, or the
/// server-side expiry when they validate through the gateway.
///
/// `p.jwt` is checked with [`Jwt::parse`] first. Every way of making a [`Published`] checks
/// it already, so this cannot fail; if it ever did, the output would be empty (and an error
/// logged) rather than carry bytes that could change what the file means.
pub(crate) fn render(format: Format, p: &Published, env_var: &str) -> Vec<u8> {
    match Jwt::parse(p.jwt.expose()) {
        Ok(jwt) => render_checked(format, &jwt, p, env_var),
        Err(e) => {
            tracing::error!(cluster = %p.cluster, "not rendering the {} output: the token is not a usable JWT ({e})", format.as_str());
            Vec::new()
        }
    }
}

fn render_checked(format: Format, jwt: &Jwt, p: &Published, env_var: &str) -> Vec<u8> {
    let jwt = jwt.expose();
    match format {
        Format::Raw => jwt.as_bytes().to_vec(),
        Format::Header => format!("Authorization: Bearer {jwt}\n").into_bytes(),
        Format::Env => format!("{env_var}={jwt}\n").into_bytes(),
        // A checked JWT is base64url and dots: no quote can occur inside.
        Format::Shell => format!("export {env_var}='{jwt}'\n").into_bytes(),
        Format::Json => render_json(jwt, p).into_bytes(),
    }
}

fn render_json(jwt: &str, p: &Published) -> String {
    let s = |v: &str| Value::String(v.to_owned()).to_string();
    let opt = |v: Option<&str>| v.map_or_else(|| "null".to_owned(), s);
    let expires_at =
        p.expires_at_ms.map(|ms| s(&rfc3339(from_epoch_ms(ms)))).unwrap_or_else(|| "null".into());
    let stale = match (&p.stale, &p.last_error) {
        (true, e) => format!(",\"stale\":true,\"last_error\":{}", opt(e.as_deref())),
        (false, _) => String::new(),
    };
    let renewed = p.renewed_at.map_or_else(String::new, |t| format!(",\"renewed_at\":{}", s(&rfc3339(t))));
    let verified = p.verified.map_or_else(String::new, |v| format!(",\"verified\":{}", s(v.as_str())));
    let evicted = p.last_eviction.as_ref().map_or_else(String::new, |e| {
        format!(
            ",\"last_eviction\":{{\"reason\":{},\"at\":{},\"token_id\":{}}}",
            s(&e.reason),
            s(&rfc3339(e.at)),
            s(&e.token_id)
        )
    });
    let json = format!(
        "{{\"access_token\":{},\"token_type\":{},\"token_id\":{},\"expires_at\":{},\
         \"expires_at_ms\":{},\"jwt_exp\":{},\"managed\":{},\"target_url\":{},\
         \"cluster\":{},\"generation\":{},\"acquired_at\":{},\"knox_clock_offset_ms\":{}{renewed}{verified}{evicted}{stale}}}",
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
    );
    format!("{}\n", crate::text::escape_json(&json))
}

/// The largest generation read back: the largest integer every JSON reader holds exactly.
const MAX_GENERATION: u64 = 1 << 53;

/// Reads back what `cluster` last published, or `None` if nothing is published yet.
///
/// The json output holds everything; without one, the first other output is read and the
/// JWT's claims supply the expiry and id. The file is checked as an answer from Knox is: the
/// token with [`Jwt::parse`] (a file that fails is an error, never rendered), the id with
/// [`is_token_id`] (else the JWT's `knox.id`), `token_type` and `target_url` for control
/// characters, and every number is kept in range (times within 1970 to 9999, the clock
/// offset within a year, the generation below 2^53).
pub(crate) fn read_published(cluster: &Cluster) -> anyhow::Result<Option<Published>> {
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
    parse_published(output.format, &text, &output.env_var, &cluster.name).map(Some).with_context(|| {
        format!("{} is not a token-keeper {} output", output.path.display(), output.format.as_str())
    })
}

/// Parses the text of a published file of `format` (the reader behind [`read_published`]),
/// with every check that function lists.
pub(crate) fn parse_published(
    format: Format,
    text: &str,
    env_var: &str,
    cluster: &str,
) -> anyhow::Result<Published> {
    match format {
        Format::Json => parse_json(text, cluster),
        f => parse_wrapped(f, text, env_var, cluster),
    }
}

fn checked_jwt(text: &str) -> anyhow::Result<Jwt> {
    Jwt::parse(text).map_err(|e| anyhow::anyhow!("the token is not a usable JWT: {e}"))
}

/// Epoch ms for an expiry: clamped into 1970 to 9999, and for an unmanaged token never after
/// its JWT's `exp` (the gateway checks that, see `Token::expiry_ms`).
fn bounded_expiry(ms: i64, managed: bool, jwt: &Jwt) -> i64 {
    let ms = clamp_epoch_ms(ms);
    match jwt.claims().exp {
        Some(exp) if !managed => ms.min(exp.saturating_mul(1000)),
        _ => ms,
    }
}

fn parse_json(text: &str, cluster: &str) -> anyhow::Result<Published> {
    let v: Value = serde_json::from_str(text)?;
    let str_of = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let jwt = checked_jwt(&str_of("access_token").context("no access_token")?)?;
    let acquired_at = str_of("acquired_at")
        .and_then(|t| humantime::parse_rfc3339(&t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let managed = v.get("managed").and_then(Value::as_bool).unwrap_or(false);
    let token_id = match str_of("token_id") {
        Some(id) if is_token_id(&id) => Some(id),
        Some(_) => jwt.claims().knox_id.clone(),
        None => None,
    };
    let expires_at_ms = v.get("expires_at_ms").and_then(Value::as_i64).filter(|&ms| ms >= 0);
    Ok(Published {
        jwt: jwt.secret().clone(),
        token_type: str_of("token_type")
            .filter(|t| t.len() <= 32 && crate::text::is_plain(t))
            .unwrap_or_else(|| "Bearer".into()),
        token_id,
        expires_at_ms: expires_at_ms.map(|ms| bounded_expiry(ms, managed, &jwt)),
        jwt_exp: jwt.claims().exp,
        managed,
        target_url: str_of("target_url").filter(|u| crate::text::is_plain(u)),
        cluster: str_of("cluster").unwrap_or_else(|| cluster.to_owned()),
        generation: v.get("generation").and_then(Value::as_u64).unwrap_or(0).min(MAX_GENERATION),
        acquired_at,
        stale: v.get("stale").and_then(Value::as_bool).unwrap_or(false),
        last_error: str_of("last_error").map(|e| crate::text::escape(&e).into_owned()),
        renewed_at: str_of("renewed_at").and_then(|t| humantime::parse_rfc3339(&t).ok()),
        last_eviction: v.get("last_eviction").and_then(eviction),
        knox_clock_offset_ms: v
            .get("knox_clock_offset_ms")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .clamp(-MAX_CLOCK_SKEW_MS, MAX_CLOCK_SKEW_MS),
        verified: str_of("verified").and_then(|v| Verified::from_name(&v)),
    })
}

/// A `last_eviction` object read back: its reason and id only if they are plain words.
fn eviction(v: &Value) -> Option<Eviction> {
    let word = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .filter(|w| w.len() <= 128 && is_token_id(w) || *w == "-")
            .map(str::to_owned)
    };
    Some(Eviction {
        reason: word("reason")?,
        at: v.get("at").and_then(Value::as_str).and_then(|t| humantime::parse_rfc3339(t).ok())?,
        token_id: word("token_id")?,
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
    let jwt = checked_jwt(jwt)?;
    let jwt_exp = jwt.claims().exp;
    Ok(Published {
        jwt: jwt.secret().clone(),
        token_type: "Bearer".into(),
        token_id: jwt.claims().knox_id.clone(),
        expires_at_ms: jwt_exp.map(|s| clamp_epoch_ms(s.saturating_mul(1000))),
        jwt_exp,
        managed: false,
        target_url: None,
        cluster: cluster.to_owned(),
        generation: 0,
        acquired_at: SystemTime::UNIX_EPOCH,
        stale: false,
        last_error: None,
        renewed_at: None,
        last_eviction: None,
        knox_clock_offset_ms: 0,
        verified: None,
    })
}

#[cfg(test)]
mod tests;

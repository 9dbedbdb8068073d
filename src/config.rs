//! The configuration file: `RawConfig` (serde, exactly the TOML) becomes `Config` (validated).
//!
//! Parsing happens in two stages, like ripgrep's `LowArgs` → `HiArgs`: serde rejects unknown
//! keys and wrong types, then `Config::from_raw` checks what serde cannot (names, URLs,
//! ranges, one default cluster, no two outputs on one path) and builds typed values, so no
//! later code sees invalid input. Reading the file ([`load`]) is separate from parsing
//! ([`Config::from_toml`]) so tests can parse strings.
//!
//! Secrets never appear in this file's values: only `*_file` keys that name files holding
//! them. Error messages never quote the offending line, because a secret pasted inline by
//! mistake would be echoed into the journal.

use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use crate::scheduler::Policy;

#[cfg(test)]
mod tests;

/// The variable that names the config file when `-c` is not given.
pub const CONFIG_ENV: &str = "TOKEN_KEEPER_CONFIG";

/// The environment variable consumers read by default (`export CDE_TOKEN=...` in CDE's docs).
pub const DEFAULT_ENV_VAR: &str = "CDE_TOKEN";

/// Knox requests in flight at once, across all clusters: enough to publish 1,000 clusters in
/// well under a second on loopback, few enough not to flood a gateway or run out of file
/// descriptors under the default 1,024 limit.
const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 16;

/// Per-request timeout towards Knox. A gateway that has not answered in 30 s is down for our
/// purposes; the backoff takes over.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A config file that could not be used. Maps to exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{origin}{location}: {message}")]
pub struct ConfigError {
    origin: String,
    location: String,
    message: String,
}

impl ConfigError {
    /// An error about the config from `origin` (its path) that is not a parse error.
    pub fn invalid(origin: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::new(origin, message)
    }

    fn new(origin: &str, message: impl Into<String>) -> ConfigError {
        ConfigError { origin: origin.to_owned(), location: String::new(), message: message.into() }
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this came from, for messages and the reload watcher.
    pub source: Option<PathBuf>,
    /// Knox requests in flight at once across all clusters (default 16).
    pub max_concurrent_requests: usize,
    /// In file order.
    pub clusters: Vec<Arc<Cluster>>,
    /// The `[server]` table: health, readiness and metrics.
    pub server: Server,
}

/// `[server]`: opt-in health, readiness and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Server {
    /// Serve `/healthz`, `/readyz` and `/metrics` here (plain HTTP; keep it on loopback or
    /// behind a network policy).
    pub listen: Option<std::net::SocketAddr>,
    /// Write the metrics in Prometheus text format here after every change, atomically, for
    /// hosts scraped by node_exporter's textfile collector.
    pub metrics_textfile: Option<PathBuf>,
}

/// One Knox topology whose token is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// Unique, `[A-Za-z0-9._-]+`; used in paths and log lines.
    pub name: String,
    /// The KNOXTOKEN acquisition URL (`.../knoxtoken/api/v1/token`).
    pub token_url: Url,
    /// Whether this cluster also publishes `~/.cde/token` by default.
    pub is_default: bool,
    /// Knox's `lifespan` parameter as ISO-8601 (docs/knox.md §2.1), if configured.
    pub lifespan: Option<String>,
    /// How to reach Knox.
    pub transport: Transport,
    /// How to authenticate to Knox.
    pub auth: Auth,
    /// Where the token is published.
    pub outputs: Vec<Output>,
    /// When to refresh.
    pub policy: Policy,
    /// Renewal, revocation and expiry handling (docs/knox.md §3, §4, §9).
    pub lifecycle: Lifecycle,
    /// Who to tell after a new token is published.
    pub on_change: Option<OnChange>,
}

/// `[cluster.on_change]`: tell consumers once the new files are durable. Failures are logged
/// and counted, and never block the next refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnChange {
    /// Send this signal (e.g. `SIGHUP`) to the process whose pid `pid_file` holds. The file
    /// is read every time, so a restarted consumer is found.
    pub signal: Option<(i32, PathBuf)>,
    /// Run this command (argv, no shell).
    pub command: Option<Vec<String>>,
    /// How long the command may run before it is killed.
    pub timeout: Duration,
}

/// How a cluster's tokens live and die beyond the refresh timer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lifecycle {
    /// Who checks the token: decides which expiry counts and whether renewal helps.
    pub consumers_validate: Validation,
    /// A replaced managed token is revoked this long after its successor is published, so
    /// readers that just loaded it can finish; this keeps the user under Knox's per-user token
    /// limit (docs/knox.md §9.3).
    pub revoke_superseded_after: Duration,
    /// Revoke the published tokens at shutdown (off by default: consumers may still use them).
    pub revoke_on_exit: bool,
    /// Every token should stay valid at least this long: the requested `lifespan` covers it
    /// plus `min_remaining`, and a shorter token from Knox is warned about.
    pub min_valid: Option<Duration>,
    /// Remove the raw/header/env/shell outputs once the token in them has expired.
    pub remove_expired: bool,
}

impl Default for Lifecycle {
    fn default() -> Lifecycle {
        Lifecycle {
            consumers_validate: Validation::Jwt,
            revoke_superseded_after: Duration::from_secs(120),
            revoke_on_exit: false,
            min_valid: None,
            remove_expired: false,
        }
    }
}

/// Who validates the published token (`consumers_validate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Validation {
    /// Consumers (e.g. CDE's jobs API) check the JWT's signature and `exp` themselves: renewal
    /// cannot extend a token for them (it never moves `exp`, docs/knox.md §3.2), so tokens are
    /// replaced by re-acquisition before `exp`.
    Jwt,
    /// Consumers send the token through the Knox gateway, which honours the server-side
    /// expiry: a managed token is renewed ahead of it and re-acquired only when renewal is
    /// refused.
    Gateway,
}

impl Validation {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Validation::Jwt => "jwt",
            Validation::Gateway => "gateway",
        }
    }
}

impl Cluster {
    /// Whether `other` would get its token from the same place in the same way, so a held
    /// token can be kept across a reload.
    pub fn same_source(&self, other: &Cluster) -> bool {
        self.token_url == other.token_url
            && self.lifespan == other.lifespan
            && self.transport == other.transport
            && self.auth == other.auth
    }

    /// The `lifespan` to request: the configured one, raised to cover `min_valid` plus
    /// `min_remaining` when that is longer.
    pub fn requested_lifespan(&self) -> Option<String> {
        let configured = self.lifespan.as_deref();
        let Some(min_valid) = self.lifecycle.min_valid else { return configured.map(str::to_owned) };
        let need = min_valid + self.policy.min_remaining;
        match configured.and_then(iso_duration) {
            Some(have) if have >= need => configured.map(str::to_owned),
            _ => Some(iso_seconds(need)),
        }
    }

    /// The `env_var` of the first env or shell output, for `token --format env|shell`.
    pub fn env_var(&self) -> &str {
        self.outputs
            .iter()
            .find(|o| matches!(o.format, Format::Env | Format::Shell))
            .map_or(DEFAULT_ENV_VAR, |o| o.env_var.as_str())
    }
}

/// TLS and timeout settings; clusters with equal `Transport` share one HTTP client and so
/// reuse connections per host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Transport {
    /// Extra CA certificates (PEM) trusted besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Turns certificate verification off. Logged as a warning at every start.
    pub insecure_skip_tls_verify: bool,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Whether the URL is `https://`. A plain-HTTP (loopback) client skips loading the
    /// system's CA roots, which would otherwise cost milliseconds at every start.
    pub https: bool,
}

/// Credentials for the token endpoint (docs/knox.md §7). Files are read at every request, so
/// a rotated password is picked up without a reload.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    /// HTTP Basic against Shiro/LDAP (CDE's `authtkn` topology).
    Basic {
        /// The workload user.
        user: String,
        /// The file holding the password.
        password_file: PathBuf,
    },
    /// A KnoxSSO cookie value (raw) sent as `Cookie: <name>=<value>`.
    Cookie {
        /// The file holding the cookie value.
        cookie_file: PathBuf,
        /// The cookie's name, `hadoop-jwt` by default.
        cookie_name: String,
    },
    /// `Authorization: Bearer <value>` (JWTProvider topologies, CDP access keys).
    Bearer {
        /// The file holding the bearer value.
        token_file: PathBuf,
    },
}

impl Auth {
    fn method(&self) -> &'static str {
        match self {
            Auth::Basic { .. } => "basic",
            Auth::Cookie { .. } => "cookie",
            Auth::Bearer { .. } => "bearer",
        }
    }
}

/// One published file.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Absolute path, `~` expanded.
    pub path: PathBuf,
    /// What the file holds.
    pub format: Format,
    /// Applied exactly, whatever the umask.
    pub mode: u32,
    /// Variable name for `env` and `shell`.
    pub env_var: String,
}

/// The byte layout of an output file (rendered by `output::render`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The JWT, no trailing newline.
    Raw,
    /// `Authorization: Bearer <jwt>\n`.
    Header,
    /// `CDE_TOKEN=<jwt>\n`.
    Env,
    /// `export CDE_TOKEN='<jwt>'\n`.
    Shell,
    /// One JSON object with the token and its metadata.
    Json,
}

impl Format {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Header => "header",
            Format::Env => "env",
            Format::Shell => "shell",
            Format::Json => "json",
        }
    }
}

/// What the environment contributes to resolving a config: `~` expansion.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `$HOME`, if set.
    pub home: Option<PathBuf>,
    /// `$CREDENTIALS_DIRECTORY`, set by systemd for `LoadCredential=`.
    pub credentials_dir: Option<PathBuf>,
}

impl Env {
    /// The process environment.
    pub fn from_process() -> Env {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        Env { home: var("HOME"), credentials_dir: var("CREDENTIALS_DIRECTORY") }
    }
}

/// Finds the config file: `-c`, else `$TOKEN_KEEPER_CONFIG` (both handled by clap and passed
/// in as `explicit`), else `$XDG_CONFIG_HOME/token-keeper/config.toml` (or
/// `~/.config/token-keeper/config.toml`) if it exists, else `/etc/token-keeper/config.toml`.
pub fn resolve_path(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_owned();
    }
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(user) = xdg.map(|d| d.join("token-keeper/config.toml")) {
        if user.exists() {
            return user;
        }
    }
    PathBuf::from("/etc/token-keeper/config.toml")
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path, env: &Env) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(&origin, format!("cannot read config: {e}")))?;
    let mut config = Config::from_toml(&text, &origin, env)?;
    config.source = Some(path.to_owned());
    Ok(config)
}

impl Config {
    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str, env: &Env) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(origin, text, &e))?;
        Config::from_raw(raw, origin, env)
    }

    /// Cross-field validation and conversion to typed values.
    fn from_raw(raw: RawConfig, origin: &str, env: &Env) -> Result<Config, ConfigError> {
        let fail = |msg: String| ConfigError::new(origin, msg);
        let max_concurrent_requests = raw.max_concurrent_requests.unwrap_or(DEFAULT_MAX_CONCURRENT_REQUESTS);
        if max_concurrent_requests == 0 {
            return Err(fail("max_concurrent_requests: must be at least 1".into()));
        }
        if raw.clusters.is_empty() {
            return Err(fail("no [[cluster]] is configured".into()));
        }
        let defaults_ctx = "[defaults]";
        let defaults = raw.defaults.resolve(defaults_ctx, &Knobs::builtin(), env).map_err(fail)?;

        let single = raw.clusters.len() == 1;
        let mut names = HashSet::new();
        let mut paths = HashSet::new();
        let mut default_cluster: Option<String> = None;
        let mut clusters = Vec::with_capacity(raw.clusters.len());
        for rc in raw.clusters {
            let ctx = format!("cluster {:?}", rc.name);
            validate_name(&rc.name).map_err(|m| fail(format!("{ctx}: name: {m}")))?;
            if !names.insert(rc.name.clone()) {
                return Err(fail(format!("{ctx}: name: used by two clusters")));
            }
            let is_default = rc.default.unwrap_or(false);
            if is_default {
                if let Some(other) = default_cluster.replace(rc.name.clone()) {
                    return Err(fail(format!("{ctx}: default: cluster {other:?} is already the default")));
                }
            }
            let cluster = rc.resolve(&ctx, &defaults, env, is_default || single).map_err(fail)?;
            for out in &cluster.outputs {
                if !paths.insert(out.path.clone()) {
                    return Err(fail(format!(
                        "{ctx}: output {}: path is published twice",
                        out.path.display()
                    )));
                }
            }
            clusters.push(Arc::new(cluster));
        }
        let server = match raw.server {
            None => Server::default(),
            Some(rs) => Server {
                listen: rs
                    .listen
                    .map(|l| {
                        l.parse().map_err(|e| {
                            fail(format!(
                                "[server]: listen: {l:?} is not an address like \"127.0.0.1:9464\": {e}"
                            ))
                        })
                    })
                    .transpose()?,
                metrics_textfile: rs
                    .metrics_textfile
                    .map(|p| expand_path("[server]", "metrics_textfile", &p, env).map_err(fail))
                    .transpose()?,
            },
        };
        // The default cluster also owns ~/.cde/token; with several clusters and none marked,
        // nobody does, which is fine: scripts then name their cluster's file.
        Ok(Config { source: None, max_concurrent_requests, clusters, server })
    }

    /// The cluster named `name`, or the default one (the one marked, or the only one).
    pub fn cluster(&self, name: Option<&str>) -> Option<&Arc<Cluster>> {
        match name {
            Some(n) => self.clusters.iter().find(|c| c.name == n),
            None if self.clusters.len() == 1 => self.clusters.first(),
            None => self.clusters.iter().find(|c| c.is_default),
        }
    }
}

/// The resolved config as TOML, for `check-config`. There are no secret values to redact
/// (only `*_file` paths), but the secrets' files are named so an operator can check them.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        if let Some(src) = &self.source {
            let _ = writeln!(s, "# resolved from {}", src.display());
        }
        let _ = writeln!(s, "max_concurrent_requests = {}", self.max_concurrent_requests);
        if self.server != Server::default() {
            let _ = writeln!(s, "\n[server]");
            if let Some(l) = self.server.listen {
                let _ = writeln!(s, "listen = \"{l}\"");
            }
            if let Some(p) = &self.server.metrics_textfile {
                let _ = writeln!(s, "metrics_textfile = {:?}", p.display().to_string());
            }
        }
        for c in &self.clusters {
            let _ = writeln!(s, "\n[[cluster]]");
            let _ = writeln!(s, "name = {:?}", c.name);
            let _ = writeln!(s, "token_url = {:?}", c.token_url.as_str());
            let _ = writeln!(s, "default = {}", c.is_default);
            if let Some(l) = &c.lifespan {
                let _ = writeln!(s, "lifespan = {l:?}");
            }
            if let Some(ca) = &c.transport.ca_file {
                let _ = writeln!(s, "ca_file = {:?}", ca.display().to_string());
            }
            let _ = writeln!(s, "insecure_skip_tls_verify = {}", c.transport.insecure_skip_tls_verify);
            let _ =
                writeln!(s, "timeout = {:?}", humantime::format_duration(c.transport.timeout).to_string());
            let p = &c.policy;
            let _ = writeln!(s, "refresh_fraction = {}", p.refresh_fraction);
            let _ =
                writeln!(s, "min_remaining = {:?}", humantime::format_duration(p.min_remaining).to_string());
            let _ = writeln!(s, "jitter = {}", p.jitter);
            let l = &c.lifecycle;
            let _ = writeln!(s, "consumers_validate = {:?}", l.consumers_validate.as_str());
            let _ = writeln!(
                s,
                "revoke_superseded_after = {:?}",
                humantime::format_duration(l.revoke_superseded_after).to_string()
            );
            let _ = writeln!(s, "revoke_on_exit = {}", l.revoke_on_exit);
            if let Some(v) = l.min_valid {
                let _ = writeln!(s, "min_valid = {:?}", humantime::format_duration(v).to_string());
            }
            let _ = writeln!(s, "remove_expired = {}", l.remove_expired);
            let _ = writeln!(s, "[cluster.auth]\nmethod = {:?}", c.auth.method());
            match &c.auth {
                Auth::Basic { user, password_file } => {
                    let _ = writeln!(s, "user = {user:?}");
                    let _ = writeln!(
                        s,
                        "password_file = {:?}  # contents redacted",
                        password_file.display().to_string()
                    );
                }
                Auth::Cookie { cookie_file, cookie_name } => {
                    let _ = writeln!(
                        s,
                        "cookie_file = {:?}  # contents redacted",
                        cookie_file.display().to_string()
                    );
                    let _ = writeln!(s, "cookie_name = {cookie_name:?}");
                }
                Auth::Bearer { token_file } => {
                    let _ = writeln!(
                        s,
                        "token_file = {:?}  # contents redacted",
                        token_file.display().to_string()
                    );
                }
            }
            if let Some(oc) = &c.on_change {
                let _ = writeln!(s, "[cluster.on_change]");
                if let Some((sig, pid_file)) = &oc.signal {
                    let _ = writeln!(s, "signal = \"{}\"", signal_name(*sig));
                    let _ = writeln!(s, "pid_file = {:?}", pid_file.display().to_string());
                }
                if let Some(argv) = &oc.command {
                    let quoted: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
                    let _ = writeln!(s, "command = [{}]", quoted.join(", "));
                }
                let _ = writeln!(s, "timeout = {:?}", humantime::format_duration(oc.timeout).to_string());
            }
            for o in &c.outputs {
                let _ = writeln!(s, "[[cluster.output]]");
                let _ = writeln!(s, "path = {:?}", o.path.display().to_string());
                let _ = writeln!(s, "format = {:?}", o.format.as_str());
                let _ = writeln!(s, "mode = \"{:04o}\"", o.mode);
                if matches!(o.format, Format::Env | Format::Shell) {
                    let _ = writeln!(s, "env_var = {:?}", o.env_var);
                }
            }
        }
        f.write_str(&s)
    }
}

/// Turns a serde/TOML error into "file:line:col: message" without quoting the line.
fn toml_error(origin: &str, text: &str, err: &toml::de::Error) -> ConfigError {
    let location = match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(":{line}:{col}")
        }
        None => String::new(),
    };
    let mut message = err.message().trim_end_matches('.').to_owned();
    for key in ["password", "cookie", "token", "secret"] {
        if message.starts_with(&format!("unknown field `{key}`")) {
            let hint = if key == "secret" { "password" } else { key };
            message = format!(
                "unknown field `{key}`: secrets are never written inline; put the value in a \
                 file readable only by token-keeper and name it with `{hint}_file`"
            );
        }
    }
    ConfigError { origin: origin.to_owned(), location, message }
}

fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} must match [A-Za-z0-9._-]+ (it is used in file names)"))
    }
}

/// Parses a humantime duration ("90s", "200ms", "1h 30m").
fn parse_duration(ctx: &str, key: &str, value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value)
        .map_err(|e| format!("{ctx}: {key}: {value:?} is not a duration like \"90s\" or \"5m\": {e}"))
}

/// Knox parses `lifespan` with `java.time.Duration.parse` (docs/knox.md §2.1). ISO-8601 text
/// is sent as written; a humantime string ("1h") is converted, so both spellings work.
fn parse_lifespan(ctx: &str, value: &str) -> Result<String, String> {
    let text = value.trim();
    let d = if text.starts_with(['P', 'p']) {
        iso_duration(text)
            .ok_or_else(|| format!("{ctx}: lifespan: {value:?} is not an ISO-8601 duration like \"PT1H\""))?
    } else {
        parse_duration(ctx, "lifespan", value)?
    };
    if d.is_zero() {
        return Err(format!("{ctx}: lifespan: must be longer than zero"));
    }
    Ok(if text.starts_with(['P', 'p']) { text.to_ascii_uppercase() } else { iso_seconds(d) })
}

/// `PT<seconds>S`, with milliseconds when there are any.
fn iso_seconds(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("PT{}S", ms / 1000)
    } else {
        format!("PT{}.{:03}S", ms / 1000, ms % 1000)
    }
}

/// Parses the ISO-8601 durations `java.time.Duration.parse` accepts (`PnDTnHnMn.nS`, no
/// signs): days, then after `T` hours, minutes and (fractional) seconds.
pub(crate) fn iso_duration(text: &str) -> Option<Duration> {
    let upper = text.to_ascii_uppercase();
    let body = upper.strip_prefix('P')?;
    let (date, time) = match body.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return None,
        None => (body, None),
    };
    let mut total = 0f64;
    let mut any = false;
    let mut take = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut rest = part;
        let mut allowed = units;
        while !rest.is_empty() {
            let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
            let unit = rest[end..].chars().next()?;
            let pos = allowed.iter().position(|&(u, _)| u == unit)?;
            let n: f64 = rest[..end].parse().ok()?;
            if rest[..end].contains('.') && unit != 'S' {
                return None;
            }
            total += n * allowed[pos].1;
            any = true;
            allowed = &allowed[pos + 1..];
            rest = &rest[end + 1..];
        }
        Some(())
    };
    take(date, &[('D', 86_400.0)])?;
    if let Some(t) = time {
        take(t, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    (any && total.is_finite()).then(|| Duration::from_secs_f64(total))
}

fn expand_path(ctx: &str, key: &str, value: &str, env: &Env) -> Result<PathBuf, String> {
    let path = if value == "~" || value.starts_with("~/") {
        let home = env.home.as_ref().ok_or_else(|| {
            format!("{ctx}: {key}: {value:?} starts with ~ but $HOME is not set; use an absolute path")
        })?;
        home.join(value.trim_start_matches('~').trim_start_matches('/'))
    } else {
        PathBuf::from(value)
    };
    if !path.is_absolute() {
        return Err(format!("{ctx}: {key}: {value:?} must be an absolute path (or start with ~/)"));
    }
    Ok(path)
}

/// `$CREDENTIALS_DIRECTORY/<name>`: a credential systemd passed with `LoadCredential=`.
fn credential_path(ctx: &str, name: &str, env: &Env) -> Result<PathBuf, String> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(format!("{ctx}: password_credential: {name:?} is not a credential name"));
    }
    let dir = env.credentials_dir.as_ref().ok_or_else(|| {
        format!(
            "{ctx}: password_credential: {name:?} needs $CREDENTIALS_DIRECTORY, which systemd sets for units \
             with LoadCredential=; outside systemd use password_file"
        )
    })?;
    Ok(dir.join(name))
}

/// The signals `on_change` may send, by the names `kill -l` uses.
const SIGNALS: [(&str, i32); 9] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("TERM", libc::SIGTERM),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("QUIT", libc::SIGQUIT),
    ("ALRM", libc::SIGALRM),
    ("CONT", libc::SIGCONT),
    ("WINCH", libc::SIGWINCH),
];

/// A signal name, with or without `SIG`.
fn parse_signal(ctx: &str, name: &str) -> Result<i32, String> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS.iter().find(|(n, _)| *n == bare).map(|&(_, s)| s).ok_or_else(|| {
        let names: Vec<&str> = SIGNALS.iter().map(|(n, _)| *n).collect();
        format!("{ctx}: signal: {name:?} is not one of {}", names.join(", "))
    })
}

fn signal_name(signal: i32) -> &'static str {
    SIGNALS.iter().find(|&&(_, s)| s == signal).map_or("?", |(n, _)| n)
}

impl RawOnChange {
    fn resolve(&self, ctx: &str, env: &Env) -> Result<OnChange, String> {
        let signal = match (&self.signal, &self.pid_file) {
            (Some(sig), Some(pf)) => Some((parse_signal(ctx, sig)?, expand_path(ctx, "pid_file", pf, env)?)),
            (Some(_), None) => return Err(format!("{ctx}: pid_file: required with signal")),
            (None, Some(_)) => return Err(format!("{ctx}: signal: required with pid_file")),
            (None, None) => None,
        };
        let command = match &self.command {
            Some(argv) if argv.is_empty() || argv[0].is_empty() => {
                return Err(format!(
                    "{ctx}: command: must name a program, e.g. [\"systemctl\", \"reload\", \"spark-edge\"]"
                ))
            }
            other => other.clone(),
        };
        if signal.is_none() && command.is_none() {
            return Err(format!("{ctx}: give signal and pid_file, or command, or both"));
        }
        let timeout = match &self.timeout {
            Some(t) => parse_duration(ctx, "timeout", t)?,
            None => Duration::from_secs(10),
        };
        Ok(OnChange { signal, command, timeout })
    }
}

fn parse_url(ctx: &str, value: &str) -> Result<Url, String> {
    let url = Url::parse(value).map_err(|e| format!("{ctx}: token_url: {value:?} is not a URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(format!(
                "{ctx}: token_url: {value:?} uses http:// with a non-loopback host; credentials and \
                 tokens would cross the network in clear text, so https:// is required"
            ))
        }
        other => return Err(format!("{ctx}: token_url: scheme {other:?} is not http(s)")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{ctx}: token_url: credentials in the URL are not allowed; use [cluster.auth]"));
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

fn parse_mode(ctx: &str, value: &str) -> Result<u32, String> {
    let digits = value.trim_start_matches("0o");
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 && !digits.is_empty() => Ok(m),
        _ => Err(format!("{ctx}: mode: {value:?} is not an octal file mode like \"0600\"")),
    }
}

fn validate_env_var(ctx: &str, name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let ok = matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!("{ctx}: env_var: {name:?} is not a valid shell variable name"))
    }
}

// ---------------------------------------------------------------------------------------
// The raw, serde-facing layer. Only these types (and knox::wire) derive Deserialize.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    max_concurrent_requests: Option<usize>,
    server: Option<RawServer>,
    #[serde(default)]
    defaults: RawKnobs,
    #[serde(default, rename = "cluster")]
    clusters: Vec<RawCluster>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    metrics_textfile: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawOnChange {
    signal: Option<String>,
    pid_file: Option<String>,
    command: Option<Vec<String>>,
    timeout: Option<String>,
}

/// The keys `[defaults]` accepts: every per-cluster key except `name`, `token_url`, `auth`,
/// `output` and `default` (which marks one cluster and so cannot be a default).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawKnobs {
    refresh_fraction: Option<f64>,
    min_remaining: Option<String>,
    jitter: Option<f64>,
    lifespan: Option<String>,
    ca_file: Option<String>,
    insecure_skip_tls_verify: Option<bool>,
    timeout: Option<String>,
    consumers_validate: Option<Validation>,
    revoke_superseded_after: Option<String>,
    revoke_on_exit: Option<bool>,
    min_valid: Option<String>,
    remove_expired: Option<bool>,
    on_change: Option<RawOnChange>,
}

/// The per-cluster keys repeat `RawKnobs`'s on purpose: serde's `flatten` would share them,
/// but it disables `deny_unknown_fields`, and rejecting unknown keys matters more.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: String,
    token_url: String,
    default: Option<bool>,
    refresh_fraction: Option<f64>,
    min_remaining: Option<String>,
    jitter: Option<f64>,
    lifespan: Option<String>,
    ca_file: Option<String>,
    insecure_skip_tls_verify: Option<bool>,
    timeout: Option<String>,
    consumers_validate: Option<Validation>,
    revoke_superseded_after: Option<String>,
    revoke_on_exit: Option<bool>,
    min_valid: Option<String>,
    remove_expired: Option<bool>,
    on_change: Option<RawOnChange>,
    auth: RawAuth,
    #[serde(default)]
    output: Vec<RawOutput>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    method: RawMethod,
    user: Option<String>,
    password_file: Option<String>,
    cookie_file: Option<String>,
    cookie_name: Option<String>,
    token_file: Option<String>,
    password_credential: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawMethod {
    Basic,
    Cookie,
    Bearer,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    path: String,
    format: Option<Format>,
    mode: Option<String>,
    env_var: Option<String>,
}

/// The per-cluster knobs after merging cluster over `[defaults]` over built-in values.
#[derive(Clone)]
struct Knobs {
    policy: Policy,
    lifespan: Option<String>,
    transport: Transport,
    lifecycle: Lifecycle,
    on_change: Option<OnChange>,
}

impl Knobs {
    fn builtin() -> Knobs {
        Knobs {
            policy: Policy::default(),
            lifespan: None,
            transport: Transport {
                ca_file: None,
                insecure_skip_tls_verify: false,
                timeout: DEFAULT_TIMEOUT,
                https: true,
            },
            lifecycle: Lifecycle::default(),
            on_change: None,
        }
    }
}

impl RawKnobs {
    /// Applies these keys over `base`, validating each.
    fn resolve(&self, ctx: &str, base: &Knobs, env: &Env) -> Result<Knobs, String> {
        let mut k = base.clone();
        if let Some(f) = self.refresh_fraction {
            if !(f > 0.0 && f <= 1.0) {
                return Err(format!("{ctx}: refresh_fraction: {f} must be in (0, 1]"));
            }
            k.policy.refresh_fraction = f;
        }
        if let Some(v) = &self.min_remaining {
            k.policy.min_remaining = parse_duration(ctx, "min_remaining", v)?;
            if k.policy.min_remaining.is_zero() {
                return Err(format!("{ctx}: min_remaining: must be longer than zero"));
            }
        }
        if let Some(j) = self.jitter {
            if !(0.0..=0.5).contains(&j) {
                return Err(format!("{ctx}: jitter: {j} must be in [0, 0.5] (a share of the lifetime)"));
            }
            k.policy.jitter = j;
        }
        if let Some(v) = &self.lifespan {
            k.lifespan = Some(parse_lifespan(ctx, v)?);
        }
        if let Some(v) = &self.ca_file {
            k.transport.ca_file = Some(expand_path(ctx, "ca_file", v, env)?);
        }
        if let Some(v) = self.insecure_skip_tls_verify {
            k.transport.insecure_skip_tls_verify = v;
        }
        if let Some(v) = &self.timeout {
            k.transport.timeout = parse_duration(ctx, "timeout", v)?;
            if k.transport.timeout.is_zero() {
                return Err(format!("{ctx}: timeout: must be longer than zero"));
            }
        }
        if let Some(v) = self.consumers_validate {
            k.lifecycle.consumers_validate = v;
        }
        if let Some(v) = &self.revoke_superseded_after {
            k.lifecycle.revoke_superseded_after = parse_duration(ctx, "revoke_superseded_after", v)?;
        }
        if let Some(v) = self.revoke_on_exit {
            k.lifecycle.revoke_on_exit = v;
        }
        if let Some(v) = &self.min_valid {
            let d = parse_duration(ctx, "min_valid", v)?;
            k.lifecycle.min_valid = (!d.is_zero()).then_some(d);
        }
        if let Some(v) = self.remove_expired {
            k.lifecycle.remove_expired = v;
        }
        if let Some(v) = &self.on_change {
            k.on_change = Some(v.resolve(&format!("{ctx}: on_change"), env)?);
        }
        if k.policy.jitter >= k.policy.refresh_fraction {
            return Err(format!(
                "{ctx}: jitter: {} must be smaller than refresh_fraction ({}), or tokens would be \
                 replaced as soon as they arrive",
                k.policy.jitter, k.policy.refresh_fraction
            ));
        }
        Ok(k)
    }
}

impl RawCluster {
    fn resolve(
        self,
        ctx: &str,
        defaults: &Knobs,
        env: &Env,
        owns_default_paths: bool,
    ) -> Result<Cluster, String> {
        let knobs = RawKnobs {
            refresh_fraction: self.refresh_fraction,
            min_remaining: self.min_remaining,
            jitter: self.jitter,
            lifespan: self.lifespan,
            ca_file: self.ca_file,
            insecure_skip_tls_verify: self.insecure_skip_tls_verify,
            timeout: self.timeout,
            consumers_validate: self.consumers_validate,
            revoke_superseded_after: self.revoke_superseded_after,
            revoke_on_exit: self.revoke_on_exit,
            min_valid: self.min_valid,
            remove_expired: self.remove_expired,
            on_change: self.on_change,
        }
        .resolve(ctx, defaults, env)?;
        let token_url = parse_url(ctx, &self.token_url)?;
        let mut transport = knobs.transport;
        transport.https = token_url.scheme() == "https";
        let auth = self.auth.resolve(ctx, env)?;
        let outputs = if self.output.is_empty() {
            default_outputs(ctx, &self.name, owns_default_paths, env)?
        } else {
            self.output.into_iter().map(|o| o.resolve(ctx, env)).collect::<Result<Vec<_>, _>>()?
        };
        Ok(Cluster {
            name: self.name,
            token_url,
            is_default: self.default.unwrap_or(false) || owns_default_paths,
            lifespan: knobs.lifespan,
            transport,
            auth,
            outputs,
            policy: knobs.policy,
            lifecycle: knobs.lifecycle,
            on_change: knobs.on_change,
        })
    }
}

impl RawAuth {
    fn resolve(self, ctx: &str, env: &Env) -> Result<Auth, String> {
        let ctx = format!("{ctx}: auth");
        let method = self.method;
        let name = match method {
            RawMethod::Basic => "basic",
            RawMethod::Cookie => "cookie",
            RawMethod::Bearer => "bearer",
        };
        let stray = |key: &str, present: bool, allowed: &[&str]| -> Result<(), String> {
            if present && !allowed.contains(&key) {
                Err(format!("{ctx}: {key}: not used by method {name:?}"))
            } else {
                Ok(())
            }
        };
        let allowed: &[&str] = match method {
            RawMethod::Basic => &["user", "password_file", "password_credential"],
            RawMethod::Cookie => &["cookie_file", "cookie_name"],
            RawMethod::Bearer => &["token_file"],
        };
        stray("user", self.user.is_some(), allowed)?;
        stray("password_file", self.password_file.is_some(), allowed)?;
        stray("cookie_file", self.cookie_file.is_some(), allowed)?;
        stray("cookie_name", self.cookie_name.is_some(), allowed)?;
        stray("token_file", self.token_file.is_some(), allowed)?;
        stray("password_credential", self.password_credential.is_some(), allowed)?;
        let need = |key: &str, v: Option<String>| {
            v.ok_or_else(|| format!("{ctx}: {key}: required by method {name:?}"))
        };
        Ok(match method {
            RawMethod::Basic => {
                let user = need("user", self.user)?;
                if user.is_empty() || user.contains(':') {
                    return Err(format!("{ctx}: user: must be non-empty and contain no ':'"));
                }
                let password_file = match (self.password_file, self.password_credential) {
                    (Some(pf), None) => expand_path(&ctx, "password_file", &pf, env)?,
                    (None, Some(name)) => credential_path(&ctx, &name, env)?,
                    (Some(_), Some(_)) => {
                        return Err(format!(
                            "{ctx}: password_credential: give either password_file or password_credential"
                        ))
                    }
                    (None, None) => {
                        return Err(format!(
                            "{ctx}: password_file: required by method \"basic\" (or password_credential)"
                        ))
                    }
                };
                Auth::Basic { user, password_file }
            }
            RawMethod::Cookie => {
                let cf = need("cookie_file", self.cookie_file)?;
                let cookie_name = self.cookie_name.unwrap_or_else(|| "hadoop-jwt".to_owned());
                if cookie_name.is_empty() || cookie_name.contains(['=', ';', ' ']) {
                    return Err(format!("{ctx}: cookie_name: {cookie_name:?} is not a cookie name"));
                }
                Auth::Cookie { cookie_file: expand_path(&ctx, "cookie_file", &cf, env)?, cookie_name }
            }
            RawMethod::Bearer => {
                let tf = need("token_file", self.token_file)?;
                Auth::Bearer { token_file: expand_path(&ctx, "token_file", &tf, env)? }
            }
        })
    }
}

impl RawOutput {
    fn resolve(self, ctx: &str, env: &Env) -> Result<Output, String> {
        let ctx = format!("{ctx}: output {:?}", self.path);
        let path = expand_path(&ctx, "path", &self.path, env)?;
        if path.file_name().is_none() {
            return Err(format!("{ctx}: path: names a directory, not a file"));
        }
        let format = self.format.unwrap_or(Format::Raw);
        let mode = match &self.mode {
            Some(m) => parse_mode(&ctx, m)?,
            None => 0o600,
        };
        let env_var = self.env_var.unwrap_or_else(|| DEFAULT_ENV_VAR.to_owned());
        validate_env_var(&ctx, &env_var)?;
        Ok(Output { path, format, mode, env_var })
    }
}

/// `~/.cde/<name>/{token,token.sh,token.env,token.json}`, plus `~/.cde/token` and
/// `~/.cde/token.sh` for the default cluster: the paths CDE's docs have users create by hand.
fn default_outputs(ctx: &str, name: &str, is_default: bool, env: &Env) -> Result<Vec<Output>, String> {
    let mut files = vec![
        (format!("~/.cde/{name}/token"), Format::Raw),
        (format!("~/.cde/{name}/token.sh"), Format::Shell),
        (format!("~/.cde/{name}/token.env"), Format::Env),
        (format!("~/.cde/{name}/token.json"), Format::Json),
    ];
    if is_default {
        files.push(("~/.cde/token".to_owned(), Format::Raw));
        files.push(("~/.cde/token.sh".to_owned(), Format::Shell));
    }
    files
        .into_iter()
        .map(|(p, format)| {
            let path = expand_path(&format!("{ctx}: default output"), "path", &p, env)?;
            Ok(Output { path, format, mode: 0o600, env_var: DEFAULT_ENV_VAR.to_owned() })
        })
        .collect()
}

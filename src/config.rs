//! The configuration file: `RawConfig` (serde, exactly the TOML) becomes `Config` (validated).
//!
//! Parsing happens in two stages, like ripgrep's `LowArgs` → `HiArgs`: serde rejects unknown
//! keys and wrong types, then `Config::from_raw` checks what serde cannot (names, URLs,
//! ranges, one default cluster, no two outputs on one path) and builds typed values, so no
//! later code sees invalid input. Reading the file ([`load`]) is separate from parsing
//! ([`Config::from_toml`]) so tests can parse strings.
//!
//! Every number and duration has an allowed range ([`limits`]), chosen so that whatever
//! `check-config` accepts the daemon can run: no value can overflow the scheduler's
//! arithmetic or tokio's semaphore. The file is read only if it is a regular file of at most
//! [`limits::MAX_CONFIG_BYTES`], without blocking on a FIFO ([`read_regular_file`]).
//!
//! Secrets never appear in this file's values: only `*_file` keys that name files holding
//! them. Error messages never quote the offending line, because a secret pasted inline by
//! mistake would be echoed into the journal; nor the value of a key that names a secret's
//! file, because the commonest mistake there is pasting the secret itself (`paths.rs`).
//!
//! The module's parts: `limits` (the ranges), `file` (reading the file), `values` (single
//! values and TOML errors), `paths` (paths and the secret-file rule), `auth`, `on_change`
//! (those tables), `display` (the resolved config as TOML for `check-config`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use crate::scheduler::Policy;

mod auth;
mod display;
mod file;
pub mod limits;
mod on_change;
mod paths;
#[cfg(test)]
mod tests;
mod values;

pub use file::read_regular_file;
pub use paths::resolve_path;
pub(crate) use values::iso_duration;

use paths::expand_path;
use values::{
    iso_seconds, parse_bounded, parse_lifespan, parse_mode, parse_url, validate_env_var, validate_name,
};

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
    /// `min_remaining` when that is longer. (`exec --min-valid` sets `min_valid` from the
    /// command line, so the sum saturates rather than trusting the config's ranges.)
    pub fn requested_lifespan(&self) -> Option<String> {
        let configured = self.lifespan.as_deref();
        let Some(min_valid) = self.lifecycle.min_valid else { return configured.map(str::to_owned) };
        let need = min_valid.saturating_add(self.policy.min_remaining);
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

/// Reads and validates the file at `path`: a regular file (not a FIFO or a device, which
/// are refused without blocking) of at most [`limits::MAX_CONFIG_BYTES`].
pub fn load(path: &Path, env: &Env) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let cannot = |e: std::io::Error| ConfigError::new(&origin, format!("cannot read config: {e}"));
    let bytes = read_regular_file(path, limits::MAX_CONFIG_BYTES).map_err(cannot)?;
    let text = String::from_utf8(bytes)
        .map_err(|e| ConfigError::new(&origin, format!("cannot read config: it is not UTF-8 text ({e})")))?;
    let mut config = Config::from_toml(&text, &origin, env)?;
    config.source = Some(path.to_owned());
    Ok(config)
}

impl Config {
    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str, env: &Env) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| values::toml_error(origin, text, &e))?;
        Config::from_raw(raw, origin, env)
    }

    /// Cross-field validation and conversion to typed values.
    fn from_raw(raw: RawConfig, origin: &str, env: &Env) -> Result<Config, ConfigError> {
        let fail = |msg: String| ConfigError::new(origin, msg);
        let max_concurrent_requests = raw.max_concurrent_requests.unwrap_or(DEFAULT_MAX_CONCURRENT_REQUESTS);
        if !(1..=limits::MAX_CONCURRENT_REQUESTS).contains(&max_concurrent_requests) {
            return Err(fail(format!(
                "max_concurrent_requests: {max_concurrent_requests} is out of range (allowed: 1 to {})",
                limits::MAX_CONCURRENT_REQUESTS
            )));
        }
        if raw.clusters.is_empty() {
            return Err(fail("no [[cluster]] is configured".into()));
        }
        let defaults = raw.defaults.resolve("[defaults]", &Knobs::builtin(), env).map_err(fail)?;
        let clusters = resolve_clusters(raw.clusters, &defaults, env).map_err(fail)?;
        let server = raw.server.map(|rs| rs.resolve(env)).transpose().map_err(fail)?.unwrap_or_default();
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

/// Resolves every `[[cluster]]`: unique names, at most one default, no output path twice.
fn resolve_clusters(raw: Vec<RawCluster>, defaults: &Knobs, env: &Env) -> Result<Vec<Arc<Cluster>>, String> {
    let single = raw.len() == 1;
    let mut names = HashSet::new();
    let mut paths = HashSet::new();
    let mut default_cluster: Option<String> = None;
    let mut clusters = Vec::with_capacity(raw.len());
    for rc in raw {
        let ctx = format!("cluster {:?}", rc.name);
        validate_name(&rc.name).map_err(|m| format!("{ctx}: name: {m}"))?;
        if !names.insert(rc.name.clone()) {
            return Err(format!("{ctx}: name: used by two clusters"));
        }
        let is_default = rc.default.unwrap_or(false);
        if is_default {
            if let Some(other) = default_cluster.replace(rc.name.clone()) {
                return Err(format!("{ctx}: default: cluster {other:?} is already the default"));
            }
        }
        let cluster = rc.resolve(&ctx, defaults, env, is_default || single)?;
        for out in &cluster.outputs {
            if !paths.insert(out.path.clone()) {
                return Err(format!("{ctx}: output {}: path is published twice", out.path.display()));
            }
        }
        clusters.push(Arc::new(cluster));
    }
    Ok(clusters)
}

impl RawServer {
    fn resolve(self, env: &Env) -> Result<Server, String> {
        let listen = self
            .listen
            .map(|l| {
                l.parse().map_err(|e| {
                    format!("[server]: listen: {l:?} is not an address like \"127.0.0.1:9464\": {e}")
                })
            })
            .transpose()?;
        let metrics_textfile = self
            .metrics_textfile
            .map(|p| expand_path("[server]", "metrics_textfile", &p, env))
            .transpose()?;
        Ok(Server { listen, metrics_textfile })
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
    /// Applies these keys over `base`, validating each against its range ([`limits`]).
    fn resolve(&self, ctx: &str, base: &Knobs, env: &Env) -> Result<Knobs, String> {
        let mut k = base.clone();
        self.resolve_policy(ctx, &mut k.policy)?;
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
            k.transport.timeout = parse_bounded(ctx, "timeout", v, limits::TIMEOUT)?;
        }
        self.resolve_lifecycle(ctx, &mut k.lifecycle)?;
        if let Some(v) = &self.on_change {
            k.on_change = Some(v.resolve(&format!("{ctx}: on_change"), env)?);
        }
        Ok(k)
    }

    /// `refresh_fraction`, `min_remaining` and `jitter`, and how they combine.
    fn resolve_policy(&self, ctx: &str, policy: &mut Policy) -> Result<(), String> {
        if let Some(f) = self.refresh_fraction {
            if !(f > 0.0 && f <= 1.0) {
                return Err(format!("{ctx}: refresh_fraction: {f} must be in (0, 1]"));
            }
            policy.refresh_fraction = f;
        }
        if let Some(v) = &self.min_remaining {
            policy.min_remaining = parse_bounded(ctx, "min_remaining", v, limits::MIN_REMAINING)?;
        }
        if let Some(j) = self.jitter {
            if !(0.0..=0.5).contains(&j) {
                return Err(format!("{ctx}: jitter: {j} must be in [0, 0.5] (a share of the lifetime)"));
            }
            policy.jitter = j;
        }
        if policy.jitter >= policy.refresh_fraction {
            return Err(format!(
                "{ctx}: jitter: {} must be smaller than refresh_fraction ({}), or tokens would be \
                 replaced as soon as they arrive",
                policy.jitter, policy.refresh_fraction
            ));
        }
        Ok(())
    }

    /// `consumers_validate`, `revoke_superseded_after`, `revoke_on_exit`, `min_valid`,
    /// `remove_expired`.
    fn resolve_lifecycle(&self, ctx: &str, l: &mut Lifecycle) -> Result<(), String> {
        if let Some(v) = self.consumers_validate {
            l.consumers_validate = v;
        }
        if let Some(v) = &self.revoke_superseded_after {
            l.revoke_superseded_after =
                parse_bounded(ctx, "revoke_superseded_after", v, limits::REVOKE_SUPERSEDED_AFTER)?;
        }
        if let Some(v) = self.revoke_on_exit {
            l.revoke_on_exit = v;
        }
        if let Some(v) = &self.min_valid {
            let d = parse_bounded(ctx, "min_valid", v, limits::MIN_VALID)?;
            l.min_valid = (!d.is_zero()).then_some(d);
        }
        if let Some(v) = self.remove_expired {
            l.remove_expired = v;
        }
        Ok(())
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

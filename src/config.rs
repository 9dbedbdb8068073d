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
//! The module's parts: this file (the pipeline: [`load`], [`Config::from_toml`], and the raw
//! serde layer, exactly the TOML), `types` (the validated types the rest of the daemon sees),
//! `knobs` (a cluster's keys over `[defaults]` over the built-in values), `resolve` (the
//! cluster list, each cluster and its outputs, `[server]`), `auth`, `on_change` (those
//! tables), `values` (single values and TOML errors), `paths` (paths and the secret-file
//! rule), `limits` (the ranges), `file` (reading the file), `display` (the resolved config as
//! TOML for `check-config`), `installation` (the installation id and host name that label
//! every token).

use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

mod auth;
mod display;
mod file;
mod installation;
mod knobs;
pub mod limits;
mod on_change;
mod paths;
mod resolve;
#[cfg(test)]
mod tests;
mod types;
mod values;
mod verify;

pub use file::read_regular_file;
pub use installation::{host_label, Identity, Machine, MACHINE_ID_FILES};
pub use paths::resolve_path;
pub use types::{
    Auth, Cluster, Config, Env, Format, Lifecycle, OnChange, Output, Server, Transport, Validation,
};
pub(crate) use values::iso_duration;
pub use verify::{PinnedKeys, Verify, VerifyMode};

use knobs::Knobs;
use resolve::resolve_clusters;

/// The variable that names the config file when `-c` is not given.
pub const CONFIG_ENV: &str = "TOKEN_KEEPER_CONFIG";

/// The environment variable consumers read by default (`export CDE_TOKEN=...` in CDE's docs).
pub const DEFAULT_ENV_VAR: &str = "CDE_TOKEN";

/// Knox requests in flight at once, across all clusters: enough to publish 1,000 clusters in
/// well under a second on loopback, few enough not to flood a gateway or run out of file
/// descriptors under the default 1,024 limit.
const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 16;

/// How often the published managed tokens are checked against Knox's list of the user's
/// tokens (`eviction_check_interval`): 12 requests per gateway and user an hour.
pub const DEFAULT_EVICTION_CHECK_INTERVAL: Duration = Duration::from_secs(300);

/// How often this installation's tokens that it no longer holds are looked for and revoked
/// (`orphan_sweep_interval`), besides once at start.
pub const DEFAULT_ORPHAN_SWEEP_INTERVAL: Duration = Duration::from_secs(3600);

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

/// Reads and validates the file at `path`: a regular file (not a FIFO or a device, which
/// are refused without blocking) of at most [`limits::MAX_CONFIG_BYTES`].
pub fn load(path: &Path, env: &Env) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let cannot = |e: std::io::Error| ConfigError::new(&origin, format!("cannot read config: {e}"));
    let bytes = read_regular_file(path, limits::MAX_CONFIG_BYTES).map_err(cannot)?;
    let text = String::from_utf8(bytes)
        .map_err(|e| ConfigError::new(&origin, format!("cannot read config: it is not UTF-8 text ({e})")))?;
    // The derived installation id hashes the absolute path as given, symlinks unresolved: a
    // ConfigMap's `..data` swap moves the target, never the path (`installation`).
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut config = Config::parse(&text, &origin, absolute.as_os_str().as_bytes(), env)?;
    config.source = Some(path.to_owned());
    Ok(config)
}

impl Config {
    /// Parses and validates TOML text; `origin` names it in errors, and stands in for the
    /// config file's path when `installation_id` is derived.
    pub fn from_toml(text: &str, origin: &str, env: &Env) -> Result<Config, ConfigError> {
        Config::parse(text, origin, origin.as_bytes(), env)
    }

    /// [`Config::from_toml`] for the file at `path` (absolute, as bytes).
    fn parse(text: &str, origin: &str, path: &[u8], env: &Env) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| values::toml_error(origin, text, &e))?;
        Config::from_raw(raw, origin, path, env)
    }

    /// Cross-field validation and conversion to typed values.
    fn from_raw(raw: RawConfig, origin: &str, path: &[u8], env: &Env) -> Result<Config, ConfigError> {
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
        let installation_id = match &raw.installation_id {
            Some(id) => installation::check_id(id).map_err(fail)?,
            None => installation::derive_id(&env.machine, path),
        };
        let identity = Identity { installation_id, host: env.machine.host.clone() };
        let defaults = raw.defaults.resolve("[defaults]", &Knobs::builtin(), env).map_err(fail)?;
        let clusters = resolve_clusters(raw.clusters, &defaults, &identity, env).map_err(fail)?;
        let server = raw.server.map(|rs| rs.resolve(env)).transpose().map_err(fail)?.unwrap_or_default();
        let interval = |key: &str, value: &Option<String>, default: Duration, span: limits::OffOr| match value
        {
            None => Ok(Some(default)),
            Some(v) => {
                let d = humantime::parse_duration(v)
                    .map_err(|e| format!("{key}: {v:?} is not a duration like \"90s\" or \"5m\": {e}"))?;
                span.check(key, v, d)
            }
        };
        let eviction_check_interval = interval(
            "eviction_check_interval",
            &raw.eviction_check_interval,
            DEFAULT_EVICTION_CHECK_INTERVAL,
            limits::EVICTION_CHECK_INTERVAL,
        )
        .map_err(fail)?;
        let orphan_sweep_interval = interval(
            "orphan_sweep_interval",
            &raw.orphan_sweep_interval,
            DEFAULT_ORPHAN_SWEEP_INTERVAL,
            limits::ORPHAN_SWEEP_INTERVAL,
        )
        .map_err(fail)?;
        // The default cluster also owns ~/.cde/token; with several clusters and none marked,
        // nobody does, which is fine: scripts then name their cluster's file.
        Ok(Config {
            source: None,
            max_concurrent_requests,
            eviction_check_interval,
            orphan_sweep_interval,
            clusters,
            server,
            identity,
            installation_id_derived: raw.installation_id.is_none(),
        })
    }
}

// ---------------------------------------------------------------------------------------
// The raw, serde-facing layer: the TOML exactly as written. Every table denies unknown keys,
// and nothing is checked beyond its TOML type; `Config::from_raw` and the `resolve` methods
// beside each table (in `knobs`, `resolve`, `auth`, `on_change`) turn these into the types of
// `types`. Only these, the two enums they share with `types` (`Validation`, `Format`) and
// `knox::wire` derive `Deserialize`. (tests/it/tidy.rs reads the keys from this file.)

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    max_concurrent_requests: Option<usize>,
    eviction_check_interval: Option<String>,
    orphan_sweep_interval: Option<String>,
    installation_id: Option<String>,
    server: Option<RawServer>,
    #[serde(default)]
    defaults: RawKnobs,
    #[serde(default, rename = "cluster")]
    clusters: Vec<RawCluster>,
}

/// `[server]` (resolved in `resolve.rs`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    metrics_textfile: Option<String>,
}

/// `[cluster.on_change]` and `[defaults.on_change]` (resolved in `on_change.rs`).
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawOnChange {
    signal: Option<String>,
    pid_file: Option<String>,
    command: Option<Vec<String>>,
    timeout: Option<String>,
}

/// The keys `[defaults]` accepts: every per-cluster key except `name`, `token_url`, `auth`,
/// `output` and `default` (which marks one cluster and so cannot be a default). Resolved in
/// `knobs.rs`.
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
    labels: Option<bool>,
    verify: Option<VerifyMode>,
    issuer: Option<String>,
    public_cert_file: Option<String>,
    jwks_file: Option<String>,
}

/// The per-cluster keys repeat `RawKnobs`'s on purpose: serde's `flatten` would share them,
/// but it disables `deny_unknown_fields`, and rejecting unknown keys matters more. Resolved in
/// `resolve.rs`.
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
    labels: Option<bool>,
    verify: Option<VerifyMode>,
    issuer: Option<String>,
    public_cert_file: Option<String>,
    jwks_file: Option<String>,
    auth: RawAuth,
    #[serde(default)]
    output: Vec<RawOutput>,
}

/// `[cluster.auth]` (resolved in `auth.rs`).
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

/// `[cluster.auth] method`.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawMethod {
    Basic,
    Cookie,
    Bearer,
}

/// One `[[cluster.output]]` (resolved in `resolve.rs`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    path: String,
    format: Option<Format>,
    mode: Option<String>,
    env_var: Option<String>,
}

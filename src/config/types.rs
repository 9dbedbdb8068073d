//! The validated configuration: what the rest of the daemon sees once a file has passed
//! `Config::from_toml`. Every URL is parsed, every duration within its range, every path
//! absolute; secrets are named by the files that hold them, never held.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::installation::{Identity, Machine};
use super::values::{iso_duration, iso_seconds};
use super::DEFAULT_ENV_VAR;
use crate::scheduler::Policy;

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this came from, for messages and the reload watcher.
    pub source: Option<PathBuf>,
    /// Knox requests in flight at once across all clusters (default 16).
    pub max_concurrent_requests: usize,
    /// How often the published managed tokens are checked against Knox's list of the user's
    /// tokens, per gateway and user; `None` is off (`0s`).
    pub eviction_check_interval: Option<Duration>,
    /// How often tokens of this installation and host that nothing holds are revoked
    /// (besides once at start); `None` is off (`0s`).
    pub orphan_sweep_interval: Option<Duration>,
    /// In file order.
    pub clusters: Vec<Arc<Cluster>>,
    /// The `[server]` table: health, readiness and metrics.
    pub server: Server,
    /// This installation and its host, as every acquisition labels its token (docs/knox.md
    /// §2.1), whether or not a cluster sends the labels.
    pub identity: Identity,
    /// Whether `installation_id` was derived (not set in the file).
    pub installation_id_derived: bool,
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
    /// The labels sent with each acquisition (`comment`, `md_tk_*`, docs/knox.md §2.1):
    /// this installation, or `None` when the cluster has `labels = false`.
    pub labels: Option<Identity>,
    /// How an issued token is verified before it is published (docs/knox.md §8).
    pub verify: super::Verify,
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
    /// The `method` key's value.
    pub(super) fn method(&self) -> &'static str {
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

/// What the environment contributes to resolving a config: `~` expansion, systemd
/// credentials, and the machine facts the installation id is derived from.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `$HOME`, if set.
    pub home: Option<PathBuf>,
    /// `$CREDENTIALS_DIRECTORY`, set by systemd for `LoadCredential=`.
    pub credentials_dir: Option<PathBuf>,
    /// The machine id, host name and effective uid (`Machine::default()` in tests: none,
    /// `unknown`, 0).
    pub machine: Machine,
}

impl Env {
    /// The process environment.
    pub fn from_process() -> Env {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        Env {
            home: var("HOME"),
            credentials_dir: var("CREDENTIALS_DIRECTORY"),
            machine: Machine::from_process(),
        }
    }
}

impl Config {
    /// The cluster named `name`, or the default one (the one marked, or the only one).
    pub fn cluster(&self, name: Option<&str>) -> Option<&Arc<Cluster>> {
        match name {
            Some(n) => self.clusters.iter().find(|c| c.name == n),
            None if self.clusters.len() == 1 => self.clusters.first(),
            None => self.clusters.iter().find(|c| c.is_default),
        }
    }

    /// [`Config::cluster`] for the verbs that take `--cluster`: the cluster, or a message
    /// that names the config file at `origin` and lists the choices.
    pub fn pick(&self, origin: &std::path::Path, name: Option<&str>) -> Result<&Arc<Cluster>, String> {
        if let Some(c) = self.cluster(name) {
            return Ok(c);
        }
        let names: Vec<_> = self.clusters.iter().map(|c| c.name.as_str()).collect();
        Err(match name {
            Some(n) => {
                format!("no cluster named {n:?} in {} (clusters: {})", origin.display(), names.join(", "))
            }
            None => format!(
                "{} has several clusters and none is marked default = true: pass --cluster (one of {})",
                origin.display(),
                names.join(", ")
            ),
        })
    }
}

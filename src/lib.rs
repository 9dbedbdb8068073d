//! token-keeper keeps short-lived Apache Knox (KNOXTOKEN) JSON Web Tokens fresh and publishes
//! them atomically as files that scripts, Spark jobs and systemd services read.
//!
//! # Layout
//! - [`app`]: wires the daemon (signals, reload, keeper): `token-keeper run`.
//! - [`cmd`]: the other verbs, a file each: `once`, `status`, `token`, `check-config`, `tokens`.
//! - [`control`]: `Control`, the one message type that steers the daemon.
//! - [`cli`]: the command line.
//! - [`config`]: `RawConfig` (serde) → validated `Config`.
//! - [`knox`]: the KNOXTOKEN HTTP client, its wire types and errors.
//! - [`scheduler`]: the pure `plan` function: when to refresh, how to back off.
//! - [`doctor`]: `token-keeper doctor`, end-to-end checks per cluster.
//! - [`exec`]: `token-keeper exec -- CMD`, a command with a token in its environment.
//! - [`hooks`]: `on_change`, telling consumers after a publish.
//! - [`keeper`]: the async loop around `plan`: timers, attempts, reload of clusters.
//! - [`output`]: the bytes of each output format, and reading them back.
//! - [`sink`]: the only code that writes token files (atomically).
//! - [`reload`]: config file watcher → `Control::Reload`.
//! - [`server`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`signals`]: Unix signals → `Control`.
//! - [`telemetry`]: what the keeper reports: token state and counters, for health and metrics.
//! - [`systemd`]: sd_notify READY/RELOADING/STOPPING/STATUS.
//! - [`secret`]: `Secret`, which never prints its value.
//! - [`time`]: epoch milliseconds, RFC 3339 and durations as text, in one place.
//!
//! See `docs/ARCHITECTURE.md` for the bird's-eye view and the invariants.

pub mod app;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod control;
pub mod doctor;
pub mod exec;
pub mod fuzzing;
pub mod hooks;
pub mod keeper;
pub mod knox;
pub mod output;
pub mod reload;
pub mod scheduler;
pub mod secret;
pub mod server;
pub mod signals;
pub mod sink;
pub mod systemd;
pub mod telemetry;
pub mod text;
pub mod time;

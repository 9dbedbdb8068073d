//! token-keeper keeps short-lived Apache Knox (KNOXTOKEN) JSON Web Tokens fresh and publishes
//! them atomically as files that scripts, Spark jobs and systemd services read.
//!
//! # Layout
//! From the top down; each module uses only those below it (`tests/it/layout.rs` checks it).
//! - [`cmd`]: the command line's `main` and each verb in a file of its own (`once`, `status`,
//!   `token`, `check-config`, `tokens`, `exec`, `doctor`); `cli` holds the clap definitions.
//! - [`app`]: the daemon, `token-keeper run`: wires signals, the config watcher, the health
//!   server and the keeper, and is the one receiver of `control::Control`.
//! - [`keeper`]: the per-cluster state machine (pure transitions) and the async loop that
//!   performs its effects; `reload`, `signals` and `server` are the daemon's other edges.
//! - [`sink`]: the only code that writes token files (atomically); `hooks` tells consumers;
//!   [`telemetry`] is what health, readiness and metrics read.
//! - `output`: the bytes of each output format, and reading them back.
//! - [`knox`]: the KNOXTOKEN HTTP client, its wire types, answers and errors.
//! - [`config`]: `RawConfig` (serde) → validated `Config`.
//! - [`scheduler`]: the pure `plan`: when to refresh, how to back off.
//! - Leaves: `time` (epoch ms, RFC 3339, durations for people), `text` (escaping what came
//!   from outside), `secret` (`Secret`, which never prints its value), `systemd` (sd_notify),
//!   `control`, [`keys`] (RSA public keys and signature checks).
//! - [`fuzzing`]: the fuzz targets' entry points.
//!
//! Modules are private unless something outside the library needs them: the binary
//! (`cmd::main`), the integration tests and the benchmark (`app`, `config`, `keeper`, `knox`,
//! `scheduler`, `sink`, `telemetry`), the demo example (`app`, `sink`) and the fuzz targets
//! (`fuzzing`). Everything else is `pub(crate)`, so rustc reports what nothing uses.
//!
//! See `docs/ARCHITECTURE.md` for the bird's-eye view and the invariants.

// The docs are for the people who work on the daemon, built with `--document-private-items`
// (as CI does), where links from public items to crate-private ones resolve.
#![allow(rustdoc::private_intra_doc_links)]

pub mod app;
mod cli;
pub mod cmd;
pub mod config;
mod control;
pub mod fuzzing;
mod hooks;
pub mod keeper;
pub mod keys;
pub mod knox;
mod output;
mod reload;
pub mod scheduler;
mod secret;
mod server;
mod signals;
pub mod sink;
mod systemd;
pub mod telemetry;
mod text;
mod time;

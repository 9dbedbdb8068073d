//! The command line: verbs and their options (clap derive).
//!
//! Every verb takes `-c PATH`, or `$TOKEN_KEEPER_CONFIG`, for the config file.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{Format, CONFIG_ENV};

/// Keeps Apache Knox (KNOXTOKEN) tokens fresh and publishes them as files.
#[derive(Debug, Parser)]
#[command(name = "token-keeper", version, about, long_about = None)]
pub(crate) struct Cli {
    /// The config file [default: $XDG_CONFIG_HOME/token-keeper/config.toml if it exists,
    /// else /etc/token-keeper/config.toml]
    #[arg(short = 'c', long = "config", global = true, env = CONFIG_ENV, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Log level or filter, e.g. "debug" or "info,token_keeper=debug" [default: $RUST_LOG, else info]
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,

    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines (journald adds its own timestamps).
    Text,
    /// One JSON object per line, with the structured fields (cluster, token_id, ...).
    Json,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the daemon: keep every cluster's token fresh until SIGTERM or SIGINT.
    Run,
    /// One pass (init containers, cron): keep fresh tokens, acquire the rest, exit 0 if all
    /// clusters end with a fresh token, else 1.
    Once {
        /// How long to keep retrying transient failures (network, 5xx).
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Validate the config, print it resolved (secrets are only ever file names), exit 0 or 2.
    CheckConfig,
    /// Show each cluster's published token: id, expiry, time left; exit 0 if all are fresh.
    Status {
        /// One JSON object per cluster, in a JSON array, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Print the published token, byte for byte as an output file of that format holds it.
    Token {
        /// The cluster [default: the one marked default, or the only one]
        #[arg(long)]
        cluster: Option<String>,
        /// The layout.
        #[arg(long, value_enum, default_value = "raw")]
        format: Format,
    },
    /// Run a command with a token in its environment (like `k5start -- cmd`): the published
    /// token if it has `--min-valid` left, else a new one acquired for the purpose.
    Exec {
        /// The cluster [default: the one marked default, or the only one]
        #[arg(long)]
        cluster: Option<String>,
        /// The token must stay valid at least this long; exec refuses to run the command if
        /// Knox cannot issue one that does [default: the cluster's freshness rule: its
        /// `min_remaining`, or half the lifetime of a token shorter than twice that]
        #[arg(long, value_parser = parse_duration)]
        min_valid: Option<Duration>,
        /// The variable to export [default: the cluster's env_var, else CDE_TOKEN]
        #[arg(long)]
        env_var: Option<String>,
        /// The command and its arguments.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<std::ffi::OsString>,
    },
    /// Check each cluster end to end and print a ✔/✘ table: DNS, TCP, TLS, the endpoint,
    /// credentials, managed state, renewal, token quota, clock offset, output safety.
    Doctor {
        /// Also renew a fresh token once, to prove renewal is permitted (it moves that
        /// token's server-side expiry).
        #[arg(long)]
        renew_trial: bool,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
    /// Knox's token management API for a cluster: list, revoke, enable, disable.
    ///
    /// Exit codes: 0 ok, 1 runtime failure, 2 usage or config error, 3 unknown token, 4 not
    /// authorized, 5 already in that state, 6 token management not configured, 7 other refusal.
    Tokens {
        /// What to do.
        #[command(subcommand)]
        action: TokensAction,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration like \"30s\": {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}

/// `tokens` sub-verbs. The token id comes last, after the options.
#[derive(Debug, Subcommand)]
pub(crate) enum TokensAction {
    /// List the user's tokens (getUserTokens): id, issued, expires, max lifetime, enabled,
    /// whether this installation holds it, last used.
    List {
        /// The cluster [default: the one marked default, or the only one]
        #[arg(long)]
        cluster: Option<String>,
        /// Print Knox's JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Only this installation's tokens (by their labels: the installation_id).
        #[arg(long)]
        mine: bool,
        /// Whose tokens [default: the cluster's user, or the published token's subject]
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a token, or with --mine every token this installation holds.
    ///
    /// `--mine` is the switch to pull after a leak: it revokes every token of this
    /// installation (by its labels) that Knox lists for the user of each cluster (or of
    /// `--cluster`), whichever host holds it. A running token-keeper notices within
    /// `eviction_check_interval` and acquires fresh tokens.
    Revoke {
        /// The cluster [default: the one marked default, or the only one; with --mine: all]
        #[arg(long)]
        cluster: Option<String>,
        /// Revoke every token of this installation instead of one.
        #[arg(long, conflicts_with = "token_id")]
        mine: bool,
        /// The token id (knox.id).
        #[arg(required_unless_present = "mine")]
        token_id: Option<String>,
    },
    /// Enable a disabled token.
    Enable {
        /// The cluster [default: the one marked default, or the only one]
        #[arg(long)]
        cluster: Option<String>,
        /// The token id (knox.id).
        token_id: String,
    },
    /// Disable a token.
    Disable {
        /// The cluster [default: the one marked default, or the only one]
        #[arg(long)]
        cluster: Option<String>,
        /// The token id (knox.id).
        token_id: String,
    },
}

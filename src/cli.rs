//! The command line: verbs and their options (clap derive).
//!
//! Every verb takes `-c PATH`, or `$TOKEN_KEEPER_CONFIG`, for the config file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{Format, CONFIG_ENV};

/// Keeps Apache Knox (KNOXTOKEN) tokens fresh and publishes them as files.
#[derive(Debug, Parser)]
#[command(name = "token-keeper", version, about, long_about = None)]
pub struct Cli {
    /// The config file [default: $XDG_CONFIG_HOME/token-keeper/config.toml if it exists,
    /// else /etc/token-keeper/config.toml]
    #[arg(short = 'c', long = "config", global = true, env = CONFIG_ENV, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Log level or filter, e.g. "debug" or "info,token_keeper=debug" [default: $RUST_LOG, else info]
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
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
    Status,
    /// Print the published token, byte for byte as an output file of that format holds it.
    Token {
        /// The cluster [default: the one marked default, or the only one]
        #[arg(long)]
        cluster: Option<String>,
        /// The layout.
        #[arg(long, value_enum, default_value = "raw")]
        format: Format,
    },
    /// Run a Knox KNOXTOKEN simulator (dev only, like `vault server -dev`).
    Sim {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// Token lifetime (Knox's knox.token.ttl).
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        ttl: Duration,
        /// Issue tokens that never expire (ttl -1).
        #[arg(long, conflicts_with = "ttl")]
        never_expire: bool,
        /// Accepted Basic credentials, USER:PASSWORD (repeatable) [default: alice:alice-password]
        #[arg(long = "user", value_name = "USER:PASSWORD")]
        users: Vec<String>,
        /// The topology name in the URL path.
        #[arg(long, default_value = "sandbox")]
        topology: String,
        /// Issue unmanaged tokens (managed: "false").
        #[arg(long)]
        unmanaged: bool,
        /// Skew the simulator's clock, e.g. "2h" or "-90s".
        #[arg(long, allow_hyphen_values = true, value_parser = parse_offset, default_value = "0s")]
        clock_offset: i64,
    },
    /// Start the simulator and the keeper together, publishing into ./token-keeper-demo/.
    Demo {
        /// Where to publish.
        #[arg(long, default_value = "token-keeper-demo")]
        dir: PathBuf,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration like \"30s\": {e}"))
}

/// A signed duration in milliseconds ("-90s").
fn parse_offset(s: &str) -> Result<i64, String> {
    let (sign, rest) = match s.strip_prefix('-') {
        Some(r) => (-1, r),
        None => (1, s.strip_prefix('+').unwrap_or(s)),
    };
    Ok(sign * parse_duration(rest)?.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("2h"), Ok(7_200_000));
        assert_eq!(parse_offset("-90s"), Ok(-90_000));
        assert!(parse_offset("soon").is_err());
    }
}

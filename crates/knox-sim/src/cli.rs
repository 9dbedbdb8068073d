//! The `knox-sim` command line (clap derive): the flags `token-keeper sim` had, with the same
//! names, defaults and help, and their mapping to [`SimOptions`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::{KnoxVersion, LimitAction, SimKey, SimOptions};

/// Run a Knox KNOXTOKEN simulator (dev only, like `vault server -dev`).
#[derive(Debug, Parser)]
#[command(name = "knox-sim", version, long_about = None)]
pub struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Token lifetime (Knox's knox.token.ttl).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub ttl: Duration,
    /// Issue tokens that never expire (ttl -1).
    #[arg(long, conflicts_with = "ttl")]
    pub never_expire: bool,
    /// Accepted Basic credentials, USER:PASSWORD (repeatable) [default: alice:alice-password]
    #[arg(long = "user", value_name = "USER:PASSWORD")]
    pub users: Vec<String>,
    /// The topology name in the URL path.
    #[arg(long, default_value = "sandbox")]
    pub topology: String,
    /// Issue unmanaged tokens (managed: "false").
    #[arg(long)]
    pub unmanaged: bool,
    /// Skew the simulator's clock, e.g. "2h" or "-90s".
    #[arg(long, allow_hyphen_values = true, value_parser = parse_offset, default_value = "0s")]
    pub clock_offset: i64,
    /// Users allowed to renew (knox.token.renewer.whitelist; repeatable). Empty: nobody.
    #[arg(long = "renewer", value_name = "USER")]
    pub renewers: Vec<String>,
    /// knox.token.exp.renew-interval: a renewal extends to now plus this.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub renew_interval: Duration,
    /// knox.token.exp.max-lifetime, from issue [default: 7d]
    #[arg(long, value_parser = parse_duration, conflicts_with = "unbounded_max_lifetime")]
    pub max_lifetime: Option<Duration>,
    /// knox.token.exp.max-lifetime = -1 (Knox 2.1+).
    #[arg(long)]
    pub unbounded_max_lifetime: bool,
    /// knox.token.limit.per.user [default: 10]
    #[arg(long, conflicts_with = "no_token_limit")]
    pub token_limit: Option<usize>,
    /// knox.token.limit.per.user = -1.
    #[arg(long)]
    pub no_token_limit: bool,
    /// knox.token.user.limit.exceeded.action: RETURN_ERROR or REMOVE_OLDEST.
    #[arg(long, default_value = "RETURN_ERROR")]
    pub limit_action: LimitAction,
    /// gateway.knox.token.eviction.grace.period: expired tokens count this long.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub eviction_grace: Duration,
    /// The Knox release to answer as: 1.5 (1.4-1.5), 1.6, 2.0 or 2.1 (2.1+).
    #[arg(long, default_value = "2.1")]
    pub knox_version: KnoxVersion,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key for --tls-cert: PKCS#8, PKCS#1 ("RSA PRIVATE KEY") or SEC1.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The topology of the Bearer endpoint GET /gateway/NAME/v1/ping, which accepts the
    /// simulator's own tokens as `Authorization: Bearer` (JWTProvider, server-managed).
    #[arg(long, default_value = "bearer", value_name = "NAME")]
    pub bearer_topology: String,
    /// Keep the managed token state in FILE across restarts, as Knox's persistent
    /// AliasBasedTokenStateService does: loaded at start if it exists, rewritten atomically
    /// after every change. Default: in memory only.
    #[arg(long, value_name = "FILE")]
    pub state_file: Option<PathBuf>,
    /// The signing key (what the JWKS and endpoint_public_cert publish): dev, or rotated.
    #[arg(long, value_enum, default_value = "dev")]
    pub signing_key: SimKey,
    /// Sign tokens with a key the topology never publishes (a verifying client must refuse them).
    #[arg(long)]
    pub sign_with_foreign_key: bool,
    /// Answer the JWKS with 500.
    #[arg(long)]
    pub jwks_unavailable: bool,
    /// The JWKS wants credentials, as a Shiro topology without an `anon` rule for it.
    #[arg(long)]
    pub jwks_auth: bool,

    /// Log level or filter, e.g. "debug" or "info,knox_sim=debug" [default: $RUST_LOG, else info]
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (journald adds its own timestamps).
    Text,
    /// One JSON object per line, with the structured fields.
    Json,
}

/// What the command line asks to serve.
pub struct Serve {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The simulator's options.
    pub options: SimOptions,
    /// PEM certificate chain and private key files: serve HTTPS instead of plain HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Cli {
    /// The simulator these flags describe; an error for a `--user` that is not USER:PASSWORD.
    pub fn serve(self) -> Result<Serve, String> {
        let defaults = SimOptions::default();
        let mut options = SimOptions {
            topology: self.topology,
            ttl: if self.never_expire { None } else { Some(self.ttl) },
            managed: !self.unmanaged,
            clock_offset: self.clock_offset,
            renewers: self.renewers,
            renew_interval: self.renew_interval,
            max_lifetime: if self.unbounded_max_lifetime {
                None
            } else {
                self.max_lifetime.or(defaults.max_lifetime)
            },
            token_limit: if self.no_token_limit { None } else { self.token_limit.or(defaults.token_limit) },
            limit_action: self.limit_action,
            eviction_grace: self.eviction_grace,
            version: self.knox_version,
            bearer_topology: self.bearer_topology,
            state_file: self.state_file,
            signing_key: self.signing_key,
            sign_with_foreign_key: self.sign_with_foreign_key,
            jwks_unavailable: self.jwks_unavailable,
            jwks_anonymous: !self.jwks_auth,
            ..defaults
        };
        if !self.users.is_empty() {
            options.users = self
                .users
                .iter()
                .map(|u| match u.split_once(':') {
                    Some((user, pass)) => Ok((user.to_owned(), pass.to_owned())),
                    None => Err(format!("--user {u:?} is not USER:PASSWORD")),
                })
                .collect::<Result<_, _>>()?;
        }
        let tls = self.tls_cert.zip(self.tls_key);
        Ok(Serve { listen: self.listen, options, tls })
    }
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

//! The command line: [`main`] parses it, sets up logging, runs one verb, and turns the result
//! into an exit code (0 ok, 1 runtime failure, 2 usage or config error). Each verb other than
//! the daemon itself (`run`, in [`crate::app`]) has a file of its own here with a `run`
//! function, as mini-redis's `cmd/`.

mod check_config;
mod doctor;
mod exec;
mod once;
mod status;
mod token;
mod tokens;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::app;
use crate::cli::{Cli, Command, LogFormat, TokensAction};
use crate::config;
use crate::knox::labels::Purpose;
use crate::knox::{KnoxClient, KnoxError, Token};
use crate::scheduler::retry_before;
use crate::time::human;

/// The whole `token-keeper` program: `main.rs` only calls this.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_tracing(cli.log_level.as_deref(), cli.log_format) {
        // No subscriber yet: this is the one message main prints itself.
        #[allow(clippy::print_stderr)]
        {
            eprintln!("token-keeper: {e}");
        }
        return ExitCode::from(2);
    }
    app::run_to_exit(dispatch(cli))
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let config_path = || config::resolve_path(cli.config.as_deref());
    let ok_if = |b: bool| if b { ExitCode::SUCCESS } else { ExitCode::from(1) };
    match cli.command {
        Command::Run => app::run(&config_path(), CancellationToken::new()).await.map(|()| ExitCode::SUCCESS),
        Command::Once { timeout } => once::run(&config_path(), timeout).await.map(ok_if),
        Command::CheckConfig => check_config::run(&config_path()).map(|()| ExitCode::SUCCESS),
        Command::Status { json } => status::run(&config_path(), json).map(ok_if),
        Command::Token { cluster, format } => {
            token::run(&config_path(), cluster.as_deref(), format).map(|()| ExitCode::SUCCESS)
        }
        Command::Tokens { action } => {
            let (cluster, action) = match action {
                TokensAction::List { cluster, json, mine, user } => {
                    (cluster, tokens::Action::List { json, mine, user })
                }
                TokensAction::Revoke { cluster, mine: true, .. } => (cluster, tokens::Action::RevokeMine),
                TokensAction::Revoke { cluster, token_id, .. } => {
                    (cluster, tokens::Action::Revoke(token_id.unwrap_or_default()))
                }
                TokensAction::Enable { cluster, token_id } => (cluster, tokens::Action::Enable(token_id)),
                TokensAction::Disable { cluster, token_id } => (cluster, tokens::Action::Disable(token_id)),
            };
            tokens::run(&config_path(), cluster.as_deref(), action).await
        }
        Command::Exec { cluster, min_valid, env_var, command } => {
            exec::run(&config_path(), exec::Args { cluster, min_valid, env_var, command }).await
        }
        Command::Doctor { renew_trial } => doctor::run(&config_path(), renew_trial).await,
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "token-keeper", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Logs go to stderr (journald under systemd); stdout is only for command output. The
/// filter is `--log-level`, else `$RUST_LOG`, else `info`.
fn init_tracing(level: Option<&str>, format: LogFormat) -> Result<(), String> {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    let (spec, origin) = match (level, std::env::var("RUST_LOG").ok().filter(|s| !s.trim().is_empty())) {
        (Some(l), _) => (l.to_owned(), "--log-level"),
        (None, Some(env)) => (env, "RUST_LOG"),
        (None, None) => ("info".to_owned(), "default"),
    };
    let filter =
        spec.parse::<Targets>().map_err(|e| format!("{origin} {spec:?} is not a log filter: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_max_level(LevelFilter::TRACE);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).finish().with(filter).init(),
        LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(false).finish().with(filter).init()
        }
    }
    Ok(())
}

/// One acquisition for a one-shot verb (`once`, `exec`): transient failures are retried with
/// backoff while the retry would start before `deadline` (`scheduler::retry_before`), and
/// each retry is logged. `permits`, if given, is held for each request, not while waiting.
/// `purpose` labels the token (docs/knox.md §2.1).
async fn acquire_until(
    client: &KnoxClient,
    cluster: &crate::config::Cluster,
    purpose: Purpose,
    deadline: std::time::Instant,
    permits: Option<&tokio::sync::Semaphore>,
) -> Result<Token, KnoxError> {
    let mut failures = 0;
    loop {
        let result = match permits {
            Some(p) => {
                let _permit = p.acquire().await;
                client.acquire_for(cluster, purpose).await
            }
            None => client.acquire_for(cluster, purpose).await,
        };
        let e = match result {
            Ok(token) => return Ok(token),
            Err(e) => e,
        };
        failures += 1;
        let now = std::time::Instant::now();
        let Some(wait) = retry_before(failures, fastrand::f64(), e.class(), e.is_transient(), now, deadline)
        else {
            return Err(e);
        };
        tracing::warn!(cluster = %cluster.name, status = e.status(), "attempt {failures} failed: {e}; retrying in {}", human(wait));
        tokio::time::sleep(wait).await;
    }
}

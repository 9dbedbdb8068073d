//! The `knox-sim` binary: a Knox KNOXTOKEN simulator on the command line until SIGINT or
//! SIGTERM (dev only, like `vault server -dev`). Exit codes: 0 after a signal, 1 if it cannot
//! serve, 2 for a usage error.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use knox_sim::cli::{Cli, LogFormat, Serve};
use knox_sim::{ApiVersion, Sim};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_tracing(cli.log_level.as_deref(), cli.log_format) {
        // No subscriber yet: this is the one message main prints itself.
        #[allow(clippy::print_stderr)]
        {
            eprintln!("knox-sim: {e}");
        }
        return ExitCode::from(2);
    }
    let serve = match cli.serve() {
        Ok(serve) => serve,
        Err(e) => {
            tracing::error!("command line: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime =
        match tokio::runtime::Builder::new_current_thread().enable_all().max_blocking_threads(4).build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("cannot start the async runtime: {e}");
                return ExitCode::from(1);
            }
        };
    match runtime.block_on(run(serve)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::from(1)
        }
    }
}

/// Serves until SIGINT or SIGTERM. The first lines on stdout say where: scripts read the bound
/// address (also for port 0) from the first one.
async fn run(Serve { listen, options, tls }: Serve) -> anyhow::Result<()> {
    let mut signals =
        signal_hook_tokio::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
    let user = options.users.first().map(|(u, _)| u.clone());
    let sim = match &tls {
        None => Sim::start(listen, options).await,
        Some((cert, key)) => Sim::start_tls_files(listen, options, cert, key).await,
    };
    let sim = sim.with_context(|| match &tls {
        None => format!("starting the simulator on {listen}"),
        Some((cert, key)) => {
            format!("serving HTTPS on {listen} with {} and {}", cert.display(), key.display())
        }
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "Knox simulator (dev only) listening on {}", sim.addr())?;
    writeln!(out, "token URL: {}", sim.token_url(ApiVersion::V1))?;
    writeln!(out, "bearer URL: {}", sim.bearer_url())?;
    if let Some(path) = &sim.options().state_file {
        writeln!(out, "token state file: {}", path.display())?;
    }
    if let Some(u) = user {
        writeln!(out, "try: curl -s -u {u}:<password> {}", sim.token_url(ApiVersion::V1))?;
    }
    out.flush()?;
    drop(out);
    futures_util::StreamExt::next(&mut signals).await;
    sim.stop().await;
    Ok(())
}

/// Logs go to stderr; stdout is only for the lines above. The filter is `--log-level`, else
/// `$RUST_LOG`, else `info`.
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

//! The demo: a Knox simulator (the `knox-sim` crate) and the keeper in one process, publishing
//! into `./token-keeper-demo/` (or `--dir DIR`) until Ctrl-C.
//!
//! ```sh
//! cargo run --release --example demo
//! cargo run --release --example demo -- --dir /tmp/demo
//! ```
//!
//! The simulator issues 20-second tokens on a loopback port. The demo writes a config for it
//! (and a password file) through the daemon's own `sink::write_atomic`, then runs the daemon,
//! `token_keeper::app::run`, on that config, so what it shows is the real keeper. It is an
//! example, not a verb of the shipped binary, because the simulator signs tokens with a
//! bundled private key that has no place in the daemon.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use knox_sim::{ApiVersion, Sim, SimOptions};
use token_keeper::{app, sink};
use tokio_util::sync::CancellationToken;
use tracing::info;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Start the simulator and the keeper together, publishing into ./token-keeper-demo/.
#[derive(Debug, clap::Parser)]
#[command(name = "demo", long_about = None)]
struct Args {
    /// Where to publish.
    #[arg(long, default_value = "token-keeper-demo")]
    dir: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = init_tracing() {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("demo: {e}");
        }
        return ExitCode::from(2);
    }
    token_keeper::app::run_to_exit(async { demo(&args.dir).await.map(|()| ExitCode::SUCCESS) })
}

/// The simulator and the keeper in one process, publishing into `dir`.
async fn demo(dir: &Path) -> anyhow::Result<()> {
    let dir = std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    let ttl = Duration::from_secs(20);
    let options = SimOptions { ttl: Some(ttl), ..SimOptions::default() };
    let (user, password) = options.users.first().cloned().context("the simulator has a default user")?;
    let sim = Sim::start("127.0.0.1:0".parse().expect("a valid literal"), options)
        .await
        .context("starting the simulator")?;
    let password_file = dir.join("password");
    sink::write_atomic(&password_file, format!("{password}\n").as_bytes(), 0o600)
        .with_context(|| format!("writing {}", password_file.display()))?;
    let config_path = dir.join("config.toml");
    sink::write_atomic(
        &config_path,
        demo_config(&dir, &sim.token_url(ApiVersion::V1), &user, &password_file).as_bytes(),
        0o600,
    )
    .with_context(|| format!("writing {}", config_path.display()))?;
    info!(url = %sim.token_url(ApiVersion::V1), ttl = %humantime::format_duration(ttl), "Knox simulator started (dev only)");
    info!(
        "publishing into {}: try `cat {}/token` or `token-keeper -c {} status`; Ctrl-C stops",
        dir.display(),
        dir.display(),
        config_path.display()
    );
    let result = app::run(&config_path, CancellationToken::new()).await;
    sim.stop().await;
    result
}

fn demo_config(dir: &Path, url: &str, user: &str, password_file: &Path) -> String {
    let d = dir.display();
    format!(
        r#"# Written by `cargo run --example demo`: the keeper against its own Knox simulator.
[defaults]
refresh_fraction = 0.5   # rotate at half-life so the demo shows rotations quickly
min_remaining = "5s"
revoke_superseded_after = "15s"   # stay under Knox's per-user limit of 10 tokens

[[cluster]]
name = "demo"
token_url = "{url}"
[cluster.auth]
method = "basic"
user = "{user}"
password_file = "{pf}"
[[cluster.output]]
path = "{d}/token"
format = "raw"
[[cluster.output]]
path = "{d}/token.sh"
format = "shell"
[[cluster.output]]
path = "{d}/token.env"
format = "env"
[[cluster.output]]
path = "{d}/token.json"
format = "json"
"#,
        pf = password_file.display()
    )
}

/// Logs on stderr, as the daemon writes them: `$RUST_LOG`, else `info`.
fn init_tracing() -> Result<(), String> {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    let spec =
        std::env::var("RUST_LOG").ok().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| "info".into());
    let filter =
        spec.parse::<Targets>().map_err(|e| format!("RUST_LOG {spec:?} is not a log filter: {e}"))?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_max_level(LevelFilter::TRACE)
        .with_ansi(std::io::stderr().is_terminal())
        .finish()
        .with(filter)
        .init();
    Ok(())
}

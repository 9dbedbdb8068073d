//! `token-keeper run`: wires the daemon together (signals, config watcher, health server, keeper).
//!
//! `run` owns the root `CancellationToken`, the `TaskTracker` and the one consumer of
//! [`Control`]: signals and the config watcher send, this loop decides. A reload validates the
//! whole new file before anything changes; an invalid file is logged and the keeper goes on
//! under the old config.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::{self, Config, ConfigError, Env};
use crate::control::Control;
use crate::keeper::{FirstRound, Keeper};
use crate::knox::client::load_ca_file;
use crate::knox::Clients;
use crate::sim::{ApiVersion, Sim, SimOptions};
use crate::telemetry::Telemetry;
use crate::time::human;
use crate::{reload, server, signals, sink, systemd};

/// How long shutdown waits for publishes in progress.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Loads `path` and checks what only the machine can tell: every output directory (and the
/// metrics textfile's) is safe to publish in, and every `ca_file` holds certificates.
pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    let config = config::load(path, &Env::from_process())?;
    let origin = path.display().to_string();
    for cluster in &config.clusters {
        // Only the PEM is checked here: building a client loads the system's roots, which
        // costs milliseconds that start-up does not need to spend twice.
        if let Some(ca) = &cluster.transport.ca_file {
            load_ca_file(ca)
                .map_err(|e| ConfigError::invalid(&origin, format!("cluster {:?}: {e:#}", cluster.name)))?;
        }
        for o in &cluster.outputs {
            sink::check_output(&o.path).map_err(|m| {
                ConfigError::invalid(
                    &path.display().to_string(),
                    format!("cluster {:?}: output {}: {m}", cluster.name, o.path.display()),
                )
            })?;
        }
    }
    // The metrics textfile is written like a token file: an unsafe directory is a start-up
    // error, not a warning at every write.
    if let Some(textfile) = &config.server.metrics_textfile {
        sink::check_output(textfile).map_err(|m| {
            ConfigError::invalid(&origin, format!("[server] metrics_textfile {}: {m}", textfile.display()))
        })?;
    }
    Ok(config)
}

pub(crate) fn warn_insecure(config: &Config) {
    for c in config.clusters.iter().filter(|c| c.transport.insecure_skip_tls_verify) {
        warn!(cluster = %c.name, url = %c.token_url, "insecure_skip_tls_verify is set: the gateway's certificate is not checked, so anyone on the network path can take the credentials");
    }
}

/// `token-keeper run`: keeps every cluster's token fresh until SIGTERM/SIGINT, or until
/// `stop` is cancelled (for callers that embed the daemon, such as tests).
pub async fn run(config_path: &Path, stop: CancellationToken) -> anyhow::Result<()> {
    // First, so that a signal during start-up is queued rather than fatal.
    let signals = signals::install().context("installing signal handlers")?;
    let mut current = Arc::new(load_config(config_path)?);
    warn_insecure(&current);

    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (control_tx, mut control_rx) = mpsc::channel(16);
    tracker.spawn(signals::run(signals, control_tx.clone(), shutdown.clone()));
    match reload::watch(config_path, control_tx.clone(), shutdown.clone()) {
        Ok(watcher) => {
            tracker.spawn(watcher);
        }
        Err(e) => warn!("config file changes will not be noticed (SIGHUP still reloads): {e:#}"),
    }

    let telemetry = Arc::new(Telemetry::new(&current));
    if let Some(addr) = current.server.listen {
        let (_, serving) = server::bind(addr, telemetry.clone(), shutdown.clone(), tracker.clone()).await?;
        tracker.spawn(serving);
    }
    let (first_tx, first_rx) = oneshot::channel();
    let keeper = Keeper::new(
        current.clone(),
        Arc::new(Clients::default()),
        tracker.clone(),
        shutdown.clone(),
        first_tx,
        telemetry.clone(),
    )?;
    let (config_tx, config_rx) = watch::channel(current.clone());
    let refresh = Arc::new(Notify::new());
    let mut keeper_task = tracker.spawn(keeper.run(config_rx, refresh.clone()));
    info!(config = %config_path.display(), clusters = current.clusters.len(), "token-keeper {} started", env!("CARGO_PKG_VERSION"));

    let mut first_rx = Some(first_rx);
    let result = loop {
        tokio::select! {
            Some(control) = control_rx.recv() => match control {
                Control::Shutdown { cause } => {
                    info!("shutting down ({cause})");
                    break Ok(());
                }
                Control::Refresh => refresh.notify_one(),
                Control::Reload { cause } => {
                    systemd::reloading();
                    match reload_config(config_path, &current, cause) {
                        Ok(Some(new)) => {
                            if new.server != current.server {
                                warn!("[server] settings take effect at the next start; the running endpoint and textfile stay as they are");
                            }
                            telemetry.reloaded(true);
                            current = new;
                            config_tx.send_replace(current.clone());
                        }
                        Ok(None) => {}
                        Err(()) => telemetry.reloaded(false),
                    }
                    if first_rx.is_none() {
                        systemd::ready("running");
                    }
                }
            },
            round = async { first_rx.as_mut().expect("guarded by the if below").await }, if first_rx.is_some() => {
                first_rx = None;
                if let Ok(FirstRound { published, failed }) = round {
                    info!(published, failed, "ready");
                    systemd::ready(&format!("{published} clusters published, {failed} failed"));
                }
            }
            r = &mut keeper_task => break Err(anyhow::anyhow!("the keeper loop stopped unexpectedly: {r:?}")),
            () = stop.cancelled() => {
                info!("shutting down (requested)");
                break Ok(());
            }
        }
    };
    systemd::stopping();
    shutdown.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        warn!("tasks still running after {}; exiting anyway", human(SHUTDOWN_GRACE));
    }
    result
}

/// Validates the file again: the new config if it is valid and different, `None` if it is
/// the same, `Err` (logged) if it is invalid.
fn reload_config(path: &Path, current: &Arc<Config>, cause: &str) -> Result<Option<Arc<Config>>, ()> {
    match load_config(path) {
        Ok(new) if new == **current => {
            info!(cause, "config reloaded: no change");
            Ok(None)
        }
        Ok(new) => {
            info!(cause, clusters = new.clusters.len(), "config reloaded");
            warn_insecure(&new);
            Ok(Some(Arc::new(new)))
        }
        Err(e) => {
            error!(cause, "config rejected, still running on the previous one: {e}");
            Err(())
        }
    }
}

/// Options of `token-keeper sim`.
pub struct SimArgs {
    /// Where to listen.
    pub listen: std::net::SocketAddr,
    /// The simulator's options.
    pub options: SimOptions,
    /// PEM certificate chain and private key files: serve HTTPS instead of plain HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// `token-keeper sim`: a Knox simulator until SIGINT/SIGTERM.
pub async fn sim(args: SimArgs) -> anyhow::Result<()> {
    let mut signals =
        signal_hook_tokio::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
    let user = args.options.users.first().map(|(u, _)| u.clone());
    let sim = match &args.tls {
        None => Sim::start(args.listen, args.options).await,
        Some((cert, key)) => Sim::start_tls_files(args.listen, args.options, cert, key).await,
    };
    let sim = sim.with_context(|| match &args.tls {
        None => format!("starting the simulator on {}", args.listen),
        Some((cert, key)) => {
            format!("serving HTTPS on {} with {} and {}", args.listen, cert.display(), key.display())
        }
    })?;
    let mut out = std::io::stdout().lock();
    // The real bound address, also for port 0: scripts read it from this first line.
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

/// `token-keeper demo`: the simulator and the keeper in one process, publishing into `dir`.
pub async fn demo(dir: &Path) -> anyhow::Result<()> {
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
    info!(url = %sim.token_url(ApiVersion::V1), ttl = %human(ttl), "Knox simulator started (dev only)");
    info!(
        "publishing into {}: try `cat {}/token` or `token-keeper -c {} status`; Ctrl-C stops",
        dir.display(),
        dir.display(),
        config_path.display()
    );
    let result = run(&config_path, CancellationToken::new()).await;
    sim.stop().await;
    result
}

fn demo_config(dir: &Path, url: &str, user: &str, password_file: &Path) -> String {
    let d = dir.display();
    format!(
        r#"# Written by `token-keeper demo`: the keeper against its own Knox simulator.
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

/// Where `demo` publishes by default.
pub fn default_demo_dir() -> PathBuf {
    PathBuf::from("token-keeper-demo")
}

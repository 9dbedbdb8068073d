//! `token-keeper run`: wires the daemon together (signals, config watcher, health server, keeper).
//!
//! `run` owns the root `CancellationToken`, the `TaskTracker` and the one consumer of
//! [`Control`]: signals and the config watcher send, this loop decides. A reload validates the
//! whole new file before anything changes; an invalid file is logged and the keeper goes on
//! under the old config.

use std::path::Path;
use std::process::ExitCode;
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
use crate::telemetry::Telemetry;
use crate::time::human;
use crate::{reload, server, signals, sink, systemd};

/// Runs `verb` on the daemon's runtime and turns its result into the process's exit code:
/// its own code, else 2 for a [`ConfigError`] and 1 for any other error, logged once with its
/// context chain. The runtime is one thread (the work is IO-bound and small) with a blocking
/// pool for publishing (fsync) capped at 4 threads, which keeps memory flat when a thousand
/// clusters publish at once. The binary and the demo example both start here.
pub fn run_to_exit(verb: impl std::future::Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    let runtime =
        match tokio::runtime::Builder::new_current_thread().enable_all().max_blocking_threads(4).build() {
            Ok(rt) => rt,
            Err(e) => {
                error!("cannot start the async runtime: {e}");
                return ExitCode::from(1);
            }
        };
    match runtime.block_on(verb) {
        Ok(code) => code,
        Err(err) => {
            error!("{err:#}");
            if err.downcast_ref::<ConfigError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

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
                    reload(config_path, cause, &mut current, &config_tx, &telemetry);
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

/// `Control::Reload`: a valid, changed config replaces `current` and goes to the keeper; an
/// invalid one is logged and changes nothing.
fn reload(
    path: &Path,
    cause: &str,
    current: &mut Arc<Config>,
    keeper: &watch::Sender<Arc<Config>>,
    telemetry: &Telemetry,
) {
    match reload_config(path, current, cause) {
        Ok(Some(new)) => {
            if new.server != current.server {
                warn!("[server] settings take effect at the next start; the running endpoint and textfile stay as they are");
            }
            telemetry.reloaded(true);
            *current = new;
            keeper.send_replace(current.clone());
        }
        Ok(None) => {}
        Err(()) => telemetry.reloaded(false),
    }
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

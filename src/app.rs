//! Wires the daemon together and implements each CLI verb.
//!
//! `run` owns the root `CancellationToken`, the `TaskTracker` and the one consumer of
//! [`Control`]: signals and the config watcher send, this loop decides. A reload validates the
//! whole new file before anything changes; an invalid file is logged and the keeper goes on
//! under the old config.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _};
use tokio::sync::{mpsc, oneshot, watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::{self, Cluster, Config, ConfigError, Env, Format};
use crate::keeper::{human, FirstRound, Keeper};
use crate::knox::client::load_ca_file;
use crate::knox::{Clients, KnoxClient};
use crate::output::{self, rfc3339};
use crate::scheduler::backoff;
use crate::telemetry::Telemetry;
use crate::{keeper, reload, server, signals, sink, systemd, text};

/// Everything that can steer the running daemon. Signals and the config watcher send these;
/// [`run`] is the only receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Re-read and validate the config; apply it if valid.
    Reload {
        /// What asked, for the log.
        cause: &'static str,
    },
    /// Refresh every cluster now.
    Refresh,
    /// Stop gracefully.
    Shutdown {
        /// What asked, for the log.
        cause: &'static str,
    },
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

fn warn_insecure(config: &Config) {
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

/// `token-keeper once`: keeps each still-fresh published token, acquires the rest, and
/// returns whether every cluster ends with a fresh token. Transient failures are retried
/// until `timeout`.
pub async fn once(config_path: &Path, timeout: Duration) -> anyhow::Result<bool> {
    let config = load_config(config_path)?;
    warn_insecure(&config);
    let clients = Clients::default();
    let permits = Arc::new(Semaphore::new(config.max_concurrent_requests));
    let deadline = crate::scheduler::later(Instant::now(), timeout);
    let mut tasks = JoinSet::new();
    for cluster in &config.clusters {
        let client = clients.get(&cluster.transport)?;
        tasks.spawn(once_cluster(cluster.clone(), client, permits.clone(), deadline));
    }
    let mut all_fresh = true;
    while let Some(r) = tasks.join_next().await {
        all_fresh &= r.unwrap_or(false);
    }
    Ok(all_fresh)
}

async fn once_cluster(
    cluster: Arc<Cluster>,
    client: KnoxClient,
    permits: Arc<Semaphore>,
    deadline: Instant,
) -> bool {
    let name = cluster.name.as_str();
    let min = cluster.policy.min_remaining;
    let existing = match output::read_published(&cluster) {
        Ok(p) => p,
        Err(e) => {
            warn!(cluster = name, "ignoring the published token: {e:#}");
            None
        }
    };
    if let Some(p) = &existing {
        match p.remaining_ms(SystemTime::now()) {
            None => {
                info!(
                    cluster = name,
                    token_id = p.token_id.as_deref().unwrap_or("-"),
                    "kept: the published token never expires"
                );
                return true;
            }
            Some(ms) if ms >= 0 && u128::from(ms.unsigned_abs()) >= min.as_millis() => {
                info!(cluster = name, token_id = p.token_id.as_deref().unwrap_or("-"), left = %human(Duration::from_millis(ms.unsigned_abs())), "kept: the published token is still fresh");
                return true;
            }
            Some(_) => {}
        }
    }
    let generation = existing.map_or(0, |p| p.generation).saturating_add(1);
    let mut failures = 0;
    loop {
        let result = {
            let Ok(_permit) = permits.acquire().await else { return false };
            client.acquire(&cluster).await
        };
        match result {
            Ok(token) => {
                if keeper::publish(&cluster, &token, generation).await.is_err() {
                    return false;
                }
                let left = token.lifetime(cluster.lifecycle.consumers_validate);
                info!(cluster = name, token_id = %token.id(), fingerprint = %token.jwt.fingerprint(), generation, left = %left.map_or_else(|| "never expires".into(), human), "token published");
                return left.is_none_or(|l| l >= min);
            }
            Err(e) => {
                failures += 1;
                let wait = backoff(failures, fastrand::f64(), e.class());
                if e.is_transient() && crate::scheduler::later(Instant::now(), wait) < deadline {
                    warn!(
                        cluster = name,
                        status = e.status(),
                        "attempt {failures} failed: {e}; retrying in {}",
                        human(wait)
                    );
                    tokio::time::sleep(wait).await;
                    continue;
                }
                error!(cluster = name, status = e.status(), "giving up: {e}");
                return false;
            }
        }
    }
}

/// `token-keeper status`: one line per cluster; returns whether all are fresh. What the
/// published files hold is shown escaped ([`crate::text::escape`]): they may carry what Knox
/// sent.
pub fn status(config_path: &Path, json: bool) -> anyhow::Result<bool> {
    let config = config::load(config_path, &Env::from_process())?;
    let now = SystemTime::now();
    if json {
        return status_json(&config, now);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<20} {:<38} {:<22} {:>8} {:>10}  STATE",
        "CLUSTER", "TOKEN ID", "EXPIRES", "LEFT", "KNOX CLOCK"
    )?;
    let mut all_fresh = true;
    for c in &config.clusters {
        let (id, expires, left, clock, state) = match output::read_published(c) {
            Ok(None) => ("-".into(), "-".into(), "-".into(), "-".into(), "not published".to_owned()),
            Err(e) => ("-".into(), "-".into(), "-".into(), "-".into(), format!("unreadable: {e:#}")),
            Ok(Some(p)) => {
                let id = p.token_id.clone().unwrap_or_else(|| "-".into());
                let (expires, left, state) = match (p.expires_at_ms, p.remaining_ms(now)) {
                    (Some(at), Some(ms)) => {
                        let state = if ms <= 0 {
                            "expired"
                        } else if u128::from(ms.unsigned_abs()) < c.policy.min_remaining.as_millis() {
                            "expiring"
                        } else {
                            "fresh"
                        };
                        let left = if ms > 0 {
                            human(Duration::from_millis(ms.unsigned_abs()))
                        } else {
                            "0s".into()
                        };
                        (rfc3339(crate::knox::from_epoch_ms(at)), left, state.to_owned())
                    }
                    _ => ("never".into(), "-".into(), "fresh".to_owned()),
                };
                // A stale token still works, but will not be replaced in time.
                let state = match (p.stale, &state[..]) {
                    (true, "fresh" | "expiring") => {
                        format!("stale: {}", p.last_error.as_deref().unwrap_or("refreshing keeps failing"))
                    }
                    _ => state,
                };
                (id, expires, left, signed(p.knox_clock_offset_ms), state)
            }
        };
        all_fresh &= state == "fresh";
        let (id, state) = (text::quote(&id, 64), text::escape(&state));
        writeln!(out, "{:<20} {:<38} {:<22} {:>8} {:>10}  {state}", c.name, id, expires, left, clock)?;
    }
    Ok(all_fresh)
}

/// `status --json`: an array with one object per cluster: `cluster`, `state` (`fresh`,
/// `expiring`, `stale`, `expired`, `not_published`, `unreadable`), `fresh`, `token_id`,
/// `expires_at`, `expires_at_ms`, `remaining_seconds`, `knox_clock_offset_ms`, `generation`,
/// `error`.
fn status_json(config: &Config, now: SystemTime) -> anyhow::Result<bool> {
    use serde_json::{json, Value};
    let mut all_fresh = true;
    let mut rows = Vec::new();
    for c in &config.clusters {
        let row = match output::read_published(c) {
            Ok(None) => json!({"cluster": c.name, "state": "not_published", "fresh": false}),
            Err(e) => {
                json!({"cluster": c.name, "state": "unreadable", "fresh": false, "error": format!("{e:#}")})
            }
            Ok(Some(p)) => {
                let remaining = p.remaining_ms(now);
                let state = match remaining {
                    Some(ms) if ms <= 0 => "expired",
                    _ if p.stale => "stale",
                    Some(ms) if u128::from(ms.unsigned_abs()) < c.policy.min_remaining.as_millis() => {
                        "expiring"
                    }
                    _ => "fresh",
                };
                json!({
                    "cluster": c.name,
                    "state": state,
                    "fresh": state == "fresh",
                    "token_id": p.token_id,
                    "expires_at": p.expires_at_ms.map(|ms| rfc3339(crate::knox::from_epoch_ms(ms))),
                    "expires_at_ms": p.expires_at_ms.unwrap_or(-1),
                    "remaining_seconds": remaining.map(|ms| ms.max(0) / 1000),
                    "knox_clock_offset_ms": p.knox_clock_offset_ms,
                    "generation": p.generation,
                    "error": p.last_error,
                })
            }
        };
        all_fresh &= row["fresh"] == Value::Bool(true);
        rows.push(row);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", text::escape_json(&Value::Array(rows).to_string()))?;
    Ok(all_fresh)
}

/// Knox's clock offset for people: "+2h", "-90s", "0s" (below a second is noise: the
/// `Date` header has one-second resolution).
fn signed(ms: i64) -> String {
    if ms.unsigned_abs() < 1000 {
        return "0s".into();
    }
    let sign = if ms < 0 { '-' } else { '+' };
    // Rounded to the second: the estimate is the middle of a `Date` second.
    format!("{sign}{}", human(Duration::from_secs(ms.unsigned_abs().saturating_add(500) / 1000)))
}

/// `token-keeper token`: writes the published token in `format` to stdout, byte for byte
/// what an output file of that format holds.
pub fn token(config_path: &Path, cluster: Option<&str>, format: Format) -> anyhow::Result<()> {
    let config = config::load(config_path, &Env::from_process())?;
    let c = pick_cluster(&config, config_path, cluster)?;
    let p = output::read_published(c)?.with_context(|| {
        format!("no token is published for cluster {:?} yet (is token-keeper running?)", c.name)
    })?;
    if p.remaining_ms(SystemTime::now()).is_some_and(|ms| ms <= 0) {
        bail!("the published token for cluster {:?} has expired (is token-keeper running?)", c.name);
    }
    let mut out = std::io::stdout().lock();
    out.write_all(&output::render(format, &p, c.env_var()))?;
    out.flush()?;
    Ok(())
}

/// The cluster named `name`, or the default one, with a message listing the choices.
pub fn pick_cluster<'a>(config: &'a Config, path: &Path, name: Option<&str>) -> anyhow::Result<&'a Cluster> {
    if let Some(c) = config.cluster(name) {
        return Ok(c);
    }
    let names: Vec<_> = config.clusters.iter().map(|c| c.name.as_str()).collect();
    match name {
        Some(n) => bail!("no cluster named {n:?} in {} (clusters: {})", path.display(), names.join(", ")),
        None => bail!(
            "{} has several clusters and none is marked default = true: pass --cluster (one of {})",
            path.display(),
            names.join(", ")
        ),
    }
}

/// `token-keeper check-config`: validates and prints the resolved config.
pub fn check_config(config_path: &Path) -> anyhow::Result<()> {
    let config = load_config(config_path)?;
    let mut out = std::io::stdout().lock();
    write!(out, "{config}")?;
    Ok(())
}

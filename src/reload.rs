//! Watches the config file and sends [`Control::Reload`] when it changes.
//!
//! The parent directory is watched, not the file: editors and config management save by
//! writing a temp file and renaming it over the original, which a watch on the old inode
//! never sees (vector's watcher does the same; rathole's misses these saves). Create, modify,
//! remove and rename events for the file's name count, and so do Kubernetes ConfigMap
//! updates, which swap a `..data` symlink. Events are debounced: a save is often several
//! events, and a reload per event would validate half-written files.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::control::Control;

/// Quiet time after the last event before reloading.
pub(crate) const DEBOUNCE: Duration = Duration::from_millis(500);

/// Starts watching `config_path`; the returned future forwards debounced reloads until
/// `shutdown`.
pub(crate) fn watch(
    config_path: &Path,
    control: mpsc::Sender<Control>,
    shutdown: CancellationToken,
) -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let path = std::path::absolute(config_path).unwrap_or_else(|_| config_path.to_owned());
    let dir = path.parent().map_or_else(|| PathBuf::from("."), Path::to_owned);
    let name: OsString = path.file_name().context("config path has no file name")?.to_owned();
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        let ours = event.paths.iter().any(|p| {
            p.file_name().is_some_and(|n| n == name.as_os_str() || n.to_string_lossy().starts_with("..data"))
        });
        if ours {
            let _ = raw_tx.send(());
        }
    })
    .context("starting the config file watcher")?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("watching {}", dir.display()))?;
    Ok(async move {
        // The watcher lives as long as this future.
        let _watcher = watcher;
        loop {
            tokio::select! {
                r = raw_rx.recv() => if r.is_none() { return },
                () = shutdown.cancelled() => return,
            }
            loop {
                tokio::select! {
                    r = raw_rx.recv() => if r.is_none() { return },
                    () = tokio::time::sleep(DEBOUNCE) => break,
                    () = shutdown.cancelled() => return,
                }
            }
            if control.send(Control::Reload { cause: "config file changed" }).await.is_err() {
                return;
            }
        }
    })
}

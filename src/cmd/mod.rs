//! The command-line verbs other than the daemon itself (`run`, in [`crate::app`]): each in a
//! file of its own, each with a `run` function that `main.rs` calls, as mini-redis's `cmd/`.

pub mod check_config;
pub mod once;
pub mod status;
pub mod token;
pub mod tokens;

use std::path::Path;

use anyhow::bail;

use crate::config::{Cluster, Config};

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

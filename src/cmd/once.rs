//! `token-keeper once`: one round for init containers and cron. A still-fresh published token
//! is kept; every other cluster gets one, with transient failures retried until a deadline.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::app::{load_config, warn_insecure};
use crate::config::Cluster;
use crate::keeper;
use crate::knox::labels::Purpose;
use crate::knox::{Clients, KnoxClient};
use crate::output::{self, Freshness};
use crate::time::human;

/// `token-keeper once`: keeps each still-fresh published token, acquires the rest, and
/// returns whether every cluster ends with a fresh token. Transient failures are retried
/// until `timeout`.
pub(super) async fn run(config_path: &Path, timeout: Duration) -> anyhow::Result<bool> {
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
        let token_id = p.token_id.as_deref().unwrap_or("-");
        match p.freshness(SystemTime::now(), min) {
            Freshness::NeverExpires => {
                info!(cluster = name, token_id, "kept: the published token never expires");
                return true;
            }
            Freshness::Fresh(left) => {
                info!(cluster = name, token_id, left = %human(left), "kept: the published token is still fresh");
                return true;
            }
            Freshness::Expiring(_) | Freshness::Expired => {}
        }
    }
    let generation = existing.map_or(0, |p| p.generation).saturating_add(1);
    match super::acquire_until(&client, &cluster, deadline, Some(&permits), Purpose::Keep).await {
        Ok(token) => {
            if keeper::publish(&cluster, &token, generation).await.is_err() {
                return false;
            }
            let left = token.lifetime(cluster.lifecycle.consumers_validate);
            info!(cluster = name, token_id = %token.id(), fingerprint = %token.jwt.fingerprint(), generation, left = %left.map_or_else(|| "never expires".into(), human), "token published");
            left.is_none_or(|l| l >= min)
        }
        Err(e) => {
            error!(cluster = name, status = e.status(), "giving up: {e}");
            false
        }
    }
}

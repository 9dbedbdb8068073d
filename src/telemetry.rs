//! What the keeper reports about itself: per-cluster token state and counters, for
//! `/healthz`, `/readyz`, `/metrics` and the node_exporter textfile.
//!
//! The keeper records events here; readers take a consistent snapshot under one mutex. The
//! metrics are rendered in the Prometheus text format 0.0.4 by hand: it is what both
//! Prometheus scrapes and node_exporter's textfile collector parse, whereas the
//! prometheus-client crate emits OpenMetrics (`# EOF`, `_total` added to counter family names)
//! that the textfile collector reads differently. A dozen families do not need a library.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::config::Config;
use crate::output::Published;
use crate::time::{epoch_ms, secs};

/// `/healthz` fails when the keeper loop has not run for this long. The loop wakes at least
/// once a minute, so three missed wake-ups mean it is stuck.
pub const LIVENESS_WINDOW: Duration = Duration::from_secs(180);

/// The shared record.
#[derive(Debug)]
pub struct Telemetry {
    state: Mutex<State>,
    textfile: Option<PathBuf>,
}

#[derive(Debug)]
struct State {
    last_loop: Instant,
    config_generation: u64,
    reloads: BTreeMap<&'static str, u64>,
    clusters: BTreeMap<String, ClusterStats>,
    /// Whether anything changed since the textfile was last written.
    dirty: bool,
}

#[derive(Debug, Default)]
struct ClusterStats {
    min_remaining: Duration,
    published: bool,
    /// Epoch ms on this host's clock (Knox's expiry less the measured offset); `None` for a
    /// token that never expires.
    expires_local_ms: Option<i64>,
    generation: u64,
    last_success_ms: Option<i64>,
    clock_offset_ms: i64,
    stale: Option<String>,
    acquisitions: BTreeMap<&'static str, u64>,
    renewals: BTreeMap<(&'static str, String), u64>,
    revocations: BTreeMap<&'static str, u64>,
    hook_failures: u64,
    evictions: u64,
    orphans_swept: u64,
}

/// One cluster that is not ready, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    /// The cluster.
    pub cluster: String,
    /// Why, for the `/readyz` body.
    pub reason: String,
}

impl Telemetry {
    /// A record for `config`; `textfile` is `[server] metrics_textfile`.
    pub fn new(config: &Config) -> Telemetry {
        let t = Telemetry {
            state: Mutex::new(State {
                last_loop: Instant::now(),
                config_generation: 1,
                reloads: BTreeMap::new(),
                clusters: BTreeMap::new(),
                dirty: true,
            }),
            textfile: config.server.metrics_textfile.clone(),
        };
        t.set_clusters(config);
        t
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut s = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut s)
    }

    /// The keeper loop ran (liveness).
    pub fn loop_ran(&self) {
        self.with(|s| s.last_loop = Instant::now());
    }

    /// Clusters follow the config: new ones appear, removed ones go, the rest keep counting.
    pub fn set_clusters(&self, config: &Config) {
        self.with(|s| {
            s.clusters.retain(|name, _| config.clusters.iter().any(|c| &c.name == name));
            for c in &config.clusters {
                s.clusters.entry(c.name.clone()).or_default().min_remaining = c.policy.min_remaining;
            }
            s.dirty = true;
        });
    }

    /// A reload was applied (`ok`) or rejected.
    pub fn reloaded(&self, ok: bool) {
        self.with(|s| {
            *s.reloads.entry(if ok { "ok" } else { "error" }).or_default() += 1;
            if ok {
                s.config_generation += 1;
            }
            s.dirty = true;
        });
    }

    /// A token was published for `cluster` (acquired, or renewed when `renewal`).
    pub fn published(&self, cluster: &str, p: &Published, renewal: bool) {
        self.with(|s| {
            let c = s.clusters.entry(cluster.to_owned()).or_default();
            c.published = true;
            c.expires_local_ms = p.expires_at_ms.map(|ms| ms.saturating_sub(p.knox_clock_offset_ms));
            c.generation = p.generation;
            c.clock_offset_ms = p.knox_clock_offset_ms;
            c.last_success_ms = Some(epoch_ms(SystemTime::now()));
            c.stale = None;
            if renewal {
                *c.renewals.entry(("ok", "200".to_owned())).or_default() += 1;
            } else {
                *c.acquisitions.entry("ok").or_default() += 1;
            }
            s.dirty = true;
        });
    }

    /// An acquisition failed.
    pub fn acquisition_failed(&self, cluster: &str) {
        self.count(cluster, |c| *c.acquisitions.entry("error").or_default() += 1);
    }

    /// A renewal was refused or failed; `code` is Knox's error code, else the HTTP status,
    /// else "none".
    pub fn renewal_failed(&self, cluster: &str, code: String) {
        self.count(cluster, |c| *c.renewals.entry(("error", code)).or_default() += 1);
    }

    /// A revocation finished.
    pub fn revoked(&self, cluster: &str, ok: bool) {
        self.count(cluster, |c| *c.revocations.entry(if ok { "ok" } else { "error" }).or_default() += 1);
    }

    /// A consumer hook (`on_change`) failed.
    pub fn hook_failed(&self, cluster: &str) {
        self.count(cluster, |c| c.hook_failures += 1);
    }

    /// The eviction guard found the published token gone on the server.
    pub fn evicted(&self, cluster: &str) {
        self.count(cluster, |c| c.evictions += 1);
    }

    /// The orphan sweep revoked a token of this installation that nothing held; `cluster`
    /// is a configured cluster (the sweep attributes tokens of removed ones to their
    /// group's first).
    pub fn orphan_swept(&self, cluster: &str) {
        self.with(|s| {
            if let Some(c) = s.clusters.get_mut(cluster) {
                c.orphans_swept += 1;
                s.dirty = true;
            }
        });
    }

    /// The cluster went stale (`Some(error)`) or recovered.
    pub fn set_stale(&self, cluster: &str, error: Option<String>) {
        self.count(cluster, |c| c.stale = error);
    }

    fn count(&self, cluster: &str, f: impl FnOnce(&mut ClusterStats)) {
        self.with(|s| {
            f(s.clusters.entry(cluster.to_owned()).or_default());
            s.dirty = true;
        });
    }

    /// Liveness: the keeper loop ran within [`LIVENESS_WINDOW`]. Knox being down does not
    /// make the daemon unhealthy (restarting it would not help).
    pub fn healthy(&self) -> Result<Duration, Duration> {
        let since = self.with(|s| s.last_loop.elapsed());
        if since <= LIVENESS_WINDOW {
            Ok(since)
        } else {
            Err(since)
        }
    }

    /// Readiness: every cluster has a published token with at least `min_remaining` left. A
    /// stale token still counts: it still works.
    pub fn not_ready(&self, now: SystemTime) -> Vec<NotReady> {
        let now_ms = epoch_ms(now);
        self.with(|s| {
            s.clusters
                .iter()
                .filter_map(|(name, c)| {
                    let reason = if !c.published {
                        "no token published yet".to_owned()
                    } else {
                        match c.expires_local_ms.map(|e| e.saturating_sub(now_ms)) {
                            None => return None,
                            Some(left) if left <= 0 => "the published token has expired".to_owned(),
                            Some(left) if u128::from(left.unsigned_abs()) < c.min_remaining.as_millis() => {
                                format!(
                                    "the published token has {} left, less than min_remaining {}",
                                    crate::time::human(Duration::from_millis(left.unsigned_abs())),
                                    crate::time::human(c.min_remaining)
                                )
                            }
                            Some(_) => return None,
                        }
                    };
                    Some(NotReady { cluster: name.clone(), reason })
                })
                .collect()
        })
    }

    /// The metrics in Prometheus text format 0.0.4.
    pub fn render(&self, now: SystemTime) -> String {
        let now_ms = epoch_ms(now);
        self.with(|s| {
            let mut text = Text::default();
            text.token_families(s, now_ms);
            text.request_families(s);
            text.cluster_families(s);
            text.config_families(s);
            text.0
        })
    }

    /// The textfile to write now, if one is configured and anything changed.
    pub fn textfile_update(&self, now: SystemTime) -> Option<(PathBuf, String)> {
        let path = self.textfile.clone()?;
        let dirty = self.with(|s| std::mem::replace(&mut s.dirty, false));
        dirty.then(|| (path, self.render(now)))
    }
}

/// The metrics text being rendered, one family at a time, in the order `/metrics` has always
/// listed them.
#[derive(Default)]
struct Text(String);

impl Text {
    /// One family: its `# HELP` and `# TYPE` lines, then a line per `(labels, value)`.
    fn family(&mut self, name: &str, kind: &str, help: &str, samples: Vec<(String, String)>) {
        let out = &mut self.0;
        let _ = writeln!(out, "# HELP token_keeper_{name} {help}");
        let _ = writeln!(out, "# TYPE token_keeper_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "token_keeper_{name}{labels} {value}");
        }
    }

    /// When the published tokens expire, and how long they have left.
    fn token_families(&mut self, s: &State, now_ms: i64) {
        self.family(
            "token_expiry_timestamp_seconds",
            "gauge",
            "When the published token expires (this host's clock), or +Inf if it never does.",
            per_cluster(s, |c| c.published.then(|| c.expires_local_ms.map_or("+Inf".into(), secs))),
        );
        self.family(
            "token_remaining_seconds",
            "gauge",
            "Time left on the published token.",
            per_cluster(s, |c| {
                c.published
                    .then(|| c.expires_local_ms.map_or("+Inf".into(), |ms| secs(ms.saturating_sub(now_ms))))
            }),
        );
    }

    /// The acquisition, renewal and revocation counters, by result.
    fn request_families(&mut self, s: &State) {
        let mut acq = Vec::new();
        let mut ren = Vec::new();
        let mut rev = Vec::new();
        for (n, c) in &s.clusters {
            for (result, v) in &c.acquisitions {
                acq.push((labels(&[("cluster", n), ("result", result)]), v.to_string()));
            }
            for ((result, code), v) in &c.renewals {
                ren.push((labels(&[("cluster", n), ("result", result), ("code", code)]), v.to_string()));
            }
            for (result, v) in &c.revocations {
                rev.push((labels(&[("cluster", n), ("result", result)]), v.to_string()));
            }
        }
        self.family("acquisitions_total", "counter", "Token acquisitions, by result.", acq);
        self.family(
            "renewals_total",
            "counter",
            "Token renewals, by result and Knox code (or HTTP status).",
            ren,
        );
        self.family(
            "revocations_total",
            "counter",
            "Revocations of superseded or exiting tokens, by result.",
            rev,
        );
    }

    /// Per cluster: generation, last success, clock offset, staleness, hook failures.
    fn cluster_families(&mut self, s: &State) {
        self.family(
            "publish_generation",
            "gauge",
            "The generation of the published token (counts up per new token).",
            per_cluster(s, |c| Some(c.generation.to_string())),
        );
        self.family(
            "last_success_timestamp_seconds",
            "gauge",
            "When a token was last acquired or renewed.",
            per_cluster(s, |c| c.last_success_ms.map(secs)),
        );
        self.family(
            "knox_clock_offset_seconds",
            "gauge",
            "Knox's clock minus this host's, from its Date header.",
            per_cluster(s, |c| c.published.then(|| secs(c.clock_offset_ms))),
        );
        self.family(
            "stale",
            "gauge",
            "1 while refreshing keeps failing past the refresh point.",
            per_cluster(s, |c| Some(u8::from(c.stale.is_some()).to_string())),
        );
        self.family(
            "consumer_hook_failures_total",
            "counter",
            "on_change signals or commands that failed.",
            per_cluster(s, |c| Some(c.hook_failures.to_string())),
        );
        self.family(
            "token_evicted_total",
            "counter",
            "Published tokens found revoked, disabled or evicted on the server, and replaced.",
            per_cluster(s, |c| Some(c.evictions.to_string())),
        );
        self.family(
            "orphans_swept_total",
            "counter",
            "Tokens of this installation and host that nothing held, revoked by the orphan sweep.",
            per_cluster(s, |c| Some(c.orphans_swept.to_string())),
        );
    }

    /// The config generation and the reloads, by result.
    fn config_families(&mut self, s: &State) {
        self.family(
            "config_generation",
            "gauge",
            "Counts up with every config applied.",
            vec![(String::new(), s.config_generation.to_string())],
        );
        let reloads = ["ok", "error"]
            .iter()
            .map(|r| (labels(&[("result", r)]), s.reloads.get(r).copied().unwrap_or(0).to_string()))
            .collect();
        self.family("reloads_total", "counter", "Config reloads, by result.", reloads);
    }
}

/// A sample for each cluster that `f` gives a value, labelled with the cluster's name.
fn per_cluster(s: &State, f: impl Fn(&ClusterStats) -> Option<String>) -> Vec<(String, String)> {
    s.clusters.iter().filter_map(|(n, c)| Some((labels(&[("cluster", n)]), f(c)?))).collect()
}

/// `{k="v",...}` with the values escaped as the text format wants.
fn labels(pairs: &[(&str, &str)]) -> String {
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
        })
        .collect();
    format!("{{{}}}", body.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;

    fn config() -> Config {
        let text = r#"
[[cluster]]
name = "a"
token_url = "http://127.0.0.1:1/gateway/s/knoxtoken/api/v1/token"
min_remaining = "60s"
[cluster.auth]
method = "basic"
user = "u"
password_file = "/p"
[[cluster.output]]
path = "/tmp/a/token"
[[cluster]]
name = "b"
token_url = "http://127.0.0.1:1/gateway/s/knoxtoken/api/v1/token"
[cluster.auth]
method = "basic"
user = "u"
password_file = "/p"
[[cluster.output]]
path = "/tmp/b/token"
"#;
        Config::from_toml(text, "t", &Env::default()).unwrap()
    }

    fn published(expires_at_ms: Option<i64>, offset: i64) -> Published {
        let token = crate::secret::Secret::new("x");
        Published {
            jwt: token,
            token_type: "Bearer".into(),
            token_id: Some("id".into()),
            expires_at_ms,
            jwt_exp: None,
            managed: true,
            target_url: None,
            cluster: "a".into(),
            generation: 3,
            acquired_at: SystemTime::UNIX_EPOCH,
            stale: false,
            last_error: None,
            renewed_at: None,
            last_eviction: None,
            knox_clock_offset_ms: offset,
            verified: None,
        }
    }

    #[test]
    fn readiness_says_which_cluster_and_why() {
        let t = Telemetry::new(&config());
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let not = t.not_ready(now);
        assert_eq!(not.len(), 2);
        assert_eq!(not[0], NotReady { cluster: "a".into(), reason: "no token published yet".into() });
        // Knox two hours ahead: 1,000 s local + 7,200 s + 30 s left on Knox's clock.
        t.published("a", &published(Some(8_230_000), 7_200_000), false);
        t.published("b", &published(None, 0), false);
        let not = t.not_ready(now);
        assert_eq!(not.len(), 1, "{not:?}");
        assert!(not[0].reason.contains("30s left, less than min_remaining 1m"), "{not:?}");
        t.published("a", &published(Some(8_300_000), 7_200_000), false);
        assert!(t.not_ready(now).is_empty());
        assert!(t.not_ready(now + Duration::from_secs(200)).iter().any(|n| n.reason.contains("expired")));
    }

    #[test]
    fn absurd_times_do_not_overflow() {
        let t = Telemetry::new(&config());
        t.published("a", &published(Some(i64::MAX), i64::MIN), false);
        t.published("b", &published(Some(i64::MIN), i64::MAX), false);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(500);
        let _ = t.not_ready(now);
        let _ = t.render(now);
    }

    #[test]
    fn metrics_in_prometheus_text_format() {
        let t = Telemetry::new(&config());
        t.published("a", &published(Some(1_100_000), 100_000), false);
        t.acquisition_failed("a");
        t.renewal_failed("a", "30".into());
        t.revoked("a", true);
        t.hook_failed("a");
        t.evicted("a");
        t.orphan_swept("b");
        t.orphan_swept("gone");
        t.reloaded(false);
        let text = t.render(SystemTime::UNIX_EPOCH + Duration::from_secs(500));
        for line in [
            "# TYPE token_keeper_acquisitions_total counter",
            "token_keeper_acquisitions_total{cluster=\"a\",result=\"ok\"} 1",
            "token_keeper_acquisitions_total{cluster=\"a\",result=\"error\"} 1",
            "token_keeper_renewals_total{cluster=\"a\",result=\"error\",code=\"30\"} 1",
            "token_keeper_revocations_total{cluster=\"a\",result=\"ok\"} 1",
            "token_keeper_token_expiry_timestamp_seconds{cluster=\"a\"} 1000.000",
            "token_keeper_token_remaining_seconds{cluster=\"a\"} 500.000",
            "token_keeper_knox_clock_offset_seconds{cluster=\"a\"} 100.000",
            "token_keeper_publish_generation{cluster=\"a\"} 3",
            "token_keeper_consumer_hook_failures_total{cluster=\"a\"} 1",
            "token_keeper_token_evicted_total{cluster=\"a\"} 1",
            "token_keeper_token_evicted_total{cluster=\"b\"} 0",
            "token_keeper_orphans_swept_total{cluster=\"b\"} 1",
            "token_keeper_config_generation 1",
            "token_keeper_reloads_total{result=\"error\"} 1",
            "token_keeper_reloads_total{result=\"ok\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("\"gone\""), "a cluster that is not configured gets no series:\n{text}");
        // Every sample belongs to the family its TYPE line declared.
        let mut family = String::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap().to_owned();
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                assert_eq!(name, family, "{l}");
            }
        }
        assert_eq!(labels(&[("cluster", "b\"q\\")]), "{cluster=\"b\\\"q\\\\\"}");
    }
}

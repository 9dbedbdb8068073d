//! The eviction guard and the orphan sweep against the simulator, with the real binary: a
//! published token disabled through Knox's API, or evicted by `REMOVE_OLDEST` when another
//! client of the same user mints, is replaced within the check interval and said so in the
//! log, the metrics and `status`; a token this installation left behind on this host is
//! revoked at start, and tokens of another installation or another host are not.

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use knox_sim::{KnoxVersion, LimitAction, SimOptions};

use crate::harness::*;

/// The guard's shortest interval: detection takes up to this, plus the time to acquire.
const INTERVAL: Duration = Duration::from_secs(30);

/// Tokens that outlive every test, so only the guard replaces them.
fn long_sim(opts: SimOptions) -> SimServer {
    SimServer::start(SimOptions { ttl: Some(Duration::from_secs(600)), ..opts })
}

/// A config with `top` keys above `[defaults]` and one cluster `vc` against `sim`.
fn write(fx: &Fixture, top: &str, defaults: &str, sim: &SimServer) -> std::path::PathBuf {
    write_clusters(fx, top, defaults, &[fx.cluster("vc", &sim.url(), "")])
}

/// A config with `top` keys above `[defaults]` and `clusters`; returns the metrics textfile.
fn write_clusters(fx: &Fixture, top: &str, defaults: &str, clusters: &[String]) -> std::path::PathBuf {
    let textfile = fx.path().join("metrics.prom");
    let server = format!("[server]\nmetrics_textfile = \"{}\"\n", textfile.display());
    let text = format!("{top}\n{server}[defaults]\n{FAST}{defaults}\n{}", clusters.concat());
    std::fs::write(&fx.config, text).unwrap();
    textfile
}

/// How many `getUserTokens` requests the simulator saw.
fn censuses(sim: &SimServer) -> usize {
    sim.requests().iter().filter(|r| r.path.ends_with("/getUserTokens")).count()
}

/// How many revoke requests the simulator saw for any token.
fn revoke_requests(sim: &SimServer) -> usize {
    sim.requests().iter().filter(|r| r.path.ends_with("/revoke")).count()
}

/// Another client of the same user: one plain HTTP GET of a token with `query`, as curl
/// would send it. Returns the new token's id.
pub fn mint(sim: &SimServer, query: &str) -> String {
    use base64::Engine as _;
    let url = url::Url::parse(&sim.url()).unwrap();
    let mut stream = std::net::TcpStream::connect(sim.addr()).unwrap();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("alice:{PASSWORD}"));
    let request = format!(
        "GET {}?{query} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {basic}\r\nConnection: close\r\n\r\n",
        url.path(),
        sim.addr()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"));
    json["token_id"].as_str().unwrap().to_owned()
}

/// The published token id of `vc`.
fn published_id(fx: &Fixture) -> Option<String> {
    fx.json("vc")?["token_id"].as_str().map(str::to_owned)
}

/// Waits until `vc` publishes a token other than `old`; returns it and how long it took.
fn wait_replaced(fx: &Fixture, daemon: &Daemon, old: &str, since: Instant) -> (String, Duration) {
    let mut new = None;
    let replaced = wait_until(INTERVAL + WAIT, || {
        new = published_id(fx).filter(|id| id != old);
        new.is_some()
    });
    assert!(replaced, "{old} was not replaced; log:\n{}", daemon.log());
    (new.unwrap(), since.elapsed())
}

/// `status --json`'s row for `vc`.
fn status_row(fx: &Fixture) -> serde_json::Value {
    let out = fx.cmd(&["status", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    rows[0].clone()
}

#[test]
fn a_token_disabled_through_the_api_is_replaced_within_the_interval() {
    let sim = long_sim(SimOptions::default());
    let fx = Fixture::new();
    // Two clusters of one gateway and user: one census serves both.
    let clusters = [fx.cluster("vc", &sim.url(), ""), fx.cluster("vc2", &sim.url(), "")];
    let textfile = write_clusters(
        &fx,
        "eviction_check_interval = \"30s\"",
        "revoke_superseded_after = \"0s\"",
        &clusters,
    );
    let started = Instant::now();
    let daemon = Daemon::run(&fx);
    assert!(wait_until(WAIT, || published_id(&fx).is_some() && censuses(&sim) >= 1), "{}", daemon.log());
    let old = published_id(&fx).unwrap();
    let vc2 = || fx.json("vc2").and_then(|j| j["token_id"].as_str().map(str::to_owned));
    assert!(wait_until(WAIT, || vc2().is_some()), "{}", daemon.log());
    let other = vc2().unwrap();

    let out = fx.cmd(&["tokens", "disable", "--cluster", "vc", &old]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (new, took) = wait_replaced(&fx, &daemon, &old, Instant::now());
    assert!(took < INTERVAL + WAIT, "took {took:?}");

    daemon.wait_log("published token revoked on the server, replacing it", 1);
    let line = daemon.log().lines().find(|l| l.contains("revoked on the server")).unwrap().to_owned();
    assert!(line.contains(&format!("token_id={old}")) && line.contains("reason=disabled"), "{line}");
    assert!(sim.stored_metadata(&new).is_some(), "the new token is stored and valid");
    assert_eq!(vc2(), Some(other), "the other cluster's token is left alone");
    // One census per interval for the group, not one per cluster.
    let most = started.elapsed().as_secs() / INTERVAL.as_secs() + 1;
    assert!(censuses(&sim) as u64 <= most, "{} censuses in {:?}", censuses(&sim), started.elapsed());
    // A disabled token still counts toward the limit: the superseded path revokes it.
    assert!(wait_until(WAIT, || sim.revocations().contains(&old)), "{}", daemon.log());

    let row = status_row(&fx);
    assert_eq!(row["last_eviction"]["reason"], "disabled", "{row}");
    assert_eq!(row["last_eviction"]["token_id"], old.as_str(), "{row}");
    assert_eq!(row["token_id"], new.as_str(), "{row}");
    let text = String::from_utf8(fx.cmd(&["status"]).stdout).unwrap();
    assert!(text.contains(&format!("last eviction: token {old} was disabled on the server")), "{text}");
    let want = "token_keeper_token_evicted_total{cluster=\"vc\"} 1";
    let metrics = || std::fs::read_to_string(&textfile).unwrap_or_default();
    assert!(wait_until(WAIT, || metrics().lines().any(|l| l == want)), "{}", metrics());
    assert_no_secrets(&daemon.log(), &sim.jwts());
}

#[test]
fn a_token_evicted_by_remove_oldest_is_replaced_and_not_revoked_again() {
    let opts =
        SimOptions { token_limit: Some(3), limit_action: LimitAction::RemoveOldest, ..SimOptions::default() };
    let sim = long_sim(opts);
    let fx = Fixture::new();
    write(&fx, "eviction_check_interval = \"30s\"", "revoke_superseded_after = \"0s\"", &sim);
    let daemon = Daemon::run(&fx);
    assert!(wait_until(WAIT, || published_id(&fx).is_some() && censuses(&sim) >= 1), "{}", daemon.log());
    let old = published_id(&fx).unwrap();

    // Another client of the same user mints until Knox evicts the keeper's token.
    let mut minted = 0;
    while sim.stored_metadata(&old).is_some() {
        mint(&sim, "lifespan=PT10M");
        minted += 1;
        assert!(minted <= 3, "Knox should have evicted {old} by now");
    }
    let evicted_at = Instant::now();
    let (new, took) = wait_replaced(&fx, &daemon, &old, evicted_at);
    assert!(took < INTERVAL + WAIT, "took {took:?}");
    assert!(sim.stored_metadata(&new).is_some(), "the new token is stored and valid");
    let line =
        daemon.log().lines().find(|l| l.contains("revoked on the server")).unwrap_or_default().to_owned();
    assert!(line.contains(&format!("token_id={old}")) && line.contains("reason=removed"), "{}", daemon.log());
    assert_eq!(status_row(&fx)["last_eviction"]["reason"], "removed");
    // The removed token is not revoked again (revoke_superseded_after = 0s would have done it
    // at once, before the line below).
    daemon.wait_log("token published", 2);
    assert_eq!(revoke_requests(&sim), 0, "{}", daemon.log());
    #[allow(clippy::print_stderr)]
    {
        eprintln!("eviction to republish (sim, 30s interval): {took:?}");
    }
}

/// The labels of a token `installation` on `host` acquired for cluster `vc`, as a query.
fn labels(installation: &str, host: &str) -> String {
    format!(
        "comment=token-keeper+{installation}+on+{host}+for+vc&md_tk_install={installation}\
         &md_tk_host={host}&md_tk_cluster=vc"
    )
}

#[test]
fn the_orphan_sweep_revokes_only_this_installations_leftovers_on_this_host() {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = token_keeper::config::host_label(&raw);
    // 1.6 keeps the comment only; 2.1 the metadata too.
    for version in [KnoxVersion::V1_6, KnoxVersion::V2_1] {
        let sim = long_sim(SimOptions { version, ..SimOptions::default() });
        // A previous run's leftover of this installation, on this host: through `once`.
        let before = Fixture::new();
        write(&before, "installation_id = \"edge-a\"", "", &sim);
        assert!(before.cmd(&["once"]).status.success());
        let leftover = published_id(&before).unwrap();
        // Another installation's token, and this installation's token on another host.
        let theirs = mint(&sim, &labels("edge-b", &host));
        let elsewhere = mint(&sim, &labels("edge-a", "elsewhere"));
        let unlabelled = mint(&sim, "lifespan=PT10M");

        let fx = Fixture::new();
        let top = "installation_id = \"edge-a\"\neviction_check_interval = \"0s\"";
        let textfile = write(&fx, top, "", &sim);
        let daemon = Daemon::run(&fx);
        daemon.wait_log("orphan token revoked", 1);
        let line = daemon.log().lines().find(|l| l.contains("orphan token revoked")).unwrap().to_owned();
        assert!(line.contains(&format!("token_id={leftover}")) && line.contains("cluster=vc"), "{line}");
        assert_eq!(sim.stored_metadata(&leftover), None, "{version:?}: revoked");
        let mine = published_id(&fx).unwrap();
        for kept in [&theirs, &elsewhere, &unlabelled, &mine] {
            assert!(sim.stored_metadata(kept).is_some(), "{version:?}: {kept} untouched:\n{}", daemon.log());
        }
        assert_eq!(daemon.count("orphan token revoked"), 1, "{}", daemon.log());
        let want = "token_keeper_orphans_swept_total{cluster=\"vc\"} 1";
        let metrics = || std::fs::read_to_string(&textfile).unwrap_or_default();
        assert!(wait_until(WAIT, || metrics().lines().any(|l| l == want)), "{}", metrics());
    }
}

#[test]
fn without_token_management_the_guard_says_so_once_and_stops_until_a_reload() {
    let sim = long_sim(SimOptions::default());
    let fx = Fixture::new();
    write(&fx, "eviction_check_interval = \"30s\"", "", &sim);
    // A managed token published before the start, which the daemon takes over; then the
    // gateway loses its token management (getUserTokens answers 503).
    assert!(fx.cmd(&["once"]).status.success());
    sim.set_managed(false);
    let daemon = Daemon::run(&fx);
    let stop = "the eviction guard and the orphan sweep stop for this gateway and user until a reload";
    daemon.wait_log(stop, 1);
    assert_eq!(censuses(&sim), 1);
    assert!(daemon.log().lines().any(|l| l.contains(stop) && l.contains(" INFO ")), "{}", daemon.log());
    // A reload of a changed config starts it again: one more census, said once more.
    write(&fx, "eviction_check_interval = \"40s\"", "", &sim);
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("config applied", 1);
    daemon.wait_log(stop, 2);
    assert_eq!(censuses(&sim), 2, "{}", daemon.log());
    assert_eq!(daemon.count("orphan token revoked") + daemon.count("revoked on the server"), 0);
}

//! The daemon over time: fast rotations under concurrent readers, SIGKILL mid-publish,
//! reloads (SIGHUP and file changes, valid and invalid), and outputs that become unsafe.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::harness::*;

fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Readers hammer the raw and json files while a 3-second token rotates: every read is a
/// whole, unexpired JWT, never empty, partial or mixed.
#[test]
fn readers_never_see_a_torn_or_expired_token() {
    let sim = SimServer::with_ttl(Duration::from_secs(3));
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "")]);
    let d = Daemon::run(&fx);
    d.wait_log("token published", 1);

    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (raw, json, stop) = (fx.out("vc", "token"), fx.out("vc", "token.json"), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                let mut seen = std::collections::HashSet::new();
                while !stop.load(Ordering::Relaxed) {
                    let path = if r == 0 { &raw } else { &json };
                    let text = std::fs::read_to_string(path).expect("the file always exists");
                    let jwt = if r == 0 {
                        text
                    } else {
                        let v: serde_json::Value = serde_json::from_str(&text)
                            .unwrap_or_else(|e| panic!("torn json ({e}): {text:?}"));
                        v["access_token"].as_str().unwrap().to_owned()
                    };
                    assert_eq!(jwt.split('.').count(), 3, "torn token: {jwt:?}");
                    let exp = claims(&jwt)["exp"].as_i64().expect("exp");
                    // exp is whole seconds; the token is replaced at half-life (1.5 s).
                    assert!(exp >= now_s(), "read an expired token (exp {exp}, now {})", now_s());
                    seen.insert(jwt);
                    reads += 1;
                }
                (reads, seen.len())
            })
        })
        .collect();
    d.wait_log("token published", 5);
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let (reads, distinct) = r.join().expect("reader found a bad token");
        assert!(reads >= 1000, "only {reads} reads");
        assert!(distinct >= 4, "saw {distinct} tokens in {reads} reads");
    }
    assert_no_secrets(&d.log(), &sim.jwts());
}

/// SIGKILL at random points of fast rotations with many outputs: every file present is
/// whole, and the next start carries on counting generations.
#[test]
fn sigkill_during_publishing_leaves_no_torn_file() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    let clusters: Vec<String> = (0..8).map(|i| fx.cluster(&format!("c{i}"), &sim.url(), "")).collect();
    fx.write_config(FAST, &clusters);
    for round in 0..6 {
        let d = Daemon::run(&fx);
        d.wait_log("ready", 1);
        // Refreshes of all 8 clusters (40 files) are in flight when the kill lands.
        d.signal(libc::SIGUSR1);
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..40)));
        d.signal(libc::SIGKILL);
        drop(d);
        for i in 0..8 {
            let name = format!("c{i}");
            let raw = fx.token(&name).unwrap_or_else(|| panic!("round {round}: {name} missing"));
            assert_eq!(raw.split('.').count(), 3, "round {round}: torn raw file");
            let json = fx.json(&name).expect("json present");
            assert!(json["generation"].as_u64().unwrap() >= 1);
            for f in ["token.header", "token.env", "token.sh"] {
                let text = std::fs::read_to_string(fx.out(&name, f)).unwrap();
                assert!(text.ends_with("\n") && text.contains("eyJ"), "round {round}: {f} torn: {text:?}");
            }
        }
    }
    let before = fx.json("c0").unwrap()["generation"].as_u64().unwrap();
    let d = Daemon::run(&fx);
    d.wait_log("ready", 1);
    d.signal(libc::SIGUSR1);
    d.wait_log("token published", 8);
    assert!(fx.json("c0").unwrap()["generation"].as_u64().unwrap() > before);
}

#[test]
fn sighup_reload_adds_removes_and_keeps_clusters() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("keep", &sim.url(), ""), fx.cluster("drop", &sim.url(), "")]);
    let d = Daemon::run(&fx);
    d.wait_log("ready", 1);
    assert_eq!(sim.acquisitions(), 2);
    let kept = fx.json("keep").unwrap()["token_id"].clone();

    // Invalid: the daemon says which file and key, and keeps running on the old config.
    std::fs::write(
        &fx.config,
        std::fs::read_to_string(&fx.config).unwrap().replace("[defaults]", "[defaults]\nbogus = 1"),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    d.wait_log("config rejected", 1);
    let line = d.log().lines().find(|l| l.contains("config rejected")).unwrap().to_owned();
    assert!(line.contains("config.toml:2:") && line.contains("unknown field `bogus`"), "{line}");
    d.signal(libc::SIGUSR1);
    d.wait_log("token published", 4);
    assert_eq!(sim.acquisitions(), 4, "still refreshing both clusters under the old config");
    assert_ne!(fx.json("keep").unwrap()["token_id"], kept, "refreshed");
    let kept = fx.json("keep").unwrap()["token_id"].clone();

    // Valid: "drop" is removed, "new" added, "keep" keeps its token (no new acquisition).
    fx.write_config(FAST, &[fx.cluster("keep", &sim.url(), ""), fx.cluster("new", &sim.url(), "")]);
    d.signal(libc::SIGHUP);
    d.wait_log("config applied", 1);
    d.wait_log("token published", 5);
    assert_eq!(sim.acquisitions(), 5);
    assert_eq!(fx.json("keep").unwrap()["token_id"], kept);
    assert!(fx.token("new").is_some());
    assert!(
        d.log().contains("kept=1") && d.log().contains("added=1") && d.log().contains("removed=1"),
        "{}",
        d.log()
    );
    // The removed cluster is no longer refreshed.
    d.signal(libc::SIGUSR1);
    d.wait_log("token published", 7);
    assert_eq!(sim.acquisitions(), 7);
    assert!(d
        .log()
        .lines()
        .filter(|l| l.contains("token published"))
        .skip(4)
        .all(|l| !l.contains("cluster=drop")));
}

#[test]
fn saving_the_config_file_reloads_without_a_signal() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("a", &sim.url(), "")]);
    let d = Daemon::run(&fx);
    d.wait_log("ready", 1);
    // Saved by rename, as editors do.
    fx.write_config(FAST, &[fx.cluster("a", &sim.url(), ""), fx.cluster("b", &sim.url(), "")]);
    d.wait_log("config reloaded", 1);
    assert!(
        d.log().contains("cause=\"config file changed\"") || d.log().contains("config file changed"),
        "{}",
        d.log()
    );
    assert!(wait_until(WAIT, || fx.token("b").is_some()), "{}", d.log());
    // An invalid save is rejected and the keeper carries on.
    std::fs::write(&fx.config, "[[cluster]\n").unwrap();
    d.wait_log("config rejected", 1);
    d.signal(libc::SIGUSR1);
    d.wait_log("token published", 4);
}

#[test]
fn an_output_directory_that_becomes_unsafe_is_skipped_alone() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    let shared = fx.path().join("shared");
    let cluster = fx.cluster("vc", &sim.url(), "")
        + &format!("[[cluster.output]]\npath = \"{}/token\"\nformat = \"raw\"\n", shared.display());
    fx.write_config(FAST, &[cluster]);
    let d = Daemon::run(&fx);
    d.wait_log("token published", 1);
    let first = fx.token("vc").unwrap();
    assert_eq!(std::fs::read_to_string(shared.join("token")).unwrap(), first);

    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    d.signal(libc::SIGUSR1);
    d.wait_log("output skipped", 1);
    d.wait_log("token published", 2);
    let line = d.log().lines().find(|l| l.contains("output skipped")).unwrap().to_owned();
    assert!(line.contains("writable by group or others") && line.contains("shared"), "{line}");
    assert_ne!(fx.token("vc").unwrap(), first, "the safe outputs got the new token");
    assert_eq!(
        std::fs::read_to_string(shared.join("token")).unwrap(),
        first,
        "the unsafe one was not touched"
    );
}

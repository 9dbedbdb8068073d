//! Token labels against the simulator: what the keeper tells Knox about each token it acquires
//! (`comment`, `md_tk_*`), that `tokens list --mine` finds this installation's tokens among
//! another's by them, on every release line that keeps them, and that `labels = false` sends
//! none.

use knox_sim::blocking::SimServer;
use knox_sim::{KnoxVersion, SimOptions};

use crate::harness::*;

/// The host name as the keeper reduces it (`config::host_label`).
fn host() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    token_keeper::config::host_label(&raw)
}

/// The query of every acquisition the simulator saw.
fn acquisitions(sim: &SimServer) -> Vec<String> {
    sim.requests().into_iter().filter(|r| r.path.ends_with("/api/v1/token")).map(|r| r.query).collect()
}

fn stdout(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn labels_land_in_the_simulators_store() {
    let sim = SimServer::start(SimOptions::default());
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "")]);
    assert_eq!(fx.cmd(&["once"]).status.code(), Some(0));
    let issued = sim.issued();
    // Derived (no installation_id in the file): status, in either form, names the id the
    // labels carry, computed again by another process.
    let status = stdout(&fx.cmd(&["status", "--json"]));
    let rows: serde_json::Value = serde_json::from_str(&status).unwrap();
    let id = rows[0]["installation_id"].as_str().unwrap().to_owned();
    assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{status}");
    let text = stdout(&fx.cmd(&["status"]));
    assert!(text.starts_with(&format!("installation_id: {id} (derived)\n")), "{text}");
    assert!(stdout(&fx.cmd(&["check-config"])).contains(&format!("installation_id = \"{id}\"  # derived")));
    let host = host();
    let (comment, custom) = sim.stored_metadata(&issued[0].token_id).expect("a stored token");
    assert_eq!(comment.as_deref(), Some(format!("token-keeper {id} on {host} for vc").as_str()));
    let want = [
        ("tk_install", id.as_str()),
        ("tk_host", host.as_str()),
        ("tk_cluster", "vc"),
        ("tk_generation", "1"),
    ];
    let want: Vec<(String, String)> = want.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
    assert_eq!(custom, want);

    // Configured, and doctor's test token says what it is.
    let cluster = fx.cluster("vc", &sim.url(), "");
    let text = format!("installation_id = \"edge-1.system\"\n[defaults]\n{FAST}\n{cluster}");
    std::fs::write(&fx.config, text).unwrap();
    assert_eq!(fx.cmd(&["once"]).status.code(), Some(0), "kept: no new token");
    let out = fx.cmd(&["doctor"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let queries = acquisitions(&sim);
    let doctor = queries.last().unwrap();
    let comment = format!("comment=token-keeper+edge-1.system+on+{host}+for+vc+%28doctor%29");
    assert!(doctor.contains(&comment) && doctor.contains("md_tk_install=edge-1.system"), "{doctor}");
    assert_eq!(sim.stored_metadata(&sim.issued().last().unwrap().token_id), None, "doctor revoked it");
}

#[test]
fn tokens_list_mine_shows_only_this_installations_tokens() {
    // 1.6 keeps the comment only; 2.0 and 2.1 the metadata too.
    for version in [KnoxVersion::V1_6, KnoxVersion::V2_0, KnoxVersion::V2_1] {
        let sim = SimServer::start(SimOptions { version, ..SimOptions::default() });
        // Three keepers of one user: two installations, and one that sends no labels.
        let keeper = |id: &str, defaults: &str| {
            let fx = Fixture::new();
            let cluster = fx.cluster("vc", &sim.url(), "");
            let text = format!("installation_id = \"{id}\"\n[defaults]\n{FAST}{defaults}\n{cluster}");
            std::fs::write(&fx.config, text).unwrap();
            assert_eq!(fx.cmd(&["once"]).status.code(), Some(0), "{version:?} {id}");
            let id = fx.json("vc").unwrap()["token_id"].as_str().unwrap().to_owned();
            (fx, id)
        };
        let (a, a_id) = keeper("keeper-a", "");
        let (b, b_id) = keeper("keeper-b", "");
        let (_, plain_id) = keeper("keeper-a", "labels = false");

        let all = stdout(&a.cmd(&["tokens", "list"]));
        assert!(all.starts_with("TOKEN ID") && all.lines().next().unwrap().contains(" MINE "), "{all}");
        let row =
            |id: &str| all.lines().find(|l| l.starts_with(id)).unwrap_or_else(|| panic!("{id}:\n{all}"));
        assert!(row(&a_id).contains(" yes "), "{version:?}:\n{all}");
        assert!(row(&b_id).contains(" no ") && row(&plain_id).contains(" no "), "{version:?}:\n{all}");

        let mine = stdout(&a.cmd(&["tokens", "list", "--mine"]));
        assert_eq!(mine.lines().count(), 2, "{version:?}: a header and a's token:\n{mine}");
        assert!(mine.contains(&a_id) && !mine.contains(&b_id) && !mine.contains(&plain_id), "{mine}");
        let theirs = stdout(&b.cmd(&["tokens", "list", "--mine"]));
        assert!(theirs.contains(&b_id) && !theirs.contains(&a_id), "{version:?}:\n{theirs}");

        let json: serde_json::Value =
            serde_json::from_str(&stdout(&a.cmd(&["tokens", "list", "--mine", "--json"]))).unwrap();
        let ids: Vec<&str> =
            json["tokens"].as_array().unwrap().iter().map(|t| t["tokenId"].as_str().unwrap()).collect();
        assert_eq!(ids, [a_id.as_str()], "{version:?}: {json}");
        let comment = json["tokens"][0]["metadata"]["comment"].as_str().unwrap();
        assert!(comment.starts_with("token-keeper keeper-a on "), "Knox's JSON as it is: {json}");
        let json: serde_json::Value =
            serde_json::from_str(&stdout(&a.cmd(&["tokens", "list", "--json"]))).unwrap();
        assert_eq!(json["tokens"].as_array().unwrap().len(), 3, "without --mine, every token: {json}");
    }
}

#[test]
fn labels_false_sends_none() {
    let sim = SimServer::start(SimOptions::default());
    let fx = Fixture::new();
    fx.write_config(
        &format!("{FAST}labels = false\n"),
        &[fx.cluster("vc", &sim.url(), "lifespan = \"PT1H\"")],
    );
    assert_eq!(fx.cmd(&["once"]).status.code(), Some(0));
    assert_eq!(acquisitions(&sim), ["lifespan=PT1H"]);
    assert_eq!(sim.stored_metadata(&sim.issued()[0].token_id), Some((None, vec![])));
    // And a cluster may turn them back on.
    let fx = Fixture::new();
    fx.write_config(&format!("{FAST}labels = false\n"), &[fx.cluster("vc", &sim.url(), "labels = true")]);
    assert_eq!(fx.cmd(&["once"]).status.code(), Some(0));
    let queries = acquisitions(&sim);
    assert!(
        queries[1].starts_with("comment=token-keeper+") && queries[1].contains("&md_tk_cluster=vc"),
        "{queries:?}"
    );
}

#[test]
fn tokens_revoke_mine_revokes_this_installations_tokens_and_no_others() {
    for version in [KnoxVersion::V1_6, KnoxVersion::V2_0] {
        let sim = SimServer::start(SimOptions { version, ..SimOptions::default() });
        // Installation a keeps two clusters of one user on one gateway; b is another one.
        let keeper = |id: &str, names: &[&str]| {
            let fx = Fixture::new();
            let clusters: Vec<String> = names.iter().map(|n| fx.cluster(n, &sim.url(), "")).collect();
            let text = format!("installation_id = \"{id}\"\n[defaults]\n{FAST}\n{}", clusters.join("\n"));
            std::fs::write(&fx.config, text).unwrap();
            assert_eq!(fx.cmd(&["once"]).status.code(), Some(0), "{version:?} {id}");
            let ids: Vec<String> =
                names.iter().map(|n| fx.json(n).unwrap()["token_id"].as_str().unwrap().to_owned()).collect();
            (fx, ids)
        };
        let (a, a_ids) = keeper("keeper-a", &["vc1", "vc2"]);
        let (_b, b_ids) = keeper("keeper-b", &["vc1"]);
        let live = |id: &str| sim.stored_metadata(id).is_some();

        let out = stdout(&a.cmd(&["tokens", "revoke", "--mine", "--cluster", "vc1"]));
        assert!(out.contains(&format!("revoked {} (cluster \"vc1\"", a_ids[0])), "{version:?}:\n{out}");
        assert!(out.contains("revoked 1 token(s) of installation keeper-a"), "{version:?}:\n{out}");
        assert!(!live(&a_ids[0]) && live(&a_ids[1]) && live(&b_ids[0]), "{version:?}: only a's vc1 token");

        let out = stdout(&a.cmd(&["tokens", "revoke", "--mine"]));
        assert!(
            out.contains("revoked 1 token(s) of installation keeper-a; 0 already gone, 0 failed"),
            "{out}"
        );
        assert!(!live(&a_ids[1]) && live(&b_ids[0]), "{version:?}: a's vc2 token, still not b's");
        let out = stdout(&a.cmd(&["tokens", "revoke", "--mine"]));
        assert!(out.starts_with("revoked 0 token(s)"), "{version:?}: nothing left:\n{out}");

        let out = a.cmd(&["tokens", "revoke", "--mine", "--cluster", "nope"]);
        assert_eq!(out.status.code(), Some(1), "an unknown cluster fails as for the other verbs");
        assert!(String::from_utf8_lossy(&out.stderr).contains("no cluster named \"nope\""));
        let out = a.cmd(&["tokens", "revoke"]);
        assert_eq!(out.status.code(), Some(2), "a token id or --mine is required");
    }
}

#[test]
fn exec_labels_its_unpublished_token_as_exec() {
    let sim = SimServer::start(SimOptions::default());
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "")]);
    let out = fx.cmd(&["exec", "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(fx.json("vc").is_none(), "exec publishes nothing");
    let (comment, custom) = sim.stored_metadata(&sim.issued()[0].token_id).expect("a stored token");
    let comment = comment.unwrap_or_default();
    assert!(comment.starts_with("token-keeper ") && comment.ends_with(" for vc (exec)"), "{comment}");
    assert!(custom.iter().all(|(n, _)| n != "tk_generation"), "not a kept generation: {custom:?}");
}

#[test]
fn after_revoke_mine_sigusr1_makes_a_running_daemon_replace_its_token_at_once() {
    // Both ways a refresh goes: a new acquisition (jwt), and a renewal that Knox refuses
    // because the token is gone, then a new acquisition (gateway).
    for mode in ["jwt", "gateway"] {
        let sim = SimServer::with_ttl(std::time::Duration::from_secs(3600));
        let fx = Fixture::new();
        let cluster = fx.cluster("vc", &sim.url(), &format!("consumers_validate = \"{mode}\""));
        fx.write_config(FAST, &[cluster]);
        let d = Daemon::run(&fx);
        d.wait_log("token published", 1);
        let first = fx.json("vc").unwrap()["token_id"].as_str().unwrap().to_owned();

        let out = stdout(&fx.cmd(&["tokens", "revoke", "--mine"]));
        assert!(out.contains(&format!("revoked {first} ")) && out.contains("SIGUSR1"), "{mode}:\n{out}");
        assert_eq!(sim.stored_metadata(&first), None, "{mode}: revoked on the server");
        d.signal(libc::SIGUSR1);
        d.wait_log("token published", 2);
        let second = fx.json("vc").unwrap()["token_id"].as_str().unwrap().to_owned();
        assert_ne!(second, first, "{mode}");
        assert!(sim.stored_metadata(&second).is_some(), "{mode}: the new token is live");
    }
}

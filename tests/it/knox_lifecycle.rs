//! The Knox token lifecycle against the simulator's managed mode (docs/knox.md §3 to §6):
//! renewal and its refusals, revoking superseded tokens, the per-user limit, stale tokens,
//! the v1/v2 verb fallback per Knox version, and the `tokens` admin verbs.

use std::time::Duration;

use knox_sim::{KnoxVersion, LimitAction, SimOptions};

use crate::harness::*;

fn managed(ttl_s: u64) -> SimOptions {
    SimOptions {
        ttl: Some(Duration::from_secs(ttl_s)),
        renewers: vec!["alice".into()],
        ..SimOptions::default()
    }
}

fn renew_requests(sim: &SimServer) -> Vec<(String, String, u16)> {
    sim.requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/renew"))
        .map(|r| (r.method, r.path.split("/knoxtoken/").nth(1).unwrap_or_default().to_owned(), r.status))
        .collect()
}

/// Gateway mode: the same JWT is renewed ahead of its server-side expiry until Knox's
/// renewal limit, then replaced. Run with Knox's clock right and two hours ahead.
#[test]
fn gateway_mode_renews_until_the_renewal_limit_then_reacquires() {
    for offset in [0, 2 * 3_600_000] {
        // Renewals are allowed while now + 30 s + 2 s < issue + 40 s: for about 8 s.
        let sim = SimServer::start(SimOptions {
            renew_interval: Duration::from_secs(2),
            max_lifetime: Some(Duration::from_secs(40)),
            clock_offset: offset,
            ..managed(3)
        });
        let fx = Fixture::new();
        fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "consumers_validate = \"gateway\"")]);
        let d = Daemon::run(&fx);
        d.wait_log("token published", 1);
        let first = fx.token("vc").unwrap();
        let first_expiry = fx.json("vc").unwrap()["expires_at_ms"].as_i64().unwrap();
        d.wait_log("token renewed", 2);
        // Renewal moves the server-side expiry, not the JWT: the raw file is the same token,
        // the json says the new expiry.
        assert_eq!(fx.token("vc").unwrap(), first, "offset {offset}");
        assert!(fx.json("vc").unwrap()["expires_at_ms"].as_i64().unwrap() > first_expiry);
        assert_eq!(sim.acquisitions(), 1);
        d.wait_log("renewal refused: the token reached its maximum lifetime", 1);
        d.wait_log("token published", 2);
        assert_ne!(fx.token("vc").unwrap(), first);
        assert!(sim.renewals() >= 2, "offset {offset}: {} renewals", sim.renewals());
        // Renewal goes to v2 with PUT, the JWT as text/plain body and the CSRF header.
        let renews = sim.requests().into_iter().filter(|r| r.path.ends_with("/renew")).collect::<Vec<_>>();
        assert!(renews.iter().all(|r| r.method == "PUT" && r.path.contains("/api/v2/") && r.has_xsrf_header));
        assert_no_secrets(&d.log(), &sim.jwts());
    }
}

/// The default (consumers check the JWT): managed tokens are replaced before `exp`, never
/// renewed, and each superseded token is revoked shortly after.
#[test]
fn jwt_mode_replaces_tokens_and_revokes_the_superseded_ones() {
    let sim = SimServer::start(managed(2));
    let fx = Fixture::new();
    fx.write_config(
        &format!("{FAST}revoke_superseded_after = \"100ms\"\n"),
        &[fx.cluster("vc", &sim.url(), "")],
    );
    let d = Daemon::run(&fx);
    d.wait_log("token published", 4);
    d.wait_log("superseded token revoked", 2);
    assert_eq!(sim.renewals(), 0);
    assert!(renew_requests(&sim).is_empty(), "no renewal was attempted");
    let issued = sim.issued();
    let revoked = sim.revocations();
    assert_eq!(revoked[0], issued[0].token_id, "the first token was the first revoked");
    assert_eq!(revoked[1], issued[1].token_id);
    assert!(sim.stored_tokens("alice") <= 3, "{} stored", sim.stored_tokens("alice"));
    let deletes = sim.requests().into_iter().filter(|r| r.path.ends_with("/revoke")).collect::<Vec<_>>();
    assert!(deletes.iter().all(|r| r.method == "DELETE" && r.path.contains("/api/v2/") && r.has_xsrf_header));
}

#[test]
fn a_caller_not_on_the_renewer_whitelist_stops_renewing() {
    let sim = SimServer::start(SimOptions { renewers: Vec::new(), ..managed(2) });
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "consumers_validate = \"gateway\"")]);
    let d = Daemon::run(&fx);
    d.wait_log("token published", 3);
    assert_eq!(d.count("renewal stopped for this cluster: not authorized"), 1);
    let renews = renew_requests(&sim);
    assert_eq!(renews.len(), 1, "one refused renewal, then re-acquisition only: {renews:?}");
    assert_eq!(renews[0].2, 403);
    assert_eq!(sim.renewals(), 0);
}

/// The verb table of docs/knox.md §1.2, learned per cluster: v2 PUT/DELETE on 2.1+, v1
/// PUT/DELETE after a 404 on 1.6-2.0, v1 POST after a 405 on 1.4-1.5 (which also revokes only
/// by the full JWT).
#[test]
fn renew_and_revoke_find_the_verbs_each_knox_version_takes() {
    let cases = [
        (KnoxVersion::V2_1, vec![("PUT", "api/v2/token/renew", 200)], ("DELETE", "api/v2/token/revoke")),
        (
            KnoxVersion::V2_0,
            vec![("PUT", "api/v2/token/renew", 404), ("PUT", "api/v1/token/renew", 200)],
            ("DELETE", "api/v1/token/revoke"),
        ),
        (
            KnoxVersion::V1_5,
            vec![
                ("PUT", "api/v2/token/renew", 404),
                ("PUT", "api/v1/token/renew", 405),
                ("POST", "api/v1/token/renew", 200),
            ],
            ("POST", "api/v1/token/revoke"),
        ),
    ];
    for (version, first_renewal, revoke) in cases {
        let sim = SimServer::start(SimOptions {
            version,
            renew_interval: Duration::from_secs(2),
            max_lifetime: Some(Duration::from_secs(37)),
            ..managed(2)
        });
        let fx = Fixture::new();
        let lifecycle = "consumers_validate = \"gateway\"\nrevoke_superseded_after = \"50ms\"";
        fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), lifecycle)]);
        let d = Daemon::run(&fx);
        d.wait_log("token renewed", 2);
        let renews = renew_requests(&sim);
        let want: Vec<_> = first_renewal.iter().map(|(m, p, s)| (m.to_string(), p.to_string(), *s)).collect();
        assert_eq!(renews[..want.len()], want[..], "{version:?}");
        // What worked is remembered: the next renewal goes straight there.
        let (m, p, _) = want.last().unwrap();
        assert_eq!(&renews[want.len()], &(m.clone(), p.clone(), 200), "{version:?}");
        // After the renewal limit (5 s here) the token is replaced and the old one revoked.
        d.wait_log("superseded token revoked", 1);
        let revokes: Vec<_> =
            sim.requests().into_iter().filter(|r| r.path.ends_with("/revoke") && r.status == 200).collect();
        assert_eq!(
            (revokes[0].method.as_str(), revokes[0].path.split("/knoxtoken/").nth(1).unwrap()),
            revoke,
            "{version:?}"
        );
        assert_eq!(sim.revocations().len(), 1, "{version:?}");
        if version == KnoxVersion::V1_5 {
            assert_eq!(d.count("older than 1.6"), 1, "said once");
        }
    }
}

/// A simulated week: tokens that live 2 s stand in for 1-hour tokens, the eviction grace
/// (24 h) is scaled to 48 s, and superseded tokens are revoked 100 ms after their successor
/// (2 minutes, scaled). Thousands of rotations for users with Knox's default limit of 10 must
/// never meet the limit.
#[test]
fn a_simulated_week_never_hits_the_token_limit() {
    const USERS: usize = 40;
    let users: Vec<(String, String)> =
        (0..USERS).map(|i| (format!("user{i}"), PASSWORD.to_owned())).collect();
    let sim = SimServer::start(SimOptions {
        users,
        token_limit: Some(10),
        limit_action: LimitAction::ReturnError,
        eviction_grace: Duration::from_secs(48),
        ..managed(2)
    });
    let fx = Fixture::new();
    let clusters: Vec<String> = (0..USERS)
        .map(|i| {
            let d = fx.path().join("out").join(format!("c{i}"));
            format!(
                "[[cluster]]\nname = \"c{i}\"\ntoken_url = \"{}\"\n[cluster.auth]\nmethod = \"basic\"\nuser = \"user{i}\"\n\
                 password_file = \"{}\"\n[[cluster.output]]\npath = \"{}/token\"\n",
                sim.url(),
                fx.password_file.display(),
                d.display()
            )
        })
        .collect();
    fx.write_config(&format!("{FAST}revoke_superseded_after = \"100ms\"\n"), &clusters);
    let d = Daemon::spawn(&["-c", fx.config.to_str().unwrap(), "--log-level", "warn", "run"]);
    assert!(
        wait_until(Duration::from_secs(120), || sim.acquisitions() >= 2000),
        "{} acquisitions",
        sim.acquisitions()
    );
    assert_eq!(sim.limit_errors(), 0, "the token limit was hit");
    let stored = (0..USERS).map(|i| sim.stored_tokens(&format!("user{i}"))).max().unwrap();
    assert!(stored <= 5, "a user holds {stored} stored tokens");
    // Superseded tokens are revoked: all but the ones still current or within 100 ms.
    let revoked = sim.revocations().len();
    assert!(revoked + 3 * USERS >= sim.acquisitions(), "{revoked} revoked of {}", sim.acquisitions());
    assert!(!d.log().contains("token limit"), "{}", d.log());
}

#[test]
fn the_token_limit_is_its_own_error_slowly_retried() {
    let sim = SimServer::start(SimOptions { token_limit: Some(1), ..managed(3600) });
    let fx = Fixture::new();
    fx.write_config(
        &format!("{FAST}revoke_superseded_after = \"1h\"\n"),
        &[fx.cluster("vc", &sim.url(), "")],
    );
    let d = Daemon::run(&fx);
    d.wait_log("token published", 1);
    let good = fx.token("vc").unwrap();
    d.signal(libc::SIGUSR1);
    d.wait_log("refresh failed", 1);
    let line = d.log().lines().find(|l| l.contains("refresh failed")).unwrap().to_owned();
    assert!(line.contains("ERROR") && line.contains("per-user token limit exceeded"), "{line}");
    assert!(
        line.contains("knox.token.limit.per.user") && line.contains("revoke unused tokens"),
        "advice: {line}"
    );
    assert_eq!(sim.limit_errors(), 1);
    // The next try is minutes away: nothing more within 2 s, and the good token stays.
    wait_until(Duration::from_secs(2), || false);
    assert_eq!(sim.limit_errors(), 1);
    let retry = line.split("retry_in=").nth(1).unwrap_or_default();
    assert!(retry.ends_with('m') || retry.contains("m "), "retry in minutes: {line}");
    assert_eq!(fx.token("vc").unwrap(), good);
}

#[test]
fn a_failing_refresh_past_its_point_is_stale_then_expired_files_go() {
    let mut sim = SimServer::start(managed(3));
    let fx = Fixture::new();
    fx.write_config(&format!("{FAST}remove_expired = true\n"), &[fx.cluster("vc", &sim.url(), "")]);
    let d = Daemon::run(&fx);
    d.wait_log("token published", 1);
    sim.stop();
    assert!(wait_until(WAIT, || fx.json("vc").is_some_and(|j| j["stale"] == true)), "{}", d.log());
    let json = fx.json("vc").unwrap();
    assert!(json["last_error"].as_str().unwrap().contains("cannot reach"), "{json}");
    let status = fx.cmd(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(1), "{text}");
    assert!(text.contains("stale: ") || text.contains("expired"), "{text}");
    // Expired: the raw/header/env/shell files go, the json stays and says why.
    // The four files are removed one after the other: wait for all of them, not the first.
    let gone =
        || ["token", "token.header", "token.env", "token.sh"].iter().all(|f| !fx.out("vc", f).exists());
    assert!(wait_until(WAIT, gone), "{}", d.log());
    assert_eq!(fx.json("vc").unwrap()["stale"], true);
}

#[test]
fn revoke_on_exit_revokes_the_published_token() {
    let sim = SimServer::start(managed(3600));
    let fx = Fixture::new();
    fx.write_config(&format!("{FAST}revoke_on_exit = true\n"), &[fx.cluster("vc", &sim.url(), "")]);
    let mut d = Daemon::run(&fx);
    d.wait_log("token published", 1);
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0));
    assert_eq!(sim.revocations(), vec![sim.issued()[0].token_id.clone()]);
    assert!(d.log().contains("token revoked at exit"));
}

#[test]
fn tokens_verbs_list_disable_enable_and_revoke() {
    let sim = SimServer::start(managed(3600));
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "")]);
    assert_eq!(fx.cmd(&["once"]).status.code(), Some(0));
    let id = sim.issued()[0].token_id.clone();
    let run = |args: &[&str]| {
        let o = fx.cmd(args);
        (
            o.status.code().unwrap(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };

    let (code, out, err) = run(&["tokens", "list", "--cluster", "vc"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("TOKEN ID") && out.contains(&id) && out.contains("true"), "{out}");
    let (code, out, _) = run(&["tokens", "list", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["tokens"][0]["tokenId"], id.as_str());

    let (code, out, err) = run(&["tokens", "disable", "--cluster", "vc", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"isEnabled\": \"false\""), "{out}");
    let (code, _, err) = run(&["tokens", "disable", &id]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("token is already disabled"), "{err}");
    assert_eq!(run(&["tokens", "enable", &id]).0, 0);
    let (code, _, err) = run(&["tokens", "enable", &id]);
    assert_eq!((code, err.contains("token is already enabled")), (5, true), "{err}");
    assert_eq!(run(&["tokens", "revoke", &id]).0, 0);
    assert_eq!(sim.revocations(), vec![id.clone()]);
    let (code, _, err) = run(&["tokens", "revoke", &id]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("unknown to Knox"), "{err}");
    assert_eq!(run(&["tokens", "revoke"]).0, 2, "the id is required");

    // Token management off: listing says so.
    sim.set_managed(false);
    let (code, _, err) = run(&["tokens", "list"]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("not configured"), "{err}");
}

#[test]
fn min_valid_asks_for_a_covering_lifespan_and_warns_once_per_short_token() {
    // Knox's ttl (60 s) caps the 2 h asked for.
    let sim = SimServer::start(SimOptions { token_limit: None, ..managed(60) });
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "min_valid = \"2h\"")]);
    let d = Daemon::run(&fx);
    d.wait_log("token published", 1);
    let query = sim.requests().into_iter().find(|r| r.path.ends_with("/token")).unwrap().query;
    // The labels (tests/it/labels.rs) follow the lifespan in the query.
    let lifespan = query.split('&').find_map(|p| p.strip_prefix("lifespan="));
    assert_eq!(lifespan, Some("PT7201S"), "2 h plus min_remaining (1 s): {query}");
    d.wait_log("less than min_valid 2h", 1);
    d.signal(libc::SIGUSR1);
    d.wait_log("token published", 2);
    d.wait_log("less than min_valid 2h", 2);
    assert_eq!(d.count("less than min_valid"), 2, "once per token");
}

#[test]
fn a_capped_lifespan_is_said_once_per_cluster() {
    // Real Knox caps a requested lifespan at knox.token.ttl without a word.
    let sim = SimServer::start(SimOptions { token_limit: None, ..managed(60) });
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "lifespan = \"PT2H\"")]);
    let d = Daemon::run(&fx);
    d.wait_log("caps the requested lifespan", 1);
    d.signal(libc::SIGUSR1);
    d.wait_log("token published", 2);
    assert_eq!(d.count("caps the requested lifespan"), 1, "once per cluster, not per token");
    assert!(d.log().contains("less than the requested lifespan 2h"), "{}", d.log());
}

/// With the default two minutes and 2-second tokens, superseded tokens would pile up to about
/// sixty: each is revoked when it expires instead, whichever comes first.
#[test]
fn a_superseded_token_is_revoked_no_later_than_it_expires() {
    let sim = SimServer::start(managed(2));
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "")]);
    let d = Daemon::run(&fx);
    d.wait_log("superseded token revoked", 3);
    assert_eq!(
        sim.revocations()[..3],
        sim.issued()[..3].iter().map(|i| i.token_id.clone()).collect::<Vec<_>>()[..]
    );
    assert!(sim.stored_tokens("alice") <= 3, "{} stored", sim.stored_tokens("alice"));
}

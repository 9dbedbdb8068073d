//! Verification before publishing (`knox::verify`), black-box: the real binary against the
//! simulator, which can sign with a foreign key, rotate its own, and hide its JWKS.

use std::time::Duration;

use knox_sim::{KnoxVersion, Scripted, SimKey};
use serde_json::json;

use crate::harness::*;

/// A simulator issuing one-hour tokens (so nothing refreshes on its own during a test).
fn sim() -> SimServer {
    SimServer::with_ttl(Duration::from_secs(3600))
}

fn jwks_requests(sim: &SimServer) -> usize {
    sim.requests().iter().filter(|r| r.path.ends_with("/jwks.json")).count()
}

fn status_verified(fx: &Fixture) -> serde_json::Value {
    let out = fx.cmd(&["status", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
    rows[0]["verified"].clone()
}

#[test]
fn a_token_signed_with_a_foreign_key_is_never_published() {
    let sim = sim();
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "")]);
    let d = Daemon::run(&fx);
    d.wait_log("token published", 1);
    let good = fx.token("vc").unwrap();
    assert_eq!(status_verified(&fx), "jwks");
    assert_eq!(jwks_requests(&sim), 1);

    sim.set_options(|o| o.sign_with_foreign_key = true);
    d.signal(libc::SIGUSR1);
    d.wait_log("refresh failed", 2);
    let log = d.log();
    let line = log.lines().find(|l| l.contains("refresh failed")).unwrap();
    assert!(line.contains("failed the kid check") && line.contains("not published"), "{line}");
    assert_eq!(fx.token("vc").unwrap(), good, "the last good token stays published");
    assert_eq!(fx.json("vc").unwrap()["verified"], "jwks");
    // The unknown kid cost one refetch of the JWKS, and the retries none within the minute.
    assert_eq!(jwks_requests(&sim), 2);
    assert!(sim.acquisitions() >= 3);
    // Each refused token was revoked, so the user's token limit does not fill up.
    // (Polled: a retry may be between its acquisition and its revocation.)
    let all_revoked = || {
        let revoked = sim.revocations();
        sim.issued().iter().skip(1).all(|t| revoked.contains(&t.token_id)) && sim.stored_tokens("alice") == 1
    };
    assert!(wait_until(WAIT, all_revoked), "issued {}, revoked {:?}", sim.issued().len(), sim.revocations());
    assert_no_secrets(&log, &sim.jwts());
}

#[test]
fn a_rotated_key_is_refetched_and_its_tokens_published() {
    let sim = sim();
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "")]);
    let d = Daemon::run(&fx);
    d.wait_log("token published", 1);
    assert_eq!(claims(&fx.token("vc").unwrap())["kid"], SimKey::Dev.kid());

    sim.set_options(|o| o.signing_key = SimKey::Rotated);
    d.signal(libc::SIGUSR1);
    d.wait_log("token published", 2);
    assert_eq!(claims(&fx.token("vc").unwrap())["kid"], SimKey::Rotated.kid());
    assert_eq!(fx.json("vc").unwrap()["verified"], "jwks");
    assert_eq!(jwks_requests(&sim), 2, "one refetch for the new kid");
    assert_eq!(d.count("refresh failed"), 0);
}

#[test]
fn a_pinned_key_wins_over_what_knox_serves() {
    let sim = sim();
    let fx = Fixture::new();
    let foreign = fx.path().join("foreign.pem");
    let own = fx.path().join("knox.pem");
    std::fs::write(&foreign, SimKey::Foreign.cert_pem()).unwrap();
    std::fs::write(&own, SimKey::Dev.cert_pem()).unwrap();

    let pinned = |file: &std::path::Path| format!("public_cert_file = \"{}\"", file.display());
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), &pinned(&foreign))]);
    let out = fx.cmd(&["once"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("failed the kid check") && err.contains("foreign.pem"), "{err}");
    assert_eq!(fx.token("vc"), None, "nothing published");
    assert_eq!(jwks_requests(&sim), 0, "a pinned key needs no JWKS");

    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), &pinned(&own))]);
    let out = fx.cmd(&["once"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(status_verified(&fx), "pinned");
}

#[test]
fn without_a_jwks_the_answers_certificate_is_used() {
    // The 1.5 profile serves the JWKS as a Java map string, which is not JSON; the 2.1 one
    // answers 500 here, as an anonymous Shiro topology does.
    for (version, unavailable) in [(KnoxVersion::V1_5, false), (KnoxVersion::V2_1, true)] {
        let sim = sim();
        sim.set_options(|o| {
            o.version = version;
            o.jwks_unavailable = unavailable;
        });
        let fx = Fixture::new();
        fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "")]);
        let out = fx.cmd(&["once"]);
        assert_eq!(out.status.code(), Some(0), "{version:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(status_verified(&fx), "endpoint_cert", "{version:?}");

        sim.set_options(|o| o.sign_with_foreign_key = true);
        let _ = std::fs::remove_file(fx.out("vc", "token.json"));
        let out = fx.cmd(&["once"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{version:?}: {err}");
        assert!(err.contains("failed the kid check") && err.contains("endpoint_public_cert"), "{err}");
    }
}

#[test]
fn no_key_at_all_publishes_in_auto_and_fails_in_require() {
    let sim = sim();
    sim.set_options(|o| o.jwks_unavailable = true);
    let fx = Fixture::new();
    let exp = now_ms() / 1000 + 3600;
    let token = SimKey::Dev.sign(Some(&SimKey::Dev.kid()), &json!({"sub": "alice", "exp": exp}));
    let body = json!({"access_token": token, "token_type": "Bearer", "expires_in": exp * 1000});
    let reply = || Scripted::new(200, body.to_string()).header("Content-Type", "application/json");

    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "verify = \"require\"")]);
    sim.push_reply(reply());
    let out = fx.cmd(&["once"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("failed the key check"), "{err}");
    assert_eq!(fx.token("vc"), None);

    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "")]);
    sim.push_reply(reply());
    let out = fx.cmd(&["once"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("published unverified"), "warned: {err}");
    assert_eq!(status_verified(&fx), "unverified");
}

#[test]
fn doctor_shows_how_the_test_token_was_verified() {
    let sim = sim();
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "")]);
    let row = |stdout: &str| stdout.lines().find(|l| l.contains(" verify ")).unwrap_or_default().to_owned();
    let out = fx.cmd(&["doctor"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(row(&stdout).contains("✔") && row(&stdout).contains("jwks key"), "{stdout}");

    sim.set_options(|o| o.sign_with_foreign_key = true);
    let out = fx.cmd(&["doctor"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(row(&stdout).contains("✘") && row(&stdout).contains("failed the kid check"), "{stdout}");
}

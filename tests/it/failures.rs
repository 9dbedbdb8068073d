//! Knox failing in every way docs/knox.md describes: the last good token stays published, each
//! attempt logs one line with cluster, URL and status, and retries back off.

use std::time::{Duration, Instant};

use knox_sim::{Scripted, SimOptions};

use crate::harness::*;

/// One daemon goes through the failure list; SIGUSR1 forces each attempt so the test does
/// not wait for timers.
#[test]
fn every_knox_failure_keeps_the_last_good_token() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "timeout = \"1s\"")]);
    let d = Daemon::run(&fx);
    d.wait_log("token published", 1);
    let good = fx.token("vc").unwrap();
    let good_json = std::fs::read(fx.out("vc", "token.json")).unwrap();

    let cases: Vec<(&str, Scripted, &str)> = vec![
        ("5xx", Scripted::server_error_html(), "answered 500"),
        ("503", Scripted::service_unavailable(), "answered 503"),
        ("401", Scripted::unauthorized(), "rejected the credentials (401 Unauthorized); it asks for BASIC"),
        (
            "403 not JSON",
            Scripted::new(403, "{ \"Unable to get token - untrusted client cert.\" }"),
            "answered 403",
        ),
        ("token limit", Scripted::token_limit_exceeded(), "per-user token limit exceeded"),
        ("302 to SSO", Scripted::sso_redirect(&sim), "/gateway/knoxsso/api/v1/websso"),
        ("200 without access_token", Scripted::ok_without_access_token(), "the JSON has no access_token"),
        ("200 unable to acquire", Scripted::unable_to_acquire_200(), "Unable to acquire token"),
        (
            "HTML 200",
            Scripted::new(200, "<html><body>Login</body></html>").header("Content-Type", "text/html"),
            "the body is not JSON",
        ),
        ("timeout", Scripted::new(200, "{}").delayed(Duration::from_secs(3)), "no answer from"),
    ];
    for (i, (name, reply, expected)) in cases.into_iter().enumerate() {
        sim.push_reply(reply);
        d.signal(libc::SIGUSR1);
        d.wait_log("refresh failed", i + 1);
        let line = d.log().lines().rfind(|l| l.contains("refresh failed")).unwrap().to_owned();
        assert!(line.contains(expected), "{name}: {line}");
        assert!(line.contains("cluster=vc"), "{name}: {line}");
        assert!(
            line.contains(&sim.url()) || name == "timeout" || line.contains("127.0.0.1"),
            "{name}: no URL: {line}"
        );
        assert!(line.contains("the last good token stays published"), "{name}: {line}");
        assert_eq!(fx.token("vc").unwrap(), good, "{name}: the published token changed");
        assert_eq!(std::fs::read(fx.out("vc", "token.json")).unwrap(), good_json, "{name}");
    }
    // Knox recovers: the next refresh publishes.
    d.signal(libc::SIGUSR1);
    d.wait_log("token published", 2);
    assert_ne!(fx.token("vc").unwrap(), good);
    assert_no_secrets(&d.log(), &sim.jwts());
}

#[test]
fn a_dead_gateway_is_retried_with_backoff_not_a_tight_loop() {
    // A 2 s token refreshes at 1 s; then every attempt is refused.
    let mut sim = SimServer::with_ttl(Duration::from_secs(2));
    let fx = Fixture::new();
    fx.write_config(
        "min_remaining = \"1s\"\nrefresh_fraction = 0.5\njitter = 0.0\n",
        &[fx.cluster("vc", &sim.url(), "")],
    );
    let d = Daemon::run(&fx);
    d.wait_log("token published", 1);
    let good = fx.token("vc").unwrap();
    sim.stop();
    d.wait_log("refresh failed", 1);
    let first = Instant::now();
    assert!(d.log().contains("cannot reach"), "{}", d.log());
    // Observe 4 s of failures: with backoff 1 s, 2 s, 4 s (full jitter, 100 ms floor) and
    // the expiry limits, a handful of attempts at most; a tight loop would make hundreds.
    wait_until(Duration::from_secs(4), || false);
    let attempts = d.count("refresh failed");
    assert!(attempts >= 2, "retried at all: {attempts}");
    assert!(attempts <= 12, "{attempts} attempts in {:?}: not backing off\n{}", first.elapsed(), d.log());
    assert_eq!(fx.token("vc").unwrap(), good, "the last good token stays");
    assert!(d.log().contains("the published token has expired"), "expiry is reported\n{}", d.log());
}

#[test]
fn a_knox_clock_hours_off_neither_loops_nor_lets_tokens_expire() {
    for offset_ms in [2 * 3_600_000, -2 * 3_600_000] {
        let sim = SimServer::start(SimOptions {
            ttl: Some(Duration::from_secs(4)),
            clock_offset: offset_ms,
            ..SimOptions::default()
        });
        let fx = Fixture::new();
        fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "")]);
        let d = Daemon::run(&fx);
        d.wait_log("token published", 1);
        let start = Instant::now();
        // Lifetime 3 to 4 s on Knox's clock (exp is truncated to seconds; the offset is
        // estimated to ±0.5 s from the Date header): a refresh every 1.25 to 2.25 s, whatever
        // the offset. A loop would publish dozens.
        d.wait_log("token published", 3);
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(2400),
            "offset {offset_ms}: refreshed too fast ({elapsed:?})\n{}",
            d.log()
        );
        assert!(sim.acquisitions() <= 4, "offset {offset_ms}: {} acquisitions", sim.acquisitions());
        let json = fx.json("vc").unwrap();
        let skew = json["expires_at_ms"].as_i64().unwrap() - now_ms();
        assert!((skew - offset_ms).abs() < 5_000, "expiry is on Knox's clock: {skew}");
        // The offset is published, and readers correct for it: two hours off, a live token
        // is neither reported expired nor given two extra hours.
        assert!((json["knox_clock_offset_ms"].as_i64().unwrap() - offset_ms).abs() <= 1_000, "{json}");
        let status = fx.cmd(&["status"]);
        let text = String::from_utf8_lossy(&status.stdout);
        let sign = if offset_ms > 0 { "+2h" } else { "-2h" };
        assert!(text.contains(sign), "{text}");
        assert!(!text.contains("expired") && !text.contains(" 2h"), "{text}");
    }
}

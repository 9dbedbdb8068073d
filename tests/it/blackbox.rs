//! The spawned binary against the simulator: publishing, the CLI verbs, signals, systemd
//! notifications, and config errors with their exit codes.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use crate::harness::*;
use knox_sim::SimOptions;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn run_publishes_every_format_then_stops_on_sigterm() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc-prod", &sim.url(), "")]);
    let mut d = Daemon::run(&fx);
    d.wait_log("ready", 1);

    let jwt = sim.jwts().pop().expect("one token issued");
    assert_eq!(sim.acquisitions(), 1);
    assert_eq!(fx.token("vc-prod").unwrap(), jwt, "raw: the JWT, no newline");
    let read = |f: &str| std::fs::read_to_string(fx.out("vc-prod", f)).unwrap();
    assert_eq!(read("token.header"), format!("Authorization: Bearer {jwt}\n"));
    assert_eq!(read("token.env"), format!("CDE_TOKEN={jwt}\n"));
    assert_eq!(read("token.sh"), format!("export CDE_TOKEN='{jwt}'\n"));
    let json = fx.json("vc-prod").unwrap();
    let issued = sim.issued().pop().unwrap();
    assert_eq!(json["access_token"], jwt.as_str());
    assert_eq!(json["token_id"], issued.token_id.as_str());
    assert_eq!(json["generation"], 1);
    assert_eq!(json["cluster"], "vc-prod");
    assert_eq!(json["token_type"], "Bearer");
    assert_eq!(json["managed"], true);
    let exp = claims(&jwt)["exp"].as_i64().unwrap();
    assert_eq!(json["jwt_exp"], exp);
    // The effective expiry is the earlier of expires_in and exp × 1000.
    assert_eq!(json["expires_at_ms"], issued.expires_in.min(exp * 1000));
    for f in ["token", "token.header", "token.env", "token.sh", "token.json"] {
        assert_eq!(mode(&fx.out("vc-prod", f)), 0o600, "{f}");
    }
    assert_eq!(mode(&fx.path().join("out/vc-prod")), 0o700, "created directories are 0700");

    // `token --format F` prints exactly the bytes of the file of that format.
    for (format, file) in [
        ("raw", "token"),
        ("header", "token.header"),
        ("env", "token.env"),
        ("shell", "token.sh"),
        ("json", "token.json"),
    ] {
        let out = fx.cmd(&["token", "--format", format]);
        assert!(out.status.success(), "{format}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, std::fs::read(fx.out("vc-prod", file)).unwrap(), "token --format {format}");
    }
    let status = fx.cmd(&["status"]);
    let text = String::from_utf8(status.stdout).unwrap();
    assert!(status.status.success(), "{text}");
    assert!(text.contains("vc-prod") && text.contains(&issued.token_id) && text.contains("fresh"), "{text}");

    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0));
    assert!(d.log().contains("shutting down (SIGTERM)"));
    assert_no_secrets(&d.log(), &sim.jwts());
}

#[test]
fn sigusr1_refreshes_now_and_generation_counts_across_restarts() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("c1", &sim.url(), "")]);
    let mut d = Daemon::run(&fx);
    d.wait_log("token published", 1);
    let first = fx.token("c1").unwrap();
    d.signal(libc::SIGUSR1);
    d.wait_log("token published", 2);
    assert_eq!(sim.acquisitions(), 2);
    assert_ne!(fx.token("c1").unwrap(), first);
    assert_eq!(fx.json("c1").unwrap()["generation"], 2);
    d.signal(libc::SIGINT);
    assert_eq!(d.wait_exit().code(), Some(0));

    // A restart keeps the still-fresh token (no new acquisition: Knox's per-user quota), and
    // the next publish continues the generations read back from the json.
    let d2 = Daemon::run(&fx);
    d2.wait_log("kept the published token", 1);
    d2.wait_log("ready published=1", 1);
    assert_eq!(sim.acquisitions(), 2);
    assert_eq!(fx.json("c1").unwrap()["generation"], 2);
    d2.signal(libc::SIGUSR1);
    d2.wait_log("token published", 1);
    assert_eq!(fx.json("c1").unwrap()["generation"], 3, "generation read back from the json at start");
}

#[test]
fn a_restart_keeps_a_short_token_that_is_fresh_for_its_lifetime() {
    // 40 s tokens (a renewal interval on the real Knox) under the default min_remaining of
    // 60 s: the published token is fresh by the scheduler's rule (half its lifetime left), so
    // a restart must keep it instead of minting another token of the user's quota.
    let sim = SimServer::with_ttl(Duration::from_secs(40));
    let fx = Fixture::new();
    fx.write_config("", &[fx.cluster("c1", &sim.url(), "")]);
    let d = Daemon::run(&fx);
    d.wait_log("token published", 1);
    assert_restart_keeps_the_token(&fx, &sim, d);
}

#[test]
fn a_restart_after_a_renewal_keeps_the_renewed_token() {
    // Real Knox renews to now + renew interval: a 30 s token renewed at mid-life with a 10 s
    // interval has 10 s left of a 10 s lifetime. Counted from its acquisition it looked like
    // 25 s with 10 s left, under half, so every restart minted a new token.
    let sim = SimServer::start(SimOptions {
        ttl: Some(Duration::from_secs(30)),
        renew_interval: Duration::from_secs(10),
        renewers: vec!["alice".into()],
        ..SimOptions::default()
    });
    let fx = Fixture::new();
    fx.write_config("", &[fx.cluster("c1", &sim.url(), "consumers_validate = \"gateway\"")]);
    let d = Daemon::run(&fx);
    d.wait_log("token renewed", 1);
    assert!(fx.json("c1").unwrap()["renewed_at"].is_string(), "the json says when it was renewed");
    assert_restart_keeps_the_token(&fx, &sim, d);
}

/// Stops `d` with SIGTERM, starts the daemon again, and asserts that it keeps the published
/// token: the restart costs no token of the user's quota (the sim issued exactly one).
fn assert_restart_keeps_the_token(fx: &Fixture, sim: &SimServer, mut d: Daemon) {
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0));
    let d2 = Daemon::run(fx);
    d2.wait_log("kept the published token", 1);
    assert_eq!(sim.acquisitions(), 1, "no second token for the restart");
}

#[test]
fn systemd_notifications_arrive_in_order() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("c1", &sim.url(), "")]);
    let (socket, socket_path) = notify_socket(&fx);
    let recv = || {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("a notification within the timeout");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut cmd = command(&["-c", fx.config.to_str().unwrap(), "run"]);
    cmd.env("NOTIFY_SOCKET", &socket_path);
    let mut d = Daemon::spawn_cmd(cmd);

    // STATUS lines may come first; READY=1 only once the token file is in place.
    let ready = loop {
        let m = recv();
        if m.contains("READY=1") {
            break m;
        }
    };
    assert!(fx.token("c1").is_some(), "READY=1 before the first publish");
    assert!(ready.contains("STATUS=1 clusters published, 0 failed"), "{ready}");

    d.signal(libc::SIGHUP);
    let reloading = loop {
        let m = recv();
        if m.contains("RELOADING=1") {
            break m;
        }
    };
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    loop {
        if recv().contains("READY=1") {
            break;
        }
    }
    d.signal(libc::SIGTERM);
    loop {
        if recv().contains("STOPPING=1") {
            break;
        }
    }
    assert_eq!(d.wait_exit().code(), Some(0));
}

#[test]
fn check_config_prints_the_resolved_config_or_exits_2() {
    let fx = Fixture::new();
    fx.write_config("", &[fx.cluster("c1", "http://127.0.0.1:9/gateway/x/knoxtoken/api/v1/token", "")]);
    let ok = fx.cmd(&["check-config"]);
    let stdout = String::from_utf8(ok.stdout).unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(stdout.contains("name = \"c1\"") && stdout.contains("refresh_fraction = 0.8"), "{stdout}");
    assert!(stdout.contains("password_file") && !stdout.contains(PASSWORD), "{stdout}");

    // An unknown key: exit 2, named, with its line.
    std::fs::write(
        &fx.config,
        std::fs::read_to_string(&fx.config)
            .unwrap()
            .replace("[defaults]", "[defaults]\nrefresh_fractoin = 0.5"),
    )
    .unwrap();
    let bad = fx.cmd(&["check-config"]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("unknown field `refresh_fractoin`") && stderr.contains("config.toml:2:"),
        "{stderr}"
    );

    // An inline password: exit 2, the value never echoed, a hint given.
    fx.write_config(
        "",
        &[fx.cluster("c1", "http://127.0.0.1:9/t", "")
            .replace("password_file", "password = \"s3cr3t-value\"\n#")],
    );
    let bad = fx.cmd(&["check-config"]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("password_file") && !stderr.contains("s3cr3t-value"), "{stderr}");

    // A usage error is 2 as well; a missing file names the path.
    assert_eq!(fx.cmd(&["no-such-verb"]).status.code(), Some(2));
    let missing = command(&["-c", "/nonexistent/tk.toml", "check-config"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/tk.toml"));

    // $TOKEN_KEEPER_CONFIG is read when -c is absent.
    fx.write_config("", &[fx.cluster("c1", "http://127.0.0.1:9/t", "")]);
    let via_env = command(&["check-config"]).env("TOKEN_KEEPER_CONFIG", &fx.config).output().unwrap();
    assert_eq!(via_env.status.code(), Some(0), "{}", String::from_utf8_lossy(&via_env.stderr));
}

#[test]
fn group_writable_output_directory_is_refused_at_start() {
    let fx = Fixture::new();
    fx.write_config("", &[fx.cluster("c1", "http://127.0.0.1:9/t", "")]);
    let out = fx.path().join("out/c1");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o775)).unwrap();
    for verb in ["check-config", "run", "once"] {
        let r = fx.cmd(&[verb]);
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{verb}: {stderr}");
        assert!(
            stderr.contains("writable by group or others") && stderr.contains("out/c1"),
            "{verb}: {stderr}"
        );
    }
}

#[test]
fn once_publishes_keeps_fresh_tokens_and_reports_failure() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("c1", &sim.url(), "")]);
    let r = fx.cmd(&["once"]);
    assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(fx.token("c1").unwrap(), sim.jwts()[0]);
    // A second pass keeps the still-fresh token.
    let r = fx.cmd(&["once"]);
    assert_eq!(r.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&r.stderr).contains("kept"));
    assert_eq!(sim.acquisitions(), 1);

    // Transient failures are retried within --timeout.
    let fx2 = Fixture::new();
    fx2.write_config(FAST, &[fx2.cluster("c1", &sim.url(), "")]);
    sim.push_reply(knox_sim::Scripted::service_unavailable());
    sim.push_reply(knox_sim::Scripted::server_error_html());
    let r = fx2.cmd(&["once", "--timeout", "20s"]);
    assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(sim.acquisitions(), 2);

    // A rejected password is not transient: exit 1 at once, nothing published.
    let fx3 = Fixture::new();
    std::fs::write(&fx3.password_file, "wrong\n").unwrap();
    fx3.write_config(FAST, &[fx3.cluster("c1", &sim.url(), "")]);
    let r = fx3.cmd(&["once", "--timeout", "20s"]);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("401") && stderr.contains("rejected the credentials"), "{stderr}");
    assert!(fx3.token("c1").is_none());
    assert!(!stderr.contains("wrong"), "password echoed: {stderr}");

    let status = fx3.cmd(&["status"]);
    assert_eq!(status.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&status.stdout).contains("not published"));
    let token = fx3.cmd(&["token"]);
    assert_eq!(token.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&token.stderr).contains("no token is published"));
}

#[test]
fn once_gives_up_on_a_dead_gateway_after_its_timeout() {
    let mut sim = SimServer::with_ttl(Duration::from_secs(3600));
    let url = sim.url();
    sim.stop();
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("c1", &url, "")]);
    let r = fx.cmd(&["once", "--timeout", "2s"]);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{stderr}");
    assert!(stderr.matches("retrying in").count() >= 1, "transient errors are retried: {stderr}");
    assert!(stderr.contains("giving up") && stderr.contains("cannot reach"), "{stderr}");
}

/// The demo example (examples/demo.rs), which `cargo test` builds next to this test binary's
/// directory: `target/<profile>/examples/demo`.
fn demo_example() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(std::path::Path::parent).expect("target/<profile>/deps/it-*");
    let demo = profile_dir.join("examples").join("demo");
    assert!(
        demo.is_file(),
        "{} is missing: a plain `cargo test` builds the examples, but a `--test it` filter does \
         not; run `cargo build --example demo` first",
        demo.display()
    );
    demo
}

#[test]
fn demo_runs_the_simulator_and_the_keeper() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let mut d = Daemon::spawn_cmd(program(&demo_example(), &["--dir", demo.to_str().unwrap()]));
    d.wait_log("token published", 1);
    let jwt = std::fs::read_to_string(demo.join("token")).unwrap();
    assert_eq!(claims(&jwt)["sub"], "alice");
    assert!(std::fs::read_to_string(demo.join("token.sh")).unwrap().starts_with("export CDE_TOKEN='"));
    d.signal(libc::SIGINT);
    assert_eq!(d.wait_exit().code(), Some(0));
    assert_no_secrets(&d.log(), &[jwt]);
}

#[test]
fn completions_and_man_page_come_from_the_cli_definitions() {
    let bash = command(&["completions", "bash"]).output().unwrap();
    assert!(bash.status.success());
    let text = String::from_utf8_lossy(&bash.stdout);
    for verb in ["run", "once", "check-config", "status", "token", "exec", "doctor", "tokens"] {
        assert!(text.contains(verb), "bash completion lacks {verb}");
    }
    let man = command(&["man"]).output().unwrap();
    assert!(man.status.success());
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(page.starts_with(".ie") || page.contains(".TH token-keeper"), "{}", &page[..page.len().min(200)]);
    assert_eq!(command(&["completions", "tcsh"]).output().unwrap().status.code(), Some(2));
}

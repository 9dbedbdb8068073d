//! Operating the daemon: `/healthz`, `/readyz` and `/metrics` over loopback, the metrics
//! textfile, the systemd watchdog, `on_change` hooks, systemd credentials, `status --json`
//! and JSON logs.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use crate::harness::*;

/// A plain HTTP/1.1 GET; returns the status code and body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// The value of the sample `line_start` (metric name and labels) in a metrics text.
fn sample(text: &str, line_start: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(line_start)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn health_readiness_and_metrics_over_loopback() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    let bad_pw = fx.path().join("bad-password");
    std::fs::write(&bad_pw, "wrong\n").unwrap();
    let textfile = fx.path().join("metrics/token_keeper.prom");
    let bad = fx
        .cluster("bad", &sim.url(), "")
        .replace(&fx.password_file.display().to_string(), &bad_pw.display().to_string());
    let server =
        format!("[server]\nlisten = \"127.0.0.1:0\"\nmetrics_textfile = \"{}\"\n", textfile.display());
    let text = format!("{server}[defaults]\n{FAST}{}{bad}", fx.cluster("vc", &sim.url(), ""));
    std::fs::write(&fx.config, text).unwrap();
    let d = Daemon::run(&fx);
    d.wait_log("ready published=1 failed=1", 1);
    let line = d.log().lines().find(|l| l.contains("serving /healthz")).unwrap().to_owned();
    let addr = line.split("listen=").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();

    assert_eq!(get(&addr, "/healthz").0, 200);
    // "bad" has no token: not ready, and the body says which cluster and why.
    let (status, body) = get(&addr, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("bad: no token published yet") && !body.contains("vc:"), "{body}");

    let (status, metrics) = get(&addr, "/metrics");
    assert_eq!(status, 200);
    let issued = &sim.issued()[0];
    let exp = claims(&issued.jwt)["exp"].as_f64().unwrap();
    assert_eq!(sample(&metrics, "token_keeper_token_expiry_timestamp_seconds{cluster=\"vc\"}"), Some(exp));
    let left = sample(&metrics, "token_keeper_token_remaining_seconds{cluster=\"vc\"}").unwrap();
    assert!(left > 3500.0 && left <= 3600.0, "{left}");
    assert_eq!(sample(&metrics, "token_keeper_acquisitions_total{cluster=\"vc\",result=\"ok\"}"), Some(1.0));
    assert!(
        sample(&metrics, "token_keeper_acquisitions_total{cluster=\"bad\",result=\"error\"}").unwrap() >= 1.0
    );
    assert_eq!(sample(&metrics, "token_keeper_publish_generation{cluster=\"vc\"}"), Some(1.0));
    assert_eq!(sample(&metrics, "token_keeper_config_generation"), Some(1.0));
    assert!(metrics.contains("# TYPE token_keeper_renewals_total counter"));
    assert!(!metrics.contains(&issued.jwt) && !metrics.contains(PASSWORD));

    // The same metrics land in the textfile, readable by node_exporter.
    assert!(wait_until(WAIT, || std::fs::read_to_string(&textfile)
        .is_ok_and(|t| t.contains("token_keeper_acquisitions_total{cluster=\"vc\",result=\"ok\"} 1"))));
    assert_eq!(std::fs::metadata(&textfile).unwrap().permissions().mode() & 0o777, 0o644);

    // A rejected reload is counted.
    std::fs::write(&fx.config, "bogus = 1\n").unwrap();
    d.signal(libc::SIGHUP);
    d.wait_log("config rejected", 1);
    assert!(wait_until(WAIT, || sample(
        &get(&addr, "/metrics").1,
        "token_keeper_reloads_total{result=\"error\"}"
    )
    .is_some_and(|v| v >= 1.0)));
    assert_eq!(get(&addr, "/nope").0, 404);
}

#[test]
fn the_watchdog_is_pinged_from_the_keeper_loop() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "")]);
    let (socket, socket_path) = notify_socket(&fx);
    let mut cmd = command(&["-c", fx.config.to_str().unwrap(), "run"]);
    cmd.env("NOTIFY_SOCKET", &socket_path).env("WATCHDOG_USEC", "1000000");
    let d = Daemon::spawn_cmd(cmd);
    // An idle keeper (the token lives an hour) still wakes every half interval to ping.
    let mut pings = 0;
    let started = std::time::Instant::now();
    while pings < 3 {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("a notification within the timeout");
        pings += usize::from(String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1"));
    }
    assert!(started.elapsed() < Duration::from_secs(10), "3 pings took {:?}", started.elapsed());
    drop(d);
    // Drop what the first daemon queued before it was killed.
    socket.set_nonblocking(true).unwrap();
    while socket.recv(&mut [0u8; 4096]).is_ok() {}
    socket.set_nonblocking(false).unwrap();

    // WATCHDOG_PID naming another process: the watchdog is not ours, nothing is sent.
    let mut cmd = command(&["-c", fx.config.to_str().unwrap(), "run"]);
    cmd.env("NOTIFY_SOCKET", &socket_path).env("WATCHDOG_USEC", "200000").env("WATCHDOG_PID", "1");
    let d = Daemon::spawn_cmd(cmd);
    d.wait_log("ready published", 1);
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut buf = [0u8; 4096];
    let mut seen = String::new();
    // A 200 ms watchdog would ping ten times in a second; collect what arrives in that time.
    let until = std::time::Instant::now() + Duration::from_secs(1);
    while std::time::Instant::now() < until {
        if let Ok(n) = socket.recv(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    assert!(!seen.contains("WATCHDOG=1"), "{seen}");
}

#[test]
fn on_change_signals_the_consumer_after_the_file_is_new() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    let pid_file = fx.path().join("consumer.pid");
    let seen = fx.path().join("seen");
    let token = fx.out("vc", "token");
    // The consumer copies the token file when it gets SIGHUP: what it copies is what was in
    // place when the signal came.
    let script = format!(
        "echo $$ > {pid}; trap 'cat {token} > {seen}.tmp; mv {seen}.tmp {seen}' HUP; while :; do sleep 0.02; done",
        pid = pid_file.display(),
        token = token.display(),
        seen = seen.display()
    );
    let mut consumer = std::process::Command::new("sh").args(["-c", &script]).spawn().unwrap();
    assert!(wait_until(WAIT, || std::fs::read_to_string(&pid_file)
        .is_ok_and(|p| p.trim().parse::<u32>().is_ok())));
    let hook = format!("[cluster.on_change]\nsignal = \"HUP\"\npid_file = \"{}\"\n", pid_file.display());
    let cluster =
        fx.cluster("vc", &sim.url(), "").replace("[cluster.auth]", &format!("{hook}[cluster.auth]"));
    fx.write_config(FAST, &[cluster]);
    let d = Daemon::run(&fx);
    d.wait_log("token published", 1);
    assert!(wait_until(WAIT, || std::fs::read_to_string(&seen).ok() == fx.token("vc")), "{}", d.log());
    d.signal(libc::SIGUSR1);
    d.wait_log("token published", 2);
    let second = sim.jwts()[1].clone();
    assert!(wait_until(WAIT, || std::fs::read_to_string(&seen).ok().as_deref() == Some(second.as_str())));
    let _ = consumer.kill();
    let _ = consumer.wait();
}

#[test]
fn on_change_commands_run_and_failures_never_block_refreshing() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    let out = fx.path().join("hook.out");
    let hook = format!(
        "[cluster.on_change]\ncommand = [\"sh\", \"-c\", \"echo $TOKEN_KEEPER_CLUSTER $TOKEN_KEEPER_GENERATION >> {}; exit 3\"]\ntimeout = \"5s\"\n",
        out.display()
    );
    let cluster =
        fx.cluster("vc", &sim.url(), "").replace("[cluster.auth]", &format!("{hook}[cluster.auth]"));
    fx.write_config(FAST, &[cluster]);
    let d = Daemon::run(&fx);
    d.wait_log("on_change failed", 1);
    assert!(d.log().contains("exit status: 3"), "{}", d.log());
    d.signal(libc::SIGUSR1);
    d.wait_log("token published", 2);
    assert!(wait_until(WAIT, || std::fs::read_to_string(&out).is_ok_and(|t| t == "vc 1\nvc 2\n")));
}

#[test]
fn password_credential_reads_systemds_credentials_directory() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    let creds = fx.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("vc-prod"), format!("{PASSWORD}\n")).unwrap();
    let cluster = fx.cluster("vc", &sim.url(), "").replace(
        &format!("password_file = \"{}\"", fx.password_file.display()),
        "password_credential = \"vc-prod\"",
    );
    fx.write_config(FAST, &[cluster]);
    let with = command(&["-c", fx.config.to_str().unwrap(), "once"])
        .env("CREDENTIALS_DIRECTORY", &creds)
        .output()
        .unwrap();
    assert_eq!(with.status.code(), Some(0), "{}", String::from_utf8_lossy(&with.stderr));
    let without = command(&["-c", fx.config.to_str().unwrap(), "once"]).output().unwrap();
    assert_eq!(without.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&without.stderr).contains("needs $CREDENTIALS_DIRECTORY"));
}

#[test]
fn status_json_and_json_logs_for_scripts() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    fx.write_config(
        FAST,
        &[fx.cluster("vc", &sim.url(), ""), fx.cluster("other", "http://127.0.0.1:9/t", "")],
    );
    let once = fx.cmd(&["--log-format", "json", "once", "--timeout", "1s"]);
    let stderr = String::from_utf8_lossy(&once.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let published = lines.iter().find(|l| l["message"] == "token published").expect("a publish line");
    assert_eq!(published["cluster"], "vc");
    assert_eq!(published["token_id"], sim.issued()[0].token_id.as_str());
    assert_no_secrets(&stderr, &sim.jwts());

    let status = fx.cmd(&["status", "--json"]);
    assert_eq!(status.status.code(), Some(1), "one cluster is not published");
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v[0]["cluster"], "vc");
    assert_eq!(v[0]["state"], "fresh");
    assert_eq!(v[0]["token_id"], sim.issued()[0].token_id.as_str());
    assert!(v[0]["remaining_seconds"].as_i64().unwrap() > 3500);
    assert_eq!(v[1]["state"], "not_published");
}

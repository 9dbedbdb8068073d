//! A hostile or broken Knox: whatever bytes it sends, no published file changes meaning, no
//! log line is forged, no terminal receives control characters, memory stays flat, and no
//! verb panics. The last good token stays published through all of it.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use knox_sim::Scripted;
use serde_json::{json, Value};

use crate::harness::*;

const OUTPUTS: [&str; 5] = ["token", "token.header", "token.env", "token.sh", "token.json"];

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWT with `claims` and the given signature segment (not a real signature: token-keeper
/// does not verify it, the consumers do).
fn jwt(claims: &Value, signature: &str) -> String {
    format!("{}.{}.{signature}", b64(br#"{"alg":"RS256","typ":"JWT"}"#), b64(claims.to_string().as_bytes()))
}

/// Claims of a token for alice valid for an hour.
fn hour_claims() -> Value {
    json!({"sub": "alice", "exp": now_ms() / 1000 + 3600, "knox.id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427"})
}

/// A 200 acquisition answer for `access_token`, with `fields` replacing the defaults.
fn answer(access_token: &str, fields: Value) -> Scripted {
    let mut body = json!({
        "access_token": access_token,
        "token_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "managed": "false",
        "token_type": "Bearer",
        "expires_in": now_ms() + 3_600_000,
    });
    if let (Some(body), Value::Object(fields)) = (body.as_object_mut(), fields) {
        body.extend(fields);
    }
    Scripted::new(200, body.to_string()).header("Content-Type", "application/json")
}

fn files(fx: &Fixture, name: &str) -> Vec<Vec<u8>> {
    OUTPUTS.iter().map(|f| std::fs::read(fx.out(name, f)).unwrap()).collect()
}

fn last_line<'a>(log: &'a str, needle: &str) -> &'a str {
    log.lines().rfind(|l| l.contains(needle)).unwrap_or_default()
}

/// Bytes that must never reach a terminal or a log line raw.
fn has_control(text: &str) -> bool {
    text.chars().any(|c| {
        (c.is_control() && c != '\n')
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    })
}

#[test]
fn hostile_bytes_in_the_jwt_are_refused_and_the_last_good_token_stays() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "timeout = \"5s\"")]);
    let d = Daemon::run(&fx);
    d.wait_log("token published", 1);
    let good = files(&fx, "vc");
    let claims = hour_claims();
    let base = jwt(&claims, "c2ln");
    let cases: Vec<(&str, String, &str)> = vec![
        ("quote", jwt(&claims, "c2ln'$(touch${IFS}/tmp/pwned)'"), "pwned"),
        ("newline", jwt(&claims, "c2ln\nEVIL_VAR=1"), "EVIL_VAR"),
        ("CR", jwt(&claims, "c2ln\rEVIL_VAR=1"), "EVIL_VAR"),
        ("CRLF", jwt(&claims, "c2ln\r\nX-Injected: 1"), "X-Injected"),
        ("backslash", jwt(&claims, "c2ln\\"), "c2ln\\"),
        ("NUL", jwt(&claims, "c2ln\0tail"), "tail"),
        ("space", jwt(&claims, "c2ln tail"), "tail"),
        ("padding", jwt(&claims, "c2lnYQ=="), "c2lnYQ"),
        ("empty signature (unsigned)", jwt(&claims, ""), "<none>"),
        ("four segments", format!("{base}.ZXh0cmE"), "ZXh0cmE"),
        ("two segments", base.rsplit_once('.').unwrap().0.to_owned(), "<none>"),
        ("too large", jwt(&claims, &"A".repeat(70 * 1024)), "AAAAAAAAAAAAAAAA"),
    ];
    for (i, (name, token, leak)) in cases.into_iter().enumerate() {
        sim.push_reply(answer(&token, json!({})));
        d.signal(libc::SIGUSR1);
        d.wait_log("refresh failed", i + 1);
        let log = d.log();
        let line = last_line(&log, "refresh failed");
        assert!(line.contains("access_token"), "{name}: {line}");
        assert!(line.contains(&sim.url()), "{name}: no URL: {line}");
        assert!(line.contains("the last good token stays published"), "{name}: {line}");
        assert!(!log.contains(leak), "{name}: the token's bytes reached the log:\n{log}");
        assert!(!log.contains(&claims.to_string()), "{name}");
        assert_eq!(files(&fx, "vc"), good, "{name}: a published file changed");
    }
    assert!(!std::path::Path::new("/tmp/pwned").exists());
}

#[test]
fn knox_strings_neither_forge_log_lines_nor_reach_the_terminal() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let forged = "\n2030-01-01T00:00:00.000000Z  INFO token published cluster=other\u{1b}[2J";
    sim.push_reply(answer(
        &jwt(&hour_claims(), "c2ln"),
        json!({
            "token_id": format!("1b4e28ba{forged}"),
            "target_url": format!("https://x/\r\nforged\u{202e}"),
            "token_type": "Bearer\u{1b}]0;title\u{7}",
        }),
    ));
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "")]);
    let d = Daemon::run(&fx);
    d.wait_log("token published", 1);
    let log = d.log();
    assert!(!has_control(&log), "control characters in the log:\n{log:?}");
    assert!(!log.lines().any(|l| l.starts_with("2030-01-01")), "a forged log line:\n{log}");
    assert!(
        log.lines().any(|l| l.contains("WARN") && l.contains("token_id") && l.contains("ignored")),
        "the odd token_id is reported:\n{log}"
    );
    for args in [&["status"][..], &["status", "--json"][..]] {
        let out = fx.cmd(args);
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(!has_control(&text), "{args:?}: {text:?}");
        assert!(!text.contains("2030-01-01"), "{args:?}: {text}");
    }
    let json = fx.json("vc").unwrap();
    let text = std::fs::read_to_string(fx.out("vc", "token.json")).unwrap();
    assert!(!has_control(&text), "{text:?}");
    for key in ["token_id", "target_url", "token_type"] {
        assert!(!json[key].as_str().unwrap_or_default().contains(['\n', '\r', '\u{1b}']), "{key}: {json}");
    }
}

#[test]
fn a_huge_body_is_refused_at_the_limit_and_the_last_good_token_stays() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "")]);
    let d = Daemon::run(&fx);
    d.wait_log("token published", 1);
    let good = files(&fx, "vc");
    // A valid answer padded to 5 MiB: only its size is wrong.
    let padded = answer(&jwt(&hour_claims(), "c2ln"), json!({"padding": "x".repeat(5 << 20)}));
    sim.push_reply(padded);
    d.signal(libc::SIGUSR1);
    d.wait_log("refresh failed", 1);
    let line = last_line(&d.log(), "refresh failed").to_owned();
    assert!(line.contains("1 MiB") && line.contains(&sim.url()), "{line}");
    assert!(line.contains("the last good token stays published"), "{line}");
    assert_eq!(files(&fx, "vc"), good);
}

/// What the fake Knox sends for one request.
enum Reply {
    /// A complete answer: status line and headers are added.
    Body(&'static str, String),
    /// 200 with a chunked body that never ends (64 KiB per 10 ms at most, so that a client
    /// without a limit grows slowly enough not to hurt the machine).
    Endless,
}

/// A loopback HTTP/1.1 server that answers the n-th request (0-based) with `reply(n, path)`,
/// for what the simulator cannot send (endless bodies, other resources' bodies). Returns the
/// base URL and the count of requests served.
fn fake_knox(reply: impl Fn(usize, &str) -> Reply + Send + Sync + 'static) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    let reply = Arc::new(reply);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let n = count.fetch_add(1, Ordering::SeqCst);
            let reply = reply.clone();
            std::thread::spawn(move || serve_one(stream, n, &*reply));
        }
    });
    (url, served)
}

fn serve_one(mut stream: TcpStream, n: usize, reply: &dyn Fn(usize, &str) -> Reply) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|len| len > 2) {
        header.clear();
    }
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_owned();
    let _ = match reply(n, &path) {
        Reply::Body(status, body) => write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        Reply::Endless => endless(&mut stream),
    };
}

fn endless(stream: &mut TcpStream) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )?;
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "{".repeat(64 * 1024));
    loop {
        stream.write_all(chunk.as_bytes())?;
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The peak resident memory of process `pid`, in KiB.
fn peak_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn an_endless_body_stops_at_the_limit_with_memory_flat() {
    let good = answer(&jwt(&hour_claims(), "c2ln"), json!({})).body;
    let (base, served) =
        fake_knox(move |n, _| if n == 0 { Reply::Body("200 OK", good.clone()) } else { Reply::Endless });
    let fx = Fixture::new();
    let url = format!("{base}/gateway/sandbox/knoxtoken/api/v1/token");
    // Unsigned test tokens, and every request counted: no JWKS fetch.
    fx.write_config(FAST, &[fx.cluster("vc", &url, "timeout = \"3s\"\nverify = \"off\"")]);
    let d = Daemon::run(&fx);
    d.wait_log("token published", 1);
    let published = files(&fx, "vc");
    d.signal(libc::SIGUSR1);
    d.wait_log("refresh failed", 1);
    let line = last_line(&d.log(), "refresh failed").to_owned();
    assert!(line.contains("1 MiB") && line.contains(&base), "{line}");
    assert_eq!(served.load(Ordering::SeqCst), 2);
    assert_eq!(files(&fx, "vc"), published, "the last good token stays published");
    let peak = peak_rss_kib(d.pid());
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB: the body was buffered");
}

/// A `getUserTokens` answer with absurd times and control characters in its strings.
fn hostile_token_list() -> String {
    json!({"tokens": [
        {
            "tokenId": "\u{1b}[31mred\u{1b}[0m\n2030-01-01 forged row\u{202e}",
            "issueTimeLong": i64::MAX,
            "expirationLong": 253_402_300_800_000i64,
            "maxLifetimeLong": i64::MIN,
            "metadata": {"enabled": "tr\u{1b}[8mue", "lastUsedAt": i64::MAX, "comment": "\u{9b}31m"},
        },
        {
            "tokenId": "d161cac1-f93e-4229-a0dd-3a77ab914871",
            "issueTimeLong": 1_700_000_000_000i64,
            "expirationLong": -1,
            "maxLifetimeLong": 1_700_086_400_000i64,
            "metadata": {"enabled": true, "lastUsedAt": "\u{1b}]0;pwned\u{7}"},
        },
    ]})
    .to_string()
}

#[test]
fn tokens_list_survives_absurd_times_and_shows_no_control_characters() {
    let (base, _) = fake_knox(|_, path| {
        if path.contains("getUserTokens") {
            Reply::Body("200 OK", hostile_token_list())
        } else {
            Reply::Body("404 Not Found", String::new())
        }
    });
    let fx = Fixture::new();
    let url = format!("{base}/gateway/sandbox/knoxtoken/api/v1/token");
    fx.write_config(FAST, &[fx.cluster("vc", &url, "")]);
    let out = fx.cmd(&["tokens", "list"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(!has_control(&text), "{text:?}");
    assert_eq!(text.lines().count(), 3, "a header and one line per token:\n{text}");
    assert!(text.contains("9999-12-31T23:59:59Z"), "an absurd time shows clamped:\n{text}");
    let out = fx.cmd(&["tokens", "list", "--json"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(!has_control(&text), "{text:?}");
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        value["tokens"][0]["tokenId"].as_str().unwrap().chars().next(),
        Some('\u{1b}'),
        "--json keeps Knox's data"
    );
}

#[test]
fn endless_bodies_from_the_token_api_stop_at_the_limit() {
    let (base, _) = fake_knox(|_, _| Reply::Endless);
    let fx = Fixture::new();
    let url = format!("{base}/gateway/sandbox/knoxtoken/api/v1/token");
    fx.write_config(FAST, &[fx.cluster("vc", &url, "timeout = \"10s\"")]);
    for args in [&["tokens", "list"][..], &["tokens", "revoke", "some-id"][..]] {
        let started = std::time::Instant::now();
        let out = fx.cmd(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("1 MiB"), "{args:?}: {err}");
        assert!(started.elapsed() < Duration::from_secs(8), "{args:?}: read until the timeout");
    }
}

#[test]
fn absurd_times_from_knox_neither_panic_nor_make_a_token_fresh_for_years() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    // The tokens below are not signed by the sim's key: the times are what is tested.
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "verify = \"off\"")]);
    // Past year 9999 and no exp: clamped, and every format is written, json included.
    let far = json!({"sub": "alice", "knox.id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427"});
    sim.push_reply(answer(&jwt(&far, "c2ln"), json!({"expires_in": 300_000_000_000_000i64})));
    let out = fx.cmd(&["once"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("9999"), "the clamp is logged: {err}");
    assert_eq!(fx.json("vc").unwrap()["expires_at"], "9999-12-31T23:59:59Z");
    for args in [&["status"][..], &["status", "--json"][..], &["once"][..], &["token"][..]] {
        let out = fx.cmd(args);
        assert_ne!(
            out.status.code(),
            Some(101),
            "{args:?} panicked: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // A Date header in 1970 is ignored: the one-hour token is fresh for an hour, not decades.
    // And a fractional exp (a NumericDate may have one) is accepted, floored.
    let exp = now_ms() as f64 / 1000.0 + 3600.25;
    let claims = json!({"sub": "alice", "exp": exp, "knox.id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427"});
    sim.push_reply(answer(&jwt(&claims, "c2ln"), json!({})).header("Date", "Thu, 01 Jan 1970 00:00:00 GMT"));
    for f in OUTPUTS {
        std::fs::remove_file(fx.out("vc", f)).unwrap();
    }
    let out = fx.cmd(&["once"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("Date"), "the ignored Date header is logged: {err}");
    let json = fx.json("vc").unwrap();
    assert!(json["knox_clock_offset_ms"].as_i64().unwrap().abs() < 5_000, "{json}");
    assert_eq!(json["jwt_exp"], exp.floor() as i64, "{json}");
    let status = String::from_utf8(fx.cmd(&["status"]).stdout).unwrap();
    assert!(status.contains("59m") || status.contains(" 1h"), "{status}");
}

#[test]
fn readers_refuse_published_files_with_hostile_bytes() {
    let fx = Fixture::new();
    let url = "http://127.0.0.1:9/gateway/sandbox/knoxtoken/api/v1/token";
    fx.write_config(FAST, &[fx.cluster("vc", url, "")]);
    std::fs::create_dir_all(fx.out("vc", "")).unwrap();
    let hostile = jwt(&hour_claims(), "c2ln'; touch /tmp/pwned; '");
    let mut record = json!({
        "access_token": hostile,
        "token_type": "Bearer",
        "token_id": "1b4e28ba\u{1b}[31m",
        "expires_at_ms": i64::MAX,
        "jwt_exp": i64::MAX,
        "managed": false,
        "cluster": "vc",
        "generation": u64::MAX,
        "acquired_at": "2024-01-01T00:00:00Z",
        "knox_clock_offset_ms": i64::MIN,
    });
    std::fs::write(fx.out("vc", "token.json"), format!("{record}\n")).unwrap();
    for format in ["shell", "env", "header", "raw", "json"] {
        let out = fx.cmd(&["token", "--format", format]);
        assert_eq!(out.status.code(), Some(1), "{format}: {}", String::from_utf8_lossy(&out.stdout));
        assert!(out.stdout.is_empty(), "{format}: {}", String::from_utf8_lossy(&out.stdout));
    }
    let status = fx.cmd(&["status"]);
    assert_ne!(status.status.code(), Some(101));
    assert!(String::from_utf8_lossy(&status.stdout).contains("unreadable"));

    // A valid token with absurd numbers and a hostile id: readable, bounded, shown safely.
    let valid = jwt(&hour_claims(), "c2ln");
    record["access_token"] = valid.as_str().into();
    std::fs::write(fx.out("vc", "token.json"), format!("{record}\n")).unwrap();
    for args in [&["status"][..], &["status", "--json"][..]] {
        let out = fx.cmd(args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_ne!(out.status.code(), Some(101), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(!has_control(&text), "{args:?}: {text:?}");
    }
    let out = fx.cmd(&["token", "--format", "shell"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let shell = String::from_utf8(out.stdout).unwrap();
    assert_eq!(shell, format!("export CDE_TOKEN='{valid}'\n"));
}

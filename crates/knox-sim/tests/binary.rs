//! The spawned `knox-sim` binary: it says where it listens, serves tokens to the users its
//! command line names, and stops cleanly on SIGTERM.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

/// GETs `url` (plain http) with Basic credentials; the status and the body.
fn get(url: &str, user: &str, password: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_once('/').expect("a path");
    let mut stream = TcpStream::connect(host).expect("connecting to the simulator");
    let auth = STANDARD.encode(format!("{user}:{password}"));
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n"
    )
    .expect("sending the request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("reading the answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    (status, body.to_owned())
}

/// The claims of a JWT, without checking its signature.
fn claims(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).expect("three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("json claims")
}

#[test]
fn knox_sim_serves_tokens_to_its_users_and_stops_on_sigterm() {
    // Port 0 is not printable in advance, so the sim reports its address on stdout.
    let mut child = Command::new(env!("CARGO_BIN_EXE_knox-sim"))
        .args(["--listen", "127.0.0.1:0", "--ttl", "1h", "--user", "bob:pw"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env_remove("RUST_LOG")
        .spawn()
        .expect("spawning knox-sim");
    let mut line = String::new();
    let mut reader = BufReader::new(child.stdout.take().expect("piped stdout"));
    while !line.contains("token URL: ") {
        line.clear();
        assert!(reader.read_line(&mut line).expect("reading stdout") > 0, "sim exited early");
    }
    let url = line.trim().trim_start_matches("token URL: ").to_owned();
    let (status, body) = get(&url, "bob", "pw");
    let refused = get(&url, "alice", "alice-password").0;
    // SAFETY: plain kill of our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let exit = child.wait().expect("waiting for knox-sim");
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("a JSON answer");
    assert_eq!(claims(answer["access_token"].as_str().expect("an access_token"))["sub"], "bob");
    assert_eq!(refused, 401, "--user replaces the default user");
    assert!(exit.success(), "{exit:?}");
}

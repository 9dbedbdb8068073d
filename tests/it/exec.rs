//! `token-keeper exec -- CMD`: which token the child gets (published or newly acquired), the
//! variable it comes in, exit codes passed through, signals forwarded, and the refusal when
//! no token can cover `--min-valid`.

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::*;

/// A child that prints the token it was given, and nothing else.
const PRINT_TOKEN: &[&str] = &["sh", "-c", "printf %s \"$CDE_TOKEN\""];

/// `token-keeper -c <config> exec ARGS`, run to completion. The test's own environment may
/// not hold a CDE_TOKEN that could be mistaken for the one exec exports.
fn exec(fx: &Fixture, args: &[&str]) -> Output {
    let mut all = vec!["-c", fx.config.to_str().unwrap(), "exec"];
    all.extend_from_slice(args);
    command(&all).env_remove("CDE_TOKEN").env_remove("MY_TOKEN").output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts exec exited with `code`, showing its stderr otherwise.
fn assert_code(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "stderr:\n{}", text(&out.stderr));
}

/// A simulator with one-hour tokens and a config for cluster `vc` that publishes into the
/// fixture.
fn setup(extra: &str) -> (SimServer, Fixture) {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), extra)]);
    (sim, fx)
}

/// Publishes a token for `vc` the way an init container would.
fn publish(fx: &Fixture) -> String {
    let once = fx.cmd(&["once"]);
    assert!(once.status.success(), "once: {}", text(&once.stderr));
    fx.token("vc").expect("once published a token")
}

#[test]
fn a_fresh_published_token_is_used_without_asking_knox() {
    let (sim, fx) = setup("");
    let published = publish(&fx);
    let before = sim.acquisitions();

    let out = exec(&fx, &[&["--min-valid", "30m", "--"], PRINT_TOKEN].concat());
    assert_code(&out, 0);
    assert_eq!(text(&out.stdout), published, "the child got the published token");
    assert_eq!(sim.acquisitions(), before, "no new acquisition");
    assert_no_secrets(&text(&out.stderr), &sim.jwts());
}

#[test]
fn without_min_valid_knox_default_short_tokens_are_used() {
    // Knox's default knox.token.ttl is 30 s: a fixed --min-valid default of minutes refused
    // every token there. The default is the cluster's freshness rule instead.
    let sim = SimServer::with_ttl(Duration::from_secs(30));
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "")]);
    let published = publish(&fx);

    let out = exec(&fx, &[&["--"], PRINT_TOKEN].concat());
    assert_code(&out, 0);
    assert_eq!(text(&out.stdout), published, "the fresh 30 s token was used");
    assert_eq!(sim.acquisitions(), 1, "no new acquisition");

    for file in ["token", "token.header", "token.env", "token.sh", "token.json"] {
        std::fs::remove_file(fx.out("vc", file)).unwrap();
    }
    let out = exec(&fx, &[&["--"], PRINT_TOKEN].concat());
    assert_code(&out, 0);
    assert_eq!(text(&out.stdout), sim.jwts()[1], "a newly issued 30 s token is good enough");
}

#[test]
fn with_nothing_published_a_token_is_acquired_and_not_published() {
    let (sim, fx) = setup("");

    let out = exec(&fx, &[&["--"], PRINT_TOKEN].concat());
    assert_code(&out, 0);
    assert_eq!(sim.acquisitions(), 1);
    assert_eq!(text(&out.stdout), sim.jwts()[0], "the child got the newly issued token");
    // exec is a consumer: publishing stays the keeper's job.
    assert_eq!(fx.token("vc"), None, "exec published the token it acquired");
    assert!(fx.json("vc").is_none());
    assert_no_secrets(&text(&out.stderr), &sim.jwts());
}

#[test]
fn a_published_token_with_too_little_left_is_replaced_for_the_child() {
    // The keeper asks for 30-second tokens; exec needs 5 minutes, so it asks Knox for a
    // lifespan that covers them (the one-hour TTL allows it).
    let (sim, fx) = setup("lifespan = \"PT30S\"");
    let published = publish(&fx);
    assert_eq!(sim.acquisitions(), 1);

    let out = exec(&fx, &[&["--cluster", "vc", "--min-valid", "5m", "--"], PRINT_TOKEN].concat());
    assert_code(&out, 0);
    assert_eq!(sim.acquisitions(), 2, "a new token was acquired");
    let got = text(&out.stdout);
    assert_ne!(got, published);
    assert_eq!(got, *sim.jwts().last().unwrap());
    let query = sim.requests().into_iter().rev().find(|r| r.path.ends_with("/token")).unwrap().query;
    assert!(query.contains("lifespan="), "Knox was asked for a lifespan: {query:?}");
    let left_ms = sim.issued().pop().unwrap().expires_in - now_ms();
    assert!(left_ms > 290_000, "the token covers --min-valid 5m: {left_ms} ms left");
    assert_eq!(fx.token("vc").unwrap(), published, "the published token is left alone");
    assert_no_secrets(&text(&out.stderr), &sim.jwts());
}

#[test]
fn env_var_names_the_variable() {
    let (sim, fx) = setup("");
    let child = ["sh", "-c", "printf %s \"${CDE_TOKEN-unset}:$MY_TOKEN\""];
    let out = exec(&fx, &[&["--env-var", "MY_TOKEN", "--"], &child[..]].concat());
    assert_code(&out, 0);
    assert_eq!(text(&out.stdout), format!("unset:{}", sim.jwts()[0]), "only MY_TOKEN is set");

    let bad = exec(&fx, &["--env-var", "MY-TOKEN", "--", "true"]);
    assert_code(&bad, 2);
    assert!(text(&bad.stderr).contains("--env-var"), "{}", text(&bad.stderr));
}

#[test]
fn the_childs_exit_code_passes_through() {
    let (_sim, fx) = setup("");
    publish(&fx);
    assert_code(&exec(&fx, &["--", "sh", "-c", "exit 7"]), 7);
    assert_code(&exec(&fx, &["--", "true"]), 0);
}

#[test]
fn a_child_killed_by_a_signal_gives_128_plus_the_signal() {
    let (_sim, fx) = setup("");
    publish(&fx);
    assert_code(&exec(&fx, &["--", "sh", "-c", "kill -TERM $$"]), 128 + libc::SIGTERM);
    assert_code(&exec(&fx, &["--", "sh", "-c", "kill -KILL $$"]), 128 + libc::SIGKILL);
}

#[test]
fn a_command_that_cannot_run_exits_127_or_126() {
    let (_sim, fx) = setup("");
    publish(&fx);
    let missing = exec(&fx, &["--", "/nonexistent/token-keeper-test-command"]);
    assert_code(&missing, 127);
    assert!(text(&missing.stderr).contains("token-keeper-test-command"), "{}", text(&missing.stderr));

    let script = fx.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_code(&exec(&fx, &["--", script.to_str().unwrap()]), 126);
}

#[test]
fn sighup_is_forwarded_to_the_child() {
    let (sim, fx) = setup("");
    publish(&fx);
    let script = "trap 'echo got-hup; exit 3' HUP; echo ready; while :; do sleep 0.05; done";
    let mut exec = Spawned::new(&fx, &["--", "sh", "-c", script]);
    assert!(wait_until(WAIT, || exec.stdout_has("ready")), "the child never got ready");

    // SAFETY: kill has no memory-safety preconditions; the pid is our live child.
    assert_eq!(unsafe { libc::kill(exec.child.id() as i32, libc::SIGHUP) }, 0);
    let mut status = None;
    assert!(wait_until(WAIT, || {
        status = exec.child.try_wait().unwrap();
        status.is_some()
    }));
    assert_eq!(
        status.unwrap().code(),
        Some(3),
        "exec exits with the child's code; stderr:\n{}",
        exec.stderr()
    );
    assert!(wait_until(WAIT, || exec.stdout_has("got-hup")), "the child did not get SIGHUP");
    assert_no_secrets(&exec.stderr(), &sim.jwts());
}

/// A running `exec` whose stdout and stderr are collected line by line; killed on drop.
/// (The harness's `Daemon` discards stdout, where the child's answer comes out.)
struct Spawned {
    child: std::process::Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Spawned {
    fn new(fx: &Fixture, args: &[&str]) -> Spawned {
        let mut all = vec!["-c", fx.config.to_str().unwrap(), "exec"];
        all.extend_from_slice(args);
        let mut child = command(&all).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Spawned { child, stdout, stderr }
    }

    fn stdout_has(&self, line: &str) -> bool {
        self.stdout.lock().unwrap().lines().any(|l| l == line)
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn refuses_when_no_token_can_cover_min_valid() {
    // One-hour tokens at most, and a published one among them.
    let (sim, fx) = setup("");
    publish(&fx);

    let out = exec(&fx, &["--min-valid", "2h", "--", "sh", "-c", "echo ran"]);
    assert_code(&out, 1);
    assert_eq!(text(&out.stdout), "", "the command must not run");
    let err = text(&out.stderr);
    assert!(err.contains("--min-valid 2h"), "{err}");
    assert!(err.contains("cluster \"vc\""), "{err}");
    assert!(err.contains("the published token has"), "{err}");
    assert!(err.contains("no token can cover"), "{err}");
    assert_eq!(sim.acquisitions(), 2, "exec tried Knox once");
    assert_no_secrets(&err, &sim.jwts());

    // With nothing published, the message says so.
    let (sim, fx) = setup("");
    let out = exec(&fx, &["--min-valid", "2h", "--", "true"]);
    assert_code(&out, 1);
    let err = text(&out.stderr);
    assert!(err.contains("no token is published") && err.contains("--min-valid 2h"), "{err}");
    assert_no_secrets(&err, &sim.jwts());
}

#[test]
fn a_knox_failure_is_named_in_the_refusal() {
    let (sim, fx) = setup("");
    // A 401 is not retried: exec gives up at once and says why.
    std::fs::write(&fx.password_file, "wrong-password\n").unwrap();
    let out = exec(&fx, &["--", "sh", "-c", "echo ran"]);
    assert_code(&out, 1);
    assert_eq!(text(&out.stdout), "", "the command must not run");
    let err = text(&out.stderr);
    assert!(err.contains("cluster \"vc\": no token is published, and acquiring a new one failed"), "{err}");
    assert!(err.contains("401"), "{err}");
    assert_no_secrets(&err, &sim.jwts());
    assert!(!err.contains("wrong-password"));
}

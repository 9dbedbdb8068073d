//! Hostile or mistaken configs against the spawned binary: values the daemon cannot run with
//! are refused by `check-config`, `once`, `run` and reload alike (naming the key, the cluster
//! and the allowed range) instead of panicking later; a secret pasted into a key that names a
//! file (or into `token_url`) never appears in any verb's output; and a config path that is a
//! FIFO, a device or a huge file is refused without blocking or eating memory.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::harness::*;

/// Runs `cmd` to its end, or kills it after [`WAIT`]: `None` means it did not finish (a
/// blocked read, a daemon that started instead of refusing its config).
fn finish(mut cmd: Command) -> Option<Output> {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());
    let mut status = None;
    wait_until(WAIT, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    };
    // The collectors end at EOF, which follows the exit.
    let text = |t: &std::sync::Arc<std::sync::Mutex<String>>| {
        wait_until(Duration::from_secs(2), || std::sync::Arc::strong_count(t) == 1);
        t.lock().unwrap().clone().into_bytes()
    };
    Some(Output { status, stdout: text(&out), stderr: text(&err) })
}

/// `token-keeper -c <config> <args>`, finished, with its exit code and everything it printed.
fn verb(config: &Path, args: &[&str], env: &[(&str, &Path)]) -> (Option<i32>, String) {
    let mut all = vec!["-c", config.to_str().unwrap()];
    all.extend_from_slice(args);
    let mut cmd = command(&all);
    cmd.env_remove("CREDENTIALS_DIRECTORY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = finish(cmd).unwrap_or_else(|| panic!("{args:?} did not finish within {WAIT:?}"));
    let text = format!(
        "--- stdout ---\n{}--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// Writes `text` as the config, atomically (as `Fixture::write_config` does).
fn write_raw(fx: &Fixture, text: &str) {
    let tmp = fx.path().join(".config.toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &fx.config).unwrap();
}

const URL: &str = "http://127.0.0.1:9/gateway/t/knoxtoken/api/v1/token";

#[test]
fn values_the_daemon_cannot_run_with_are_refused_by_every_verb() {
    let fx = Fixture::new();
    let cluster = |extra: &str| fx.cluster("c1", URL, extra);
    let hook = "[cluster.on_change]\ncommand = [\"true\"]\ntimeout = \"100years\"";
    let cases = [
        (
            format!("max_concurrent_requests = 1000000000000\n[defaults]\n{}", cluster("")),
            "max_concurrent_requests: 1000000000000 is out of range (allowed: 1 to 1024)",
        ),
        (
            format!("max_concurrent_requests = 2305843009213693952\n[defaults]\n{}", cluster("")),
            "max_concurrent_requests: 2305843009213693952 is out of range (allowed: 1 to 1024)",
        ),
        (
            format!("[defaults]\n{}", cluster("min_remaining = \"100years\"")),
            "cluster \"c1\": min_remaining: \"100years\" is too long (allowed: more than 0s, at most 30days)",
        ),
        (
            format!("[defaults]\nrevoke_superseded_after = \"1000years\"\n{}", cluster("")),
            "[defaults]: revoke_superseded_after: \"1000years\" is too long (allowed: 0s to 1day)",
        ),
        (
            format!("[defaults]\n{}", cluster("min_valid = \"1000000years\"")),
            "cluster \"c1\": min_valid: \"1000000years\" is too long (allowed: 0s to 3650days)",
        ),
        (
            format!("[defaults]\n{}", cluster("lifespan = \"P99999999999999999999D\"")),
            "cluster \"c1\": lifespan: \"P99999999999999999999D\" is too long (allowed: more than 0s, at most 3650days)",
        ),
        (
            format!("[defaults]\n{}", cluster("lifespan = \"PT99999999999999999999H\"")),
            "cluster \"c1\": lifespan: \"PT99999999999999999999H\" is too long",
        ),
        (
            format!("[defaults]\n{}", cluster("timeout = \"1year\"")),
            "cluster \"c1\": timeout: \"1year\" is too long (allowed: more than 0s, at most 10m)",
        ),
        (
            format!("[defaults]\n{}", cluster("").replace("[cluster.auth]", &format!("{hook}\n[cluster.auth]"))),
            "cluster \"c1\": on_change: timeout: \"100years\" is too long (allowed: more than 0s, at most 1h)",
        ),
    ];
    for (text, fragment) in &cases {
        write_raw(&fx, text);
        for args in [&["check-config"][..], &["once", "--timeout", "1s"], &["run"]] {
            let (code, out) = verb(&fx.config, args, &[]);
            assert_eq!(code, Some(2), "{args:?} with {fragment:?}:\n{out}");
            assert!(out.contains(fragment), "{args:?}: {fragment:?} missing:\n{out}");
            assert!(!out.contains("panicked"), "{args:?}:\n{out}");
        }
    }
}

#[test]
fn a_reload_with_values_the_daemon_cannot_run_with_keeps_the_old_config() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    let cluster = fx.cluster("vc", &sim.url(), "");
    fx.write_config(FAST, std::slice::from_ref(&cluster));
    let mut d = Daemon::run(&fx);
    d.wait_log("ready", 1);
    for (i, bad) in [
        format!("max_concurrent_requests = 100000000\n[defaults]\n{FAST}{cluster}"),
        format!("[defaults]\n{FAST}revoke_superseded_after = \"100years\"\n{cluster}"),
        format!("[defaults]\n{FAST}min_valid = \"1000000years\"\n{cluster}"),
    ]
    .iter()
    .enumerate()
    {
        write_raw(&fx, bad);
        d.signal(libc::SIGHUP);
        d.wait_log("config rejected, still running on the previous one", i + 1);
    }
    let log = d.log();
    assert!(log.contains("max_concurrent_requests: 100000000 is out of range (allowed: 1 to 1024)"), "{log}");
    assert!(log.contains("revoke_superseded_after: \"100years\" is too long (allowed: 0s to 1day)"), "{log}");
    // Still refreshing under the old config.
    d.signal(libc::SIGUSR1);
    d.wait_log("token published", 2);
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0), "{}", d.log());
    assert!(!d.log().contains("panicked"), "{}", d.log());
}

/// Secrets, and the keys they get pasted into by mistake.
const PASSWORD: &str = "hunter2-Pa55w0rd";
const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImtub3guaWQiOiJkMTYxY2FjMSJ9.c2lnbmF0dXJlLXNlY3JldC1ub3QtdG8tYmUtZWNob2Vk";

/// The environment a verb runs with: `CREDENTIALS_DIRECTORY`, or nothing.
type Vars<'a> = &'a [(&'a str, &'a Path)];

/// Every verb that reads the config, and what none of them may print.
fn assert_hidden(fx: &Fixture, secret: &str, env: Vars<'_>, want: Option<i32>, case: &str) {
    for args in [&["check-config"][..], &["once", "--timeout", "1s"], &["status"], &["doctor"]] {
        let (code, out) = verb(&fx.config, args, env);
        assert_eq!(code, want, "{case}: {args:?}:\n{out}");
        assert!(!out.contains(secret), "{case}: {args:?} prints the secret:\n{out}");
    }
}

#[test]
fn a_secret_pasted_into_a_file_key_is_never_printed() {
    let fx = Fixture::new();
    let password_line = format!("password_file = \"{}\"", fx.password_file.display());
    let basic = fx.cluster("c1", URL, "");
    let cookie = basic.replace("method = \"basic\"\nuser = \"alice\"", "method = \"cookie\"");
    let bearer = basic.replace("method = \"basic\"\nuser = \"alice\"", "method = \"bearer\"");
    let empty = fx.path().join("credentials");
    std::fs::create_dir(&empty).unwrap();
    let secret_password = format!("{PASSWORD}!");
    // (case, the secret, the cluster with the secret in the wrong key, environment)
    let cases: [(&str, &str, String, Vars<'_>); 8] = [
        (
            "password_file",
            &secret_password,
            basic.replace(&password_line, &format!("password_file = \"{PASSWORD}!\"")),
            &[],
        ),
        ("cookie_file", JWT, cookie.replace(&password_line, &format!("cookie_file = \"{JWT}\"")), &[]),
        ("token_file", JWT, bearer.replace(&password_line, &format!("token_file = \"{JWT}\"")), &[]),
        (
            "cookie_name",
            JWT,
            cookie.replace(
                &password_line,
                &format!("cookie_file = \"{}\"\ncookie_name = \"{JWT}\"", fx.password_file.display()),
            ),
            &[],
        ),
        (
            "password_credential, no directory",
            PASSWORD,
            basic.replace(&password_line, &format!("password_credential = \"{PASSWORD}\"")),
            &[],
        ),
        (
            "password_credential, not in the directory",
            PASSWORD,
            basic.replace(&password_line, &format!("password_credential = \"{PASSWORD}\"")),
            &[("CREDENTIALS_DIRECTORY", empty.as_path())],
        ),
        (
            "password_credential, not a name",
            &secret_password,
            basic.replace(&password_line, &format!("password_credential = \"{PASSWORD}!\"")),
            &[("CREDENTIALS_DIRECTORY", empty.as_path())],
        ),
        (
            "password_file as a number",
            "73105577",
            basic.replace(&password_line, "password_file = 73105577"),
            &[],
        ),
    ];
    for (case, secret, cluster, env) in &cases {
        write_raw(&fx, &format!("[defaults]\n{cluster}"));
        assert_hidden(&fx, secret, env, Some(2), case);
    }
}

#[test]
fn credentials_in_token_url_are_never_printed() {
    let fx = Fixture::new();
    for url in [
        "https://alice:hunter2-Pa55w0rd@knox.example.com/gateway/t/knoxtoken/api/v1/token",
        "http://alice:hunter2-Pa55w0rd@knox.example.com/gateway/t/knoxtoken/api/v1/token",
        "http://alice:hunter2-Pa55w0rd@127.0.0.1:9/gateway/t/knoxtoken/api/v1/token",
        "https://alice:hunter2-Pa55w0rd@knox.example.com:99999/gateway/t/knoxtoken/api/v1/token",
    ] {
        write_raw(&fx, &format!("[defaults]\n{}", fx.cluster("c1", url, "")));
        assert_hidden(&fx, PASSWORD, &[], Some(2), url);
        let (_, out) = verb(&fx.config, &["check-config"], &[]);
        assert!(
            out.contains("token_url: remove the user:password@ part") || out.contains("remove that part"),
            "{out}"
        );
    }
}

/// An absolute path is a path, and a file that is not there yet is allowed (it may be
/// provisioned later); but it is only named once it exists.
#[test]
fn a_secret_file_that_does_not_exist_is_not_named_by_check_config_status_or_doctor() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    let missing = fx.path().join("hunter2-Pa55w0rd");
    let cluster = fx.cluster("c1", &sim.url(), "").replace(
        &format!("password_file = \"{}\"", fx.password_file.display()),
        &format!("password_file = \"{}\"", missing.display()),
    );
    fx.write_config("", &[cluster]);
    let (code, out) = verb(&fx.config, &["check-config"], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("# password_file = (not shown: the file does not exist"), "{out}");
    let (code, out) = verb(&fx.config, &["status"], &[]);
    assert_eq!(code, Some(1), "{out}");
    let (code, out) = verb(&fx.config, &["doctor"], &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("(password_file (not shown: the file does not exist"), "{out}");
    assert!(out.contains("cannot read the password_file"), "{out}");
    for args in [&["check-config"][..], &["status"], &["doctor"]] {
        let (_, out) = verb(&fx.config, args, &[]);
        assert!(!out.contains(PASSWORD), "{args:?} names the missing file:\n{out}");
    }
    // Once the file exists, it is named.
    std::fs::write(&missing, format!("{}\n", crate::harness::PASSWORD)).unwrap();
    let (code, out) = verb(&fx.config, &["check-config"], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("password_file = \"{}\"  # contents redacted", missing.display())),
        "{out}"
    );
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

#[test]
fn a_config_that_is_not_a_regular_file_is_refused_without_blocking() {
    let fx = Fixture::new();
    let fifo = fx.path().join("fifo.toml");
    mkfifo(&fifo);
    for (path, what) in [
        (fifo.as_path(), "it is a FIFO (named pipe), which is not a regular file"),
        (Path::new("/dev/zero"), "it is a character device, which is not a regular file"),
        (fx.path(), "it is a directory, which is not a regular file"),
    ] {
        for args in [&["check-config"][..], &["run"]] {
            let mut all = vec!["-c", path.to_str().unwrap()];
            all.extend_from_slice(args);
            let mut cmd = command(&all);
            // A regression reading /dev/zero to the end must fail fast, not eat the machine.
            // SAFETY: setrlimit is async-signal-safe and touches only the child's limits.
            unsafe {
                cmd.pre_exec(|| {
                    let limit = libc::rlimit { rlim_cur: 2 << 30, rlim_max: 2 << 30 };
                    if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
            let out = finish(cmd).unwrap_or_else(|| panic!("{args:?} -c {} blocked", path.display()));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?} -c {}: {stderr}", path.display());
            assert!(stderr.contains(&format!("{}: cannot read config: {what}", path.display())), "{stderr}");
        }
    }
}

#[test]
fn a_config_over_16_mib_is_refused_naming_the_limit() {
    let fx = Fixture::new();
    write_raw(&fx, &format!("[defaults]\n{}", fx.cluster("c1", URL, "")));
    // Sparse (the padding reads as NUL bytes): the size alone decides.
    std::fs::File::options().write(true).open(&fx.config).unwrap().set_len((16 << 20) + 1).unwrap();
    for args in [&["check-config"][..], &["run"]] {
        let (code, out) = verb(&fx.config, args, &[]);
        assert_eq!(code, Some(2), "{args:?}: {out}");
        assert!(out.contains("cannot read config: it is larger than the limit of 16 MiB"), "{args:?}: {out}");
    }
}

#[test]
fn a_config_replaced_by_a_fifo_is_refused_at_reload_and_the_daemon_still_stops() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "")]);
    let mut d = Daemon::run(&fx);
    d.wait_log("ready", 1);
    std::fs::remove_file(&fx.config).unwrap();
    mkfifo(&fx.config);
    d.signal(libc::SIGHUP);
    d.wait_log("config rejected, still running on the previous one", 1);
    assert!(d.log().contains("it is a FIFO (named pipe), which is not a regular file"), "{}", d.log());
    // The async thread is free: refreshing goes on, and SIGTERM is handled.
    d.signal(libc::SIGUSR1);
    d.wait_log("token published", 2);
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0), "{}", d.log());
}

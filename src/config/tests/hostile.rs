//! Hostile or mistaken configs: values the daemon could not run with are refused naming the
//! key, the cluster and the range; secrets pasted into the wrong key are never echoed; and
//! only regular files of bounded size are read, without blocking.

use std::time::Duration;

use super::{check_err, env, parse, MINIMAL};
use crate::config::{limits, load, Config, Env};

/// `MINIMAL` with `key = value` added to the cluster.
fn with_cluster_key(line: &str) -> String {
    MINIMAL.replace("name = \"vc-prod\"\n", &format!("name = \"vc-prod\"\n{line}\n"))
}

#[test]
fn out_of_range_values_name_the_key_the_cluster_and_the_range() {
    let cluster = "cluster \"vc-prod\"";
    let cases = [
        (
            "min_remaining = \"31days\"",
            "min_remaining: \"31days\" is too long (allowed: more than 0s, at most 30days)",
        ),
        ("min_remaining = \"0s\"", "min_remaining: must be longer than zero (allowed: more than 0s"),
        (
            "revoke_superseded_after = \"100years\"",
            "revoke_superseded_after: \"100years\" is too long (allowed: 0s to 1day)",
        ),
        ("min_valid = \"10000days\"", "min_valid: \"10000days\" is too long (allowed: 0s to 3650days)"),
        (
            "lifespan = \"3651days\"",
            "lifespan: \"3651days\" is too long (allowed: more than 0s, at most 3650days)",
        ),
        ("lifespan = \"P3651D\"", "lifespan: \"P3651D\" is too long"),
        ("lifespan = \"PT0S\"", "lifespan: must be longer than zero"),
        ("timeout = \"11m\"", "timeout: \"11m\" is too long (allowed: more than 0s, at most 10m)"),
        ("timeout = \"0s\"", "timeout: must be longer than zero"),
    ];
    for (line, fragment) in cases {
        check_err(&with_cluster_key(line), &format!("{cluster}: {fragment}"));
        // The same key in [defaults] names [defaults].
        check_err(&format!("[defaults]\n{line}\n{MINIMAL}"), &format!("[defaults]: {fragment}"));
    }
    let hook = "[cluster.on_change]\ncommand = [\"true\"]\ntimeout = \"2h\"\n[cluster.auth]";
    check_err(
        &MINIMAL.replace("[cluster.auth]", hook),
        "cluster \"vc-prod\": on_change: timeout: \"2h\" is too long (allowed: more than 0s, at most 1h)",
    );
    check_err(
        &MINIMAL.replace("[cluster.auth]", &hook.replace("2h", "0s")),
        "timeout: must be longer than zero",
    );
    for n in ["1025", "100000000000", "9223372036854775807"] {
        check_err(
            &format!("max_concurrent_requests = {n}\n{MINIMAL}"),
            &format!("max_concurrent_requests: {n} is out of range (allowed: 1 to 1024)"),
        );
    }
    // The bounds themselves are accepted.
    let edge = "max_concurrent_requests = 1024\n[defaults]\nmin_remaining = \"30days\"\n\
                revoke_superseded_after = \"1day\"\nmin_valid = \"3650days\"\nlifespan = \"P3650D\"\n\
                timeout = \"10m\"\n";
    let c = parse(&format!("{edge}{MINIMAL}")).unwrap();
    assert_eq!(c.max_concurrent_requests, limits::MAX_CONCURRENT_REQUESTS);
    assert_eq!(c.clusters[0].policy.min_remaining, limits::MAX_MIN_REMAINING);
}

#[test]
fn huge_iso_lifespans_are_refused_without_panicking() {
    let nines = "9".repeat(400);
    for lifespan in [
        "P99999999999999999999D",
        "PT99999999999999999999H",
        "PT18446744073709551616S",
        &format!("P{nines}D"),
    ] {
        let text = with_cluster_key(&format!("lifespan = \"{lifespan}\""));
        check_err(&text, "lifespan:");
        check_err(&text, "is too long (allowed: more than 0s, at most 3650days)");
    }
    assert_eq!(crate::config::iso_duration("P99999999999999999999D"), None);
    assert_eq!(crate::config::iso_duration(&format!("PT{nines}S")), None);
    assert_eq!(crate::config::iso_duration("P1D"), Some(Duration::from_secs(86_400)));
}

#[test]
fn requested_lifespan_saturates_instead_of_overflowing() {
    // `exec --min-valid` sets min_valid from the command line, past the config's ranges.
    let mut cluster = (*parse(MINIMAL).unwrap().clusters[0]).clone();
    cluster.lifecycle.min_valid = Some(Duration::MAX);
    let asked = cluster.requested_lifespan().unwrap();
    assert_eq!(asked, format!("PT{}.999S", u64::MAX));
}

/// Secrets that end up in a `*_file`, credential or URL key by mistake.
const PASSWORD: &str = "hunter2-Pa55w0rd!";
const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImtub3guaWQiOiJkMTYxY2FjMSJ9.\
                   c2lnbmF0dXJlLXNlY3JldC1ub3QtdG8tYmUtZWNob2Vk";

fn check_hidden(text: &str, secret: &str, fragment: &str) {
    let err = parse(text).map(|_| ()).unwrap_err();
    assert!(!err.contains(secret), "the secret is echoed: {err}");
    assert!(err.contains(fragment), "error {err:?} does not contain {fragment:?}");
}

#[test]
fn secrets_pasted_into_file_keys_are_refused_without_being_echoed() {
    let password_file = "password_file = \"~/.cde/password\"";
    check_hidden(
        &MINIMAL.replace(password_file, &format!("password_file = \"{PASSWORD}\"")),
        PASSWORD,
        "auth: password_file: must be the path of a file holding the secret, absolute or starting with ~/",
    );
    check_hidden(
        &MINIMAL.replace(password_file, &format!("password_file = \"{PASSWORD}\\n\"")),
        PASSWORD,
        "password_file: must be",
    );
    let cookie = MINIMAL.replace("method = \"basic\"\nuser = \"alice\"", "method = \"cookie\"");
    check_hidden(
        &cookie.replace(password_file, &format!("cookie_file = \"{JWT}\"")),
        JWT,
        "cookie_file: must be",
    );
    let bearer = MINIMAL.replace("method = \"basic\"\nuser = \"alice\"", "method = \"bearer\"");
    check_hidden(
        &bearer.replace(password_file, &format!("token_file = \"{JWT}\"")),
        JWT,
        "token_file: must be",
    );
    // The cookie itself as the cookie's name.
    check_hidden(
        &cookie.replace(password_file, &format!("cookie_file = \"~/c\"\ncookie_name = \"{JWT}\"")),
        JWT,
        "cookie_name: is not a cookie name",
    );
    // With no $HOME, a ~ path is refused without quoting it either.
    let no_home = Env { home: None, ..env() };
    let text = MINIMAL.replace(password_file, &format!("password_file = \"~/{PASSWORD}\""));
    let err = Config::from_toml(&text, "t.toml", &no_home).unwrap_err().to_string();
    assert!(
        err.contains("password_file: starts with ~ but $HOME is not set") && !err.contains(PASSWORD),
        "{err}"
    );
}

#[test]
fn a_password_credential_must_name_a_credential_that_exists() {
    let password_file = "password_file = \"~/.cde/password\"";
    let secret = "hunter2-Pa55w0rd";
    let text = MINIMAL.replace(password_file, &format!("password_credential = \"{secret}\""));
    check_hidden(&text, secret, "$CREDENTIALS_DIRECTORY (");
    check_hidden(&text, secret, "holds no credential of that name");
    let none = Env { credentials_dir: None, ..env() };
    let err = Config::from_toml(&text, "t.toml", &none).unwrap_err().to_string();
    assert!(err.contains("needs $CREDENTIALS_DIRECTORY") && !err.contains(secret), "{err}");
    let invalid = "password_credential: is not a systemd credential name";
    for bad in [PASSWORD, "hunter2/Pa55w0rd", &"x".repeat(65)] {
        check_hidden(
            &MINIMAL.replace(password_file, &format!("password_credential = {bad:?}")),
            bad,
            invalid,
        );
    }
    for bad in ["..", ""] {
        check_err(&MINIMAL.replace(password_file, &format!("password_credential = {bad:?}")), invalid);
    }
}

#[test]
fn credentials_in_token_url_are_refused_without_echoing_the_url() {
    let url = "https://knox.example.com/gateway/authtkn/knoxtoken/api/v1/token";
    for bad in [
        "https://alice:hunter2-Pa55w0rd@knox.example.com/gateway/t",
        "http://alice:hunter2-Pa55w0rd@knox.example.com/gateway/t",
        "http://alice:hunter2-Pa55w0rd@127.0.0.1:8443/gateway/t",
        "https://alice:hunter2-Pa55w0rd@knox.example.com:99999/gateway/t",
        "https://alice:hunter2-Pa55w0rd@/gateway/t",
    ] {
        let text = MINIMAL.replace(url, bad);
        let err = parse(&text).map(|_| ()).unwrap_err();
        assert!(!err.contains("hunter2"), "{bad}: the URL is echoed: {err}");
        assert!(err.contains("cluster \"vc-prod\": token_url:"), "{bad}: {err}");
        assert!(
            err.contains("remove the user:password@ part") || err.contains("remove that part"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn toml_type_errors_do_not_quote_the_value() {
    let password_file = "password_file = \"~/.cde/password\"";
    for (value, kind) in [("12345678", "integer"), ("[\"hunter2\"]", "sequence"), ("1.5", "floating point")] {
        let err = parse(&MINIMAL.replace(password_file, &format!("password_file = {value}")))
            .map(|_| ())
            .unwrap_err();
        assert!(err.contains(&format!("invalid type: {kind} (value not shown), expected")), "{err}");
        assert!(!err.contains("12345678") && !err.contains("hunter2") && !err.contains("1.5"), "{err}");
    }
    let err = parse(&with_cluster_key("revoke_on_exit = \"hunter2\"")).unwrap_err();
    assert!(err.contains("invalid type: string (value not shown), expected a boolean"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    let err = parse(&format!("max_concurrent_requests = -12345678\n{MINIMAL}")).unwrap_err();
    assert!(err.contains("invalid value: integer (value not shown)") && !err.contains("12345678"), "{err}");
}

/// Loads `path` on a thread of its own, so that a load that blocks fails the test instead of
/// hanging it.
fn load_within(path: &std::path::Path, limit: Duration) -> Result<Config, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = path.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(load(&path, &env()).map_err(|e| e.to_string()));
    });
    rx.recv_timeout(limit).expect("loading the config blocked")
}

#[test]
fn only_regular_files_are_read_and_a_fifo_does_not_block() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("config.toml");
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from(0o600)).unwrap();
    let err = load_within(&fifo, Duration::from_secs(5)).unwrap_err();
    assert!(err.starts_with(&fifo.display().to_string()), "{err}");
    assert!(
        err.contains("cannot read config: it is a FIFO (named pipe), which is not a regular file"),
        "{err}"
    );

    let err = load_within(std::path::Path::new("/dev/null"), Duration::from_secs(5)).unwrap_err();
    assert!(err.contains("it is a character device, which is not a regular file"), "{err}");
    let err = load_within(dir.path(), Duration::from_secs(5)).unwrap_err();
    assert!(err.contains("it is a directory, which is not a regular file"), "{err}");
}

#[test]
fn a_config_file_over_the_size_limit_is_refused_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let write = |text: &str| {
        use std::io::Write as _;
        let mut f = std::fs::File::options().write(true).create(true).truncate(true).open(&path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    };
    // Sparse: the size alone decides, before a byte is read.
    write(MINIMAL).set_len(limits::MAX_CONFIG_BYTES + 1).unwrap();
    let err = load_within(&path, Duration::from_secs(5)).unwrap_err();
    assert!(err.contains("cannot read config: it is larger than the limit of 16 MiB"), "{err}");
    // A large config well within the limit (2 MiB, more than most hosts will ever see) loads.
    write(&format!("{MINIMAL}{}", format!("# {}\n", "x".repeat(1000)).repeat(2048)));
    load_within(&path, Duration::from_secs(20)).unwrap();
}

#[test]
fn files_that_misreport_their_size_are_still_read_only_up_to_the_limit() {
    use crate::config::read_regular_file;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::File::options().write(true).create_new(true).open(&path).unwrap().set_len(100).unwrap();
    assert_eq!(read_regular_file(&path, 100).unwrap().len(), 100);
    let err = read_regular_file(&path, 99).unwrap_err().to_string();
    assert_eq!(err, "it is larger than the limit of 99 bytes");
    // /proc files say they are empty, whatever they hold: the read itself is bounded.
    let proc = std::path::Path::new("/proc/self/status");
    assert_eq!(std::fs::metadata(proc).unwrap().len(), 0);
    let err = read_regular_file(proc, 16).unwrap_err().to_string();
    assert_eq!(err, "it is larger than the limit of 16 bytes");
}

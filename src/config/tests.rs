//! Config parsing: every shipped file loads, unknown keys are rejected by name, secrets are
//! never echoed, and each validation names its input. `hostile.rs` holds the tests of values
//! the daemon could not run with, of secrets pasted into the wrong key, and of config paths
//! that are not regular files.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use super::*;
use crate::scheduler::Policy;

mod hostile;

/// A `$CREDENTIALS_DIRECTORY` holding the credential `vc-prod`, as systemd would fill it.
fn credentials_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::File::options().write(true).create_new(true).open(dir.path().join("vc-prod")).unwrap();
        dir
    })
    .path()
}

fn env() -> Env {
    Env {
        home: Some(PathBuf::from("/home/alice")),
        credentials_dir: Some(credentials_dir().to_owned()),
        ..Env::default()
    }
}

const MINIMAL: &str = r#"
[[cluster]]
name = "vc-prod"
token_url = "https://knox.example.com/gateway/authtkn/knoxtoken/api/v1/token"
[cluster.auth]
method = "basic"
user = "alice"
password_file = "~/.cde/password"
"#;

fn parse(text: &str) -> Result<Config, String> {
    Config::from_toml(text, "test.toml", &env()).map_err(|e| e.to_string())
}

/// `check(toml, expected error fragment)`.
fn check_err(text: &str, fragment: &str) {
    match parse(text) {
        Ok(_) => panic!("accepted, expected an error containing {fragment:?}:\n{text}"),
        Err(e) => assert!(e.contains(fragment), "error {e:?} does not contain {fragment:?}"),
    }
}

#[test]
fn every_file_in_config_dir_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            load(&path, &env()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 3, "expected the shipped configs, found {n}");
}

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.max_concurrent_requests, 16);
    let cl = &c.clusters[0];
    assert!(cl.is_default, "the only cluster is the default one");
    assert_eq!(cl.policy, Policy::default());
    assert_eq!(cl.transport.timeout, Duration::from_secs(30));
    assert_eq!(
        cl.auth,
        Auth::Basic { user: "alice".into(), password_file: "/home/alice/.cde/password".into() }
    );
    let outs: Vec<_> =
        cl.outputs.iter().map(|o| (o.path.to_str().unwrap(), o.format, o.mode, o.env_var.as_str())).collect();
    assert_eq!(
        outs,
        vec![
            ("/home/alice/.cde/vc-prod/token", Format::Raw, 0o600, "CDE_TOKEN"),
            ("/home/alice/.cde/vc-prod/token.sh", Format::Shell, 0o600, "CDE_TOKEN"),
            ("/home/alice/.cde/vc-prod/token.env", Format::Env, 0o600, "CDE_TOKEN"),
            ("/home/alice/.cde/vc-prod/token.json", Format::Json, 0o600, "CDE_TOKEN"),
            ("/home/alice/.cde/token", Format::Raw, 0o600, "CDE_TOKEN"),
            ("/home/alice/.cde/token.sh", Format::Shell, 0o600, "CDE_TOKEN"),
        ]
    );
}

#[test]
fn only_the_default_cluster_owns_the_shared_paths() {
    let two = format!("{MINIMAL}\n{}", MINIMAL.replace("vc-prod", "vc-dev"));
    let c = parse(&two).unwrap();
    assert!(c.clusters.iter().all(|c| c.outputs.len() == 4));
    assert!(c.cluster(None).is_none());
    let marked = two.replacen("name = \"vc-dev\"", "name = \"vc-dev\"\ndefault = true", 1);
    let c = parse(&marked).unwrap();
    assert_eq!(c.cluster(None).unwrap().name, "vc-dev");
    assert_eq!(c.cluster(None).unwrap().outputs.len(), 6);
    check_err(
        &marked.replacen("name = \"vc-prod\"", "name = \"vc-prod\"\ndefault = true", 1),
        "already the default",
    );
}

#[test]
fn pick_names_the_file_and_the_choices() {
    let origin = std::path::Path::new("/etc/token-keeper/config.toml");
    let two = parse(&format!("{MINIMAL}\n{}", MINIMAL.replace("vc-prod", "vc-dev"))).unwrap();
    let one = parse(MINIMAL).unwrap();
    let rows: &[(&Config, Option<&str>, Result<&str, &str>)] = &[
        (&one, None, Ok("vc-prod")),
        (&one, Some("vc-prod"), Ok("vc-prod")),
        (&one, Some("vc-dev"), Err("no cluster named \"vc-dev\" in /etc/token-keeper/config.toml (clusters: vc-prod)")),
        (&two, Some("vc-dev"), Ok("vc-dev")),
        (&two, None, Err("/etc/token-keeper/config.toml has several clusters and none is marked default = true: pass --cluster (one of vc-prod, vc-dev)")),
    ];
    for (config, name, want) in rows {
        let got = config.pick(origin, *name).map(|c| c.name.as_str());
        assert_eq!(got.as_deref().map_err(String::as_str), *want, "{name:?}");
    }
}

#[test]
fn defaults_apply_and_clusters_override() {
    let text = format!(
        "[defaults]\nrefresh_fraction = 0.5\nmin_remaining = \"200ms\"\njitter = 0.0\ntimeout = \"5s\"\nlifespan = \"1h\"\n\
         insecure_skip_tls_verify = true\nca_file = \"/etc/ca.pem\"\n{}",
        MINIMAL.replace("name = \"vc-prod\"", "name = \"vc-prod\"\nrefresh_fraction = 0.9\nlifespan = \"PT30M\"")
    );
    let c = parse(&text).unwrap();
    let cl = &c.clusters[0];
    assert_eq!(cl.policy.refresh_fraction, 0.9);
    assert_eq!(cl.policy.min_remaining, Duration::from_millis(200));
    assert_eq!(cl.policy.jitter, 0.0);
    assert_eq!(cl.lifespan.as_deref(), Some("PT30M"));
    assert_eq!(
        cl.transport,
        Transport {
            ca_file: Some("/etc/ca.pem".into()),
            insecure_skip_tls_verify: true,
            timeout: Duration::from_secs(5),
            https: true,
        }
    );
    let c = parse(&text.replace("lifespan = \"PT30M\"", "")).unwrap();
    assert_eq!(c.clusters[0].lifespan.as_deref(), Some("PT3600S"), "humantime converted to ISO-8601");
    assert_eq!(c.clusters[0].requested_lifespan().as_deref(), Some("PT3600S"));
}

#[test]
fn unknown_keys_are_rejected_by_name_in_every_table() {
    let tables = [
        ("", "max_concurrent_requests = 4"),
        ("[defaults]", "refresh_fraction = 0.8"),
        ("[[cluster]]", "name = \"vc-prod\""),
        ("[cluster.auth]", "method = \"basic\""),
        ("[[cluster.output]]", "path = \"~/t\""),
    ];
    let base = format!("max_concurrent_requests = 4\n[defaults]\nrefresh_fraction = 0.8\n{MINIMAL}[[cluster.output]]\npath = \"~/t\"\n");
    parse(&base).unwrap();
    for (table, anchor) in tables {
        let text = base.replacen(anchor, &format!("{anchor}\nbogus_key = 1"), 1);
        match parse(&text) {
            Ok(_) => panic!("unknown key in {table:?} accepted"),
            Err(e) => assert!(e.contains("unknown field `bogus_key`"), "{table}: {e}"),
        }
    }
}

#[test]
fn inline_secrets_are_rejected_without_echoing_them() {
    let text = MINIMAL.replace("password_file = \"~/.cde/password\"", "password = \"hunter2-SECRET\"");
    let err = parse(&text).unwrap_err();
    assert!(err.contains("unknown field `password`"), "{err}");
    assert!(err.contains("password_file"), "hint missing: {err}");
    assert!(err.starts_with("test.toml:8:"), "line missing: {err}");
    assert!(!err.contains("hunter2"), "secret echoed: {err}");
    let text = MINIMAL.replace("method = \"basic\"", "method = \"bearer\"\ntoken = \"eyJSECRET\"");
    let err = parse(&text).unwrap_err();
    assert!(err.contains("token_file") && !err.contains("eyJSECRET"), "{err}");
}

#[test]
fn validation_errors_name_the_input() {
    check_err(&MINIMAL.replace("vc-prod", "vc prod"), "name: \"vc prod\" must match");
    check_err(&format!("{MINIMAL}{MINIMAL}"), "used by two clusters");
    check_err(
        &MINIMAL.replace("https://knox.example.com", "http://knox.example.com"),
        "https:// is required",
    );
    check_err(&MINIMAL.replace("https://knox.example.com", "ftp://knox.example.com"), "scheme \"ftp\"");
    check_err(&MINIMAL.replace("https://knox.example.com", "not a url"), "token_url: \"not a url/gateway");
    check_err(
        &MINIMAL.replace("https://knox.example.com", "https://u:p@knox.example.com"),
        "credentials in the URL",
    );
    check_err(
        &format!("[defaults]\nrefresh_fraction = 1.5\n{MINIMAL}"),
        "[defaults]: refresh_fraction: 1.5 must be in (0, 1]",
    );
    check_err(&format!("[defaults]\njitter = 0.9\n{MINIMAL}"), "jitter: 0.9");
    check_err(
        &format!("[defaults]\nrefresh_fraction = 0.1\njitter = 0.1\n{MINIMAL}"),
        "must be smaller than refresh_fraction",
    );
    check_err(
        &format!("[defaults]\nmin_remaining = \"soon\"\n{MINIMAL}"),
        "min_remaining: \"soon\" is not a duration",
    );
    check_err(
        &format!("[defaults]\nmin_remaining = \"0s\"\n{MINIMAL}"),
        "min_remaining: must be longer than zero",
    );
    check_err(&format!("[defaults]\nlifespan = \"PTsoon\"\n{MINIMAL}"), "lifespan: \"PTsoon\"");
    check_err(&MINIMAL.replace("user = \"alice\"\n", ""), "auth: user: required by method \"basic\"");
    check_err(
        &MINIMAL.replace("method = \"basic\"", "method = \"cookie\""),
        "user: not used by method \"cookie\"",
    );
    check_err(&MINIMAL.replace("method = \"basic\"", "method = \"kerberos\""), "unknown variant `kerberos`");
    check_err(
        &format!("{MINIMAL}[[cluster.output]]\npath = \"relative/token\"\n"),
        "must be an absolute path",
    );
    check_err(
        &format!("{MINIMAL}[[cluster.output]]\npath = \"/t\"\nmode = \"rw\"\n"),
        "mode: \"rw\" is not an octal",
    );
    check_err(
        &format!("{MINIMAL}[[cluster.output]]\npath = \"/t\"\nformat = \"yaml\"\n"),
        "unknown variant `yaml`",
    );
    check_err(&format!("{MINIMAL}[[cluster.output]]\npath = \"/t\"\nenv_var = \"1X\"\n"), "env_var: \"1X\"");
    check_err(
        &format!("{MINIMAL}[[cluster.output]]\npath = \"/t\"\n[[cluster.output]]\npath = \"/t\"\n"),
        "published twice",
    );
    check_err(
        "max_concurrent_requests = 0\n",
        "max_concurrent_requests: 0 is out of range (allowed: 1 to 1024)",
    );
    check_err("", "no [[cluster]] is configured");
    check_err("[[cluster]\n", "test.toml:1:");
    let no_home =
        Config::from_toml(MINIMAL, "t.toml", &Env { home: None, credentials_dir: None, ..Env::default() })
            .unwrap_err()
            .to_string();
    assert!(no_home.contains("$HOME is not set"), "{no_home}");
}

#[test]
fn loopback_http_is_allowed_for_the_simulator() {
    for host in ["127.0.0.1:8443", "localhost:8443", "[::1]:8443"] {
        let text = MINIMAL.replace("https://knox.example.com", &format!("http://{host}"));
        parse(&text).unwrap_or_else(|e| panic!("{host}: {e}"));
    }
}

#[test]
fn resolved_config_prints_file_names_not_secrets() {
    let password = credentials_dir().join("vc-prod");
    let text = MINIMAL.replace("~/.cde/password", password.to_str().unwrap());
    let c = parse(&text).unwrap();
    let shown = c.to_string();
    assert!(
        shown.contains(&format!("password_file = {:?}  # contents redacted", password.display().to_string()))
    );
    assert!(shown.contains("refresh_fraction = 0.8"), "{shown}");
    assert!(shown.contains("mode = \"0600\""), "{shown}");
    // The printed form is itself valid config (apart from the defaults we spell out).
    let again = Config::from_toml(&shown, "printed", &env()).unwrap();
    assert_eq!(again.clusters, c.clusters);
    // A file that does not exist is not named: the "path" may be a pasted secret.
    let shown = parse(MINIMAL).unwrap().to_string();
    assert!(!shown.contains("/home/alice/.cde/password"), "{shown}");
    assert!(shown.contains(&format!("# password_file = {}", crate::secret::NOT_SHOWN)), "{shown}");
}

#[test]
fn iso_durations_as_java_parses_them() {
    let check = |text: &str, want: Option<f64>| {
        assert_eq!(iso_duration(text).map(|d| d.as_secs_f64()), want, "{text}");
    };
    check("PT1H", Some(3600.0));
    check("P1DT0H0M", Some(86_400.0));
    check("PT1H30M", Some(5400.0));
    check("PT0.5S", Some(0.5));
    check("pt90s", Some(90.0));
    check("P2D", Some(172_800.0));
    check("PT", None);
    check("P", None);
    check("PT1M1H", None);
    check("PT1.5H", None);
    check("P1W", None);
    check("PTsoon", None);
}

#[test]
fn lifecycle_keys_and_min_valid_raise_the_lifespan() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.clusters[0].lifecycle, Lifecycle::default());
    assert_eq!(c.clusters[0].requested_lifespan(), None);
    let text = format!(
        "[defaults]\nconsumers_validate = \"gateway\"\nrevoke_superseded_after = \"30s\"\nrevoke_on_exit = true\n\
         remove_expired = true\nmin_valid = \"2h\"\nlifespan = \"PT1H\"\n{MINIMAL}"
    );
    let c = parse(&text).unwrap();
    let cl = &c.clusters[0];
    assert_eq!(
        cl.lifecycle,
        Lifecycle {
            consumers_validate: Validation::Gateway,
            revoke_superseded_after: Duration::from_secs(30),
            revoke_on_exit: true,
            min_valid: Some(Duration::from_secs(7200)),
            remove_expired: true,
        }
    );
    // 2 h + the 60 s margin is more than the configured 1 h.
    assert_eq!(cl.requested_lifespan().as_deref(), Some("PT7260S"));
    let c = parse(&text.replace("PT1H", "P1D")).unwrap();
    assert_eq!(c.clusters[0].requested_lifespan().as_deref(), Some("P1D"));
    check_err(&format!("[defaults]\nconsumers_validate = \"both\"\n{MINIMAL}"), "unknown variant `both`");
}

#[test]
fn server_on_change_and_credentials() {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:9464\"\nmetrics_textfile = \"/var/lib/node_exporter/textfile/tk.prom\"\n\
         [defaults.on_change]\nsignal = \"HUP\"\npid_file = \"/run/spark.pid\"\n{}",
        MINIMAL.replace("password_file = \"~/.cde/password\"", "password_credential = \"vc-prod\"")
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.server.listen, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(
        c.server.metrics_textfile.as_deref(),
        Some(Path::new("/var/lib/node_exporter/textfile/tk.prom"))
    );
    let cl = &c.clusters[0];
    assert_eq!(
        cl.on_change,
        Some(OnChange {
            signal: Some((libc::SIGHUP, "/run/spark.pid".into())),
            command: None,
            timeout: Duration::from_secs(10)
        })
    );
    assert_eq!(
        cl.auth,
        Auth::Basic { user: "alice".into(), password_file: credentials_dir().join("vc-prod") }
    );
    // A cluster's own on_change replaces the default one.
    let own = text.replace(
        "[cluster.auth]",
        "[cluster.on_change]\ncommand = [\"systemctl\", \"reload\", \"spark-edge\"]\ntimeout = \"3s\"\n[cluster.auth]",
    );
    let c = parse(&own).unwrap();
    let oc = c.clusters[0].on_change.as_ref().unwrap();
    assert_eq!(
        oc.command.as_deref(),
        Some(&["systemctl".to_owned(), "reload".into(), "spark-edge".into()][..])
    );
    assert_eq!((oc.signal.as_ref(), oc.timeout), (None, Duration::from_secs(3)));

    check_err(&text.replace("\"HUP\"", "\"KILLALL\""), "on_change: signal: \"KILLALL\"");
    check_err(&text.replace("pid_file = \"/run/spark.pid\"\n", ""), "pid_file: required with signal");
    check_err(&text.replace("127.0.0.1:9464", "localhost"), "[server]: listen: \"localhost\"");
    check_err(&format!("[server]\nport = 1\n{MINIMAL}"), "unknown field `port`");
    let no_creds =
        Config::from_toml(&text, "t.toml", &Env { credentials_dir: None, ..env() }).unwrap_err().to_string();
    assert!(
        no_creds.contains("needs $CREDENTIALS_DIRECTORY") && no_creds.contains("LoadCredential="),
        "{no_creds}"
    );
    check_err(
        &text.replace(
            "password_credential = \"vc-prod\"",
            "password_credential = \"vc-prod\"\npassword_file = \"/p\"",
        ),
        "either password_file or password_credential",
    );
}

#[test]
fn installation_id_is_configured_or_derived_and_labels_are_a_knob() {
    let machine = Machine { machine_id: Some("0123abcd".into()), host: "edge-1".into(), uid: 1000 };
    let env = Env { machine: machine.clone(), ..env() };
    let parse_env =
        |text: &str, origin: &str| Config::from_toml(text, origin, &env).map_err(|e| e.to_string());

    // Derived: from the machine, the uid and (without a file) the origin, and stable.
    let c = parse_env(MINIMAL, "/etc/token-keeper/config.toml").unwrap();
    assert!(c.installation_id_derived);
    assert_eq!(
        c.identity.installation_id,
        installation::derive_id(&machine, b"/etc/token-keeper/config.toml")
    );
    assert_eq!(c.identity.host, "edge-1");
    assert_eq!(c.clusters[0].labels.as_ref(), Some(&c.identity), "labels are on by default");
    let other = parse_env(MINIMAL, "/home/alice/.config/token-keeper/config.toml").unwrap();
    assert_ne!(other.identity.installation_id, c.identity.installation_id, "another config, another id");
    assert!(c
        .to_string()
        .contains(&format!("installation_id = {:?}  # derived", c.identity.installation_id)));

    // Configured: used as it is, and printed without the note.
    let text = format!("installation_id = \"edge-1.system\"\n{MINIMAL}");
    let c = parse_env(&text, "t.toml").unwrap();
    assert_eq!((c.identity.installation_id.as_str(), c.installation_id_derived), ("edge-1.system", false));
    assert!(c.to_string().contains("installation_id = \"edge-1.system\"\n"), "{c}");
    for (bad, fragment) in [
        ("\"\"", "installation_id: \"\" must be 1 to 64 characters of [A-Za-z0-9._-]"),
        ("\"edge 1\"", "installation_id: \"edge 1\" must be"),
        ("\"a/b\"", "installation_id: \"a/b\" must be"),
        (&format!("\"{}\"", "x".repeat(65)), "installation_id: (a value of 65 characters) must be"),
        ("42", "invalid type: integer (value not shown), expected a string"),
    ] {
        let err = parse_env(&format!("installation_id = {bad}\n{MINIMAL}"), "t.toml").unwrap_err();
        assert!(err.contains(fragment), "{bad}: {err}");
    }

    // `labels`: on by default, off in [defaults], back on per cluster.
    let two = |defaults: &str, second: &str| {
        format!(
            "[defaults]\n{defaults}\n{MINIMAL}\n[[cluster]]\nname = \"b\"\ntoken_url = \
             \"https://k.example/gateway/t/knoxtoken/api/v1/token\"\n{second}\n[cluster.auth]\n\
             method = \"bearer\"\ntoken_file = \"/t\"\n"
        )
    };
    let labelled = |c: &Config| c.clusters.iter().map(|c| c.labels.is_some()).collect::<Vec<_>>();
    assert_eq!(labelled(&parse_env(&two("", ""), "t").unwrap()), [true, true]);
    assert_eq!(labelled(&parse_env(&two("labels = false", ""), "t").unwrap()), [false, false]);
    assert_eq!(labelled(&parse_env(&two("labels = false", "labels = true"), "t").unwrap()), [false, true]);
    let off = parse_env(&two("", "labels = false"), "t").unwrap();
    assert_eq!(labelled(&off), [true, false]);
    assert!(off.to_string().contains("labels = false"), "{off}");
    let err = parse_env(&two("labels = \"no\"", ""), "t").unwrap_err();
    assert!(err.contains("invalid type: string (value not shown), expected a boolean"), "{err}");
}

#[test]
fn a_loaded_config_derives_its_id_from_its_absolute_path() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let mut f = std::fs::File::options().write(true).create_new(true).open(&path).unwrap();
    f.write_all(MINIMAL.as_bytes()).unwrap();
    let machine = Machine { machine_id: Some("0123abcd".into()), host: "edge-1".into(), uid: 1000 };
    let env = Env { machine: machine.clone(), ..env() };
    let c = load(&path, &env).unwrap();
    assert_eq!(c.identity.installation_id, installation::derive_id(&machine, path.as_os_str().as_bytes()));
    // A `.` in the path changes nothing (`std::path::absolute` drops it; it resolves neither
    // `..` nor symlinks, so a ConfigMap's `..data` swap does not change the id either).
    let again = load(&dir.path().join(".").join("config.toml"), &env).unwrap();
    assert_eq!(again.identity, c.identity, "`.` components are dropped");
}

#[test]
fn eviction_check_and_orphan_sweep_intervals() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.eviction_check_interval, Some(Duration::from_secs(300)));
    assert_eq!(c.orphan_sweep_interval, Some(Duration::from_secs(3600)));
    let shown = c.to_string();
    assert!(shown.contains("eviction_check_interval = \"5m\"\norphan_sweep_interval = \"1h\"\n"), "{shown}");
    // (top-level keys) → (guard, sweep), or the error
    let ok = [
        ("eviction_check_interval = \"0s\"\norphan_sweep_interval = \"0s\"", None, None),
        ("eviction_check_interval = \"30s\"\norphan_sweep_interval = \"1m\"", Some(30), Some(60)),
        ("eviction_check_interval = \"1h\"\norphan_sweep_interval = \"7days\"", Some(3600), Some(7 * 86_400)),
    ];
    for (keys, guard, sweep) in ok {
        let c = parse(&format!("{keys}\n{MINIMAL}")).unwrap_or_else(|e| panic!("{keys}: {e}"));
        assert_eq!(c.eviction_check_interval, guard.map(Duration::from_secs), "{keys}");
        assert_eq!(c.orphan_sweep_interval, sweep.map(Duration::from_secs), "{keys}");
        let again =
            parse(&format!("{}\n{MINIMAL}", c.to_string().lines().take(4).collect::<Vec<_>>().join("\n")));
        assert!(again.is_ok(), "check-config's output parses again: {keys}");
    }
    let errors = [
        (
            "eviction_check_interval = \"29s\"",
            "eviction_check_interval: \"29s\" is too short (allowed: 0s (off), or 30s to 1h)",
        ),
        (
            "eviction_check_interval = \"61m\"",
            "eviction_check_interval: \"61m\" is too long (allowed: 0s (off), or 30s to 1h)",
        ),
        ("eviction_check_interval = \"soon\"", "eviction_check_interval: \"soon\" is not a duration"),
        (
            "orphan_sweep_interval = \"59s\"",
            "orphan_sweep_interval: \"59s\" is too short (allowed: 0s (off), or 1m to 7days)",
        ),
        (
            "orphan_sweep_interval = \"8days\"",
            "orphan_sweep_interval: \"8days\" is too long (allowed: 0s (off), or 1m to 7days)",
        ),
        ("orphan_sweep_interval = 60", "invalid type: integer"),
    ];
    for (keys, want) in errors {
        check_err(&format!("{keys}\n{MINIMAL}"), want);
    }
}

#[test]
fn verification_keys_resolve_and_pinned_files_are_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        use std::io::Write as _;
        let p = dir.path().join(name);
        let mut f = std::fs::File::options().write(true).create_new(true).open(&p).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        p.display().to_string()
    };
    let cert = write("knox.pem", knox_sim::SimKey::Dev.cert_pem());
    let jwks = write(
        "jwks.json",
        r#"{"keys":[{"kty":"RSA","e":"AQAB","kid":"k1","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}]}"#,
    );
    let private = write("key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    let with = |defaults: &str, cluster: &str| {
        format!(
            "[defaults]\n{defaults}\n{}",
            MINIMAL.replace("name = \"vc-prod\"", &format!("name = \"vc-prod\"\n{cluster}"))
        )
    };

    // Built-in: auto, no issuer, nothing pinned.
    let v = &parse(MINIMAL).unwrap().clusters[0].verify;
    assert_eq!((v.mode, v.issuer.as_deref(), v.pinned.is_none()), (VerifyMode::Auto, None, true));
    // [defaults] applies; the cluster overrides, and its key file replaces the default's.
    let text = with(&format!("verify = \"require\"\nissuer = \"KNOXSSO\"\njwks_file = \"{jwks}\""), "");
    let v = parse(&text).unwrap().clusters[0].verify.clone();
    assert_eq!((v.mode, v.issuer.as_deref()), (VerifyMode::Require, Some("KNOXSSO")));
    let pinned = v.pinned.unwrap();
    assert_eq!((pinned.key, pinned.keys.len(), pinned.keys[0].kid.as_deref()), ("jwks_file", 1, Some("k1")));
    let text =
        with(&format!("jwks_file = \"{jwks}\""), &format!("verify = \"off\"\npublic_cert_file = \"{cert}\""));
    let v = parse(&text).unwrap().clusters[0].verify.clone();
    assert_eq!(v.mode, VerifyMode::Off);
    let pinned = v.pinned.unwrap();
    assert_eq!(
        (pinned.key, pinned.keys[0].thumbprint.clone()),
        ("public_cert_file", knox_sim::SimKey::Dev.kid())
    );
    // check-config shows them.
    let shown = parse(&text).unwrap().to_string();
    assert!(shown.contains("verify = \"off\"") && shown.contains("public_cert_file = "), "{shown}");

    // Errors name the key and the file.
    let both = format!("public_cert_file = \"{cert}\"\njwks_file = \"{jwks}\"");
    check_err(&with("", &both), "public_cert_file and jwks_file are mutually exclusive");
    check_err(&with(&both, ""), "[defaults]: public_cert_file and jwks_file are mutually exclusive");
    check_err(&with("", &format!("public_cert_file = \"{private}\"")), "key.pem: holds a private key");
    check_err(&with("", &format!("jwks_file = \"{cert}\"")), "jwks_file");
    check_err(&with("", &format!("jwks_file = \"{cert}\"")), "not a JSON document");
    check_err(
        &with("", "public_cert_file = \"/nonexistent/knox.pem\""),
        "public_cert_file /nonexistent/knox.pem",
    );
    check_err(&with("", "verify = \"maybe\""), "expected one of `auto`, `require`, `off`");
    check_err(&with("", "issuer = \"\""), "issuer: must be 1 to 256 characters");
    check_err(&with("", "issuer = \"a\\nb\""), "issuer");
}

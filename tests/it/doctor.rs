//! `token-keeper doctor` against the simulator: the table passes on a healthy setup and revokes
//! its test token, and each root cause (a bad password, a wrong CA, a group-writable output
//! directory, renewal refused, the token limit, Knox's clock) fails or warns in its own row.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use knox_sim::{KnoxVersion, SimOptions};
use token_keeper::config::{self, Env};
use token_keeper::knox::KnoxClient;

use crate::harness::*;

/// One run of `doctor`, with its table parsed.
struct Doctor {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Doctor {
    fn run(fx: &Fixture, args: &[&str]) -> Doctor {
        let mut all = vec!["doctor"];
        all.extend_from_slice(args);
        let r = fx.cmd(&all);
        Doctor {
            code: r.status.code(),
            stdout: String::from_utf8_lossy(&r.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&r.stderr).into_owned(),
        }
    }

    /// Every `(mark, name, detail)` row of the tables.
    fn rows(&self) -> Vec<(String, String, String)> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with("  ") && ["✔", "✘", "!", "-"].iter().any(|m| l[2..].starts_with(m)))
            .filter_map(|l| {
                let (mark, rest) = l.trim_start().split_once(' ')?;
                let (name, detail) = rest.split_once(' ')?;
                Some((mark.to_owned(), name.to_owned(), detail.trim().to_owned()))
            })
            .collect()
    }

    /// The one row called `name`: its mark and detail.
    fn row(&self, name: &str) -> (String, String) {
        let found: Vec<_> = self.rows().into_iter().filter(|(_, n, _)| n == name).collect();
        assert_eq!(found.len(), 1, "expected one {name:?} row in:\n{self}");
        let (mark, _, detail) = found.into_iter().next().unwrap();
        (mark, detail)
    }

    /// Asserts that row `name` has `mark` and mentions every fragment.
    fn expect(&self, name: &str, mark: &str, fragments: &[&str]) {
        let (m, detail) = self.row(name);
        assert_eq!(m, mark, "row {name}: {detail}\n{self}");
        for f in fragments {
            assert!(detail.contains(f), "row {name} lacks {f:?}: {detail}\n{self}");
        }
    }
}

impl std::fmt::Display for Doctor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}", self.code, self.stdout, self.stderr)
    }
}

fn sim(opts: SimOptions) -> SimServer {
    SimServer::start(SimOptions { ttl: Some(Duration::from_secs(3600)), ..opts })
}

/// Acquires `n` tokens for alice directly, as another client of hers would.
fn hold_tokens(fx: &Fixture, n: usize) {
    let config = config::load(&fx.config, &Env::default()).unwrap();
    let cluster = config.clusters[0].clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = KnoxClient::new(&cluster.transport).unwrap();
        for _ in 0..n {
            client
                .acquire_for(&cluster, token_keeper::knox::labels::Purpose::Keep { generation: 1 })
                .await
                .unwrap();
        }
    });
}

#[test]
fn doctor_passes_against_a_good_simulator_and_revokes_its_test_token() {
    let sim = sim(SimOptions::default());
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "")]);
    let once = fx.cmd(&["once"]);
    assert_eq!(once.status.code(), Some(0), "{}", String::from_utf8_lossy(&once.stderr));
    let published = sim.issued()[0].token_id.clone();
    assert_eq!(sim.stored_tokens("alice"), 1);

    let d = Doctor::run(&fx, &[]);
    assert_eq!(d.code, Some(0), "{d}");
    d.expect("dns", "✔", &["127.0.0.1"]);
    d.expect("tcp", "✔", &["connected to 127.0.0.1:"]);
    d.expect("tls", "✔", &["n/a (http on loopback)"]);
    d.expect("knox", "✔", &["KNOXTOKEN", "v2 API", "DELETE v2/token/revoke"]);
    d.expect("verify", "✔", &["signature, kid and expiry checked with the jwks key"]);
    d.expect("managed", "✔", &["yes", "tokenManagementEnabled=true"]);
    d.expect("renew", "-", &["--renew-trial"]);
    d.expect("token-limit", "✔", &["alice holds 1 token besides doctor's test token", "default limit is 10"]);
    d.expect("clock", "✔", &["within 1s"]);
    d.expect("output-dir", "✔", &[&fx.path().join("out/vc").display().to_string(), "mode 0700"]);
    d.expect("atomic-write", "✔", &["renamed"]);
    d.expect("filesystem", "✔", &["mounted at"]);
    let outputs: Vec<_> = d.rows().into_iter().filter(|(_, n, _)| n == "output").collect();
    assert_eq!(outputs.len(), 5, "{d}");
    assert!(outputs.iter().all(|(m, _, detail)| m == "✔" && detail.contains("mode 0600")), "{d}");
    assert!(!d.rows().iter().any(|(m, _, _)| m == "✘"), "{d}");
    assert!(
        d.stdout.contains("doctor: 1 cluster checked, nothing failed (18 passed, 0 failed, 1 skipped)"),
        "{d}"
    );

    // Exactly one more token was issued, and it is the one doctor revoked; the published one
    // is untouched and the user's count is back to what it was.
    let issued = sim.issued();
    assert_eq!(issued.len(), 2);
    let test_token = &issued[1].token_id;
    d.expect("credentials", "✔", &["basic user alice", "accepted", test_token]);
    d.expect("cleanup", "✔", &["revoked doctor's test token", test_token]);
    assert_eq!(sim.revocations(), vec![test_token.clone()]);
    assert!(!sim.revocations().contains(&published));
    assert_eq!(sim.stored_tokens("alice"), 1);
    assert_eq!(sim.renewals(), 0, "no renewal without --renew-trial");
    assert_no_secrets(&format!("{}{}", d.stdout, d.stderr), &sim.jwts());
}

#[test]
fn doctor_fails_on_a_bad_password_in_the_credentials_row() {
    let sim = sim(SimOptions::default());
    let fx = Fixture::new();
    std::fs::write(&fx.password_file, "not-alices-password\n").unwrap();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "")]);
    let d = Doctor::run(&fx, &[]);
    assert_eq!(d.code, Some(1), "{d}");
    d.expect("credentials", "✘", &["basic user alice", "401", &fx.password_file.display().to_string()]);
    d.expect("tcp", "✔", &[]);
    d.expect("cleanup", "-", &[]);
    assert_eq!(sim.acquisitions(), 0);
    assert!(!d.stdout.contains("not-alices-password") && !d.stderr.contains("not-alices-password"));
    assert!(d.stdout.contains("doctor: 1 cluster checked, failures in vc ("), "{d}");
}

#[test]
fn doctor_fails_on_a_wrong_ca_in_the_tls_row_and_passes_with_the_right_one() {
    let sim = tls_sim(SimOptions { ttl: Some(Duration::from_secs(3600)), ..SimOptions::default() });
    let fx = Fixture::new();
    let other = tls_file("other-ca.pem");
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), &format!("ca_file = \"{}\"", other.display()))]);
    let d = Doctor::run(&fx, &[]);
    assert_eq!(d.code, Some(1), "{d}");
    d.expect("tls", "✘", &["certificate", &other.display().to_string()]);
    d.expect("credentials", "-", &[]);
    assert_eq!(sim.acquisitions(), 0);

    let ca = tls_file("ca.pem");
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), &format!("ca_file = \"{}\"", ca.display()))]);
    let d = Doctor::run(&fx, &[]);
    assert_eq!(d.code, Some(0), "{d}");
    d.expect("tls", "✔", &["verified against ca_file", &ca.display().to_string()]);
    d.expect("cleanup", "✔", &["revoked"]);
    assert_eq!(sim.revocations().len(), 1);
}

#[test]
fn doctor_reports_a_group_writable_output_directory_that_check_config_refuses() {
    let sim = sim(SimOptions::default());
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "")]);
    let dir = fx.path().join("out/vc");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o775)).unwrap();
    let check = fx.cmd(&["check-config"]);
    assert_eq!(check.status.code(), Some(2), "the daemon refuses this config");

    let d = Doctor::run(&fx, &[]);
    assert_eq!(d.code, Some(1), "{d}");
    d.expect("output-dir", "✘", &[&dir.display().to_string(), "writable by group or others", "0775"]);
    // The rest of the table still ran.
    d.expect("credentials", "✔", &[]);
    d.expect("cleanup", "✔", &["revoked"]);
    assert_eq!(sim.stored_tokens("alice"), 0);

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = Doctor::run(&fx, &[]);
    assert_eq!(d.code, Some(0), "{d}");
    d.expect("output-dir", "✔", &["mode 0755"]);
}

#[test]
fn renew_trial_passes_for_a_whitelisted_renewer_and_fails_otherwise() {
    let allowed = sim(SimOptions { renewers: vec!["alice".into()], ..SimOptions::default() });
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &allowed.url(), "")]);
    let d = Doctor::run(&fx, &["--renew-trial"]);
    assert_eq!(d.code, Some(0), "{d}");
    d.expect("renew", "✔", &["PUT v2/token/renew", "renewed the test token"]);
    assert_eq!(allowed.renewals(), 1);
    assert_eq!(allowed.revocations().len(), 1, "the renewed test token is revoked too");
    assert_eq!(allowed.stored_tokens("alice"), 0);

    let refused = sim(SimOptions::default());
    fx.write_config(FAST, &[fx.cluster("vc", &refused.url(), "")]);
    let d = Doctor::run(&fx, &["--renew-trial"]);
    assert_eq!(d.code, Some(1), "{d}");
    d.expect("renew", "✘", &["not authorized to renew", "403"]);
    d.expect("cleanup", "✔", &["revoked"]);
    assert_eq!(refused.renewals(), 0);
    assert_eq!(refused.stored_tokens("alice"), 0);
}

#[test]
fn renew_trial_passes_when_the_renew_interval_is_shorter_than_the_ttl() {
    // Real Knox renews to now + renew-interval, however early: a 5-minute token renewed with a
    // 2-minute interval ends up with an earlier expiry, and renewal still works.
    let sim = sim(SimOptions {
        ttl: Some(Duration::from_secs(300)),
        renew_interval: Duration::from_secs(120),
        renewers: vec!["alice".into()],
        ..SimOptions::default()
    });
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "consumers_validate = \"gateway\"")]);
    let d = Doctor::run(&fx, &["--renew-trial"]);
    assert_eq!(d.code, Some(0), "{d}");
    d.expect("renew", "✔", &["renewed the test token", "earlier", "renew-interval"]);
    assert_eq!(sim.renewals(), 1);
}

#[test]
fn a_v2_token_url_on_knox_before_2_1_points_at_v1() {
    let sim = sim(SimOptions { version: KnoxVersion::V2_0, ..SimOptions::default() });
    let fx = Fixture::new();
    let v2 = sim.url().replace("/api/v1/", "/api/v2/");
    fx.write_config(FAST, &[fx.cluster("vc", &v2, "")]);
    let d = Doctor::run(&fx, &[]);
    assert_eq!(d.code, Some(1), "{d}");
    d.expect("knox", "✘", &["no v2 API", "older than 2.1", "/knoxtoken/api/v1/token"]);
    let once = fx.cmd(&["once", "--timeout", "1s"]);
    let err = String::from_utf8_lossy(&once.stderr);
    assert_eq!(once.status.code(), Some(1), "{err}");
    assert!(err.contains("no v2 API") && err.contains(&sim.url()), "the error names the v1 URL: {err}");
}

#[test]
fn token_limit_warns_near_the_default_and_fails_when_knox_refuses() {
    let sim = sim(SimOptions::default());
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "")]);
    hold_tokens(&fx, 8);
    let d = Doctor::run(&fx, &[]);
    assert_eq!(d.code, Some(0), "a warning still passes: {d}");
    d.expect(
        "token-limit",
        "!",
        &["alice holds 8 tokens besides doctor's test token", "default limit is 10"],
    );
    assert_eq!(sim.stored_tokens("alice"), 8);

    hold_tokens(&fx, 2);
    let d = Doctor::run(&fx, &[]);
    assert_eq!(d.code, Some(1), "{d}");
    d.expect("token-limit", "✘", &["token limit exceeded", "alice holds 10 tokens"]);
    d.expect("credentials", "✔", &["accepted"]);
    assert_eq!(sim.limit_errors(), 1);
}

#[test]
fn clock_offset_warns_beyond_drift_and_fails_beyond_min_remaining() {
    let sim = sim(SimOptions { clock_offset: 45_000, ..SimOptions::default() });
    let fx = Fixture::new();
    // min_remaining defaults to 60 s.
    fx.write_config("", &[fx.cluster("vc", &sim.url(), "")]);
    let d = Doctor::run(&fx, &[]);
    assert_eq!(d.code, Some(0), "{d}");
    d.expect("clock", "!", &["ahead of"]);

    sim.set_clock_offset(-600_000);
    let d = Doctor::run(&fx, &[]);
    assert_eq!(d.code, Some(1), "{d}");
    d.expect("clock", "✘", &["behind this host", "min_remaining (1m)"]);
}

#[test]
fn unmanaged_tokens_need_no_renewal_limit_or_cleanup() {
    let sim = sim(SimOptions { managed: false, ..SimOptions::default() });
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "")]);
    let d = Doctor::run(&fx, &["--renew-trial"]);
    assert_eq!(d.code, Some(0), "{d}");
    d.expect("managed", "✔", &["no:", "tokenManagementEnabled=false", "managed=false"]);
    d.expect("renew", "✔", &["n/a"]);
    d.expect("token-limit", "✔", &["n/a"]);
    d.expect("cleanup", "✔", &["n/a"]);
    assert!(sim.revocations().is_empty());
}

#[test]
fn older_knox_versions_are_named_with_the_verbs_they_took() {
    let v2_0 = sim(SimOptions { version: KnoxVersion::V2_0, ..SimOptions::default() });
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &v2_0.url(), "")]);
    let d = Doctor::run(&fx, &[]);
    assert_eq!(d.code, Some(0), "{d}");
    d.expect("knox", "✔", &["no v2 API (Knox before 2.1)", "revoke took DELETE v1/token/revoke"]);
    d.expect("cleanup", "✔", &["revoked"]);
    assert_eq!(v2_0.stored_tokens("alice"), 0);

    // Knox 1.4/1.5 lets only whitelisted callers revoke: said, but not a failure.
    let v1_5 = sim(SimOptions { version: KnoxVersion::V1_5, ..SimOptions::default() });
    fx.write_config(FAST, &[fx.cluster("vc", &v1_5.url(), "")]);
    let d = Doctor::run(&fx, &[]);
    assert_eq!(d.code, Some(0), "{d}");
    d.expect("knox", "✔", &["Knox before 1.6", "revoke took POST v1/token/revoke"]);
    d.expect("cleanup", "!", &["only whitelisted callers revoke", "403"]);
    d.expect("token-limit", "-", &["getUserTokens"]);
}

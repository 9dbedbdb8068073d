//! HTTPS to the gateway: the certificate is checked against the system roots plus `ca_file`,
//! a wrong or missing CA fails clearly (and is not retried as if transient), and
//! `insecure_skip_tls_verify` works but warns at every start.

use std::time::Duration;

use knox_sim::SimOptions;

use crate::harness::*;

fn https_sim() -> SimServer {
    tls_sim(SimOptions { ttl: Some(Duration::from_secs(3600)), ..SimOptions::default() })
}

#[test]
fn ca_file_makes_the_gateway_trusted() {
    let sim = https_sim();
    assert!(sim.url().starts_with("https://127.0.0.1:"));
    let fx = Fixture::new();
    let ca = format!("ca_file = \"{}\"", tls_file("ca.pem").display());
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), &ca)]);
    let r = fx.cmd(&["once"]);
    assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(fx.token("vc").unwrap(), sim.jwts()[0]);
}

#[test]
fn an_untrusted_gateway_fails_at_once_with_a_hint() {
    let sim = https_sim();
    for extra in [String::new(), format!("ca_file = \"{}\"", tls_file("other-ca.pem").display())] {
        let fx = Fixture::new();
        fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), &extra)]);
        let started = std::time::Instant::now();
        let r = fx.cmd(&["once", "--timeout", "20s"]);
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{extra}: {stderr}");
        assert!(stderr.contains("TLS to https://127.0.0.1") && stderr.contains("certificate"), "{stderr}");
        assert!(stderr.contains("ca_file"), "hint missing: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a certificate error is not retried as transient"
        );
        assert!(fx.token("vc").is_none());
    }
    assert_eq!(sim.acquisitions(), 0);
}

#[test]
fn insecure_skip_tls_verify_works_and_warns() {
    let sim = https_sim();
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "insecure_skip_tls_verify = true")]);
    let r = fx.cmd(&["once"]);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("WARN") && stderr.contains("insecure_skip_tls_verify is set"), "{stderr}");
}

#[test]
fn a_ca_file_that_is_not_pem_is_a_config_error() {
    let fx = Fixture::new();
    let bogus = fx.path().join("ca.pem");
    std::fs::write(&bogus, "not a certificate\n").unwrap();
    for (file, fragment) in
        [(bogus.clone(), "holds no PEM certificate"), (fx.path().join("missing.pem"), "reading ca_file")]
    {
        fx.write_config(
            FAST,
            &[fx.cluster("vc", "https://127.0.0.1:9/t", &format!("ca_file = \"{}\"", file.display()))],
        );
        let r = fx.cmd(&["check-config"]);
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(fragment) && stderr.contains(&file.display().to_string()), "{stderr}");
    }
}

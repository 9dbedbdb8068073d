//! What a new config means for a running cluster.

use super::super::reload::{reconcile, Change};
use super::cluster;

#[test]
fn a_new_config_keeps_retargets_or_replaces_each_cluster() {
    let base = cluster("");
    let output = "[[cluster.output]]\npath = \"/tmp/vc/token\"\nformat = \"raw\"";
    // (keys of the new cluster) → change
    let cases = [
        ("", Change::Same),
        // Settings that leave the Knox source alone keep the token...
        ("min_remaining = \"5m\"", Change::Retarget { republish: false }),
        ("consumers_validate = \"gateway\"", Change::Retarget { republish: false }),
        ("revoke_on_exit = true", Change::Retarget { republish: false }),
        ("remove_expired = true", Change::Retarget { republish: false }),
        // ...and new outputs get it published again.
        (output, Change::Retarget { republish: true }),
        // A new source (lifespan, TLS, URL, credentials) starts afresh.
        ("lifespan = \"PT2H\"", Change::Replace),
        ("insecure_skip_tls_verify = true", Change::Replace),
        ("timeout = \"5s\"", Change::Replace),
    ];
    for (keys, expected) in cases {
        assert_eq!(reconcile(&base, &cluster(keys)), expected, "{keys}");
    }
    let mut other_url = base.clone();
    other_url.token_url = "https://knox2.example.com/gateway/t/knoxtoken/api/v1/token".parse().unwrap();
    assert_eq!(reconcile(&base, &other_url), Change::Replace);
    let mut other_user = base.clone();
    if let crate::config::Auth::Basic { user, .. } = &mut other_user.auth {
        *user = "bob".to_owned();
    }
    assert_ne!(other_user, base);
    assert_eq!(reconcile(&base, &other_user), Change::Replace);
}

//! The orphan sweep's choice: this installation's tokens on this host that nothing holds,
//! issued before the census, never while the group is acquiring, at most 32 at a time.

use std::collections::BTreeSet;

use super::super::census::Listed;
use super::super::sweep::{census_knox_ms, orphans, Orphan, Scope, MAX_PER_SWEEP};

fn token(id: &str, mine: bool, host: Option<&str>, issued_ms: Option<i64>) -> Listed {
    Listed {
        id: id.into(),
        enabled: true,
        issued_ms,
        mine,
        host: host.map(Into::into),
        cluster: Some("vc".into()),
        exec: false,
    }
}

#[test]
fn only_this_installations_unheld_tokens_on_this_host_are_orphans() {
    let held: BTreeSet<String> = ["published".to_owned(), "pending".to_owned()].into();
    let clusters = vec!["vc".to_owned(), "vc-dev".to_owned()];
    let scope = Scope { host: "h1", held: &held, sent_knox_ms: 100, acquiring: false, clusters: &clusters };
    let list = vec![
        token("left", true, Some("h1"), Some(10)),
        token("theirs", false, Some("h1"), Some(10)),
        token("elsewhere", true, Some("h2"), Some(10)),
        token("no-host", true, None, Some(10)),
        token("published", true, Some("h1"), Some(10)),
        token("pending", true, Some("h1"), Some(10)),
        // Issued after the census was sent, or at an unknown time: maybe an acquisition
        // whose answer is on its way.
        token("late", true, Some("h1"), Some(100)),
        token("undated", true, Some("h1"), None),
        Listed { exec: true, ..token("exec", true, Some("h1"), Some(10)) },
        // A cluster no longer configured: counted under the group's first.
        Listed { cluster: Some("old".into()), ..token("removed-cluster", true, Some("h1"), Some(10)) },
        Listed { cluster: Some("vc-dev".into()), ..token("dev", true, Some("h1"), Some(10)) },
        Listed { cluster: None, ..token("unlabelled", true, Some("h1"), Some(10)) },
    ];
    let orphan = |id: &str, label: &str, counted: &str| Orphan {
        token_id: id.into(),
        label: label.into(),
        counted: counted.into(),
    };
    assert_eq!(
        orphans(&list, &scope),
        vec![
            orphan("left", "vc", "vc"),
            orphan("removed-cluster", "old", "vc"),
            orphan("dev", "vc-dev", "vc-dev"),
            orphan("unlabelled", "vc", "vc"),
        ]
    );
    // A cluster of the group acquiring: nothing, its token may be in the list already.
    assert_eq!(orphans(&list, &Scope { acquiring: true, ..scope }), vec![]);
    assert_eq!(orphans(&list, &Scope { clusters: &[], ..scope }), vec![]);
    // At most 32 per sweep, oldest first.
    let many: Vec<Listed> = (0..40).map(|i| token(&format!("t{i:02}"), true, Some("h1"), Some(i))).collect();
    let got = orphans(&many, &scope);
    assert_eq!(got.len(), MAX_PER_SWEEP);
    assert_eq!((got[0].token_id.as_str(), got[31].token_id.as_str()), ("t00", "t31"));
}

#[test]
fn the_census_time_on_knoxs_clock_ignores_offsets_within_the_date_headers_resolution() {
    // (sent, offset) → Knox's clock
    let cases = [
        (10_000, 0, 10_000),
        (10_000, -511, 10_000),
        (10_000, 1000, 10_000),
        (10_000, -1001, 8_999),
        (10_000, 7_200_000, 7_210_000),
        (i64::MAX, i64::MAX, i64::MAX),
        (0, i64::MIN, i64::MIN),
    ];
    for (sent, offset, want) in cases {
        assert_eq!(census_knox_ms(sent, offset), want, "{sent} {offset}");
    }
}

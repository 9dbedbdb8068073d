//! The census: groups, the hourly budget, reading Knox's list, judging each published token,
//! what a failed census does, and what a token found gone does to its cluster.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, SystemTime};

use super::super::attempt::{next, Start, Step};
use super::super::census::{
    after_failure, budget, budget_allows, evicted, group_key, judge, read, CensusError, Gone, GroupKey, Halt,
    Listed, Member, Verdict,
};
use super::{cluster, describe, holding, t0, token, H, MIN, S};
use crate::config::Identity;
use crate::knox::labels::parse_comment;
use crate::knox::Token;

#[test]
fn a_group_is_the_gateway_and_the_user() {
    let key = |origin: &str, user: &str| Some(GroupKey { origin: origin.into(), user: user.into() });
    let basic = cluster("");
    let mut other_port = cluster("");
    other_port.token_url = "https://knox.example.com:8443/gateway/u/knoxtoken/api/v1/token".parse().unwrap();
    let t = token(t0(), Some(H));
    let nobody = Token { subject: None, ..t.clone() };
    let bob = Token { subject: Some("bob".into()), ..t.clone() };
    let mut bearer = cluster("");
    bearer.auth = crate::config::Auth::Bearer { token_file: "/run/credentials/t".into() };
    // (cluster, published token) → group
    let cases = [
        (&basic, None, key("https://knox.example.com", "alice")),
        // The Basic user decides, whatever the token says.
        (&basic, Some(&bob), key("https://knox.example.com", "alice")),
        (&other_port, None, key("https://knox.example.com:8443", "alice")),
        // Without a Basic user, the published token's sub; none yet: no group.
        (&bearer, Some(&bob), key("https://knox.example.com", "bob")),
        (&bearer, Some(&nobody), None),
        (&bearer, None, None),
    ];
    for (i, (c, token, want)) in cases.into_iter().enumerate() {
        assert_eq!(group_key(c, token), want, "row {i}");
    }
}

#[test]
fn the_budget_is_the_steady_rate_plus_two_per_rolling_hour() {
    let t0 = t0();
    assert_eq!(budget(5 * MIN), 14, "12 an hour at the default, plus two");
    assert_eq!(budget(30 * S), 122);
    assert_eq!(budget(H), 3);
    assert_eq!(budget(Duration::ZERO), 3602, "never divides by zero");
    // (interval, earlier calls as offsets from t0, now as offset) → allowed, or when
    let calls = |n: u32, every: Duration| (0..n).map(|i| every * i).collect::<Vec<_>>();
    type Row = (Duration, Vec<Duration>, Duration, Result<(), Duration>);
    let cases: Vec<Row> = vec![
        (5 * MIN, vec![], Duration::ZERO, Ok(())),
        (5 * MIN, calls(13, MIN), 13 * MIN, Ok(())),
        // 14 calls in the last hour: the next one waits until the oldest is an hour old.
        (5 * MIN, calls(14, MIN), 14 * MIN, Err(H)),
        (5 * MIN, calls(14, MIN), H, Ok(())),
        (H, vec![Duration::ZERO, S, 2 * S], 3 * S, Err(H)),
        (H, vec![Duration::ZERO, S, 2 * S], H + S, Ok(())),
    ];
    for (i, (interval, earlier, now, want)) in cases.into_iter().enumerate() {
        let mut q: VecDeque<_> = earlier.iter().map(|d| t0 + *d).collect();
        let got = budget_allows(&mut q, t0 + now, interval).map_err(|t| t - t0);
        assert_eq!(got, want, "row {i}");
        assert!(q.iter().all(|&t| t + H > t0 + now), "row {i}: calls older than an hour are dropped");
    }
}

/// A listed token: `id`, enabled or not.
fn listed(id: &str, enabled: bool) -> Listed {
    Listed { id: id.into(), enabled, issued_ms: Some(1), mine: true, host: None, cluster: None, exec: false }
}

#[test]
fn judging_a_published_token_by_the_census() {
    let t0 = t0();
    let interval = 5 * MIN;
    let m = Member {
        token_id: "id-1",
        received: t0,
        expires: Some(t0 + H),
        own_url: true,
        in_flight: false,
        replaced_at: None,
    };
    let other_url = Member { own_url: false, ..m };
    let seen: BTreeSet<String> = ["id-1".to_owned()].into();
    let none = BTreeSet::new();
    let sent = t0 + MIN;
    let now = t0 + 2 * MIN;
    let enabled = vec![listed("id-0", true), listed("id-1", true)];
    let disabled = vec![listed("id-1", false)];
    let absent = vec![listed("id-0", true)];
    // (member, census, seen before, sent, now) → verdict
    let cases: Vec<(Member<'_>, &Vec<Listed>, &BTreeSet<String>, _, _, Verdict)> = vec![
        (m, &enabled, &none, sent, now, Verdict::Fine),
        (m, &disabled, &none, sent, now, Verdict::Gone(Gone::Disabled)),
        (other_url, &disabled, &none, sent, now, Verdict::Gone(Gone::Disabled)),
        // Absent: an earlier census listed it.
        (other_url, &absent, &seen, sent, now, Verdict::Gone(Gone::Removed)),
        // Absent from a census through its own topology, sent after it arrived.
        (m, &absent, &none, sent, now, Verdict::Gone(Gone::Removed)),
        // ...but a census sent before it arrived may not list it yet.
        (m, &absent, &none, t0, now, Verdict::Unjudged),
        (m, &absent, &none, t0 - S, now, Verdict::Unjudged),
        // Never seen, through another topology: nothing to conclude.
        (other_url, &absent, &none, sent, now, Verdict::Unjudged),
        // Expired: the schedule replaces it; in flight: the attempt decides.
        (Member { expires: Some(now), ..m }, &disabled, &seen, sent, now, Verdict::Fine),
        (Member { expires: None, ..m }, &disabled, &seen, sent, now, Verdict::Gone(Gone::Disabled)),
        (Member { in_flight: true, ..m }, &absent, &seen, sent, now, Verdict::Fine),
        // One guard replacement per cluster per interval.
        (
            Member { replaced_at: Some(now - MIN), ..m },
            &absent,
            &seen,
            sent,
            now,
            Verdict::Throttled(Gone::Removed),
        ),
        (
            Member { replaced_at: Some(now - interval), ..m },
            &absent,
            &seen,
            sent,
            now,
            Verdict::Gone(Gone::Removed),
        ),
    ];
    for (i, (member, census, seen, sent, now, want)) in cases.into_iter().enumerate() {
        assert_eq!(judge(&member, census, seen, sent, now, interval), want, "row {i}");
    }
}

#[test]
fn a_failed_census_stops_waits_an_hour_or_the_interval() {
    let t0 = t0();
    let cases = [
        (CensusError::NoApi("503".into()), Halt::Stopped),
        (CensusError::Denied("403".into()), Halt::Until(t0 + H)),
        (CensusError::Transient("500".into()), Halt::Until(t0 + 5 * MIN)),
    ];
    for (error, want) in cases {
        assert_eq!(after_failure(&error, t0, 5 * MIN), want, "{error:?}");
    }
}

#[test]
fn knox_lists_are_read_with_their_labels() {
    let me = Identity { installation_id: "edge-a".into(), host: "h1".into() };
    let body = r#"{"tokens":[
      {"tokenId":"a","issueTimeLong":5,"metadata":{"enabled":true,"userName":"alice",
        "comment":"token-keeper edge-a on h1 for vc","customMetadataMap":{"tk_install":"edge-a",
        "tk_host":"h2","tk_cluster":"vc2"}}},
      {"tokenId":"b","metadata":{"enabled":"false","comment":"token-keeper edge-a on h1 for vc (exec)"}},
      {"tokenId":"c","metadata":{"enabled":false,"comment":"token-keeper edge-b on h1 for vc (doctor)"}},
      {"tokenId":"d"}
    ]}"#;
    let got = read(200, body, &me).unwrap();
    let row = |id: &str, enabled, mine, host: Option<&str>, cluster: Option<&str>, exec| Listed {
        id: id.into(),
        enabled,
        issued_ms: (id == "a").then_some(5),
        mine,
        host: host.map(Into::into),
        cluster: cluster.map(Into::into),
        exec,
    };
    assert_eq!(
        got,
        vec![
            // Metadata wins over the comment.
            row("a", true, true, Some("h2"), Some("vc2"), false),
            row("b", false, true, Some("h1"), Some("vc"), true),
            row("c", false, false, Some("h1"), Some("vc"), false),
            row("d", true, false, None, None, false),
        ]
    );
    // (status, body) → error class
    let cases = [
        (503, "{\"error\": \"Token management is not configured\"}", "NoApi"),
        (404, "", "NoApi"),
        (403, "", "Denied"),
        (401, "", "Denied"),
        (500, "", "Transient"),
        (200, "<html>", "Transient"),
        (200, "{\"tokens\":[{\"issueTimeLong\":1}]}", "Transient"),
    ];
    for (status, body, want) in cases {
        let e = read(status, body, &me).unwrap_err();
        assert!(format!("{e:?}").starts_with(want), "{status} {body}: {e:?}");
    }
    // (comment) → host and cluster
    let comments = [
        ("token-keeper id on h1 for vc", Some(("h1", "vc"))),
        ("token-keeper id on h1 for vc (doctor)", Some(("h1", "vc"))),
        ("token-keeper id on h1 for vc (exec)", Some(("h1", "vc"))),
        ("token-keeper id on  for vc", None),
        ("token-keeper id on h1", None),
        ("something else", None),
    ];
    for (c, want) in comments {
        let want = want.map(|(h, c): (&str, &str)| (h.to_owned(), c.to_owned()));
        assert_eq!(parse_comment(c), want, "{c}");
    }
}

#[test]
fn a_gone_token_is_replaced_at_once_said_counted_and_not_revoked_again() {
    let t0 = t0();
    let c = cluster("consumers_validate = \"gateway\"");
    let mut state = holding(&c, token(t0, Some(H)));
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let effects = evicted(&mut state, Gone::Removed, t0 + MIN, wall);
    assert_eq!(describe(t0, &effects), ["log evicted id-1: removed", "record evicted", "replan"]);
    assert_eq!(state.guard.gone.as_deref(), Some("id-1"));
    assert!(!state.held.unwrap().renewable, "a revoked token cannot be renewed");
    let last = state.guard.last.clone().unwrap();
    assert_eq!((last.reason.as_str(), last.at, last.token_id.as_str()), ("removed", wall, "id-1"));
    // Long before its refresh point, the next step is an acquisition, which carries the
    // eviction into the json, and takes the request.
    match next(&mut state, &c, t0 + MIN).1 {
        Some(Step::Start(Start::Acquire { eviction, .. })) => assert_eq!(eviction, Some(last)),
        other => panic!("{other:?}"),
    }
    assert!(!state.guard.due && state.in_flight);
    // The replacement failed and the token is still gone an interval later: tried again,
    // but said and counted once.
    state.in_flight = false;
    let effects = evicted(&mut state, Gone::Removed, t0 + 7 * MIN, wall);
    assert_eq!(describe(t0, &effects), ["replan"]);
    assert!(state.guard.due && state.guard.replaced_at == Some(t0 + 7 * MIN));
    // A disabled token is revoked as usual once replaced (it still counts toward the limit).
    let mut state = holding(&c, token(t0, Some(H)));
    evicted(&mut state, Gone::Disabled, t0, wall);
    assert_eq!(state.guard.gone, None);
}

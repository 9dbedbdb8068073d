//! Each output format, byte for byte, and reading them back.

use std::time::{Duration, SystemTime};

use super::*;

const JWT: &str =
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTcwMDAwMDAzMCwia25veC5pZCI6ImlkLTEifQ.c2ln";

fn published() -> Published {
    Published {
        jwt: Secret::new(JWT),
        token_type: "Bearer".into(),
        token_id: Some("d161cac1-f93e-4229-a0dd-3a77ab914871".into()),
        expires_at_ms: Some(1_700_000_030_123),
        jwt_exp: Some(1_700_000_030),
        managed: true,
        target_url: None,
        cluster: "vc-prod".into(),
        generation: 7,
        acquired_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        stale: false,
        last_error: None,
        knox_clock_offset_ms: -1500,
    }
}

fn check(format: Format, env_var: &str, want: &str) {
    let got = render(format, &published(), env_var);
    assert_eq!(String::from_utf8(got).unwrap(), want, "format {format:?}");
}

#[test]
fn formats_byte_for_byte() {
    check(Format::Raw, "CDE_TOKEN", JWT);
    check(Format::Header, "CDE_TOKEN", &format!("Authorization: Bearer {JWT}\n"));
    check(Format::Env, "CDE_TOKEN", &format!("CDE_TOKEN={JWT}\n"));
    check(Format::Env, "SPARK_TOKEN", &format!("SPARK_TOKEN={JWT}\n"));
    check(Format::Shell, "CDE_TOKEN", &format!("export CDE_TOKEN='{JWT}'\n"));
    check(
        Format::Json,
        "CDE_TOKEN",
        &format!(
            "{{\"access_token\":\"{JWT}\",\"token_type\":\"Bearer\",\
             \"token_id\":\"d161cac1-f93e-4229-a0dd-3a77ab914871\",\
             \"expires_at\":\"2023-11-14T22:13:50Z\",\"expires_at_ms\":1700000030123,\
             \"jwt_exp\":1700000030,\"managed\":true,\"target_url\":null,\"cluster\":\"vc-prod\",\
             \"generation\":7,\"acquired_at\":\"2023-11-14T22:13:20Z\",\"knox_clock_offset_ms\":-1500}}\n"
        ),
    );
}

#[test]
fn json_for_a_token_that_never_expires() {
    let mut p = published();
    p.expires_at_ms = None;
    p.jwt_exp = None;
    p.token_id = None;
    p.target_url = Some("proxy-token/".into());
    let v: Value = serde_json::from_slice(&render(Format::Json, &p, "X")).unwrap();
    assert_eq!(v["expires_at"], Value::Null);
    assert_eq!(v["expires_at_ms"], -1);
    assert_eq!(v["jwt_exp"], Value::Null);
    assert_eq!(v["token_id"], Value::Null);
    assert_eq!(v["target_url"], "proxy-token/");
}

#[test]
fn json_round_trips() {
    let text = String::from_utf8(render(Format::Json, &published(), "CDE_TOKEN")).unwrap();
    let back = parse_json(&text, "other").unwrap();
    let want = published();
    assert_eq!(back.jwt, want.jwt);
    assert_eq!(back.token_id, want.token_id);
    assert_eq!(back.expires_at_ms, want.expires_at_ms);
    assert_eq!(back.jwt_exp, want.jwt_exp);
    assert_eq!(back.generation, 7);
    assert_eq!(back.cluster, "vc-prod");
    assert_eq!(back.acquired_at, want.acquired_at);
    assert_eq!(back.knox_clock_offset_ms, -1500);
    assert!(back.managed);
}

#[test]
fn wrapped_formats_read_back_the_jwt_and_its_claims() {
    for format in [Format::Raw, Format::Header, Format::Env, Format::Shell] {
        let text = String::from_utf8(render(format, &published(), "CDE_TOKEN")).unwrap();
        let back = parse_wrapped(format, &text, "CDE_TOKEN", "vc-prod").unwrap();
        assert_eq!(back.jwt.expose(), JWT, "{format:?}");
        assert_eq!(back.jwt_exp, Some(1_700_000_030), "{format:?}");
        assert_eq!(back.expires_at_ms, Some(1_700_000_030_000), "{format:?}");
        assert_eq!(back.token_id.as_deref(), Some("id-1"), "{format:?}");
    }
    assert!(parse_wrapped(Format::Header, "garbage", "CDE_TOKEN", "c").is_err());
    assert!(parse_wrapped(Format::Raw, "not-a-jwt", "CDE_TOKEN", "c").is_err());
}

#[test]
fn json_says_stale_with_the_last_error_only_when_stale() {
    let mut p = published();
    p.stale = true;
    p.last_error = Some("https://knox/t answered 503: \"down\"".into());
    let text = String::from_utf8(render(Format::Json, &p, "X")).unwrap();
    assert!(
        text.ends_with(",\"stale\":true,\"last_error\":\"https://knox/t answered 503: \\\"down\\\"\"}\n"),
        "{text}"
    );
    let back = parse_json(&text, "c").unwrap();
    assert!(back.stale);
    assert_eq!(back.last_error, p.last_error);
    let fresh = String::from_utf8(render(Format::Json, &published(), "X")).unwrap();
    assert!(!fresh.contains("stale"));
}

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
        renewed_at: None,
        last_eviction: None,
        knox_clock_offset_ms: -1500,
        verified: None,
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

#[test]
fn rfc3339_is_total() {
    assert_eq!(rfc3339(from_epoch_ms(i64::MAX)), "9999-12-31T23:59:59Z");
    assert_eq!(rfc3339(from_epoch_ms(253_402_300_800_000)), "9999-12-31T23:59:59Z");
    assert_eq!(rfc3339(from_epoch_ms(i64::MIN)), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(from_epoch_ms(1_700_000_030_123)), "2023-11-14T22:13:50Z");
}

#[test]
fn json_renders_absurd_times_without_panicking() {
    let mut p = published();
    p.expires_at_ms = Some(i64::MAX);
    p.jwt_exp = Some(i64::MAX);
    p.knox_clock_offset_ms = i64::MIN;
    let v: Value = serde_json::from_slice(&render(Format::Json, &p, "X")).unwrap();
    assert_eq!(v["expires_at"], "9999-12-31T23:59:59Z");
    let _ = p.remaining_ms(SystemTime::now());
    let _ = p.lifetime();
}

#[test]
fn rendering_never_emits_bytes_that_are_not_a_valid_jwt() {
    for hostile in
        ["a.b.c'; touch /tmp/x; '", "a.b.c\nEVIL=1", "a.b.c\r\nX-Evil: 1", "a.b.c\\", "a.b.c\0", "a.b."]
    {
        let mut p = published();
        p.jwt = Secret::new(hostile);
        for format in [Format::Raw, Format::Header, Format::Env, Format::Shell, Format::Json] {
            let text = String::from_utf8(render(format, &p, "CDE_TOKEN")).unwrap();
            assert!(!text.contains(hostile), "{format:?} rendered {hostile:?}: {text:?}");
            let body = text.trim_end_matches('\n');
            assert!(!body.contains(['\n', '\r', '\0', '\\']), "{format:?}: {text:?}");
            if format != Format::Json {
                assert!(text.matches('\'').count() <= 2, "{format:?}: {text:?}");
            }
        }
    }
}

#[test]
fn readers_refuse_hostile_bytes_in_published_files() {
    let bad = [
        format!("{JWT}'; touch /tmp/x; '"),
        format!("{JWT}\nEVIL=1"),
        format!("{JWT}\\"),
        format!("{JWT}.e30"),
    ];
    for jwt in &bad {
        for (format, text) in [
            (Format::Raw, jwt.clone()),
            (Format::Header, format!("Authorization: Bearer {jwt}\n")),
            (Format::Env, format!("CDE_TOKEN={jwt}\n")),
            (Format::Shell, format!("export CDE_TOKEN='{jwt}'\n")),
        ] {
            assert!(parse_wrapped(format, &text, "CDE_TOKEN", "c").is_err(), "{format:?} {jwt:?}");
        }
        let json = serde_json::json!({"access_token": jwt, "generation": 1}).to_string();
        assert!(parse_json(&json, "c").is_err(), "json {jwt:?}");
    }
}

#[test]
fn readers_bound_absurd_numbers_and_drop_unsafe_ids() {
    let json = serde_json::json!({
        "access_token": JWT,
        "token_id": "id\u{1b}[2J\nforged",
        "expires_at_ms": i64::MAX,
        "jwt_exp": i64::MAX,
        "generation": u64::MAX,
        "knox_clock_offset_ms": i64::MIN,
        "managed": true,
    })
    .to_string();
    let p = parse_json(&json, "c").unwrap();
    // The id falls back to the JWT's own knox.id; exp is the JWT's, not the file's.
    assert_eq!(p.token_id.as_deref(), Some("id-1"));
    assert_eq!(p.expires_at_ms, Some(253_402_300_799_999));
    assert_eq!(p.jwt_exp, Some(1_700_000_030));
    assert!(p.generation < u64::MAX / 2, "{}", p.generation);
    assert!(p.knox_clock_offset_ms.abs() <= 366 * 86_400_000, "{}", p.knox_clock_offset_ms);
}

#[test]
fn a_renewed_token_counts_its_lifetime_from_the_renewal() {
    // Acquired at T, renewed at T + 15 s to expire at T + 25 s (Knox: now + renew interval).
    let acquired = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut p = published();
    p.knox_clock_offset_ms = 0;
    p.expires_at_ms = Some(1_700_000_025_000);
    assert_eq!(p.lifetime(), Some(Duration::from_secs(25)), "before any renewal: from arrival");
    p.renewed_at = Some(acquired + Duration::from_secs(15));
    assert_eq!(p.lifetime(), Some(Duration::from_secs(10)), "after a renewal: from the renewal");
    let json = String::from_utf8(render(Format::Json, &p, "CDE_TOKEN")).unwrap();
    assert!(json.contains(r#""knox_clock_offset_ms":0,"renewed_at":"2023-11-14T22:13:35Z"}"#), "{json}");
    let back = parse_published(Format::Json, &json, "CDE_TOKEN", "vc-prod").unwrap();
    assert_eq!(back.renewed_at, p.renewed_at);
    assert_eq!(back.lifetime(), Some(Duration::from_secs(10)));
}

#[test]
fn freshness_against_min_remaining() {
    let min = Duration::from_secs(60);
    let base = published();
    let at = |left_ms: i64| {
        // Knox's clock runs 1.5 s behind (knox_clock_offset_ms = -1500): now is that much later.
        let knox_now = base.expires_at_ms.unwrap() - left_ms;
        SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(knox_now + 1500).unwrap())
    };
    let rows: &[(i64, Freshness)] = &[
        (3_600_000, Freshness::Fresh(Duration::from_secs(3600))),
        (60_000, Freshness::Fresh(Duration::from_secs(60))),
        (59_999, Freshness::Expiring(Duration::from_millis(59_999))),
        (1, Freshness::Expiring(Duration::from_millis(1))),
        (0, Freshness::Expired),
        (-5_000, Freshness::Expired),
    ];
    for &(left, want) in rows {
        assert_eq!(base.freshness(at(left), min), want, "{left} ms left");
        assert_eq!(want.is_fresh(), left >= 60_000, "{left} ms left");
    }
    let never = Published { expires_at_ms: None, ..published() };
    assert_eq!(never.freshness(SystemTime::now(), min), Freshness::NeverExpires);
    assert!(Freshness::NeverExpires.is_fresh());
    // A far-future "now" saturates instead of overflowing.
    assert_eq!(
        base.freshness(SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 40), min),
        Freshness::Expired
    );
}

#[test]
fn json_says_how_the_token_was_verified_and_reads_it_back() {
    use crate::knox::Verified;
    for v in [Verified::Pinned, Verified::Jwks, Verified::EndpointCert, Verified::Unverified, Verified::Off] {
        let p = Published { verified: Some(v), stale: true, last_error: Some("e".into()), ..published() };
        let json = String::from_utf8(render(Format::Json, &p, "CDE_TOKEN")).unwrap();
        let want = format!(
            r#""knox_clock_offset_ms":-1500,"verified":"{}","stale":true,"last_error":"e"}}"#,
            v.as_str()
        );
        assert!(json.ends_with(&format!("{want}\n")), "{json}");
        assert_eq!(parse_json(&json, "c").unwrap().verified, Some(v));
    }
    // Files that do not say (written before verification existed), or say something unknown.
    let json = String::from_utf8(render(Format::Json, &published(), "CDE_TOKEN")).unwrap();
    assert!(!json.contains("verified"));
    assert_eq!(parse_json(&json, "c").unwrap().verified, None);
    let odd = json.replace("\"knox_clock_offset_ms\"", "\"verified\":\"trust-me\",\"knox_clock_offset_ms\"");
    assert_eq!(parse_json(&odd, "c").unwrap().verified, None);
}

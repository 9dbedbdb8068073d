//! `parse_token`, `parse_expires_in` and `knox_clock` against what Knox (or a hostile
//! gateway) can send.

use super::*;

#[test]
fn expires_in_units() {
    let now = 1_700_000_000_000;
    let check = |v: Value, want: Expiry| assert_eq!(parse_expires_in(&v, now).unwrap(), want, "{v}");
    check(serde_json::json!(-1), Expiry::Never);
    check(serde_json::json!(0), Expiry::Never);
    check(serde_json::json!(1_700_000_030_000i64), Expiry::At(1_700_000_030_000));
    check(serde_json::json!("1700000030000"), Expiry::At(1_700_000_030_000));
    check(serde_json::json!(3600), Expiry::At(now + 3_600_000));
    check(serde_json::json!(1_700_000_030i64), Expiry::At(1_700_000_030_000));
    assert!(parse_expires_in(&serde_json::json!("soon"), now).is_err());
}

#[test]
fn knox_clock_estimate() {
    let local = httpdate::parse_http_date("Sun, 06 Nov 2033 08:49:37 GMT").unwrap()
        + std::time::Duration::from_millis(250);
    // Same second: our clock is the finer estimate.
    assert_eq!(knox_clock(Some("Sun, 06 Nov 2033 08:49:37 GMT"), local), epoch_ms(local));
    // Knox two hours ahead: the middle of its second.
    let ahead = epoch_ms(local) - 250 + 7_200_000 + 500;
    assert_eq!(knox_clock(Some("Sun, 06 Nov 2033 10:49:37 GMT"), local), ahead);
    // No or bad header: ours.
    assert_eq!(knox_clock(None, local), epoch_ms(local));
    assert_eq!(knox_clock(Some("yesterday"), local), epoch_ms(local));
}

/// A 200 body carrying `jwt`, expiring in an hour.
fn body_with(jwt: &str) -> String {
    let now = epoch_ms(SystemTime::now());
    serde_json::json!({"access_token": jwt, "expires_in": now + 3_600_000, "managed": "false"}).to_string()
}

/// A JWT (not signed: the signature is not checked) with `claims`.
fn jwt_with(claims: &Value, signature: &str) -> String {
    use base64::Engine as _;
    let seg = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    format!("{}.{}.{signature}", seg(br#"{"alg":"RS256","typ":"JWT"}"#), seg(claims.to_string().as_bytes()))
}

fn parse_now(body: &str) -> Result<Token, String> {
    let now = SystemTime::now();
    parse_token(body, epoch_ms(now), Instant::now(), now)
}

#[test]
fn a_jwt_with_any_byte_outside_base64url_is_a_bad_answer() {
    let claims = serde_json::json!({"sub": "alice", "exp": epoch_ms(SystemTime::now()) / 1000 + 3600});
    let good = jwt_with(&claims, "c2ln");
    assert!(parse_now(&body_with(&good)).is_ok());
    let (head, rest) = good.split_once('.').unwrap();
    let payload = rest.split('.').next().unwrap();
    for (name, bad) in [
        ("quote", format!("{good}'$(id)'")),
        ("newline", format!("{good}\nEVIL=1")),
        ("CR", format!("{good}\rEVIL=1")),
        ("CRLF", format!("{good}\r\nX-Evil: 1")),
        ("backslash", format!("{good}\\")),
        ("NUL", format!("{good}\0")),
        ("space", format!("{good} ")),
        ("leading space", format!(" {good}")),
        ("padding", format!("{good}==")),
        ("unsigned", format!("{head}.{payload}.")),
        ("empty header", format!(".{payload}.c2ln")),
        ("two segments", format!("{head}.{payload}")),
        ("four segments", format!("{good}.c2ln")),
        ("non-ASCII", format!("{good}\u{e9}")),
        ("bidi", format!("{good}\u{202e}")),
        ("too large", jwt_with(&claims, &"A".repeat(70 * 1024))),
    ] {
        let err = parse_now(&body_with(&bad)).map(|_| ()).unwrap_err();
        assert!(err.contains("access_token"), "{name}: {err}");
        assert!(!err.contains("c2ln") && !err.contains(payload) && !err.contains("AAAA"), "{name}: {err}");
    }
}

#[test]
fn a_fractional_exp_is_accepted_and_floored() {
    let exp = (epoch_ms(SystemTime::now()) / 1000 + 3600) as f64 + 0.75;
    let token = parse_now(&body_with(&jwt_with(&serde_json::json!({"exp": exp}), "c2ln"))).unwrap();
    assert_eq!(token.jwt_exp, Some(exp.floor() as i64));
}

#[test]
fn absurd_expiries_are_clamped_into_years_1970_to_9999() {
    let now = 1_700_000_000_000;
    let end = 253_402_300_799_999;
    let check = |v: Value, want: Expiry| assert_eq!(parse_expires_in(&v, now).unwrap(), want, "{v}");
    check(serde_json::json!(300_000_000_000_000i64), Expiry::At(end));
    check(serde_json::json!(i64::MAX), Expiry::At(end));
    check(serde_json::json!(1e300), Expiry::At(end));
    check(serde_json::json!(u64::MAX), Expiry::At(end));
    // An exp past 9999 is clamped too, and the json output renders it.
    let far = jwt_with(&serde_json::json!({"exp": 1e15}), "c2ln");
    let token = parse_now(&body_with(&far)).unwrap();
    assert_eq!(token.jwt_exp, Some(end / 1000));
    let body =
        serde_json::json!({"access_token": jwt_with(&serde_json::json!({}), "c2ln"), "expires_in": i64::MAX});
    let token = parse_now(&body.to_string()).unwrap();
    assert_eq!(token.server_expiry_ms(), Some(end));
    // An exp before 1970 is a bad answer.
    let err =
        parse_now(&body_with(&jwt_with(&serde_json::json!({"exp": -5}), "c2ln"))).map(|_| ()).unwrap_err();
    assert!(err.contains("exp"), "{err}");
}

#[test]
fn a_date_header_far_from_our_clock_is_ignored() {
    let local = httpdate::parse_http_date("Sun, 06 Nov 2033 08:49:37 GMT").unwrap();
    for date in
        ["Thu, 01 Jan 1970 00:00:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 06 Nov 2034 10:49:37 GMT"]
    {
        assert_eq!(knox_clock(Some(date), local), epoch_ms(local), "{date}");
    }
    // Within the bound it is used.
    let ahead = epoch_ms(local) + 30 * 86_400_000 + 500;
    assert_eq!(knox_clock(Some("Tue, 06 Dec 2033 08:49:37 GMT"), local), ahead);
}

#[test]
fn knox_strings_that_could_forge_a_line_are_not_kept() {
    let good = jwt_with(&serde_json::json!({"knox.id": "d161cac1-f93e-4229-a0dd-3a77ab914871"}), "c2ln");
    let body = serde_json::json!({
        "access_token": good,
        "token_id": "d161cac1\n2030-01-01 INFO forged",
        "token_type": "Bearer\u{1b}[2J",
        "target_url": "https://x/\r\nforged",
        "expires_in": -1,
    });
    let token = parse_now(&body.to_string()).unwrap();
    assert_eq!(token.token_id.as_deref(), Some("d161cac1-f93e-4229-a0dd-3a77ab914871"), "the JWT's knox.id");
    assert_eq!(token.token_type, "Bearer");
    assert_eq!(token.target_url, None);
    let body = serde_json::json!({"access_token": jwt_with(&serde_json::json!({"knox.id": "x y"}), "c2ln")});
    assert_eq!(parse_now(&body.to_string()).unwrap().token_id, None);
    let long = "a".repeat(200);
    let body = serde_json::json!({"access_token": good, "token_id": long});
    assert_ne!(parse_now(&body.to_string()).unwrap().token_id.as_deref(), Some(long.as_str()));
}

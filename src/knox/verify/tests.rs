//! Table tests of each check, the refetch rule and the JWKS URL, with tokens the simulator's
//! public dev keys sign.

use std::time::{Duration, Instant, SystemTime};

use knox_sim::SimKey;
use serde_json::json;

use super::*;
use crate::knox::{Expiry, Verified};
use crate::secret::Secret;

const NOW_MS: i64 = 1_700_000_000_000;

fn key(k: SimKey) -> RsaKey {
    keys::from_pem(k.cert_pem(), "test").unwrap().remove(0)
}

/// A token as Knox issues it: `exp` an hour after [`NOW_MS`], `expires_in` to match.
fn token(jwt: &str, exp: Option<i64>, expires_in: Expiry) -> Token {
    Token {
        jwt: Secret::new(jwt),
        token_id: None,
        token_type: "Bearer".into(),
        expires_in,
        jwt_exp: exp,
        subject: None,
        managed: true,
        target_url: None,
        legacy: false,
        acquired_at: SystemTime::UNIX_EPOCH,
        renewed_at: None,
        received: Instant::now(),
        knox_now_ms: NOW_MS,
        clock_offset_ms: 0,
        verified: Verified::Off,
    }
}

#[test]
fn signature_and_kid_are_checked_against_the_candidate_keys() {
    let claims = json!({"sub": "alice", "iss": "KNOXSSO"});
    let dev_kid = SimKey::Dev.kid();
    let foreign_kid = SimKey::Foreign.kid();
    let dev = key(SimKey::Dev);
    let rotated = key(SimKey::Rotated);
    let mut jwks_named = dev.clone();
    jwks_named.kid = Some("knox-key-1".into());
    // (signer, kid in the header, keys, expected: Ok or the failed check)
    type Case<'a> = (SimKey, Option<&'a str>, Vec<RsaKey>, Result<(), &'a str>);
    let cases: Vec<Case> = vec![
        (SimKey::Dev, Some(&dev_kid), vec![dev.clone()], Ok(())),
        (SimKey::Dev, Some(&dev_kid), vec![rotated.clone(), dev.clone()], Ok(())),
        // A JWKS entry's own kid names it too.
        (SimKey::Dev, Some("knox-key-1"), vec![jwks_named], Ok(())),
        // No kid: every candidate is tried.
        (SimKey::Dev, None, vec![rotated.clone(), dev.clone()], Ok(())),
        (SimKey::Dev, None, vec![rotated.clone()], Err("signature")),
        // A kid no candidate has (a rotated key, a foreign one).
        (SimKey::Dev, Some(&dev_kid), vec![rotated.clone()], Err("kid")),
        (SimKey::Foreign, Some(&foreign_kid), vec![dev.clone()], Err("kid")),
        // A foreign signature under the right kid.
        (SimKey::Foreign, Some(&dev_kid), vec![dev.clone()], Err("signature")),
        (SimKey::Dev, Some(&dev_kid), vec![], Err("kid")),
    ];
    for (signer, kid, keys, want) in cases {
        let jwt = signer.sign(kid, &claims);
        let signed = Signed::split(&jwt).unwrap();
        let got = check_signature(&signed, &keys, "the JWKS").map_err(|f| f.check);
        assert_eq!(got, want, "{signer:?} kid {kid:?} keys {keys:?}");
        assert_eq!(signed.covered_by(&keys), want.is_ok(), "{signer:?} kid {kid:?}");
    }
    // Not RS256: refused before any key is tried.
    let seg = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let hs = format!("{}.{}.c2ln", seg(json!({"alg": "HS256"})), seg(claims.clone()));
    let err = check_signature(&Signed::split(&hs).unwrap(), std::slice::from_ref(&dev), "x").unwrap_err();
    assert_eq!(err.check, "alg");
    assert!(err.detail.contains("HS256"), "{}", err.detail);
    // A tampered claim breaks the signature.
    let jwt = SimKey::Dev.sign(Some(&dev_kid), &claims);
    let parts: Vec<&str> = jwt.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], seg(json!({"sub": "mallory"})), parts[2]);
    let err = check_signature(&Signed::split(&forged).unwrap(), &[dev], "the JWKS").unwrap_err();
    assert_eq!(err.check, "signature");
    assert!(err.detail.contains("the JWKS"), "{}", err.detail);
}

#[test]
fn claims_are_checked_for_issuer_expiry_and_agreement() {
    let exp = NOW_MS / 1000 + 3600;
    let agree = Expiry::At(exp * 1000 + 123);
    let sign = |iss: Option<&str>| {
        let mut c = json!({"sub": "alice"});
        if let Some(i) = iss {
            c["iss"] = json!(i);
        }
        SimKey::Dev.sign(None, &c)
    };
    // (iss claim, configured issuer, exp, expires_in, expected)
    type Case<'a> = (Option<&'a str>, Option<&'a str>, Option<i64>, Expiry, Result<(), &'a str>);
    let cases: Vec<Case> = vec![
        (Some("KNOXSSO"), None, Some(exp), agree, Ok(())),
        (Some("KNOXSSO"), Some("KNOXSSO"), Some(exp), agree, Ok(())),
        (Some("other"), Some("KNOXSSO"), Some(exp), agree, Err("iss")),
        (None, Some("KNOXSSO"), Some(exp), agree, Err("iss")),
        (Some("other"), None, Some(exp), agree, Ok(())),
        // Already expired on Knox's clock.
        (None, None, Some(NOW_MS / 1000), Expiry::At(NOW_MS), Err("exp")),
        (None, None, Some(NOW_MS / 1000 - 10), agree, Err("exp")),
        // exp and expires_in: 5 min apart is fine, more is not, either way.
        (None, None, Some(exp), Expiry::At(exp * 1000 + 300_000), Ok(())),
        (None, None, Some(exp), Expiry::At(exp * 1000 + 300_001), Err("expires_in")),
        (None, None, Some(exp), Expiry::At(exp * 1000 - 300_001), Err("expires_in")),
        // Only one of them: nothing to compare.
        (None, None, None, agree, Ok(())),
        (None, None, Some(exp), Expiry::Never, Ok(())),
    ];
    for (iss, issuer, exp, expires_in, want) in cases {
        let jwt = sign(iss);
        let t = token(&jwt, exp, expires_in);
        let got = check_claims(&Signed::split(&jwt).unwrap(), &t, issuer).map_err(|f| f.check);
        assert_eq!(got, want, "iss {iss:?} issuer {issuer:?} exp {exp:?} expires_in {expires_in:?}");
    }
}

#[test]
fn a_jwks_is_refetched_for_an_unknown_kid_at_most_once_a_minute() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    // (cached, usable for this token, last refetch, now, fetch?)
    let cases = [
        // Nothing cached: the first fetch.
        (false, false, None, t0, true),
        // A cached key the token names: never.
        (true, true, None, t0 + s(3600), false),
        (true, true, Some(t0), t0 + s(3600), false),
        // Unknown kid (or an unreadable JWKS): one refetch at once, then one a minute.
        (true, false, None, t0, true),
        (true, false, Some(t0), t0, false),
        (true, false, Some(t0), t0 + s(59), false),
        (true, false, Some(t0), t0 + s(60), true),
        (true, false, Some(t0), t0 + s(600), true),
        // A clock that went backwards never refetches early.
        (true, false, Some(t0 + s(10)), t0, false),
    ];
    for (cached, usable, last, now, want) in cases {
        let since = last.map(|l: Instant| now.saturating_duration_since(l));
        assert_eq!(
            should_fetch(cached, usable, last, now),
            want,
            "cached {cached} usable {usable} {since:?}"
        );
    }
}

#[test]
fn the_jwks_url_is_next_to_the_token_url() {
    let check = |token_url: &str, want: &str| {
        assert_eq!(jwks_url(&Url::parse(token_url).unwrap()).as_str(), want, "{token_url}");
    };
    let jwks = "https://h:8443/gateway/cdp/knoxtoken/api/v1/jwks.json";
    check("https://h:8443/gateway/cdp/knoxtoken/api/v1/token", jwks);
    check("https://h:8443/gateway/cdp/knoxtoken/api/v1/token/?lifespan=PT1H", jwks);
    // There is no v2 JWKS resource (docs/knox.md §1.1, §8.2).
    check("https://h:8443/gateway/cdp/knoxtoken/api/v2/token", jwks);
    check("https://h/custom/token", "https://h/custom/jwks.json");
}

#[test]
fn verified_names_round_trip() {
    for v in [Verified::Pinned, Verified::Jwks, Verified::EndpointCert, Verified::Unverified, Verified::Off] {
        assert_eq!(Verified::from_name(v.as_str()), Some(v));
    }
    assert_eq!(Verified::from_name("yes"), None);
}

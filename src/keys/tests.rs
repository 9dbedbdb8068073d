//! Table tests of key reading and RS256 checks, with the simulator's public dev keys, and
//! fuzz-like runs over truncated and mangled input, which must fail cleanly, never panic.

use base64::engine::general_purpose::STANDARD;
use knox_sim::SimKey;
use serde_json::json;

use super::*;

/// The simulator's dev key as `openssl rsa -pubout` writes it (SubjectPublicKeyInfo).
const DEV_SPKI: &str = "\
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA1yqmX2a+o5YcNZ5biY+n
JF30aTfsWKXyQlSWXBc2HuyqpWRY9jWMs/1SgUeKDI5TuLIDYb7S8hLwYhPEUZVm
0WmavuNRjQoQNsAZ/+PGdG4m2qTJXW8lL6pN3Amg2gAvlNE09c5nNhLjzY23Gti+
8fwNUTM8R2nltplKJcO+wLR5treIa+SrqW4Fwf6AdW02b4uQns78sESSiUVHA8ej
IQzp7c6HbSCnSAuBj55aClK8RlQ5WpxMGt4Opl8XG+MTpEQ9kpZqejMaL2Urrnqs
295UwaQEDWVwRPdxDXMadVkt8v5TP9YEBvfqq8pa0nyNiEvnGn+fmbOUM1e7YeEN
FwIDAQAB
-----END PUBLIC KEY-----
";

/// The same key as `openssl rsa -RSAPublicKey_out` writes it (PKCS#1).
const DEV_PKCS1: &str = "\
-----BEGIN RSA PUBLIC KEY-----
MIIBCgKCAQEA1yqmX2a+o5YcNZ5biY+nJF30aTfsWKXyQlSWXBc2HuyqpWRY9jWM
s/1SgUeKDI5TuLIDYb7S8hLwYhPEUZVm0WmavuNRjQoQNsAZ/+PGdG4m2qTJXW8l
L6pN3Amg2gAvlNE09c5nNhLjzY23Gti+8fwNUTM8R2nltplKJcO+wLR5treIa+Sr
qW4Fwf6AdW02b4uQns78sESSiUVHA8ejIQzp7c6HbSCnSAuBj55aClK8RlQ5WpxM
Gt4Opl8XG+MTpEQ9kpZqejMaL2Urrnqs295UwaQEDWVwRPdxDXMadVkt8v5TP9YE
Bvfqq8pa0nyNiEvnGn+fmbOUM1e7YeENFwIDAQAB
-----END RSA PUBLIC KEY-----
";

fn der_of(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(b64).unwrap()
}

#[test]
fn thumbprint_matches_rfc_7638s_example() {
    // RFC 7638 §3.1: the example RSA key and its SHA-256 thumbprint.
    let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
    let n = URL_SAFE_NO_PAD.decode(n).unwrap();
    assert_eq!(thumbprint(&n, &[1, 0, 1]), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    // Leading zero bytes do not change it (DER INTEGERs carry one before a high bit).
    let mut padded = vec![0];
    padded.extend_from_slice(&n);
    assert_eq!(thumbprint(&padded, &[0, 1, 0, 1]), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
}

#[test]
fn every_form_of_the_dev_key_reads_to_knoxs_kid() {
    let kid = SimKey::Dev.kid();
    let cert_pem = SimKey::Dev.cert_pem();
    let cert_der = der_of(cert_pem);
    let forms: Vec<(&str, Vec<u8>)> = vec![
        ("PEM certificate", cert_pem.as_bytes().to_vec()),
        ("PEM PUBLIC KEY", DEV_SPKI.as_bytes().to_vec()),
        ("PEM RSA PUBLIC KEY", DEV_PKCS1.as_bytes().to_vec()),
        ("DER certificate", cert_der.clone()),
        ("DER SubjectPublicKeyInfo", der_of(DEV_SPKI)),
    ];
    for (what, bytes) in forms {
        let keys = from_file_bytes(&bytes, what).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(keys.len(), 1, "{what}");
        assert_eq!(keys[0].thumbprint, kid, "{what}");
        assert_eq!(keys[0].bits(), 2048, "{what}");
    }
    // Knox's endpoint_public_cert: the DER in Base64 without armour (docs/knox.md §2.2), or PEM.
    let b64 = STANDARD.encode(&cert_der);
    assert_eq!(from_endpoint_cert(&b64, "answer").unwrap().thumbprint, kid);
    assert_eq!(from_endpoint_cert(cert_pem, "answer").unwrap().thumbprint, kid);
    // Two certificates in one file: both keys.
    let two = format!("{cert_pem}\n{}", SimKey::Rotated.cert_pem());
    let keys = from_pem(&two, "bundle").unwrap();
    assert_eq!(keys.iter().map(|k| k.thumbprint.clone()).collect::<Vec<_>>(), [kid, SimKey::Rotated.kid()]);
}

#[test]
fn jwks_documents_keep_rsa_keys_and_name_what_is_wrong() {
    let dev = &from_pem(SimKey::Dev.cert_pem(), "x").unwrap()[0];
    let n = URL_SAFE_NO_PAD.encode(&dev.n);
    let rsa = json!({"kty": "RSA", "e": "AQAB", "n": n, "kid": "k1", "use": "sig"});
    let ec = json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "kid": "ec"});
    let keys = from_jwks(&json!({"keys": [ec, rsa]}).to_string(), "jwks.json").unwrap();
    assert_eq!(keys.len(), 1, "the EC key is skipped");
    assert_eq!(keys[0].kid.as_deref(), Some("k1"));
    assert!(keys[0].is_named("k1") && keys[0].is_named(&SimKey::Dev.kid()) && !keys[0].is_named("k2"));

    // (document, words the error must hold)
    let cases = [
        ("{keys=[{kty=RSA, e=AQAB}]}".to_owned(), "not a JSON document"),
        (r#"{"key":[]}"#.to_owned(), "without a \"keys\" array"),
        (r#"{"keys":[]}"#.to_owned(), "no RSA key"),
        (json!({"keys": [ec]}).to_string(), "no RSA key"),
        (json!({"keys": [{"kty": "RSA", "e": "AQAB"}]}).to_string(), "key 0 has no string \"n\""),
        (
            json!({"keys": [{"kty": "RSA", "e": "AQAB", "n": "a+b/"}]}).to_string(),
            "key 0's \"n\" is not base64url",
        ),
        (
            json!({"keys": [{"kty": "RSA", "e": "AQAB", "n": "AAAA"}]}).to_string(),
            "key 0: the RSA key's modulus",
        ),
    ];
    for (doc, want) in cases {
        let err = from_jwks(&doc, "https://knox/jwks.json").unwrap_err();
        assert!(err.starts_with("https://knox/jwks.json: ") && err.contains(want), "{doc}: {err}");
    }
}

#[test]
fn files_that_are_not_public_keys_are_refused_by_name() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n".to_vec(),
            "holds a private key",
        ),
        (b"-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n".to_vec(), "\"FOO\" is not a certificate"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n".to_vec(), "has no END line"),
        (b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n".to_vec(), "is not Base64"),
        (b"hello".to_vec(), "neither PEM"),
        (Vec::new(), "neither PEM"),
        (vec![b'x'; MAX_KEY_BYTES + 1], "larger than"),
    ];
    for (bytes, want) in cases {
        let err = from_file_bytes(&bytes, "/etc/knox.pem").unwrap_err();
        assert!(err.starts_with("/etc/knox.pem: ") && err.contains(want), "{want}: {err}");
    }
    assert!(from_endpoint_cert("dG9rZW4ta2VlcGVy", "u").unwrap_err().contains("not a certificate"));
}

#[test]
fn truncated_or_mangled_der_fails_cleanly() {
    let cert = der_of(SimKey::Dev.cert_pem());
    for len in 0..cert.len() {
        assert!(from_der(&cert[..len]).is_err(), "a certificate cut at {len} bytes");
    }
    // Every single byte changed, in a cheap deterministic pattern: no panic, whatever comes out.
    let mut rng = fastrand::Rng::with_seed(7638);
    for i in 0..cert.len() {
        let mut m = cert.clone();
        m[i] = rng.u8(..);
        let _ = from_der(&m);
        let _ = from_file_bytes(&m, "fuzz");
    }
    for _ in 0..2000 {
        let junk: Vec<u8> = (0..rng.usize(..64)).map(|_| rng.u8(..)).collect();
        let _ = from_file_bytes(&junk, "fuzz");
        let _ = from_spki_der(&junk);
    }
    // Lengths that claim more than there is, or too many length bytes.
    for bad in
        [&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff][..], &[0x30, 0x85, 1, 1, 1, 1, 1], &[0x30, 0x80], &[0x1f, 1]]
    {
        assert!(from_der(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn rs256_signatures_verify_only_with_the_signing_key() {
    let claims = json!({"sub": "alice", "iss": "KNOXSSO"});
    let token = SimKey::Dev.sign(None, &claims);
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let dev = &from_pem(SimKey::Dev.cert_pem(), "dev").unwrap()[0];
    let foreign = &from_pem(SimKey::Foreign.cert_pem(), "foreign").unwrap()[0];
    assert!(dev.verifies("RS256", input.as_bytes(), &sig));
    assert!(!foreign.verifies("RS256", input.as_bytes(), &sig));
    assert!(!dev.verifies("RS256", format!("{input}x").as_bytes(), &sig), "another message");
    assert!(!dev.verifies("RS256", input.as_bytes(), &sig[1..]), "a cut signature");
    // The right key under another algorithm's name does not verify either.
    for alg in ["RS384", "RS512", "PS256", "HS256", "none", ""] {
        assert!(!dev.verifies(alg, input.as_bytes(), &sig), "{alg}");
    }
    for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
        assert!(rsa_algorithm(alg).is_some(), "{alg}");
    }
    assert!(format!("{dev:?}").contains("2048 bits"));
}

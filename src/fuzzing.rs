//! Entry points for fuzzing the boundaries where outside bytes enter the daemon.
//!
//! Each function takes arbitrary bytes, feeds them to one parser, and then does with an
//! accepted value what the daemon does next (schedule it, render every output format). None
//! may panic, whatever the input. The coverage-guided targets in `fuzz/` (cargo fuzz) call
//! these, and `cargo test` replays their committed corpora through the same functions
//! (`tests/it/fuzz_corpus.rs`), so an input that once found a bug stays a test.
//!
//! Every function runs on a fixed clock (2026-11-26T00:00:00Z), so a run is reproducible.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{Config, Env, Format, Validation};
use crate::knox::{answer, client};
use crate::output::{self, Published};
use crate::scheduler::Policy;

/// The fixed "now" of every fuzz run, this host's clock.
fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_651_200)
}

const FORMATS: [Format; 5] = [Format::Raw, Format::Header, Format::Env, Format::Shell, Format::Json];

/// A config file: parsed and validated; an accepted one has its lifespan request and policy
/// margins computed, as the keeper does at start.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env = Env {
        home: Some(PathBuf::from("/home/fuzz")),
        credentials_dir: Some(PathBuf::from("/run/credentials/fuzz")),
        ..Env::default()
    };
    let Ok(config) = Config::from_toml(text, "fuzz.toml", &env) else { return };
    for c in &config.clusters {
        let _ = c.requested_lifespan();
        let _ = c.env_var();
        policy(&c.policy);
    }
}

/// The scheduler's time rules for an accepted policy, at the extremes of a token's life.
fn policy(p: &Policy) {
    for lifetime in [Duration::ZERO, Duration::from_millis(1), Duration::from_secs(30), Duration::MAX] {
        let _ = p.margin(lifetime);
        let _ = p.keeps(lifetime, lifetime);
        let _ = p.keeps(Duration::ZERO, lifetime);
    }
}

/// Knox's answer to an acquisition: the first line is the `Date` header, the rest the body.
/// An accepted token is published in every format, as consumers of both kinds see it.
pub fn token_answer(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (date, body) = text.split_once('\n').unwrap_or(("", &text));
    let local = now();
    let knox_now_ms = client::knox_clock(Some(date), local);
    let Ok(token) = client::parse_token(body, knox_now_ms, Instant::now(), local) else { return };
    for v in [Validation::Jwt, Validation::Gateway] {
        let _ = token.lifetime(v);
        let _ = token.expires_at(v);
        let published = Published::new("fuzz", &token, 1, v);
        render_all(&published);
    }
}

/// Knox's answer to renew, revoke, enable or disable: two bytes of status, eight of the
/// current expiry (epoch ms), then the body.
pub fn op_answer(data: &[u8]) {
    let status = data.get(..2).map_or(200, |b| u16::from_be_bytes([b[0], b[1]]) % 600);
    let current_ms = data.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()).map_or(0, i64::from_be_bytes);
    let body = String::from_utf8_lossy(data.get(10..).unwrap_or_default());
    let a = answer::parse(&body);
    let _ = answer::renewal(status, &a, current_ms);
    let _ = answer::revocation(status, &a);
    if let Some(e) = &a.error {
        let _ = crate::text::escape(e);
    }
}

/// A published file read back (`status`, `token`, `exec`, the daemon's start): the first byte
/// picks the format, the rest is the file. An accepted token is rendered again in every format.
pub fn published(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else { return };
    let format = FORMATS[usize::from(pick) % FORMATS.len()];
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let Ok(p) = output::parse_published(format, text, "CDE_TOKEN", "fuzz") else { return };
    let _ = p.remaining_ms(now());
    let _ = p.lifetime();
    render_all(&p);
}

/// A pinned key file (`public_cert_file`, `jwks_file`) or Knox's `endpoint_public_cert`: every
/// reader of `keys`; an accepted key checks a signature (which must not verify: nothing here
/// signed it) and names a kid.
pub fn keys(data: &[u8]) {
    let mut found = crate::keys::from_file_bytes(data, "fuzz").unwrap_or_default();
    if let Ok(text) = std::str::from_utf8(data) {
        found.extend(crate::keys::from_jwks(text, "fuzz").unwrap_or_default());
        found.extend(crate::keys::from_endpoint_cert(text, "fuzz"));
    }
    for key in found {
        assert!(!key.verifies("RS256", data, data), "a signature verified that nothing made");
        let _ = key.is_named(&key.thumbprint);
        let _ = key.bits();
    }
}

fn render_all(p: &Published) {
    for format in FORMATS {
        let _ = output::render(format, p, "CDE_TOKEN");
    }
}

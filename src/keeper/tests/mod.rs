//! Table tests of the keeper's transitions, one file per decision module, with the fixtures
//! they share: a cluster parsed from TOML, tokens with a given lifetime, and [`describe`],
//! which turns effects into short lines a table can list.

use std::time::{Duration, Instant, SystemTime};

use super::effect::{Effect, Record};
use super::log::{Note, RevokeNote};
use super::slot::State;
use crate::config::{Cluster, Config, Env};
use crate::knox::{Expiry, Token};
use crate::secret::Secret;

mod adopt;
mod attempt;
mod census;
mod clocks;
mod forced;
mod reload;
mod report;
mod revoke;
mod slot;
mod sweep;
mod timers;
mod warnings;

pub(super) const S: Duration = Duration::from_secs(1);
pub(super) const MIN: Duration = Duration::from_secs(60);
pub(super) const H: Duration = Duration::from_secs(3600);

/// Knox's clock when the test tokens arrive: 2023-11-14T22:13:20Z.
pub(super) const KNOX_NOW_MS: i64 = 1_700_000_000_000;

/// The JWT of the token held before a new one: revoking it by JWT shows as "jwt".
pub(super) const OLD_JWT: &str = "e30.e30.b2xk";
/// The JWT of a newly acquired token.
pub(super) const NEW_JWT: &str = "e30.e30.bmV3";

/// An instant with room on both sides: the monotonic clock may have started minutes ago,
/// and the tables go back hours from here.
pub(super) fn t0() -> Instant {
    Instant::now() + 1000 * H
}

/// The one cluster of a config whose `[defaults]` are the scheduler's defaults without
/// jitter, so that refresh points are exact: refresh at 0.8 of the lifetime, 60 s
/// `min_remaining`, superseded tokens revoked after 2 minutes. `keys` are added to the
/// cluster's table (`consumers_validate = "gateway"`, `lifespan = "PT1H"`...).
pub(super) fn cluster(keys: &str) -> Cluster {
    let text = format!(
        r#"
[defaults]
refresh_fraction = 0.8
min_remaining = "60s"
jitter = 0.0

[[cluster]]
name = "vc"
token_url = "https://knox.example.com/gateway/t/knoxtoken/api/v1/token"
{keys}
[cluster.auth]
method = "basic"
user = "alice"
password_file = "/run/credentials/vc"
"#
    );
    let env = Env { home: Some("/home/alice".into()), credentials_dir: None, ..Env::default() };
    let config = Config::from_toml(&text, "test.toml", &env).unwrap_or_else(|e| panic!("{e}\n{text}"));
    (*config.clusters[0]).clone()
}

/// A managed token (id `id-1`, JWT [`NEW_JWT`]) that arrived at `received`, valid for
/// `lifetime` on Knox's clock (`None`: it never expires).
pub(super) fn token(received: Instant, lifetime: Option<Duration>) -> Token {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap();
    Token {
        jwt: Secret::new(NEW_JWT),
        token_id: Some("id-1".to_owned()),
        token_type: "Bearer".to_owned(),
        expires_in: lifetime.map_or(Expiry::Never, |l| Expiry::At(KNOX_NOW_MS + ms(l))),
        jwt_exp: None,
        subject: Some("alice".to_owned()),
        managed: true,
        target_url: None,
        legacy: false,
        acquired_at: SystemTime::UNIX_EPOCH + Duration::from_millis(KNOX_NOW_MS.unsigned_abs()),
        renewed_at: None,
        received,
        knox_now_ms: KNOX_NOW_MS,
        clock_offset_ms: 0,
        verified: crate::knox::Verified::Jwks,
    }
}

/// The token held before: [`token`] with id `id-0` and JWT [`OLD_JWT`].
pub(super) fn old_token(received: Instant, lifetime: Option<Duration>) -> Token {
    Token { jwt: Secret::new(OLD_JWT), token_id: Some("id-0".to_owned()), ..token(received, lifetime) }
}

/// A state holding `token` (jitter draw 0), as after it was published.
pub(super) fn holding(cluster: &Cluster, token: Token) -> State {
    let mut state = State { attempted: true, generation: 1, ..State::default() };
    state.held = Some(state.hold(cluster, &token, 0.0));
    state.token = Some(token);
    state
}

/// Effects as short lines for tables: instants are offsets from `t0`.
pub(super) fn describe(t0: Instant, effects: &[Effect]) -> Vec<String> {
    effects.iter().map(|e| effect(t0, e)).collect()
}

fn effect(t0: Instant, e: &Effect) -> String {
    match e {
        Effect::Log(note) => format!("log {}", say(note)),
        Effect::Record(Record::Published { published, renewal }) => {
            let what = if *renewal { "renewed" } else { "published" };
            format!("record {what} g{}", published.generation)
        }
        Effect::Record(Record::AcquisitionFailed) => "record acquisition failed".to_owned(),
        Effect::Record(Record::RenewalFailed(code)) => format!("record renewal failed {code}"),
        Effect::Record(Record::Revoked { ok }) => format!("record revoked ok={ok}"),
        Effect::Record(Record::Stale(error)) => format!("record stale {error:?}"),
        Effect::Record(Record::Evicted) => "record evicted".to_owned(),
        Effect::Hook { generation } => format!("hook g{generation}"),
        Effect::WriteJson(p) => format!("write json stale={} {:?}", p.stale, p.last_error),
        Effect::RemoveFiles => "remove files".to_owned(),
        Effect::Revoke { due, pending } => {
            let by = if pending.body.expose().starts_with("e30.") { "jwt" } else { pending.body.expose() };
            let after = due.saturating_duration_since(t0);
            format!("revoke {} by {by} at {after:?} (try {})", pending.id(), pending.attempts + 1)
        }
        Effect::FirstAttempt => "first attempt".to_owned(),
        Effect::Replan => "replan".to_owned(),
    }
}

/// A note as a short line.
pub(super) fn say(note: &Note) -> String {
    match note {
        Note::Published(p) => {
            let what = if p.renewal { "renewed" } else { "published" };
            format!("{what} {} g{} next {:?}", p.token_id, p.generation, p.next_refresh_in)
        }
        Note::Adopted { generation, next_refresh_in, .. } => {
            format!("adopted g{generation} next {next_refresh_in:?}")
        }
        Note::Expired => "expired".to_owned(),
        Note::Legacy => "legacy".to_owned(),
        Note::LifespanCap { got, asked, .. } => format!("lifespan cap {got:?} < {asked:?}"),
        Note::ShortToken { lifetime, min_valid, .. } => format!("short token {lifetime:?} < {min_valid:?}"),
        Note::RenewalRefused { token_id, reason } => format!("renewal of {token_id} refused: {reason:?}"),
        Note::RenewalStopped { reason } => format!("renewal stopped: {reason:?}"),
        Note::Evicted { token_id, reason } => format!("evicted {token_id}: {reason}"),
        Note::RefreshFailed(f) => {
            let level = if f.loud { "error" } else { "warn" };
            let retry = f.retry_in.map_or_else(|| "now".to_owned(), |d| format!("{d:?}"));
            format!("{level} failure {} (status {:?}), retry in {retry}", f.failures, f.status)
        }
        Note::Revoke(r) => match r {
            RevokeNote::Revoked { token_id } => format!("revoked {token_id}"),
            RevokeNote::AlreadyGone { token_id } => format!("already gone {token_id}"),
            RevokeNote::Stopped { token_id, not_authorized } => {
                format!("revocation stopped at {token_id} (not authorized: {not_authorized})")
            }
            RevokeNote::GaveUp { token_id, attempts, why } => {
                format!("gave up {token_id} after {attempts}: {why}")
            }
            RevokeNote::Retry { token_id, why, wait } => format!("retry {token_id} in {wait:?}: {why}"),
            RevokeNote::ClusterGone { token_id } => format!("cluster gone {token_id}"),
            RevokeNote::LeftAtExit { token_id } => format!("left at exit {token_id}"),
        },
    }
}

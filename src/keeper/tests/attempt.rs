//! The refresh cycle: what comes next for a cluster, and what an attempt's outcome leads to.

use std::time::{Duration, Instant};

use super::super::attempt::{
    finish, left, next, stale, AttemptError, Attempted, Done, Draws, Start, Step, Work,
};
use super::super::slot::{Forced, SlotId, State};
use super::{cluster, describe, holding, old_token, say, t0, token, H, MIN, S};
use crate::config::Cluster;
use crate::knox::answer::Reason;
use crate::knox::{Flavor, KnoxError, Token};
use crate::scheduler::{ErrorClass, Failures};

/// The state in a few words: token, generation, failures, and whatever is set of the rest.
fn sketch(t0: Instant, s: &State) -> String {
    let mut out = format!(
        "{} g{} failures {}",
        s.token.as_ref().map_or("none", Token::id),
        s.generation,
        s.failures.map_or(0, |f| f.count)
    );
    let flags = [
        (s.in_flight, "in-flight"),
        (!s.attempted, "unattempted"),
        (s.held.is_some_and(|h| h.renewable), "renewable"),
        (s.renew_refused, "renew-refused"),
        (s.stale.is_some(), "stale"),
        (s.expired_removed, "removed"),
        (s.said.expired, "said-expired"),
        (s.forced.in_flight, "forced-in-flight"),
    ];
    for (set, word) in flags {
        if set {
            out += " ";
            out += word;
        }
    }
    for (name, t) in [("forced", s.forced.due), ("gate", s.forced.gate)] {
        if let Some(t) = t {
            out += &format!(" {name} +{:?}", t.saturating_duration_since(t0));
        }
    }
    out
}

fn step(t0: Instant, s: &Option<Step>) -> String {
    match s {
        None => "-".to_owned(),
        Some(Step::WakeAt(t)) => format!("wake +{:?}", t.saturating_duration_since(t0)),
        Some(Step::Start(Start::Acquire { generation, .. })) => format!("acquire g{generation}"),
        Some(Step::Start(Start::Renew { token, generation, .. })) => {
            format!("renew {} g{generation}", token.id())
        }
    }
}

fn failed(count: u32, last: Instant) -> Option<Failures> {
    Some(Failures { count, last, sample: 0.5, class: ErrorClass::Transient })
}

/// The fixtures of the `next` tables: clusters, and a state holding a token that arrived
/// `age` ago.
struct Next {
    t0: Instant,
    jwt: Cluster,
    gw: Cluster,
}

impl Next {
    fn new() -> Next {
        Next { t0: t0(), jwt: cluster(""), gw: cluster("consumers_validate = \"gateway\"") }
    }

    fn held(&self, c: &Cluster, age: Duration, lifetime: Option<Duration>) -> State {
        holding(c, token(self.t0 - age, lifetime))
    }

    /// `check(cluster, state, "note | step | state afterwards")` for each row.
    fn check(&self, rows: Vec<(&Cluster, State, &str)>) {
        for (i, (c, mut state, expected)) in rows.into_iter().enumerate() {
            let (n, s) = next(&mut state, c, self.t0);
            let note = n.as_ref().map_or("-".to_owned(), say);
            let got = format!("{note} | {} | {}", step(self.t0, &s), sketch(self.t0, &state));
            assert_eq!(got, expected, "row {i}");
        }
    }
}

#[test]
fn what_comes_next_is_plans_action() {
    let f = Next::new();
    let (t0, jwt, gw) = (f.t0, &f.jwt, &f.gw);
    // Renewal refused for good: the token is held as not renewable.
    let refusing = |mut s: State| {
        s.renew_refused = true;
        s.held.as_mut().expect("held").renewable = false;
        s
    };
    f.check(vec![
        (jwt, State::default(), "- | acquire g1 | none g0 failures 0 in-flight unattempted"),
        (jwt, State { in_flight: true, ..f.held(jwt, H, Some(H)) }, "- | - | id-1 g1 failures 0 in-flight"),
        (jwt, f.held(jwt, Duration::ZERO, Some(H)), "- | wake +2880s | id-1 g1 failures 0"),
        (jwt, f.held(jwt, 2879 * S, Some(H)), "- | wake +1s | id-1 g1 failures 0"),
        (jwt, f.held(jwt, 2880 * S, Some(H)), "- | acquire g2 | id-1 g1 failures 0 in-flight"),
        // Past the refresh point a renewable token is renewed, as the same generation.
        (gw, f.held(gw, 2880 * S, Some(H)), "- | renew id-1 g1 | id-1 g1 failures 0 in-flight renewable"),
        (
            gw,
            refusing(f.held(gw, 2880 * S, Some(H))),
            "- | acquire g2 | id-1 g1 failures 0 in-flight renew-refused",
        ),
        (jwt, f.held(jwt, H, None), "- | - | id-1 g1 failures 0"), // never expires: idle
        // After a failure, the backoff (transient, sample 0.5: 0.5 s, then 1 s, 2 s...).
        (
            jwt,
            State { failures: failed(1, t0), ..State::default() },
            "- | wake +500ms | none g0 failures 1 unattempted",
        ),
        (
            jwt,
            State { failures: failed(3, t0 - S), ..State::default() },
            "- | wake +1s | none g0 failures 3 unattempted",
        ),
        (
            jwt,
            State { failures: failed(1, t0 - S), ..State::default() },
            "- | acquire g1 | none g0 failures 1 in-flight unattempted",
        ),
        // An expired token is said once, then retried as its backoff says.
        (
            jwt,
            State { failures: failed(9, t0), ..f.held(jwt, 2 * H, Some(H)) },
            "expired | wake +128s | id-1 g1 failures 9 said-expired",
        ),
        (
            jwt,
            State { failures: failed(1, t0 - S), ..f.held(jwt, H, Some(H)) },
            "expired | acquire g2 | id-1 g1 failures 1 in-flight said-expired",
        ),
    ]);
    let mut said = State { failures: failed(9, t0), ..f.held(jwt, 2 * H, Some(H)) };
    said.said.expired = true;
    f.check(vec![(jwt, said, "- | wake +128s | id-1 g1 failures 9 said-expired")]);
    // Generations read back from a file may be anything: the next one saturates.
    let mut state = State { generation: u64::MAX, ..State::default() };
    let (_, s) = next(&mut state, jwt, t0);
    assert_eq!(step(t0, &s), format!("acquire g{}", u64::MAX));
}

#[test]
fn a_requested_refresh_joins_what_comes_next() {
    let f = Next::new();
    let (t0, jwt, gw) = (f.t0, &f.jwt, &f.gw);
    let forced = |due| Forced { due: Some(due), in_flight: false, gate: None };
    f.check(vec![
        // Due now it acquires (even instead of a renewal), and counts as requested.
        (
            jwt,
            State { forced: forced(t0), ..f.held(jwt, S, None) },
            "- | acquire g2 | id-1 g1 failures 0 in-flight forced-in-flight",
        ),
        (
            gw,
            State { forced: forced(t0 - S), ..f.held(gw, 2880 * S, Some(H)) },
            "- | acquire g2 | id-1 g1 failures 0 in-flight renewable forced-in-flight",
        ),
        // Later it is a wake-up...
        (
            jwt,
            State { forced: forced(t0 + 5 * S), ..f.held(jwt, S, None) },
            "- | wake +5s | id-1 g1 failures 0 forced +5s",
        ),
        (
            jwt,
            State { forced: forced(t0 + 5 * S), ..f.held(jwt, Duration::ZERO, Some(H)) },
            "- | wake +5s | id-1 g1 failures 0 forced +5s",
        ),
        (
            jwt,
            State { forced: forced(t0 + H), ..f.held(jwt, Duration::ZERO, Some(H)) },
            "- | wake +2880s | id-1 g1 failures 0 forced +3600s",
        ),
        // ...unless plan acts first: that attempt absorbs the request, as not requested.
        (
            jwt,
            State { forced: forced(t0 + 5 * S), ..State::default() },
            "- | acquire g1 | none g0 failures 0 in-flight unattempted",
        ),
        (
            gw,
            State { forced: forced(t0 + 5 * S), ..f.held(gw, 2880 * S, Some(H)) },
            "- | renew id-1 g1 | id-1 g1 failures 0 in-flight renewable",
        ),
        // An attempt in flight keeps the request for later.
        (
            jwt,
            State { in_flight: true, forced: forced(t0), ..f.held(jwt, S, None) },
            "- | - | id-1 g1 failures 0 in-flight forced +0ns",
        ),
    ]);
}

fn transient() -> AttemptError {
    AttemptError::Knox(KnoxError::Transport { url: "https://knox".to_owned(), detail: "refused".to_owned() })
}

fn done(generation: u64, work: Work, result: Result<Attempted, AttemptError>) -> Done {
    Done { generation, work, flavor: Flavor::V1Put, result }
}

/// The fixtures of the outcome tables.
struct Outcomes {
    t0: Instant,
    jwt: Cluster,
    gw: Cluster,
}

impl Outcomes {
    fn new() -> Outcomes {
        Outcomes { t0: t0(), jwt: cluster(""), gw: cluster("consumers_validate = \"gateway\"") }
    }

    /// A token that arrived now, valid for 1 h.
    fn new_token(&self) -> Token {
        token(self.t0, Some(H))
    }

    /// An attempt in flight for `c`, holding a token (`token`) that arrived `age` ago.
    fn holding(&self, c: &Cluster, token: fn(Instant, Option<Duration>) -> Token, age: Duration) -> State {
        State { in_flight: true, ..holding(c, token(self.t0 - age, Some(H))) }
    }

    fn acquired(&self, generation: u64) -> Done {
        done(generation, Work::Acquire, Ok(Attempted::Acquired(self.new_token())))
    }

    /// `check(cluster, state before, outcome, "effects; ...", state afterwards)` per row.
    /// A stale json's error message is left out (the stale table checks it).
    fn check(&self, rows: Vec<(&Cluster, State, Done, &str, &str)>) {
        for (i, (c, mut state, done, effects, after)) in rows.into_iter().enumerate() {
            let got = finish(&mut state, c, SlotId(1), done, self.t0, Draws { jitter: 0.0, backoff: 0.5 });
            let got: Vec<String> = describe(self.t0, &got)
                .into_iter()
                .map(|e| match e {
                    e if e.starts_with("record stale") => "stale".to_owned(),
                    e if e.starts_with("write json") => "write json".to_owned(),
                    e => e,
                })
                .collect();
            assert_eq!(got.join("; "), effects, "row {i}");
            assert_eq!(sketch(self.t0, &state), after, "row {i}");
            assert_eq!(state.flavor, Flavor::V1Put, "the flavour Knox answered to is kept: row {i}");
        }
    }
}

#[test]
fn a_new_token_is_held_and_the_one_it_replaces_revoked() {
    let f = Outcomes::new();
    let jwt = &f.jwt;
    let hooked = cluster("[cluster.on_change]\nsignal = \"HUP\"\npid_file = \"/run/app.pid\"");
    let first = State { in_flight: true, ..State::default() };
    let unmanaged = |t, l| Token { managed: false, ..old_token(t, l) };
    let legacy = Token { legacy: true, managed: false, ..f.new_token() };
    let failing = State {
        failures: failed(4, f.t0 - S),
        stale: Some("boom".to_owned()),
        expired_removed: true,
        ..f.holding(jwt, old_token, 2 * H)
    };
    f.check(vec![
        // The first token: published, and counted for the first round.
        (jwt, first.clone(), f.acquired(1), "first attempt; log published id-1 g1 next Some(2880s); record published g1; replan", "id-1 g1 failures 0"),
        // A replacement: the old managed token is revoked 2 min later (or when it expires).
        (jwt, f.holding(jwt, old_token, 50 * MIN), f.acquired(2), "log published id-1 g2 next Some(2880s); record published g2; revoke id-0 by id-0 at 120s (try 1); replan", "id-1 g2 failures 0"),
        (jwt, f.holding(jwt, old_token, H - S), f.acquired(2), "log published id-1 g2 next Some(2880s); record published g2; revoke id-0 by id-0 at 1s (try 1); replan", "id-1 g2 failures 0"),
        (&hooked, f.holding(jwt, old_token, 50 * MIN), f.acquired(2), "log published id-1 g2 next Some(2880s); record published g2; hook g2; revoke id-0 by id-0 at 120s (try 1); replan", "id-1 g2 failures 0"),
        (jwt, f.holding(jwt, unmanaged, 50 * MIN), f.acquired(2), "log published id-1 g2 next Some(2880s); record published g2; replan", "id-1 g2 failures 0"),
        // Knox before 1.6 is said once per cluster (see the warnings table).
        (jwt, State { attempted: true, ..first.clone() }, done(1, Work::Acquire, Ok(Attempted::Acquired(legacy))), "log published id-1 g1 next Some(2880s); log legacy; record published g1; replan", "id-1 g1 failures 0"),
        // A success clears failures and staleness.
        (jwt, failing, f.acquired(2), "log published id-1 g2 next Some(2880s); record published g2; revoke id-0 by id-0 at 0ns (try 1); replan", "id-1 g2 failures 0"),
    ]);
}

#[test]
fn a_renewal_or_its_refusal_keeps_the_generation() {
    let f = Outcomes::new();
    let gw = &f.gw;
    let renewing = |failures| State { failures, ..f.holding(gw, token, 50 * MIN) };
    let refused = |reason| done(1, Work::Renew, Ok(Attempted::RenewRefused(reason)));
    let stopped = State { renew_refused: true, ..renewing(None) };
    f.check(vec![
        (gw, renewing(failed(1, f.t0 - S)), done(1, Work::Renew, Ok(Attempted::Renewed(f.new_token()))), "log renewed id-1 g1 next Some(2880s); record renewed g1; replan", "id-1 g1 failures 0 renewable"),
        // Refused for good: renewal stops for the cluster, said once.
        (gw, renewing(None), refused(Reason::NotAuthorized), "record renewal failed 20; log renewal of id-1 refused: NotAuthorized; log renewal stopped: NotAuthorized; replan", "id-1 g1 failures 0 renew-refused"),
        (gw, renewing(None), refused(Reason::NotExtended), "record renewal failed 200; log renewal of id-1 refused: NotExtended; log renewal stopped: NotExtended; replan", "id-1 g1 failures 0 renew-refused"),
        (gw, stopped, refused(Reason::NotExtended), "record renewal failed 200; log renewal of id-1 refused: NotExtended; replan", "id-1 g1 failures 0 renew-refused"),
        // Other refusals only make this token be replaced, and clear the failures.
        (gw, renewing(failed(2, f.t0 - S)), refused(Reason::Expired), "record renewal failed 90; log renewal of id-1 refused: Expired; replan", "id-1 g1 failures 0"),
        (gw, renewing(None), refused(Reason::InvalidToken), "record renewal failed 40; log renewal of id-1 refused: InvalidToken; replan", "id-1 g1 failures 0"),
    ]);
}

#[test]
fn a_failure_is_counted_said_and_backed_off() {
    let f = Outcomes::new();
    let (jwt, gw) = (&f.jwt, &f.gw);
    let knox = |e| done(1, Work::Acquire, Err(AttemptError::Knox(e)));
    let attempted = |failures| State { attempted: true, in_flight: true, failures, ..State::default() };
    let quota = KnoxError::TokenLimitExceeded { url: "u".to_owned() };
    let unauthorized = KnoxError::Unauthorized { url: "u".to_owned(), challenge: None };
    let unavailable = KnoxError::Server {
        url: "u".to_owned(),
        status: reqwest::StatusCode::SERVICE_UNAVAILABLE,
        snippet: String::new(),
    };
    let unwritable = AttemptError::Publish("none of the 2 outputs could be written".to_owned());
    let renewal = |e| done(1, Work::Renew, Err(e));
    f.check(vec![
        (jwt, State { in_flight: true, ..State::default() }, done(1, Work::Acquire, Err(transient())), "first attempt; record acquisition failed; log warn failure 1 (status None), retry in 500ms; replan", "none g0 failures 1"),
        // An error from the third in a row on, or for the quota; backoff by class.
        (jwt, attempted(failed(1, f.t0 - S)), done(1, Work::Acquire, Err(transient())), "record acquisition failed; log warn failure 2 (status None), retry in 1s; replan", "none g0 failures 2"),
        (jwt, attempted(failed(2, f.t0 - S)), done(1, Work::Acquire, Err(transient())), "record acquisition failed; log error failure 3 (status None), retry in 2s; replan", "none g0 failures 3"),
        (jwt, attempted(None), knox(quota), "record acquisition failed; log error failure 1 (status Some(403)), retry in 60s; replan", "none g0 failures 1"),
        (jwt, attempted(None), knox(unauthorized), "record acquisition failed; log warn failure 1 (status Some(401)), retry in 7.5s; replan", "none g0 failures 1"),
        (jwt, attempted(None), done(1, Work::Acquire, Err(unwritable)), "record acquisition failed; log warn failure 1 (status None), retry in 500ms; replan", "none g0 failures 1"),
        // A renewal's failure is counted by its status; past the refresh point it is stale.
        (gw, f.holding(gw, token, 50 * MIN), renewal(AttemptError::Knox(unavailable)), "record renewal failed 503; log warn failure 1 (status Some(503)), retry in 500ms; stale; write json; replan", "id-1 g1 failures 1 renewable stale"),
        (gw, f.holding(gw, token, 10 * MIN), renewal(transient()), "record renewal failed none; log warn failure 1 (status None), retry in 500ms; replan", "id-1 g1 failures 1 renewable"),
        // Near expiry the retry never sleeps past the last safe point (59 min) or the expiry.
        (jwt, State { failures: failed(8, f.t0 - S), ..f.holding(jwt, token, 58 * MIN) }, done(2, Work::Acquire, Err(transient())), "record acquisition failed; log error failure 9 (status None), retry in 60s; stale; write json; replan", "id-1 g1 failures 9 stale"),
        (jwt, State { failures: failed(8, f.t0 - S), ..f.holding(jwt, token, 59 * MIN + 30 * S) }, done(2, Work::Acquire, Err(transient())), "record acquisition failed; log error failure 9 (status None), retry in 30s; stale; write json; replan", "id-1 g1 failures 9 stale"),
    ]);
}

#[test]
fn shutdown_changes_only_the_bookkeeping() {
    let f = Outcomes::new();
    let cancelled = || done(1, Work::Acquire, Err(AttemptError::Cancelled));
    let held = f.holding(&f.jwt, token, MIN);
    f.check(vec![
        (
            &f.jwt,
            State { in_flight: true, ..State::default() },
            cancelled(),
            "first attempt",
            "none g0 failures 0",
        ),
        (&f.jwt, held, cancelled(), "", "id-1 g1 failures 0"),
    ]);
}

#[test]
fn a_requested_attempt_spaces_out_the_next_request_by_what_it_cost() {
    let t0 = t0();
    let c = cluster("");
    let requested = State {
        in_flight: true,
        forced: Forced { due: None, in_flight: true, gate: Some(t0 - MIN) },
        ..State::default()
    };
    // (outcome, requested?) → gate afterwards
    let ok = || Ok(Attempted::Acquired(token(t0, Some(H))));
    let cases: Vec<(Result<Attempted, AttemptError>, bool, Option<Duration>)> = vec![
        (ok(), true, Some(10 * S)),
        (Err(transient()), true, Some(Duration::from_millis(100))),
        (Ok(Attempted::RenewRefused(Reason::Expired)), true, Some(Duration::from_millis(100))),
        (Err(AttemptError::Cancelled), true, None), // the old gate stays (it is past)
        (ok(), false, None),
    ];
    for (i, (result, was_requested, gate)) in cases.into_iter().enumerate() {
        let mut state =
            State { forced: Forced { in_flight: was_requested, ..requested.forced }, ..requested.clone() };
        finish(
            &mut state,
            &c,
            SlotId(1),
            done(1, Work::Acquire, result),
            t0,
            Draws { jitter: 0.0, backoff: 0.5 },
        );
        let expected = gate.map_or(Some(t0 - MIN), |g| Some(t0 + g));
        assert_eq!(state.forced.gate, expected, "row {i}");
        assert!(!state.forced.in_flight && !state.in_flight, "row {i}");
    }
}

#[test]
fn a_failure_says_what_is_still_published() {
    let t0 = t0();
    let c = cluster("");
    let held = |age, lifetime| holding(&c, token(t0 - age, lifetime)).held;
    let cases = [
        (None, "no token is published yet"),
        (held(S, None), "the last good token stays published"),
        (held(Duration::ZERO, Some(H)), "the last good token stays published, 1h left"),
        (held(H - 90 * S, Some(H)), "the last good token stays published, 1m left"),
        (held(H - Duration::from_millis(1), Some(H)), "the last good token stays published, 1ms left"),
        (held(H, Some(H)), "the last good token has expired"),
        (held(2 * H, Some(H)), "the last good token has expired"),
    ];
    for (held, expected) in cases {
        assert_eq!(left(held, t0), expected, "{held:?}");
    }
}

#[test]
fn refreshing_that_fails_past_the_refresh_point_marks_the_json_stale() {
    let t0 = t0();
    let plain = cluster("");
    let removing = cluster("remove_expired = true");
    // Held tokens that arrived `age` ago, valid for 1 h: the refresh point is at 48 min.
    let held = |c: &Cluster, age| holding(c, token(t0 - age, Some(H)));
    let stale_with = |s: State, m: &str| State { stale: Some(m.to_owned()), ..s };
    let cases: Vec<(&Cluster, State, Vec<&str>, bool)> = vec![
        (&plain, State::default(), vec![], false),
        (&plain, held(&plain, 47 * MIN), vec![], false),
        (
            &plain,
            held(&plain, 48 * MIN),
            vec!["record stale Some(\"boom\")", "write json stale=true Some(\"boom\")"],
            false,
        ),
        // Said again only when the error changes.
        (&plain, stale_with(held(&plain, 50 * MIN), "boom"), vec![], false),
        (
            &plain,
            stale_with(held(&plain, 50 * MIN), "bang"),
            vec!["record stale Some(\"boom\")", "write json stale=true Some(\"boom\")"],
            false,
        ),
        // Expired: with remove_expired its files go, once per token.
        (&plain, stale_with(held(&plain, 2 * H), "boom"), vec![], false),
        (&removing, stale_with(held(&removing, 2 * H), "boom"), vec!["remove files"], true),
        (&removing, stale_with(held(&removing, H), "boom"), vec!["remove files"], true),
        (
            &removing,
            State { expired_removed: true, ..stale_with(held(&removing, 2 * H), "boom") },
            vec![],
            true,
        ),
        (
            &removing,
            held(&removing, 59 * MIN),
            vec!["record stale Some(\"boom\")", "write json stale=true Some(\"boom\")"],
            false,
        ),
        // A token that never expires has no refresh point.
        (&plain, holding(&plain, token(t0 - H, None)), vec![], false),
    ];
    for (i, (c, mut state, expected, removed)) in cases.into_iter().enumerate() {
        let effects = stale(&mut state, c, "boom", t0);
        assert_eq!(describe(t0, &effects), expected, "row {i}");
        assert_eq!(state.expired_removed, removed, "row {i}");
        if !expected.is_empty() && !expected[0].starts_with("remove") {
            assert_eq!(state.stale.as_deref(), Some("boom"), "row {i}");
        }
    }
    // The json written is the held token's, marked stale.
    let mut state = held(&plain, 50 * MIN);
    let effects = stale(&mut state, &plain, "boom", t0);
    let Some(super::super::effect::Effect::WriteJson(p)) = effects.last() else { panic!("{effects:?}") };
    assert_eq!((p.generation, p.token_id.as_deref(), p.expires_at_ms.is_some()), (1, Some("id-1"), true));
}

//! Table tests and property tests for `plan` and `backoff`.

use super::*;
use proptest::prelude::*;

const S: Duration = Duration::from_secs(1);

fn policy(fraction: f64, min_remaining_s: u64, jitter: f64) -> Policy {
    Policy { refresh_fraction: fraction, min_remaining: S * min_remaining_s as u32, jitter }
}

fn held(t0: Instant, lifetime: Option<Duration>, jitter_sample: f64) -> Held {
    Held { issued: t0, expires: lifetime.map(|l| t0 + l), jitter_sample, renewable: false }
}

/// `check(view, now offset, policy, expected offset or Acquire/Idle)`, all offsets from t0.
fn check(view: impl Fn(Instant) -> View, now: Duration, policy: Policy, expected: Expect) {
    let t0 = Instant::now();
    let got = plan(t0 + now, &view(t0), &policy);
    let want = match expected {
        Expect::Acquire => Action::Acquire,
        Expect::Renew => Action::Renew,
        Expect::Idle => Action::Idle,
        Expect::At(d) => Action::WaitUntil(t0 + d),
    };
    assert_eq!(got, want, "now=+{now:?} policy={policy:?}");
}

#[derive(Debug)]
enum Expect {
    Acquire,
    Renew,
    Idle,
    At(Duration),
}

#[test]
fn plan_table() {
    let p = policy(0.8, 60, 0.0);
    // Nothing held, no failures: acquire.
    check(|_| View::default(), Duration::ZERO, p, Expect::Acquire);
    // 1 h token: 0.8 × 3600 = 2880 s is earlier than 3600 − 60.
    check(|t| View { held: Some(held(t, Some(S * 3600), 0.0)), failures: None }, S, p, Expect::At(S * 2880));
    // The fraction point has passed: acquire.
    check(
        |t| View { held: Some(held(t, Some(S * 3600), 0.0)), failures: None },
        S * 2880,
        p,
        Expect::Acquire,
    );
    // 200 s token with fraction 0.95: min_remaining wins (200 − 60 = 140 < 190).
    check(
        |t| View { held: Some(held(t, Some(S * 200), 0.0)), failures: None },
        S,
        policy(0.95, 60, 0.0),
        Expect::At(S * 140),
    );
    // Short-lived (3 s) token with a 60 s min_remaining: margin is half the lifetime.
    check(
        |t| View { held: Some(held(t, Some(S * 3), 0.0)), failures: None },
        Duration::ZERO,
        p,
        Expect::At(Duration::from_millis(1500)),
    );
    // Never expires: idle.
    check(|t| View { held: Some(held(t, None, 0.5)), failures: None }, S, p, Expect::Idle);
    // Jitter only ever moves the point earlier: 5% of 1000 s × 0.5 = 25 s off 800 s.
    check(
        |t| View { held: Some(held(t, Some(S * 1000), 0.5)), failures: None },
        S,
        policy(0.8, 60, 0.05),
        Expect::At(S * 775),
    );
}

#[test]
fn plan_backoff_table() {
    let p = policy(0.8, 60, 0.0);
    let fail =
        |t: Instant, count, sample| Some(Failures { count, last: t, sample, class: ErrorClass::Transient });
    // First failure, nothing held: retry after at most ~1 s (full jitter).
    check(
        |t| View { held: None, failures: fail(t, 1, 0.999) },
        Duration::ZERO,
        p,
        Expect::At(Duration::from_millis(999)),
    );
    // Full jitter never goes below the floor.
    check(|t| View { held: None, failures: fail(t, 1, 0.0) }, Duration::ZERO, p, Expect::At(MIN_RETRY));
    // Doubling: the 4th failure waits up to 8 s.
    check(|t| View { held: None, failures: fail(t, 4, 0.5) }, Duration::ZERO, p, Expect::At(S * 4));
    // Capped at 5 minutes.
    check(
        |t| View { held: None, failures: fail(t, 30, 0.999_999) },
        Duration::ZERO,
        p,
        Expect::At(BACKOFF_CAP.mul_f64(0.999_999)),
    );
    // A held 1 h token: a 300 s backoff that would pass the last safe point (3540 s) is cut.
    check(
        |t| View {
            held: Some(held(t, Some(S * 3600), 0.0)),
            failures: Some(Failures {
                count: 20,
                last: t + S * 3400,
                sample: 0.999,
                class: ErrorClass::Transient,
            }),
        },
        S * 3400,
        p,
        Expect::At(S * 3540),
    );
    // Past the last safe point, the limit becomes the expiry itself.
    check(
        |t| View {
            held: Some(held(t, Some(S * 3600), 0.0)),
            failures: Some(Failures {
                count: 20,
                last: t + S * 3550,
                sample: 0.999,
                class: ErrorClass::Transient,
            }),
        },
        S * 3550,
        p,
        Expect::At(S * 3600),
    );
    // Due already: acquire.
    check(|t| View { held: None, failures: fail(t, 1, 0.5) }, S * 2, p, Expect::Acquire);
}

#[test]
fn a_policy_with_jitter_as_large_as_the_fraction_still_keeps_tokens_a_while() {
    // 0.05 − 0.05 would refresh at issue time: a loop. The floor keeps it at least 1 s (or half
    // of a shorter lifetime).
    let p = policy(0.05, 1, 0.05);
    check(
        |t| View { held: Some(held(t, Some(S * 3600), 0.999_999)), failures: None },
        Duration::ZERO,
        p,
        Expect::At(S),
    );
    check(
        |t| View { held: Some(held(t, Some(Duration::from_millis(600)), 0.999_999)), failures: None },
        Duration::ZERO,
        p,
        Expect::At(Duration::from_millis(300)),
    );
}

#[test]
fn renewable_tokens_are_renewed_when_due() {
    let p = policy(0.8, 60, 0.0);
    let renewable = |t: Instant| {
        let mut h = held(t, Some(S * 3600), 0.0);
        h.renewable = true;
        h
    };
    check(|t| View { held: Some(renewable(t)), failures: None }, S * 2880, p, Expect::Renew);
    check(|t| View { held: Some(renewable(t)), failures: None }, S, p, Expect::At(S * 2880));
    // A failed renewal is retried as a renewal.
    let failed = |t: Instant| {
        Some(Failures { count: 1, last: t + S * 2880, sample: 0.5, class: ErrorClass::Transient })
    };
    check(|t| View { held: Some(renewable(t)), failures: failed(t) }, S * 2881, p, Expect::Renew);
}

#[test]
fn slower_classes_back_off_longer() {
    for count in 1..20 {
        for sample in [0.0, 0.3, 0.999] {
            let t = backoff(count, sample, ErrorClass::Transient);
            let r = backoff(count, sample, ErrorClass::Rejected);
            let q = backoff(count, sample, ErrorClass::Quota);
            assert!(t <= r && r <= q, "count {count} sample {sample}: {t:?} {r:?} {q:?}");
        }
    }
    assert!(backoff(1, 0.0, ErrorClass::Quota) >= S * 60, "the token limit backs off in minutes");
    assert_eq!(backoff(1, 0.999_999_9, ErrorClass::Rejected).as_secs(), 14);
}

#[test]
fn a_suspend_moves_the_token_closer_to_expiry() {
    let t0 = Instant::now() + S * 100;
    let h = held(t0, Some(S * 3600), 0.0);
    let after = h.shifted_back(S * 600);
    assert_eq!(after.issued, t0 - S * 600);
    assert_eq!(after.expires, Some(t0 + S * 3000));
    assert_eq!(after.lifetime(), h.lifetime());
    // Ten minutes asleep: the refresh point (2880 s) is now 600 s sooner.
    assert_eq!(after.refresh_at(&policy(0.8, 60, 0.0)), Some(t0 + S * 2280));
}

#[test]
fn one_shot_retries_stop_at_the_deadline_or_a_lasting_failure() {
    let now = Instant::now();
    let s = Duration::from_secs;
    // (count, transient, deadline from now, expected wait); sample 0.999 makes the backoff
    // its cap for `count` (1 s, 2 s, 4 s, ... for transient failures).
    let rows: &[(u32, bool, Duration, Option<Duration>)] = &[
        (1, true, s(30), Some(backoff(1, 0.999, ErrorClass::Transient))),
        (3, true, s(30), Some(backoff(3, 0.999, ErrorClass::Transient))),
        (1, false, s(30), None),
        (5, true, s(0), None),
        (20, true, s(30), None),
        (20, true, s(3600), Some(backoff(20, 0.999, ErrorClass::Transient))),
    ];
    for &(count, transient, until, want) in rows {
        let got = retry_before(count, 0.999, ErrorClass::Transient, transient, now, now + until);
        assert_eq!(got, want, "count {count}, transient {transient}, deadline +{until:?}");
    }
    // A retry that would start exactly at the deadline does not happen.
    let wait = backoff(2, 0.5, ErrorClass::Transient);
    assert_eq!(retry_before(2, 0.5, ErrorClass::Transient, true, now, now + wait), None);
    assert_eq!(retry_before(2, 0.5, ErrorClass::Transient, true, now, now + wait + s(1)), Some(wait));
}

#[test]
fn backoff_doubles_and_caps() {
    assert_eq!(backoff(1, 1.0, ErrorClass::Transient), S);
    assert_eq!(backoff(2, 1.0, ErrorClass::Transient), S * 2);
    assert_eq!(backoff(3, 1.0, ErrorClass::Transient), S * 4);
    assert_eq!(backoff(9, 1.0, ErrorClass::Transient), S * 256);
    assert_eq!(backoff(10, 1.0, ErrorClass::Transient), BACKOFF_CAP);
    assert_eq!(backoff(u32::MAX, 1.0, ErrorClass::Transient), BACKOFF_CAP);
    assert_eq!(backoff(1, 0.0, ErrorClass::Transient), MIN_RETRY);
}

fn arb_policy() -> impl Strategy<Value = Policy> {
    (0.01f64..=1.0, 1u64..=7200, 0.0f64..=0.5).prop_map(|(f, m, j)| Policy {
        refresh_fraction: f,
        min_remaining: Duration::from_millis(m * 100),
        jitter: j,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, max_shrink_iters: 0, ..ProptestConfig::default() })]

    /// A token is always replaced before it expires, and never before it was issued.
    #[test]
    fn refresh_is_before_expiry_and_after_issue(
        policy in arb_policy(),
        lifetime_ms in 1u64..=30 * 24 * 3600 * 1000,
        sample in 0.0f64..1.0,
    ) {
        let t0 = Instant::now();
        let h = held(t0, Some(Duration::from_millis(lifetime_ms)), sample);
        let at = h.refresh_at(&policy).unwrap();
        prop_assert!(at >= t0);
        prop_assert!(at < h.expires.unwrap());
        // The margin left is at least min_remaining when the lifetime allows it.
        let lifetime = Duration::from_millis(lifetime_ms);
        if lifetime >= policy.min_remaining * 2 {
            prop_assert!(h.expires.unwrap() - at >= policy.min_remaining);
        }
    }

    /// A short-lived token is refreshed no earlier than min(fraction, 1/2) of its life less the
    /// jitter, and never before MIN_TOKEN_AGE (or half its life), so it cannot loop.
    #[test]
    fn short_lifetimes_do_not_loop(policy in arb_policy(), lifetime_ms in 1u64..=10_000, sample in 0.0f64..1.0) {
        let t0 = Instant::now();
        let lifetime = Duration::from_millis(lifetime_ms);
        let h = held(t0, Some(lifetime), sample);
        let at = h.refresh_at(&policy).unwrap();
let floor = lifetime
            .mul_f64(policy.refresh_fraction.min(0.5))
            .saturating_sub(lifetime.mul_f64(policy.jitter))
            .max(MIN_TOKEN_AGE.min(lifetime / 2));
        prop_assert!(at - t0 + Duration::from_nanos(1) >= floor, "at=+{:?} floor={:?}", at - t0, floor);
    }

    /// Backoff is bounded, never below the floor, and never plans into the past of the failure.
    #[test]
    fn backoff_is_bounded(count in 1u32..=1000, sample in 0.0f64..1.0, policy in arb_policy(),
                          lifetime_s in 1u64..=86_400, fail_at_s in 0u64..=90_000) {
        let d = backoff(count, sample, ErrorClass::Transient);
        prop_assert!(d >= MIN_RETRY && d <= BACKOFF_CAP);
        let t0 = Instant::now();
        let last = t0 + Duration::from_secs(fail_at_s);
        let view = View {
            held: Some(held(t0, Some(Duration::from_secs(lifetime_s)), 0.0)),
            failures: Some(Failures { count, last, sample, class: ErrorClass::Transient }),
        };
        match plan(last, &view, &policy) {
            Action::WaitUntil(t) => {
                prop_assert!(t >= last + MIN_RETRY);
                prop_assert!(t <= last + BACKOFF_CAP);
            }
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}

#[test]
fn keeps_short_tokens_with_half_their_lifetime_left() {
    let p = Policy::default(); // min_remaining 60 s
    let s = Duration::from_secs;
    // (remaining, lifetime, kept)
    let table = [
        (s(40), s(60), true),  // a renewed 60 s token, 20 s in: margin is 30 s
        (s(29), s(60), false), // under half its lifetime left
        (s(30), s(30), true),  // Knox's default 30 s ttl, just issued
        (s(14), s(30), false),
        (s(61), s(3600), true), // long tokens: min_remaining itself
        (s(59), s(3600), false),
        (s(0), s(0), false), // nothing left is never kept
    ];
    for (remaining, lifetime, kept) in table {
        assert_eq!(p.keeps(remaining, lifetime), kept, "{remaining:?} left of {lifetime:?}");
    }
}

/// The last instant the monotonic clock can represent, approached as `later` does.
fn end_of_time() -> Instant {
    static END: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *END.get_or_init(|| {
        let (mut at, mut step) = (Instant::now(), Duration::MAX);
        while !step.is_zero() {
            match at.checked_add(step) {
                Some(next) => at = next,
                None => step /= 2,
            }
        }
        at
    })
}

#[test]
fn later_saturates_at_a_century_and_at_the_end_of_the_clock() {
    let t = Instant::now();
    assert_eq!(later(t, S), t + S);
    assert_eq!(later(t, Duration::MAX), t + FAR_FUTURE);
    let end = end_of_time();
    assert!(end.checked_add(Duration::from_nanos(1)).is_none(), "the end is the end");
    assert_eq!(later(end, S), end);
    let near = end - S * 10;
    assert_eq!(later(near, S * 5), near + S * 5);
    assert_eq!(later(near, FAR_FUTURE), end);
    assert_eq!(later(near, Duration::MAX), end);
}

#[test]
fn share_clamps_its_fraction_and_never_exceeds_the_whole() {
    assert_eq!(share(S * 10, 0.5), S * 5);
    assert_eq!(share(S * 10, 0.999_999), (S * 10).mul_f64(0.999_999), "the same arithmetic as mul_f64");
    for f in [f64::NAN, f64::NEG_INFINITY, -1.0, -0.0] {
        assert_eq!(share(S * 10, f), Duration::ZERO, "{f}");
    }
    for f in [f64::INFINITY, 1.0, 2.0] {
        assert_eq!(share(S * 10, f), S * 10, "{f}");
    }
    assert_eq!(share(Duration::MAX, 1.0), Duration::MAX, "mul_f64 would panic: overflow");
}

/// Each of these panicked before `plan` used saturating arithmetic.
#[test]
fn extreme_inputs_that_used_to_panic() {
    let t0 = Instant::now();
    let hour = held(t0, Some(S * 3600), 0.5);
    // min_remaining × 2 overflowed.
    let huge = Policy { refresh_fraction: 0.8, min_remaining: Duration::MAX, jitter: 0.05 };
    assert_eq!(huge.margin(S * 3600), S * 1800);
    assert!(matches!(plan(t0, &View { held: Some(hour), failures: None }, &huge), Action::WaitUntil(_)));
    // A NaN draw made mul_f64 panic.
    assert_eq!(backoff(1, f64::NAN, ErrorClass::Transient), MIN_RETRY);
    let nan = Held { jitter_sample: f64::NAN, ..hour };
    assert_eq!(nan.refresh_at(&policy(0.8, 60, 0.05)), Some(t0 + S * 2880));
    let nan_policy = Policy { refresh_fraction: f64::NAN, min_remaining: S, jitter: f64::NAN };
    assert!(hour.refresh_at(&nan_policy).is_some());
    // A failure at the end of the clock's range: last + backoff overflowed.
    let end = end_of_time();
    let failed = Failures { count: 3, last: end, sample: 0.5, class: ErrorClass::Quota };
    assert_eq!(
        plan(end, &View { held: None, failures: Some(failed) }, &policy(0.8, 60, 0.0)),
        Action::Acquire
    );
    // A token issued a second before the end, which "expires" at the end.
    let late = Held { issued: end - S, expires: Some(end), jitter_sample: 0.0, renewable: false };
    assert_eq!(
        plan(end - S, &View { held: Some(late), failures: None }, &policy(0.8, 60, 0.0)),
        Action::WaitUntil(end - S + Duration::from_millis(500)),
    );
}

/// Any duration, with the edges and the everyday range well represented.
fn arb_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::MAX),
        Just(FAR_FUTURE),
        (0u64..=30 * 24 * 3600 * 1000).prop_map(Duration::from_millis),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

fn arb_f64() -> impl Strategy<Value = f64> {
    prop_oneof![0.0f64..=1.0, proptest::num::f64::ANY]
}

fn arb_class() -> impl Strategy<Value = ErrorClass> {
    prop_oneof![Just(ErrorClass::Transient), Just(ErrorClass::Rejected), Just(ErrorClass::Quota)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, max_shrink_iters: 0, ..ProptestConfig::default() })]

    /// `plan` never panics, whatever the durations, fractions and instants (even at the end
    /// of the monotonic clock), and a wait it returns is always in the future.
    #[test]
    fn plan_never_panics_with_extreme_inputs(
        at_end in any::<bool>(),
        back in arb_duration(),
        (issued_in, lifetime, never) in (arb_duration(), arb_duration(), any::<bool>()),
        (jitter_sample, renewable, held) in (arb_f64(), any::<bool>(), any::<bool>()),
        (failed_in, count, sample, class, failed) in
            (arb_duration(), any::<u32>(), arb_f64(), arb_class(), any::<bool>()),
        now_in in arb_duration(),
        (refresh_fraction, min_remaining, jitter) in (arb_f64(), arb_duration(), arb_f64()),
    ) {
        let t0 = if at_end { end_of_time().checked_sub(back).unwrap_or_else(end_of_time) } else { Instant::now() };
        let policy = Policy { refresh_fraction, min_remaining, jitter };
        let issued = later(t0, issued_in);
        let h = Held { issued, expires: (!never).then(|| later(issued, lifetime)), jitter_sample, renewable };
        let f = Failures { count, last: later(t0, failed_in), sample, class };
        let view = View { held: held.then_some(h), failures: failed.then_some(f) };
        let now = later(t0, now_in);
        if let Action::WaitUntil(t) = plan(now, &view, &policy) {
            prop_assert!(t > now);
        }
        if let Some(at) = h.refresh_at(&policy) {
            prop_assert!(at >= issued && h.expires.is_some_and(|e| at <= e));
        }
        if let Some(at) = h.last_safe(&policy) {
            prop_assert!(at >= issued && h.expires.is_some_and(|e| at <= e));
        }
        let _ = h.is_fresh(now, &policy);
        let _ = policy.keeps(lifetime, min_remaining);
        let d = backoff(count, sample, class);
        prop_assert!(d <= Duration::from_secs(1800) && d >= MIN_RETRY);
    }
}

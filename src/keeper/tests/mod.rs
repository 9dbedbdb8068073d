//! Tests of the keeper's transitions, one file per decision module.

use std::time::Duration;

mod forced;

#[test]
fn human_durations() {
    let check = |secs: u64, want: &str| assert_eq!(super::human(Duration::from_secs(secs)), want);
    check(0, "0ms");
    check(59, "59s");
    check(42 * 60 + 10, "42m");
    check(3600, "1h");
    check(2 * 3600 + 5 * 60, "2h 5m");
    check(86_400 + 3 * 3600, "1d 3h");
    assert_eq!(super::human(Duration::from_millis(800)), "800ms");
}

//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the same entry points
//! the coverage-guided targets use (`token_keeper::fuzzing`), so every input that a fuzz run
//! found interesting, or that once crashed, stays a regression test without a nightly
//! toolchain. A panic in any entry point fails the test and names the file.

use std::path::Path;

use token_keeper::fuzzing;

use crate::harness::root;

/// Runs `entry` on every file of `fuzz/corpus/<target>` and returns how many there were.
fn replay(target: &str, entry: fn(&[u8])) -> usize {
    let dir = root().join("fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        let name = file.strip_prefix(root()).unwrap_or(Path::new("?")).display().to_string();
        if std::panic::catch_unwind(|| entry(&data)).is_err() {
            panic!("{name} panics the {target} entry point");
        }
    }
    files.len()
}

#[test]
fn fuzz_corpora_replay_without_a_panic() {
    for (target, entry) in [
        ("config", fuzzing::config as fn(&[u8])),
        ("token_answer", fuzzing::token_answer),
        ("op_answers", fuzzing::op_answer),
        ("published", fuzzing::published),
        ("keys", fuzzing::keys),
    ] {
        let n = replay(target, entry);
        assert!(n >= 5, "fuzz/corpus/{target} holds only {n} inputs");
    }
}

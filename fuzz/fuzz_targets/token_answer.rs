//! Knox's answer to a token acquisition (with its `Date` header): a token that may be
//! published, or an error, never a panic; an accepted token renders in every output format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use token_keeper::fuzzing;

fuzz_target!(|data: &[u8]| {
    fuzzing::token_answer(data);
});

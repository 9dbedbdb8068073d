//! Knox's answers to renew, revoke, enable and disable: hand-concatenated, sometimes invalid
//! JSON. Any body with any status maps to one decision, without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use token_keeper::fuzzing;

fuzz_target!(|data: &[u8]| {
    fuzzing::op_answer(data);
});

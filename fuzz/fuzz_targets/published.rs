//! The reader of published files (json and the other formats), which `status`, `token`,
//! `exec` and the daemon's start read back: any file content gives a token or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use token_keeper::fuzzing;

fuzz_target!(|data: &[u8]| {
    fuzzing::published(data);
});

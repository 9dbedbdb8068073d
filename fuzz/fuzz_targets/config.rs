//! The config parser and validator: any bytes as a config file must give a `Config` or a
//! `ConfigError`, never a panic, and an accepted config must survive the checks the daemon
//! runs at start (its policy arithmetic included).
#![no_main]

use libfuzzer_sys::fuzz_target;
use token_keeper::fuzzing;

fuzz_target!(|data: &[u8]| {
    fuzzing::config(data);
});

//! The readers of RSA public keys (`keys`): a pinned `public_cert_file` or `jwks_file`, and
//! Knox's `endpoint_public_cert`. Any bytes give keys or an error naming what is wrong.
#![no_main]

use libfuzzer_sys::fuzz_target;
use token_keeper::fuzzing;

fuzz_target!(|data: &[u8]| {
    fuzzing::keys(data);
});

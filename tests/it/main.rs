//! The one integration-test binary (like ripgrep's and hickory's): black-box tests that spawn
//! the real `token-keeper` binary, in-process tests that run the keeper as a library, both
//! against the project's Knox simulator on `127.0.0.1:0`, and repository hygiene checks.

// The test binary is not a library: `pub` in its modules means "shared with sibling modules".
#![allow(unreachable_pub)]
// Tests write fixtures (configs, password files), never token files.
#![allow(clippy::disallowed_methods)]

mod blackbox;
mod doctor;
mod exec;
mod failures;
mod fuzz_corpus;
mod guard;
mod harness;
mod hostile_config;
mod hostile_knox;
mod hostile_local;
mod inprocess;
mod knox_lifecycle;
mod labels;
mod layout;
mod lifecycle;
mod operating;
mod packaging;
mod tidy;
mod tls;
mod verify;

//! The command-line verbs other than the daemon itself (`run`, in [`crate::app`]): each in a
//! file of its own, each with a `run` function that `main.rs` calls, as mini-redis's `cmd/`.

pub mod check_config;
pub mod once;
pub mod status;
pub mod token;
pub mod tokens;

//! The `token-keeper` binary. Everything it does is in the library, from
//! [`token_keeper::cmd::main`] down, so the binary is glue and the library's modules can stay
//! private.

fn main() -> std::process::ExitCode {
    token_keeper::cmd::main()
}

//! The one-shot subcommands: check, explain, compile, hash-password.

pub mod check;
pub mod compile;
pub mod explain;
pub mod hash_password;

use std::process::ExitCode;

/// Exit code for diagnostics found.
pub const EXIT_DIAGNOSTICS: u8 = 1;

pub fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("egressd: {msg}");
    ExitCode::from(EXIT_DIAGNOSTICS)
}

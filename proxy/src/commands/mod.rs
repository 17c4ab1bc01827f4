//! The one-shot subcommands: check, explain, compile, hash-password, default-config.

pub mod check;
pub mod compile;
pub mod default_config;
pub mod explain;
pub mod hash_password;

use std::process::ExitCode;

/// Exit code for diagnostics found, and for any other failure of a one-shot command.
pub const EXIT_DIAGNOSTICS: u8 = 1;

pub fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("egressd: {msg}");
    ExitCode::from(EXIT_DIAGNOSTICS)
}

//! `egressd default-config`: print the configuration `egressd` runs with when given none, as
//! a starting point for one's own.

use std::process::ExitCode;

pub fn run() -> ExitCode {
    print!("{}", crate::control::DEFAULT_CONFIG);
    ExitCode::SUCCESS
}

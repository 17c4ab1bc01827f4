//! egressd-loadgen: the load generator and upstream sink used to benchmark egressd against
//! other proxies and against a direct connection.
//!
//! `sink` is the upstream (echo, discard, fixed-size answers, HTTP, peer report); `run` is the
//! client (socks5, http-connect, http-forward or direct; churn, rr, bulk or idle; closed or
//! open loop). This file only parses the command line and maps outcomes to exit codes.
#![forbid(unsafe_code)]

mod cli;
mod conn;
mod cpus;
mod credentials;
mod dial;
mod duration;
mod egress;
mod exchange;
mod failure;
mod plan;
mod proccpu;
mod report;
mod run;
mod runtime;
mod schedule;
mod sink;
mod stats;
mod target;
mod wire;
mod workload;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use run::RunError;

/// Same code clap uses for its own usage errors.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Sink(args) => match sink::serve(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("egressd-loadgen sink: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => match run::execute(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(RunError::Usage(msg)) => {
                eprintln!("egressd-loadgen run: {msg}");
                ExitCode::from(EXIT_USAGE)
            }
            Err(RunError::Setup(e)) => {
                eprintln!("egressd-loadgen run: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

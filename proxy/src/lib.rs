//! egressd as a library: everything but the command line, so that tests, fuzz targets and
//! benches reach the proxy's parts (`main.rs` only parses arguments and calls `run` or a
//! subcommand of `commands`).
#![deny(unsafe_code)]

mod accesslog;
mod admin;
mod auth;
pub mod commands;
mod conn;
mod control;
mod dns;
mod egress;
mod files;
mod geo;
mod listen;
mod metrics;
mod outcome;
mod preflight;
mod readiness;
mod relay;
pub mod run;
mod session;
mod shard;
mod sockopt;
mod state;
mod summary;
#[cfg(test)]
mod testutil;
mod tls;

//! egressd: a forward proxy that picks each connection's egress address by policy.
//!
//! This file parses the command line and hands each subcommand to its module.
#![forbid(unsafe_code)]

mod commands;
mod dns;
mod wire;
mod files;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "egressd",
    version,
    about = "Egress-IP policy proxy (SOCKS5 and HTTP)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compile a configuration and print every diagnostic; run its [[test]] cases.
    Check {
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
    },
    /// Show how the policy decides one connection.
    Explain(commands::explain::Args),
    /// Write the validated, compiled policy as a versioned artifact.
    Compile {
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Read a password on stdin and print its argon2id hash for [[user]] password.
    HashPassword,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => commands::check::run(&config),
        Command::Explain(args) => commands::explain::run(&args),
        Command::Compile { config, output } => commands::compile::run(&config, &output),
        Command::HashPassword => commands::hash_password::run(),
    }
}

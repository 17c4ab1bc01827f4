//! egressd: a forward proxy that picks each connection's egress address by policy.
//!
//! This file parses the command line and hands each subcommand to the library's module.
#![deny(unsafe_code)]

use egressd::{commands, run};

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
    /// Without a subcommand egressd runs with its built-in default configuration.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy with a configuration (TOML or compiled artifact).
    Run {
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
    },
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
    let Some(command) = cli.command else {
        return run::run(None);
    };
    match command {
        Command::Run { config } => run::run(Some(config)),
        Command::Check { config } => commands::check::run(&config),
        Command::Explain(args) => commands::explain::run(&args),
        Command::Compile { config, output } => commands::compile::run(&config, &output),
        Command::HashPassword => commands::hash_password::run(),
    }
}

//! egressd: a forward proxy that picks each connection's egress address by policy.
//!
//! This file parses the command line and hands each subcommand to the library's module.
#![deny(unsafe_code)]

use egressd::{commands, run};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Every exit status the binary uses, for `egressd --help`.
const EXIT_CODES: &str = "\
Exit status:
  0   success (`run`: stopped by SIGTERM or SIGINT after draining)
  1   `check`: an error or a failed [[test]]; other one-shot commands: they failed
      (unreadable or invalid file, bad argument value)
  2   usage: unknown command or option, missing argument
  71  `run`: the operating system refused what the proxy needs (EX_OSERR: a listener
      address in use, RLIMIT_MEMLOCK too low for io_uring, a shard could not start)
  78  `run`: invalid configuration at start-up (EX_CONFIG: unreadable file, an error in it,
      or a file it names, such as a geolocation database or certificate, cannot be loaded)";

/// `-c` for every command that reads a policy.
#[derive(Debug, clap::Args)]
struct ConfigArg {
    /// Configuration: a TOML file, or a compiled artifact from `egressd compile`.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: PathBuf,
}

#[derive(Debug, Parser)]
#[command(
    name = "egressd",
    version,
    about = "Egress-IP policy proxy (SOCKS5 and HTTP)",
    long_about = "Egress-IP policy proxy (SOCKS5 and HTTP on one port). Without a command, \
                  egressd runs with its built-in default configuration, as `egressd run` \
                  without -c does: `egressd default-config` prints it.",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy (with the built-in default configuration when -c is not given).
    #[command(
        after_help = "Exit status: 0 stopped by a signal after draining, 2 usage, \
                            71 the OS refused (listener address in use, RLIMIT_MEMLOCK, \
                            io_uring), 78 invalid configuration."
    )]
    Run {
        /// Configuration: a TOML file, or a compiled artifact from `egressd compile`
        /// [default: the built-in configuration `egressd default-config` prints].
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
        /// How to write operational logs and the start-up summary on standard error: text
        /// for a person, json for machines [default: text on a terminal, else json; or
        /// EGRESSD_LOG_FORMAT].
        #[arg(
            long = "log-format",
            value_enum,
            value_name = "text|json",
            hide_possible_values = true
        )]
        log_format: Option<run::LogFormat>,
    },
    /// Compile a configuration and print every diagnostic; run its [[test]] cases.
    #[command(
        after_help = "Exit status: 0 no error and every [[test]] passed (warnings \
                            allowed), 1 an error, a failed [[test]], or a file that cannot \
                            be read, 2 usage."
    )]
    Check(ConfigArg),
    /// Show how the policy decides one connection.
    #[command(
        after_help = "Exit status: 0 explained, 1 invalid configuration or argument \
                            value, 2 usage."
    )]
    Explain(commands::explain::Args),
    /// Write the validated, compiled policy as a versioned artifact.
    #[command(
        after_help = "Exit status: 0 written, 1 invalid configuration or write \
                            failure, 2 usage."
    )]
    Compile {
        #[command(flatten)]
        config: ConfigArg,
        /// Where to write the artifact (written beside it, then renamed into place).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
    },
    /// Read a password and print its argon2id hash for [[user]] password.
    #[command(
        long_about = "Read a password and print its argon2id hash (a PHC string) for \
                      [[user]] password. On a terminal it asks twice without echoing; \
                      otherwise it reads one line from standard input.",
        after_help = "Exit status: 0 printed, 1 empty password, passwords that differ, or \
                      a read error, 2 usage."
    )]
    HashPassword,
    /// Print the built-in default configuration, a starting point for your own.
    #[command(after_help = "Exit status: 0.")]
    DefaultConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        // `egressd` and `egressd run` without -c are the same call: run::run(None).
        None => run::run(None, None),
        Some(Command::Run { config, log_format }) => run::run(config, log_format),
        Some(Command::Check(c)) => commands::check::run(&c.config),
        Some(Command::Explain(args)) => commands::explain::run(&args),
        Some(Command::Compile { config, output }) => {
            commands::compile::run(&config.config, &output)
        }
        Some(Command::HashPassword) => commands::hash_password::run(),
        Some(Command::DefaultConfig) => commands::default_config::run(),
    }
}

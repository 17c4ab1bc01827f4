//! `egressd hash-password`: read one password, print an argon2id PHC string. On a terminal it
//! asks twice with echo off (the password never shows on screen or in a terminal recording);
//! otherwise it reads one line from standard input, so scripts can pipe a password in.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, SaltString};
use rand_core::OsRng;
use rustix::termios::{LocalModes, OptionalActions, Termios, tcgetattr, tcsetattr};

use super::fail;

pub fn run() -> ExitCode {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        match prompt_twice() {
            Ok(p) => p,
            Err(e) => return fail(e),
        }
    } else {
        let mut line = String::new();
        if let Err(e) = stdin.lock().read_line(&mut line) {
            return fail(format!("reading stdin: {e}"));
        }
        strip_newline(&line).to_string()
    };
    if password.is_empty() {
        return fail("empty password");
    }
    let salt = SaltString::generate(&mut OsRng);
    match Argon2::default().hash_password(password.as_bytes(), &salt) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("hashing failed: {e}")),
    }
}

fn strip_newline(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    line.strip_suffix('\r').unwrap_or(line)
}

/// Asks for the password and its confirmation on the terminal, echo off.
fn prompt_twice() -> Result<String, String> {
    let first = prompt("Password: ")?;
    if first.is_empty() {
        return Ok(first);
    }
    let again = prompt("Retype password: ")?;
    if first != again {
        return Err("the passwords differ".into());
    }
    Ok(first)
}

/// Prints `question` on standard error and reads one line from the terminal on standard
/// input with echo off (the newline still echoes, so the cursor moves on).
fn prompt(question: &str) -> Result<String, String> {
    let stdin = std::io::stdin();
    let quiet = NoEcho::new(&stdin).map_err(|e| format!("turning terminal echo off: {e}"))?;
    // Echo goes off before the question shows: whatever is typed after it stays hidden.
    let mut stderr = std::io::stderr();
    let _ = stderr.write_all(question.as_bytes());
    let _ = stderr.flush();
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    drop(quiet);
    match read {
        Ok(0) => Err("no password: end of input".into()),
        Ok(_) => Ok(strip_newline(&line).to_string()),
        Err(e) => Err(format!("reading the terminal: {e}")),
    }
}

/// Terminal echo turned off until dropped.
struct NoEcho<'a> {
    fd: std::os::fd::BorrowedFd<'a>,
    saved: Termios,
}

impl<'a> NoEcho<'a> {
    fn new(stdin: &'a std::io::Stdin) -> rustix::io::Result<Self> {
        use std::os::fd::AsFd;
        let fd = stdin.as_fd();
        let saved = tcgetattr(fd)?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        quiet.local_modes.insert(LocalModes::ECHONL);
        tcsetattr(fd, OptionalActions::Now, &quiet)?;
        Ok(NoEcho { fd, saved })
    }
}

impl Drop for NoEcho<'_> {
    fn drop(&mut self) {
        let _ = tcsetattr(self.fd, OptionalActions::Now, &self.saved);
    }
}

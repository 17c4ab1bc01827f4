//! `egressd hash-password`: read one password on stdin, print an argon2id PHC string.

use std::io::BufRead;
use std::process::ExitCode;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, SaltString};
use rand_core::OsRng;

use super::fail;

pub fn run() -> ExitCode {
    let mut line = String::new();
    if let Err(e) = std::io::stdin().lock().read_line(&mut line) {
        return fail(format!("reading stdin: {e}"));
    }
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
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

//! The documentation tells the truth: docs/CONFIG.md names every key the configuration reader
//! accepts (asked of the reader itself, through its "unknown key" diagnostics) and every rule
//! field; README's explain sample is what `egressd explain` prints; every example config's
//! comment that names passwords names the ones its hashes verify.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use egressd_policy::check_str;
use egressd_policy::expr::ast::FIELDS;
use egressd_policy::model::ProxySettings;
use support::egressd;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `(user, password)` pairs a config's comment names: a comment line with `Passwords:`
/// followed by `name / password` pairs separated by commas (a parenthesis ends the list).
fn commented_passwords(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for line in text.lines().filter_map(|l| l.strip_prefix('#')) {
        let Some((_, list)) = line.split_once("Passwords:") else {
            continue;
        };
        let list = list.split('(').next().unwrap();
        for pair in list.split(',') {
            let (user, password) = pair
                .split_once(" / ")
                .unwrap_or_else(|| panic!("not `user / password`: {pair:?}"));
            pairs.push((user.trim().to_string(), password.trim().to_string()));
        }
    }
    pairs
}

#[test]
fn example_passwords_are_the_ones_their_comments_name() {
    let mut files = 0;
    for entry in std::fs::read_dir(root().join("configs/examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let named = commented_passwords(&text);
        let policy = check_str("example.toml", &text).policy.unwrap();
        let with_password: Vec<_> = policy
            .users
            .iter()
            .filter(|u| u.password.is_some())
            .collect();
        if named.is_empty() {
            assert!(
                with_password.is_empty(),
                "{}: users have passwords but no comment says which",
                path.display()
            );
            continue;
        }
        files += 1;
        // Every user with a password is named, by its name or the part before the '@'.
        for user in with_password {
            let short = user.name.split('@').next().unwrap();
            let (_, password) = named
                .iter()
                .find(|(n, _)| *n == user.name || n == short)
                .unwrap_or_else(|| {
                    panic!(
                        "{}: the comment does not name {}",
                        path.display(),
                        user.name
                    )
                });
            let hash = &user.password.as_ref().unwrap().0;
            let parsed = PasswordHash::new(hash).unwrap();
            assert!(
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok(),
                "{}: {}'s hash is not of \"{password}\", as the comment says",
                path.display(),
                user.name
            );
        }
    }
    assert!(files >= 2, "only {files} example configs name passwords");
}

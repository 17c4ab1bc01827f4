//! Password authentication against `[[user]]` argon2id hashes.
//!
//! argon2 is deliberately slow (tens of milliseconds), so verification runs on glommio's
//! blocking thread pool, never on the shard, and a successful check is remembered per shard:
//! the next connection of that user with the same password is accepted after one SHA-256 of
//! the password under a per-process random salt. The cache holds digests, never passwords,
//! and is keyed to the generation, so a reload that changes a hash takes effect at once.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use sha2::{Digest, Sha256};

use crate::state::GenRef;

/// Concurrent argon2 verifications a shard allows; more are refused at once, so a flood of
/// wrong passwords cannot queue unbounded work.
const MAX_IN_FLIGHT: usize = 8;
/// Cached users per shard.
const MAX_CACHED: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    Accepted,
    Rejected,
    /// Too many verifications in flight: refused without checking.
    Busy,
}

#[derive(Debug)]
pub struct Authenticator {
    salt: [u8; 32],
    verified: RefCell<HashMap<String, (u64, [u8; 32])>>,
    in_flight: Cell<usize>,
}

impl Authenticator {
    pub fn new(salt: [u8; 32]) -> Self {
        Authenticator {
            salt,
            verified: RefCell::new(HashMap::new()),
            in_flight: Cell::new(0),
        }
    }

    fn digest(&self, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Checks `user`/`password` against the generation's users.
    pub async fn check(&self, generation: &GenRef, user: &str, password: &str) -> AuthOutcome {
        let Some(hash) = generation.user(user).and_then(|u| u.password.as_ref()) else {
            return AuthOutcome::Rejected;
        };
        let digest = self.digest(password);
        if self.verified.borrow().get(user) == Some(&(generation.id, digest)) {
            return AuthOutcome::Accepted;
        }
        if self.in_flight.get() >= MAX_IN_FLIGHT {
            return AuthOutcome::Busy;
        }
        self.in_flight.set(self.in_flight.get() + 1);
        let phc = hash.0.clone();
        let pw = password.to_string();
        let ok = glommio::executor()
            .spawn_blocking(move || {
                PasswordHash::new(&phc).is_ok_and(|parsed| {
                    argon2::Argon2::default()
                        .verify_password(pw.as_bytes(), &parsed)
                        .is_ok()
                })
            })
            .await;
        self.in_flight.set(self.in_flight.get() - 1);
        if !ok {
            return AuthOutcome::Rejected;
        }
        let mut cache = self.verified.borrow_mut();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(user.to_string(), (generation.id, digest));
        AuthOutcome::Accepted
    }
}

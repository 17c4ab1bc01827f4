//! Password authentication against `[[user]]` argon2id hashes.
//!
//! argon2 is deliberately slow (tens of milliseconds of CPU and ~19 MiB of memory), so
//! verification runs on glommio's blocking thread, never on the shard, one at a time per shard:
//! a flood of guesses takes at most that thread, and waits in a bounded line for it. A check
//! that cannot get the thread before the handshake deadline, or finds the line full, is
//! answered as a temporary failure (`Busy`), never as a wrong password.
//!
//! - A successful check is remembered per shard: the next connection of that user with the
//!   same password is accepted after one SHA-256 of the password under a per-process random
//!   salt. The cache holds digests, never passwords, and is keyed to the generation, so a
//!   reload that changes a hash takes effect at once.
//! - An unknown user name (or a user without a password) is verified against a dummy hash with
//!   the same parameters as the configured ones, so the time taken does not tell which accounts
//!   exist.
//! - Addresses with recent failures, or with several checks under way at once, are
//!   "suspect": their checks queue behind every other address's, in a shorter line of their
//!   own, and from the `FREE_FAILURES`-th failure on each attempt is delayed (doubling up to
//!   `MAX_PENALTY`) before it may queue at all, so a guesser slows itself down and a user
//!   elsewhere is served first.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordVerifier, Salt};
use egressd_policy::model::User;
use sha2::{Digest, Sha256};

/// Checks waiting for the verification thread, per shard, from clean addresses and from
/// suspect ones: each line has its own bound, so suspects cannot fill the clean line; more
/// are answered `Busy` at once.
const MAX_WAITING: usize = 256;
const MAX_WAITING_SUSPECT: usize = 64;
/// Cached users per shard.
const MAX_CACHED: usize = 10_000;
/// Failures an address may have before its attempts are delayed.
const FREE_FAILURES: u32 = 3;
/// The first delay; each further failure doubles it, up to `MAX_PENALTY`.
const FIRST_PENALTY: Duration = Duration::from_millis(100);
const MAX_PENALTY: Duration = Duration::from_secs(1);
/// Failures are forgotten this long after an address's last one.
const FAILURE_MEMORY: Duration = Duration::from_secs(60);
/// Addresses whose failures are remembered, per shard (the oldest go when it is full).
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    Accepted,
    Rejected,
    /// The password could not be verified in time (the verification line is full, or the
    /// handshake deadline passed while waiting): a temporary failure, not a wrong password.
    Busy,
}

#[derive(Debug)]
pub struct Authenticator {
    salt: [u8; 32],
    verified: RefCell<HashMap<String, (u64, [u8; 32])>>,
    line: Line,
    failures: RefCell<HashMap<IpAddr, Failures>>,
    /// Checks under way (waiting or verifying) per address, so that a burst from an address
    /// with no failures yet counts as suspect before its first answers come back.
    under_way: RefCell<HashMap<IpAddr, u32>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Authenticator {
    pub fn new(salt: [u8; 32]) -> Self {
        Authenticator {
            salt,
            verified: RefCell::new(HashMap::new()),
            line: Line::default(),
            failures: RefCell::new(HashMap::new()),
            under_way: RefCell::new(HashMap::new()),
        }
    }

    fn digest(&self, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Recent failures of `client` (0 once forgotten).
    fn failures(&self, client: IpAddr) -> u32 {
        let mut map = self.failures.borrow_mut();
        match map.get(&client) {
            Some(f) if f.last.elapsed() < FAILURE_MEMORY => f.count,
            Some(_) => {
                map.remove(&client);
                0
            }
            None => 0,
        }
    }

    fn record(&self, client: IpAddr, accepted: bool) {
        let mut map = self.failures.borrow_mut();
        if accepted {
            map.remove(&client);
            return;
        }
        if map.len() >= MAX_TRACKED && !map.contains_key(&client) {
            map.retain(|_, f| f.last.elapsed() < FAILURE_MEMORY);
            if map.len() >= MAX_TRACKED {
                map.clear();
            }
        }
        let now = Instant::now();
        let f = map.entry(client).or_insert(Failures {
            count: 0,
            last: now,
        });
        f.count = f.count.saturating_add(1);
        f.last = now;
    }

    /// Checks `user`/`password` for a client at `client` against the users of `generation`,
    /// giving up at `deadline`.
    pub async fn check(
        &self,
        generation: &dyn Credentials,
        user: &str,
        password: &str,
        client: IpAddr,
        deadline: Instant,
    ) -> AuthOutcome {
        let client = egressd_policy::meta::canonical_ip(client);
        let hash = generation.password_hash(user);
        let digest = self.digest(password);
        if hash.is_some() && self.verified.borrow().get(user) == Some(&(generation.id(), digest)) {
            return AuthOutcome::Accepted;
        }
        let failures = self.failures(client);
        if let Some(delay) = penalty(failures) {
            let left = deadline.saturating_duration_since(Instant::now());
            glommio::timer::sleep(delay.min(left)).await;
        }
        let under_way = UnderWay::start(&self.under_way, client);
        let suspect = failures + under_way.others >= FREE_FAILURES;
        let slot = futures_lite::future::or(self.line.acquire(suspect), async {
            glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
            None
        })
        .await;
        let Some(_slot) = slot else {
            return AuthOutcome::Busy;
        };
        // Unknown users cost what known ones do: the same verification, against a hash no
        // password matches.
        let known = hash.is_some();
        let phc = hash.unwrap_or(generation.dummy_hash()).to_owned();
        let pw = password.to_string();
        let verified = glommio::executor()
            .spawn_blocking(move || {
                PasswordHash::new(&phc).is_ok_and(|parsed| {
                    argon2::Argon2::default()
                        .verify_password(pw.as_bytes(), &parsed)
                        .is_ok()
                })
            })
            .await;
        let ok = known && verified;
        self.record(client, ok);
        if !ok {
            return AuthOutcome::Rejected;
        }
        let mut cache = self.verified.borrow_mut();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(user.to_string(), (generation.id(), digest));
        AuthOutcome::Accepted
    }
}

/// What a password check reads from the generation it runs under.
pub trait Credentials {
    /// The PHC string of `user`'s configured password hash.
    fn password_hash(&self, user: &str) -> Option<&str>;
    /// What an unknown user's password is verified against (`dummy_hash`).
    fn dummy_hash(&self) -> &str;
    /// The generation's id: a cached verification holds for one generation.
    fn id(&self) -> u64;
}

/// One check under way from an address, counted while it lives.
struct UnderWay<'a> {
    map: &'a RefCell<HashMap<IpAddr, u32>>,
    client: IpAddr,
    /// Checks from the same address already under way when this one started.
    others: u32,
}

impl<'a> UnderWay<'a> {
    fn start(map: &'a RefCell<HashMap<IpAddr, u32>>, client: IpAddr) -> Self {
        let mut m = map.borrow_mut();
        let n = m.entry(client).or_insert(0);
        let others = *n;
        *n += 1;
        UnderWay {
            map,
            client,
            others,
        }
    }
}

impl Drop for UnderWay<'_> {
    fn drop(&mut self) {
        let mut m = self.map.borrow_mut();
        if let Some(n) = m.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.client);
            }
        }
    }
}

/// The delay before an attempt from an address with `failures` recent failures.
fn penalty(failures: u32) -> Option<Duration> {
    let over = failures.checked_sub(FREE_FAILURES)?;
    Some(
        FIRST_PENALTY
            .saturating_mul(1u32 << over.min(16))
            .min(MAX_PENALTY),
    )
}

/// A hash with the parameters of the first configured password (argon2's defaults when there
/// is none) and a salt of its own, which no password is expected to match: unknown users are
/// verified against it.
pub fn dummy_hash(users: &[User]) -> String {
    const DEFAULT: &str = "$argon2id$v=19$m=19456,t=2,p=1$ZWdyZXNzZC1kdW1teS1zYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    users
        .iter()
        .filter_map(|u| u.password.as_ref())
        .find_map(|p| {
            let mut parsed = PasswordHash::new(&p.0).ok()?;
            parsed.salt = Some(Salt::from_b64("ZWdyZXNzZC1kdW1teS1zYWx0").ok()?);
            Some(parsed.to_string())
        })
        .unwrap_or_else(|| DEFAULT.to_string())
}

/// The shard's one verification slot and the line waiting for it: first come, first served,
/// except that suspect addresses wait behind everyone else. A waiter that gives up (its
/// deadline passed) leaves the line; a slot granted to a waiter that is gone passes on.
#[derive(Debug, Default)]
struct Line {
    busy: Cell<bool>,
    clean: RefCell<VecDeque<Rc<Ticket>>>,
    suspect: RefCell<VecDeque<Rc<Ticket>>>,
}

#[derive(Debug, Default)]
struct Ticket {
    granted: Cell<bool>,
    taken: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

/// Holding the slot; dropping it lets the next waiter in.
#[derive(Debug)]
struct Slot<'a>(&'a Line);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.pass_on();
    }
}

/// A place in the line; leaves it (or passes an unclaimed slot on) when dropped.
struct Waiting<'a> {
    line: &'a Line,
    ticket: Rc<Ticket>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.ticket.taken.get() {
            return;
        }
        if self.ticket.granted.get() {
            self.line.pass_on();
        } else {
            for q in [&self.line.clean, &self.line.suspect] {
                q.borrow_mut().retain(|t| !Rc::ptr_eq(t, &self.ticket));
            }
        }
    }
}

impl Line {
    fn waiting(&self) -> usize {
        self.clean.borrow().len() + self.suspect.borrow().len()
    }

    /// The slot, once it is this caller's turn; `None` at once when the line is full.
    async fn acquire(&self, suspect: bool) -> Option<Slot<'_>> {
        if !self.busy.get() && self.waiting() == 0 {
            self.busy.set(true);
            return Some(Slot(self));
        }
        let (queue, bound) = if suspect {
            (&self.suspect, MAX_WAITING_SUSPECT)
        } else {
            (&self.clean, MAX_WAITING)
        };
        if queue.borrow().len() >= bound {
            return None;
        }
        let ticket = Rc::new(Ticket::default());
        queue.borrow_mut().push_back(ticket.clone());
        let waiting = Waiting { line: self, ticket };
        std::future::poll_fn(|cx| {
            if waiting.ticket.granted.get() {
                Poll::Ready(())
            } else {
                *waiting.ticket.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        waiting.ticket.taken.set(true);
        Some(Slot(self))
    }

    /// Gives the slot to the next waiter (clean addresses first), or frees it.
    fn pass_on(&self) {
        let next = self
            .clean
            .borrow_mut()
            .pop_front()
            .or_else(|| self.suspect.borrow_mut().pop_front());
        match next {
            Some(ticket) => {
                ticket.granted.set(true);
                if let Some(w) = ticket.waker.borrow_mut().take() {
                    w.wake();
                }
            }
            None => self.busy.set(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalties_start_after_the_free_failures_and_are_capped() {
        assert_eq!(penalty(0), None);
        assert_eq!(penalty(FREE_FAILURES - 1), None);
        assert_eq!(penalty(FREE_FAILURES), Some(FIRST_PENALTY));
        assert_eq!(penalty(FREE_FAILURES + 1), Some(FIRST_PENALTY * 2));
        assert_eq!(penalty(FREE_FAILURES + 30), Some(MAX_PENALTY));
        assert_eq!(penalty(u32::MAX), Some(MAX_PENALTY));
    }

    #[test]
    fn the_dummy_hash_has_the_configured_parameters_and_another_salt() {
        let real = "$argon2id$v=19$m=8192,t=3,p=1$c29tZXNhbHRzb21lc2FsdA$2Hs3JwwZ6Zy0cFmSfeZXL1J1cE3Jm+9VwQyN8AHDuYc";
        let users = vec![User {
            name: "alice".into(),
            password: Some(egressd_policy::model::Secret(real.into())),
            groups: vec![],
        }];
        let dummy = dummy_hash(&users);
        let parsed = PasswordHash::new(&dummy).unwrap();
        let original = PasswordHash::new(real).unwrap();
        assert_eq!(parsed.params, original.params);
        assert_eq!(parsed.algorithm, original.algorithm);
        assert_ne!(parsed.salt, original.salt);
        let default = dummy_hash(&[]);
        assert!(PasswordHash::new(&default).is_ok(), "{default}");
    }

    use futures_lite::future::{block_on, poll_once};

    #[test]
    fn the_line_serves_clean_addresses_first_and_skips_waiters_that_left() {
        block_on(async {
            let line = Line::default();
            let held = line.acquire(false).await.unwrap();
            let mut s1 = Box::pin(line.acquire(true));
            let mut gone = Box::pin(line.acquire(false));
            let mut c1 = Box::pin(line.acquire(false));
            let mut c2 = Box::pin(line.acquire(false));
            for f in [&mut s1, &mut gone, &mut c1, &mut c2] {
                assert!(poll_once(f).await.is_none(), "queued");
            }
            drop(gone);
            assert_eq!(line.waiting(), 3, "a waiter that gave up leaves the line");
            drop(held);
            assert!(
                poll_once(&mut s1).await.is_none(),
                "suspects wait behind clean addresses"
            );
            assert!(
                poll_once(&mut c2).await.is_none(),
                "first come, first served"
            );
            let slot = poll_once(&mut c1).await.unwrap().unwrap();
            drop(slot);
            assert!(poll_once(&mut s1).await.is_none());
            let slot = poll_once(&mut c2).await.unwrap().unwrap();
            drop(slot);
            let slot = poll_once(&mut s1).await.unwrap().unwrap();
            drop(slot);
            assert!(!line.busy.get());
        });
    }

    #[test]
    fn a_slot_granted_to_a_waiter_that_is_gone_passes_on() {
        block_on(async {
            let line = Line::default();
            let held = line.acquire(false).await.unwrap();
            let mut gone = Box::pin(line.acquire(false));
            let mut next = Box::pin(line.acquire(false));
            assert!(poll_once(&mut gone).await.is_none());
            assert!(poll_once(&mut next).await.is_none());
            drop(held); // granted to `gone`, which never comes back for it
            drop(gone);
            assert!(poll_once(&mut next).await.unwrap().is_some());
            drop(next);
            assert!(!line.busy.get(), "the last slot is freed");
        });
    }

    #[test]
    fn a_full_line_answers_at_once() {
        block_on(async {
            let line = Line::default();
            let _held = line.acquire(false).await.unwrap();
            let mut suspects: Vec<_> = (0..MAX_WAITING_SUSPECT)
                .map(|_| Box::pin(line.acquire(true)))
                .collect();
            for f in &mut suspects {
                assert!(poll_once(f).await.is_none());
            }
            assert!(line.acquire(true).await.is_none(), "no place left: Busy");
            // Suspects cannot take the clean line's places.
            let mut queued: Vec<_> = (0..MAX_WAITING)
                .map(|_| Box::pin(line.acquire(false)))
                .collect();
            for f in &mut queued {
                assert!(poll_once(f).await.is_none());
            }
            assert!(line.acquire(false).await.is_none(), "no place left: Busy");
        });
    }
}

//! Per-shard counters, for the admin endpoint's `/metrics` and the summary at exit.
//!
//! Each shard owns its counters outright (plain cells: one writer, no lock, no atomic, no
//! cache line shared with another CPU on the connection path). A reader asks every shard for a
//! `Snapshot` (answered on the shard's tick) and sums them; a stopping shard hands over its
//! last one.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::accesslog::ConnRecord;
use crate::outcome::Outcome;

/// The protocols a finished connection is counted under (`ConnRecord::protocol`; "" when it
/// ended before its first byte told).
pub const PROTOCOLS: [&str; 4] = ["", "socks5", "http", "https"];

/// Where a (protocol, outcome) pair is counted in `ListenerSnapshot::finished`.
pub fn finished_index(protocol: &str, outcome: Outcome) -> usize {
    let p = PROTOCOLS.iter().position(|p| *p == protocol).unwrap_or(0);
    p * Outcome::ALL.len() + outcome.index()
}

fn bump(c: &Cell<u64>, n: u64) {
    c.set(c.get().wrapping_add(n));
}

#[derive(Debug)]
struct ListenerCounters {
    accepted: Cell<u64>,
    /// Finished connections and forwarded requests, by `finished_index` (protocol, outcome).
    finished: Box<[Cell<u64>]>,
}

#[derive(Debug, Default)]
struct PoolCounters {
    finished: Cell<u64>,
    bytes_up: Cell<u64>,
    bytes_down: Cell<u64>,
}

/// One shard's counters, indexed by listener (its position in the configuration), outcome and
/// pool.
#[derive(Debug)]
pub struct ShardMetrics {
    listeners: Box<[ListenerCounters]>,
    pools: RefCell<HashMap<String, PoolCounters>>,
    /// Refused at accept: the shard's share of `max_connections` was taken.
    rejected_limit: Cell<u64>,
    /// Refused at accept: the address held its share of `max_connections_per_client`.
    rejected_per_client: Cell<u64>,
    /// Connection tasks that panicked (the shard kept serving).
    panics: Cell<u64>,
}

impl ShardMetrics {
    pub fn new(listeners: usize) -> Self {
        ShardMetrics {
            listeners: (0..listeners)
                .map(|_| ListenerCounters {
                    accepted: Cell::new(0),
                    finished: (0..PROTOCOLS.len() * Outcome::ALL.len())
                        .map(|_| Cell::new(0))
                        .collect(),
                })
                .collect(),
            pools: RefCell::new(HashMap::new()),
            rejected_limit: Cell::new(0),
            rejected_per_client: Cell::new(0),
            panics: Cell::new(0),
        }
    }

    pub fn accepted(&self, listener: usize) {
        if let Some(l) = self.listeners.get(listener) {
            bump(&l.accepted, 1);
        }
    }

    pub fn rejected_limit(&self) {
        bump(&self.rejected_limit, 1);
    }

    /// Counts a refusal for the per-client limit; returns the shard's total so far.
    pub fn rejected_per_client(&self) -> u64 {
        bump(&self.rejected_per_client, 1);
        self.rejected_per_client.get()
    }

    pub fn panicked(&self) {
        bump(&self.panics, 1);
    }

    /// Counts a finished connection or request by its listener, protocol, outcome and pool.
    pub fn finished(&self, rec: &ConnRecord) {
        if let Some(l) = self.listeners.get(rec.listener_index) {
            bump(&l.finished[finished_index(rec.protocol, rec.outcome)], 1);
        }
        if let Some(pool) = rec.pool_name() {
            let mut pools = self.pools.borrow_mut();
            if !pools.contains_key(pool) {
                pools.insert(pool.to_owned(), PoolCounters::default());
            }
            let p = &pools[pool];
            bump(&p.finished, 1);
            bump(&p.bytes_up, rec.bytes_up);
            bump(&p.bytes_down, rec.bytes_down);
        }
    }

    /// The counters as plain numbers (`log_dropped`: the shard's dropped access-log lines;
    /// `active`: its open connections).
    pub fn snapshot(&self, log_dropped: u64, active: u64) -> Snapshot {
        Snapshot {
            listeners: self
                .listeners
                .iter()
                .map(|l| ListenerSnapshot {
                    accepted: l.accepted.get(),
                    finished: l.finished.iter().map(Cell::get).collect(),
                })
                .collect(),
            pools: self
                .pools
                .borrow()
                .iter()
                .map(|(name, p)| {
                    (
                        name.clone(),
                        PoolSnapshot {
                            finished: p.finished.get(),
                            bytes_up: p.bytes_up.get(),
                            bytes_down: p.bytes_down.get(),
                        },
                    )
                })
                .collect(),
            rejected_limit: self.rejected_limit.get(),
            rejected_per_client: self.rejected_per_client.get(),
            panics: self.panics.get(),
            log_dropped,
            active,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ListenerSnapshot {
    pub accepted: u64,
    /// By `finished_index` (protocol, outcome).
    pub finished: Vec<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PoolSnapshot {
    pub finished: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

/// Counters of one shard, or the sum over several.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub listeners: Vec<ListenerSnapshot>,
    pub pools: BTreeMap<String, PoolSnapshot>,
    pub rejected_limit: u64,
    pub rejected_per_client: u64,
    pub panics: u64,
    pub log_dropped: u64,
    /// Connections open when the snapshot was taken.
    pub active: u64,
}

impl Snapshot {
    /// Adds another shard's counters.
    pub fn add(&mut self, other: &Snapshot) {
        if self.listeners.len() < other.listeners.len() {
            self.listeners
                .resize(other.listeners.len(), ListenerSnapshot::default());
        }
        for (mine, theirs) in self.listeners.iter_mut().zip(&other.listeners) {
            mine.accepted += theirs.accepted;
            if mine.finished.len() < theirs.finished.len() {
                mine.finished.resize(theirs.finished.len(), 0);
            }
            for (a, b) in mine.finished.iter_mut().zip(&theirs.finished) {
                *a += b;
            }
        }
        for (name, p) in &other.pools {
            let mine = self.pools.entry(name.clone()).or_default();
            mine.finished += p.finished;
            mine.bytes_up += p.bytes_up;
            mine.bytes_down += p.bytes_down;
        }
        self.rejected_limit += other.rejected_limit;
        self.rejected_per_client += other.rejected_per_client;
        self.panics += other.panics;
        self.log_dropped += other.log_dropped;
        self.active += other.active;
    }

    /// Accepted connections over every listener.
    pub fn accepted(&self) -> u64 {
        self.listeners.iter().map(|l| l.accepted).sum()
    }

    /// Finished connections and requests with this outcome, over every listener and
    /// protocol.
    pub fn finished(&self, outcome: Outcome) -> u64 {
        self.listeners
            .iter()
            .flat_map(|l| {
                PROTOCOLS
                    .iter()
                    .filter_map(|p| l.finished.get(finished_index(p, outcome)))
            })
            .sum()
    }

    /// Finished counts by outcome name (outcomes that share a name are added), non-zero only.
    pub fn finished_by_name(&self) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        for o in Outcome::ALL {
            let n = self.finished(*o);
            if n > 0 {
                *out.entry(o.name()).or_insert(0) += n;
            }
        }
        out
    }
}

/// A shard's end of the snapshot requests.
#[derive(Debug)]
pub struct Requests(Receiver<SyncSender<Snapshot>>);

impl Requests {
    /// Answers every waiting request (on the shard's tick; never blocks). False once no
    /// reader is left.
    pub fn answer(&self, snapshot: impl Fn() -> Snapshot) -> bool {
        loop {
            match self.0.try_recv() {
                Ok(reply) => {
                    let _ = reply.try_send(snapshot());
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }
}

/// The reader's end: asks every shard and sums the answers.
#[derive(Debug, Clone, Default)]
pub struct Reader {
    shards: Vec<Sender<SyncSender<Snapshot>>>,
}

impl Reader {
    /// A request channel for one more shard.
    pub fn add_shard(&mut self) -> Requests {
        let (tx, rx) = std::sync::mpsc::channel();
        self.shards.push(tx);
        Requests(rx)
    }

    /// The sum over every shard that answers within `limit` (blocking: not on a shard), and
    /// how many answered.
    pub fn collect(&self, limit: Duration) -> (Snapshot, usize) {
        let (tx, rx) = std::sync::mpsc::sync_channel(self.shards.len().max(1));
        let asked = self
            .shards
            .iter()
            .filter(|s| s.send(tx.clone()).is_ok())
            .count();
        drop(tx);
        let until = Instant::now() + limit;
        let mut sum = Snapshot::default();
        let mut answered = 0;
        while answered < asked {
            match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(s) => {
                    sum.add(&s);
                    answered += 1;
                }
                Err(_) => break,
            }
        }
        (sum, answered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(listener: usize, outcome: Outcome) -> ConnRecord {
        ConnRecord {
            listener_index: listener,
            outcome,
            ..ConnRecord::default()
        }
    }

    #[test]
    fn counts_by_listener_and_outcome_and_sums_over_shards() {
        let a = ShardMetrics::new(2);
        let b = ShardMetrics::new(2);
        a.accepted(0);
        a.accepted(1);
        b.accepted(1);
        a.finished(&finished(0, Outcome::Ok));
        a.finished(&finished(1, Outcome::Blocked));
        b.finished(&finished(1, Outcome::Blocked));
        b.finished(&finished(1, Outcome::RelayErrorClient));
        b.finished(&finished(1, Outcome::RelayErrorUpstream));
        // An index the shard does not know is ignored, not a panic.
        b.accepted(7);
        b.finished(&finished(7, Outcome::Ok));
        a.rejected_limit();
        assert_eq!(b.rejected_per_client(), 1);
        b.panicked();
        let mut sum = a.snapshot(3, 0);
        sum.add(&b.snapshot(4, 0));
        assert_eq!(sum.accepted(), 3);
        assert_eq!(sum.listeners[1].accepted, 2);
        assert_eq!(sum.finished(Outcome::Blocked), 2);
        assert_eq!(
            sum.listeners[1].finished[finished_index("", Outcome::Blocked)],
            2
        );
        assert_eq!(sum.finished(Outcome::Ok), 1);
        assert_eq!(sum.finished_by_name()["relay_error"], 2);
        assert_eq!(
            (sum.rejected_limit, sum.rejected_per_client, sum.panics),
            (1, 1, 1)
        );
        assert_eq!(sum.log_dropped, 7);
    }

    #[test]
    fn a_reader_sums_the_answers_of_every_shard() {
        let mut reader = Reader::default();
        let shards: Vec<_> = (0..3)
            .map(|i| {
                let requests = reader.add_shard();
                std::thread::spawn(move || {
                    let m = ShardMetrics::new(1);
                    for _ in 0..=i {
                        m.accepted(0);
                    }
                    // Answer on a tick, as a shard does, until the reader is gone.
                    while requests.answer(|| m.snapshot(0, 0)) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                })
            })
            .collect();
        let (sum, answered) = reader.collect(Duration::from_secs(10));
        assert_eq!(answered, 3);
        assert_eq!(sum.accepted(), 1 + 2 + 3);
        drop(reader);
        for s in shards {
            s.join().unwrap();
        }
    }
}

//! The access log: one JSON line per finished connection (SPEC section 8), never per packet,
//! never a secret.
//!
//! A shard serialises its lines into a buffer of its own and hands whole buffers to one writer
//! thread through a bounded queue; only that thread writes to standard output. A reader that
//! stops reading therefore stalls the writer thread, never a shard: when the queue is full a
//! shard drops the buffer and counts its lines (`Batcher::dropped`), and the writer thread
//! reports the drops once output moves again.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime};

use egressd_policy::Decision;
use egressd_policy::model::Action;
use serde::{Serialize, Serializer};

use crate::outcome::{Outcome, Side};
use crate::state::GenRef;

/// One finished connection (or, for forwarded HTTP, one finished request).
#[derive(Debug, Default, Serialize)]
pub struct ConnRecord {
    /// When the connection (or request) started (`end_time` is when it ended).
    pub time: Timestamp,
    /// The same instant, for `duration_ms`.
    #[serde(skip)]
    pub started: Option<Instant>,
    #[serde(serialize_with = "as_str")]
    pub listener: std::rc::Rc<str>,
    /// The listener's position, for per-listener counters.
    #[serde(skip)]
    pub listener_index: usize,
    pub protocol: &'static str,
    pub client: Option<SocketAddr>,
    pub user: String,
    pub host: String,
    /// The HTTP request method (CONNECT for a tunnel); absent for SOCKS5.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// A forwarded request's path (query string excluded, never logged): its length and the
    /// first 16 hex digits of its SHA-256, enough to tell requests apart without the text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_len: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_sha256: Option<String>,
    /// The HTTP status answered to the client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub dialled: Option<SocketAddr>,
    /// Named from `decision` against the generation that decided, when the line is written.
    pub rule: Option<String>,
    pub action: Option<&'static str>,
    pub pool: Option<String>,
    pub egress: Option<SocketAddr>,
    pub fallback: Option<String>,
    /// Egress addresses tried without success, each with what it met (and the fallback's).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tried: Vec<String>,
    /// The generation that decided (else the one current when the request started).
    pub generation: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub duration_ms: u64,
    /// When the connection (or request) ended: `time` plus the duration.
    pub end_time: Timestamp,
    pub outcome: Outcome,
    /// Who failed, for an outcome that is a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side: Option<Side>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The decision and the generation that made it.
    #[serde(skip)]
    pub decision: Option<(GenRef, Decision)>,
}

/// A wall-clock instant, written as RFC 3339 UTC with milliseconds
/// (`2026-11-26T19:04:05.123Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub SystemTime);

impl Timestamp {
    pub fn now() -> Self {
        Timestamp(SystemTime::now())
    }
}

impl Default for Timestamp {
    fn default() -> Self {
        Timestamp(SystemTime::UNIX_EPOCH)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(self.0))
    }
}

fn as_str<S: Serializer>(v: &std::rc::Rc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v)
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Egress => "egress",
        Action::Default => "default",
        Action::Ingress => "ingress",
        Action::Block => "block",
    }
}

impl ConnRecord {
    /// Records the decision that `generation` made for this connection.
    pub fn decided(&mut self, generation: &GenRef, decision: Decision) {
        self.generation = generation.id;
        self.decision = Some((generation.clone(), decision));
    }

    /// Records a forwarded request's path (`path_and_query` from the request line): its
    /// length and a short hash, without the query string.
    pub fn path(&mut self, path_and_query: &str) {
        use sha2::Digest;
        let path = path_and_query
            .split_once('?')
            .map_or(path_and_query, |(p, _)| p);
        let digest = sha2::Sha256::digest(path.as_bytes());
        let mut hex = String::with_capacity(16);
        for b in &digest[..8] {
            hex.push_str(&format!("{b:02x}"));
        }
        self.path_len = Some(path.len());
        self.path_sha256 = Some(hex);
    }

    /// The deciding rule's name, from the generation that decided.
    pub fn rule_name(&self) -> Option<&str> {
        let (generation, d) = self.decision.as_ref()?;
        d.rule
            .and_then(|r| generation.policy().rule(r))
            .map(|r| r.name.as_str())
    }

    /// The pool the decision named, from the generation that decided.
    pub fn pool_name(&self) -> Option<&str> {
        let (generation, d) = self.decision.as_ref()?;
        if d.action != Action::Egress {
            return None;
        }
        d.pool
            .and_then(|p| generation.policy().pool(p))
            .map(|p| p.name.as_str())
    }

    /// Completes the record before it is written: duration, the decision's names (against
    /// the generation that decided, whatever is current now) and the failing side.
    pub fn settle(&mut self) {
        if let Some(started) = self.started {
            let took = started.elapsed();
            self.duration_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
            self.end_time = Timestamp(self.time.0 + took);
        }
        if let Some((_, d)) = &self.decision {
            // A destination in deny_destinations is refused whatever the rule says: the line
            // must not read as if the rule's action had been taken.
            let action = if self.outcome == Outcome::DeniedDestination {
                "deny"
            } else {
                action_name(d.action)
            };
            self.action = Some(action);
            self.rule = self.rule_name().map(str::to_owned);
            self.pool = self.pool_name().map(str::to_owned);
        }
        self.side = self.outcome.side();
    }
}

/// Batches a shard flushes at once (and on the shard's periodic tick).
const FLUSH_AT: usize = 16 * 1024;
/// Batches the writer thread may have queued before shards start dropping: with full
/// batches, 512 KiB of lines (a healthy reader takes them in microseconds).
const QUEUE_BATCHES: usize = 32;

/// A batch of whole lines.
struct Batch {
    bytes: Vec<u8>,
    lines: u64,
}

/// The writer thread's end: where shards send their batches.
#[derive(Debug, Clone)]
pub struct LogSink {
    tx: Option<SyncSender<Batch>>,
    /// Lines dropped by every shard (touched only when a batch is dropped).
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Batch({} lines)", self.lines)
    }
}

impl LogSink {
    /// Lines dropped so far because the output did not keep up.
    #[cfg(test)]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The thread that writes the access log to `out`. Dropping every `LogSink` clone ends it
/// once the queue is written; `join` waits for that.
pub struct LogWriter {
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LogWriter {
    /// Starts the writer thread over `out` (standard output in production).
    pub fn start(out: Box<dyn Write + Send>) -> std::io::Result<(LogWriter, LogSink)> {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_BATCHES);
        let dropped = Arc::new(AtomicU64::new(0));
        let thread = std::thread::Builder::new()
            .name("egressd-log".into())
            .spawn({
                let dropped = dropped.clone();
                move || write_batches(rx, out, &dropped)
            })?;
        Ok((
            LogWriter {
                thread: Some(thread),
            },
            LogSink {
                tx: Some(tx),
                dropped,
            },
        ))
    }

    /// Waits up to `limit` for the queue to be written (a reader that never reads again must
    /// not keep the process from exiting).
    pub fn join(mut self, limit: Duration) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let until = Instant::now() + limit;
        while !thread.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

fn write_batches(rx: Receiver<Batch>, mut out: Box<dyn Write + Send>, dropped: &AtomicU64) {
    let mut reported = 0;
    while let Ok(batch) = rx.recv() {
        if out.write_all(&batch.bytes).is_err() {
            // Standard output is gone (closed pipe): nothing more can be written.
            dropped.fetch_add(batch.lines, Ordering::Relaxed);
            continue;
        }
        let _ = out.flush();
        let now = dropped.load(Ordering::Relaxed);
        if now != reported {
            tracing::warn!(
                dropped = now - reported,
                total = now,
                "access-log lines dropped: standard output did not keep up"
            );
            reported = now;
        }
    }
}

/// A shard's end of the access log: lines are serialised into a buffer owned by the shard,
/// and handed to the writer thread whole, without ever waiting for it.
#[derive(Debug)]
pub struct Batcher {
    sink: LogSink,
    buf: std::cell::RefCell<Vec<u8>>,
    lines: std::cell::Cell<u64>,
    /// Lines this shard dropped because the queue was full.
    dropped: std::cell::Cell<u64>,
}

impl Batcher {
    pub fn new(sink: LogSink) -> Self {
        Batcher {
            sink,
            buf: std::cell::RefCell::new(Vec::with_capacity(FLUSH_AT)),
            lines: std::cell::Cell::new(0),
            dropped: std::cell::Cell::new(0),
        }
    }

    /// Writes a settled record (see `ConnRecord::settle`).
    pub fn write(&self, record: &ConnRecord) {
        let mut buf = self.buf.borrow_mut();
        if serde_json::to_writer(&mut *buf, record).is_ok() {
            buf.push(b'\n');
            self.lines.set(self.lines.get() + 1);
        }
        if buf.len() >= FLUSH_AT {
            drop(buf);
            self.flush();
        }
    }

    /// Hands the buffered lines to the writer thread, or drops and counts them when its queue
    /// is full.
    pub fn flush(&self) {
        let lines = self.lines.replace(0);
        if lines == 0 {
            return;
        }
        let Some(tx) = &self.sink.tx else {
            self.buf.borrow_mut().clear();
            return;
        };
        let bytes = std::mem::replace(&mut *self.buf.borrow_mut(), Vec::with_capacity(FLUSH_AT));
        match tx.try_send(Batch { bytes, lines }) {
            Ok(()) => {}
            Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) => {
                self.dropped.set(self.dropped.get() + b.lines);
                self.sink.dropped.fetch_add(b.lines, Ordering::Relaxed);
                // Keep the allocation for the next lines.
                let mut bytes = b.bytes;
                bytes.clear();
                *self.buf.borrow_mut() = bytes;
            }
        }
    }

    /// Lines this shard has dropped.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        let rec = ConnRecord {
            time: Timestamp(SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_719_845_123)),
            ..ConnRecord::default()
        };
        let v: serde_json::Value = serde_json::to_value(&rec).unwrap();
        assert_eq!(v["time"], "2026-11-26T19:04:05.123Z");
        assert_eq!(v["outcome"], "ok");
        assert!(v.get("side").is_none());
    }

    #[test]
    fn a_path_is_logged_as_length_and_hash_without_its_query() {
        let mut a = ConnRecord::default();
        a.path("/reports/q3?token=secret");
        let mut b = ConnRecord::default();
        b.path("/reports/q3");
        assert_eq!(a.path_len, Some(11));
        assert_eq!(a.path_sha256, b.path_sha256);
        assert_eq!(a.path_sha256.as_ref().map(String::len), Some(16));
        let line = serde_json::to_string(&a).unwrap();
        assert!(
            !line.contains("secret") && !line.contains("reports"),
            "{line}"
        );
    }

    #[test]
    fn names_come_from_the_generation_that_decided() {
        let policy = |rule: &str, pool: &str| {
            format!(
                "[[listener]]\nname = \"m\"\nbind = \"127.0.0.1:0\"\n[[pool]]\nname = \"{pool}\"\nipv4 = [\"127.0.0.2\"]\n[[rule]]\nname = \"{rule}\"\naction = \"egress\"\npool = \"{pool}\"\n"
            )
        };
        // The record keeps the deciding generation: whatever is current when the line is
        // written (proxy_reload.rs shows it across a real reload), the names are its own.
        let old = crate::testutil::generation(&policy("old-rule", "old-pool"));
        let mut rec = ConnRecord {
            outcome: Outcome::Ok,
            ..ConnRecord::default()
        };
        rec.decided(&old, crate::testutil::decision_of(&old, "old-rule"));
        rec.settle();
        assert_eq!(rec.rule.as_deref(), Some("old-rule"));
        assert_eq!(rec.pool.as_deref(), Some("old-pool"));
        assert_eq!(rec.action, Some("egress"));
        assert_eq!(rec.generation, old.id);
    }

    /// An output that accepts nothing until released, like a reader that stopped reading.
    struct Stalled {
        gate: Arc<Mutex<()>>,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Stalled {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let _open = self.gate.lock().unwrap();
            self.got.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_output_drops_and_counts_lines_instead_of_blocking_the_shard() {
        let gate = Arc::new(Mutex::new(()));
        let got = Arc::new(Mutex::new(Vec::new()));
        let closed = gate.lock().unwrap();
        let (writer, sink) = LogWriter::start(Box::new(Stalled {
            gate: gate.clone(),
            got: got.clone(),
        }))
        .unwrap();
        let log = Batcher::new(sink.clone());
        let rec = ConnRecord {
            outcome: Outcome::ConnectFailed,
            side: Outcome::ConnectFailed.side(),
            ..ConnRecord::default()
        };
        // Far more batches than the queue holds; none of this may block.
        let total = (QUEUE_BATCHES as u64 + 10) * 3;
        for _ in 0..total {
            log.write(&rec);
            log.flush();
        }
        assert!(log.dropped() > 0, "a full queue drops");
        assert_eq!(sink.dropped(), log.dropped());
        let dropped = log.dropped();
        drop(closed);
        drop(log);
        drop(sink);
        writer.join(Duration::from_secs(10));
        let text = String::from_utf8(got.lock().unwrap().clone()).unwrap();
        let written = text.lines().count() as u64;
        assert_eq!(written + dropped, total, "every line written or counted");
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["side"], "upstream");
        }
    }
}

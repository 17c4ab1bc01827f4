//! The access log: one JSON line per finished connection (SPEC section 8), never per packet,
//! never a secret. Each shard buffers its lines and writes them to standard output in whole
//! lines with its own descriptor, so shards never contend on a lock.

use std::cell::RefCell;
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// One finished connection (or, for forwarded HTTP, one finished request).
#[derive(Debug, Default, Serialize)]
pub struct ConnRecord {
    /// When the connection (or request) started.
    pub time: String,
    /// The same instant, for `duration_ms`.
    #[serde(skip)]
    pub started: Option<std::time::Instant>,
    pub listener: String,
    pub protocol: &'static str,
    pub client: Option<SocketAddr>,
    pub user: String,
    pub host: String,
    /// The HTTP request method (CONNECT for a tunnel); absent for SOCKS5.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The HTTP status answered to the client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub dialled: Option<SocketAddr>,
    pub rule: Option<String>,
    pub action: Option<&'static str>,
    pub pool: Option<String>,
    pub egress: Option<SocketAddr>,
    pub fallback: Option<String>,
    pub generation: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub duration_ms: u64,
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Flush when this much is buffered (and on the shard's periodic tick).
const FLUSH_AT: usize = 16 * 1024;

#[derive(Debug)]
pub struct AccessLog {
    out: Option<RefCell<File>>,
    buf: RefCell<Vec<u8>>,
}

impl AccessLog {
    /// A log writing to this process's standard output.
    pub fn stdout() -> Self {
        let out = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .map(|fd| RefCell::new(File::from(fd)));
        AccessLog {
            out,
            buf: RefCell::new(Vec::with_capacity(FLUSH_AT)),
        }
    }

    /// Writes `record`, its duration measured now.
    pub fn write(&self, record: &mut ConnRecord) {
        if let Some(started) = record.started {
            record.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        }
        let mut buf = self.buf.borrow_mut();
        if serde_json::to_writer(&mut *buf, record).is_ok() {
            buf.push(b'\n');
        }
        if buf.len() >= FLUSH_AT {
            drop(buf);
            self.flush();
        }
    }

    pub fn flush(&self) {
        let mut buf = self.buf.borrow_mut();
        if buf.is_empty() {
            return;
        }
        if let Some(out) = &self.out {
            let _ = out.borrow_mut().write_all(&buf);
        }
        buf.clear();
    }
}

/// RFC 3339 UTC time with milliseconds, e.g. 2026-11-26T19:04:05.123Z.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_795_719_845_123)),
            "2026-11-26T19:04:05.123Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }
}

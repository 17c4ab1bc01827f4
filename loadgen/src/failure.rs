//! Why one operation failed, and the per-class error counts a run reports.
//!
//! Classes: `connect` (TCP connect to the first hop), `proxy-refused` (a well-formed refusal:
//! SOCKS reply != 0, HTTP status != 200, auth rejected; kept with its code), `handshake` (the
//! proxy broke the protocol or hung up mid-handshake), `io` (the tunnel failed after it was
//! established), `timeout` (any I/O that exceeded its deadline).

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use crate::wire::ReplyError;

#[derive(Debug)]
pub enum Failure {
    Connect(io::Error),
    Refused(String),
    Handshake(String),
    Io(io::Error),
    Timeout,
}

impl Failure {
    pub fn connect(error: io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::TimedOut => Failure::Timeout,
            _ => Failure::Connect(error),
        }
    }

    pub fn io(error: io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::TimedOut => Failure::Timeout,
            _ => Failure::Io(error),
        }
    }

    /// Re-labels a transport failure that happened while talking to the proxy.
    pub fn in_handshake(self) -> Self {
        match self {
            Failure::Io(error) => Failure::Handshake(error.to_string()),
            other => other,
        }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            Failure::Connect(_) => ErrorClass::Connect,
            Failure::Refused(_) => ErrorClass::ProxyRefused,
            Failure::Handshake(_) => ErrorClass::Handshake,
            Failure::Io(_) => ErrorClass::Io,
            Failure::Timeout => ErrorClass::Timeout,
        }
    }
}

impl From<ReplyError> for Failure {
    fn from(error: ReplyError) -> Self {
        match error {
            ReplyError::Refused(code) => Failure::Refused(code),
            ReplyError::Malformed(why) => Failure::Handshake(why.to_owned()),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect failed: {e}"),
            Failure::Refused(code) => write!(f, "proxy refused ({code})"),
            Failure::Handshake(why) => write!(f, "handshake failed: {why}"),
            Failure::Io(e) => write!(f, "I/O failed: {e}"),
            Failure::Timeout => write!(f, "timed out"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    Connect,
    ProxyRefused,
    Handshake,
    Io,
    Timeout,
}

impl ErrorClass {
    fn slot(self) -> usize {
        self as usize
    }
}

/// Error counts by class, plus the refusal codes seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    by_class: [u64; 5],
    refused_codes: BTreeMap<String, u64>,
}

impl ErrorCounts {
    pub fn add(&mut self, failure: &Failure) {
        self.by_class[failure.class().slot()] += 1;
        if let Failure::Refused(code) = failure {
            *self.refused_codes.entry(code.clone()).or_default() += 1;
        }
    }

    pub fn merge(&mut self, other: &ErrorCounts) {
        for (mine, theirs) in self.by_class.iter_mut().zip(other.by_class) {
            *mine += theirs;
        }
        for (code, count) in &other.refused_codes {
            *self.refused_codes.entry(code.clone()).or_default() += count;
        }
    }

    pub fn count(&self, class: ErrorClass) -> u64 {
        self.by_class[class.slot()]
    }

    pub fn refused_codes(&self) -> &BTreeMap<String, u64> {
        &self.refused_codes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_their_own_class() {
        let timed_out = io::Error::from(io::ErrorKind::TimedOut);
        assert_eq!(Failure::connect(timed_out).class(), ErrorClass::Timeout);
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(Failure::connect(refused).class(), ErrorClass::Connect);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(
            Failure::io(reset).in_handshake().class(),
            ErrorClass::Handshake
        );
        assert_eq!(Failure::Timeout.in_handshake().class(), ErrorClass::Timeout);
    }

    #[test]
    fn counts_merge_with_codes() {
        let mut a = ErrorCounts::default();
        a.add(&Failure::Refused("socks5:0x02".into()));
        a.add(&Failure::Timeout);
        let mut b = ErrorCounts::default();
        b.add(&Failure::Refused("socks5:0x02".into()));
        b.add(&Failure::Refused("http:403".into()));
        a.merge(&b);
        assert_eq!(a.count(ErrorClass::ProxyRefused), 3);
        assert_eq!(a.count(ErrorClass::Timeout), 1);
        assert_eq!(a.count(ErrorClass::Io), 0);
        assert_eq!(a.refused_codes().get("socks5:0x02"), Some(&2));
        assert_eq!(a.refused_codes().get("http:403"), Some(&1));
    }
}

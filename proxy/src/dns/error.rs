//! Why a lookup failed, in terms a dialer can act on: report the name as unknown, or try again.
//!
//! All of these are failures on the egress side (the resolver or the name servers), never the
//! client's fault, except [`DnsError::InvalidName`], which is a client sending a host that cannot
//! be a DNS name.

use std::fmt;
use std::io;

/// A failed [`Resolver::lookup`](super::Resolver::lookup).
#[derive(Debug)]
pub enum DnsError {
    /// The name does not exist (NXDOMAIN) or has no A/AAAA records (NODATA) under any search
    /// suffix.
    NotFound,
    /// No name server answered within `timeout` on any of the `attempts` rounds.
    Timeout,
    /// Every name server that answered refused or failed the query (SERVFAIL, REFUSED, NOTIMP,
    /// FORMERR); `rcode` is the last response code seen.
    ServerFailure { rcode: u16 },
    /// A local socket error, or the name server was unreachable (ICMP port unreachable).
    Io(io::Error),
    /// A reply to our question could not be decoded.
    Malformed,
    /// The host is not a syntactically valid DNS name; nothing was sent.
    InvalidName,
}

impl DnsError {
    /// Whether asking again later may succeed. `NotFound` is cached negatively, so an immediate
    /// retry would only read the cache; `InvalidName` will never resolve.
    pub fn is_transient(&self) -> bool {
        match self {
            DnsError::Timeout
            | DnsError::ServerFailure { .. }
            | DnsError::Io(_)
            | DnsError::Malformed => true,
            DnsError::NotFound | DnsError::InvalidName => false,
        }
    }

    /// Whether the search list should stop here instead of trying the next suffix. glibc gives
    /// up on a timeout (the servers are down, more names would only multiply the wait) but moves
    /// on after a negative or failed answer.
    pub(crate) fn stops_search(&self) -> bool {
        matches!(self, DnsError::Timeout | DnsError::Io(_))
    }
}

/// Cloned so one network answer can be handed to every lookup that waited on the same query.
/// `io::Error` is not `Clone`; the copy keeps its kind and message, which is all a caller reads.
impl Clone for DnsError {
    fn clone(&self) -> Self {
        match self {
            DnsError::NotFound => DnsError::NotFound,
            DnsError::Timeout => DnsError::Timeout,
            DnsError::ServerFailure { rcode } => DnsError::ServerFailure { rcode: *rcode },
            DnsError::Io(e) => DnsError::Io(io::Error::new(e.kind(), e.to_string())),
            DnsError::Malformed => DnsError::Malformed,
            DnsError::InvalidName => DnsError::InvalidName,
        }
    }
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::NotFound => f.write_str("host name not found"),
            DnsError::Timeout => f.write_str("DNS query timed out"),
            DnsError::ServerFailure { rcode } => {
                write!(f, "name server failure ({})", rcode_name(*rcode))
            }
            DnsError::Io(e) => write!(f, "DNS I/O error: {e}"),
            DnsError::Malformed => f.write_str("malformed DNS response"),
            DnsError::InvalidName => f.write_str("invalid host name"),
        }
    }
}

impl std::error::Error for DnsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DnsError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for DnsError {
    fn from(e: io::Error) -> Self {
        DnsError::Io(e)
    }
}

fn rcode_name(rcode: u16) -> String {
    match rcode {
        1 => "FORMERR".to_owned(),
        2 => "SERVFAIL".to_owned(),
        4 => "NOTIMP".to_owned(),
        5 => "REFUSED".to_owned(),
        other => format!("rcode {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_and_display() {
        assert!(DnsError::Timeout.is_transient());
        assert!(DnsError::ServerFailure { rcode: 2 }.is_transient());
        assert!(!DnsError::NotFound.is_transient());
        assert!(!DnsError::InvalidName.is_transient());
        assert_eq!(
            DnsError::ServerFailure { rcode: 2 }.to_string(),
            "name server failure (SERVFAIL)"
        );
        let io = DnsError::Io(io::Error::new(io::ErrorKind::ConnectionRefused, "refused"));
        assert!(io.is_transient());
        let copy = io.clone();
        assert!(
            matches!(copy, DnsError::Io(ref e) if e.kind() == io::ErrorKind::ConnectionRefused)
        );
        assert_eq!(copy.to_string(), "DNS I/O error: refused");
    }
}

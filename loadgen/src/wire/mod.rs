//! Sans-I/O protocol codecs: request encoders and reply parsers for SOCKS5 and HTTP.
//!
//! Parsers take the bytes received so far and answer "need more", "done, consumed N bytes" or
//! an error, so they are unit-tested without sockets and the same driver (`conn::Conn`) feeds
//! them all.

pub mod head;
pub mod http;
pub mod socks5;

/// Why a reply could not be accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// The proxy answered, well-formed, with a refusal; the string is the code (`socks5:0x02`).
    Refused(String),
    /// The reply broke the protocol.
    Malformed(&'static str),
}

/// `Ok(None)`: need more bytes; `Ok(Some((value, consumed)))`: a whole reply.
pub type Parsed<T> = Result<Option<(T, usize)>, ReplyError>;

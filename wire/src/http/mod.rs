//! HTTP/1.x on the proxy side as sans-I/O codecs: request and response heads (parsed with
//! httparse under a fixed size and header-count limit), the body framing rules of RFC 9112, the
//! rewriting of heads between client and upstream, and the proxy's own small responses.
//!
//! Bodies are never parsed into memory: the session relays them byte for byte and only asks
//! [`RequestHead::request_body`] / [`ResponseHead::response_body`] how long they are, or feeds a
//! chunked body through [`ChunkedScanner`] to find where it ends. Because the bytes go upstream
//! unchanged, the framing rules here are strict: any disagreement between how this proxy and the
//! next hop delimit a body is a request-smuggling hole, so ambiguous framing is refused rather
//! than guessed at.
//!
//! One concern per file: `request` (client heads, targets, credentials, the forwarded head),
//! `response` (upstream heads and the relayed head), `chunked` (where a chunked body ends),
//! `headers` (field lookup, Connection tokens, hop-by-hop removal, framing fields, redaction,
//! shared writers) and `status` (the proxy's own responses); tests sit beside each.

use std::fmt;

pub use crate::socks5::Parsed;

mod chunked;
mod headers;
mod request;
mod response;
mod status;

pub use chunked::*;
use headers::*;
pub use request::*;
pub use response::*;
pub use status::*;

/// The largest request or response head (start line and header fields) accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Header fields per head; more is answered with 431 rather than parsed into a bigger array.
pub(super) const MAX_HEADERS: usize = 100;
/// A chunk-size line (size and extensions) longer than this is an attack, not a chunk.
pub(super) const MAX_CHUNK_LINE: usize = 1024;

/// Fields that describe one connection, not the message, so they never cross the proxy.
pub(super) const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
];

/// Fields a `Connection` header may not remove: the body is relayed unchanged, so dropping its
/// framing (`Connection: content-length`) would make the next hop read the body as a new request.
pub(super) const NOT_REMOVABLE: [&str; 3] = ["content-length", "transfer-encoding", "host"];

/// Fields whose values `Debug` hides, so a head can be logged without leaking credentials.
pub(super) const SENSITIVE: [&str; 4] = [
    "proxy-authorization",
    "authorization",
    "cookie",
    "set-cookie",
];

/// Codings from the IANA registry that may precede `chunked`; anything else is unknown to us.
pub(super) const KNOWN_CODINGS: [&str; 6] = [
    "chunked",
    "compress",
    "deflate",
    "gzip",
    "x-compress",
    "x-gzip",
];

/// A request or response the proxy refuses, with the status to answer (for a request) and a fixed
/// description that never contains client data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub reason: &'static str,
}

impl HttpError {
    pub const fn new(status: u16, reason: &'static str) -> Self {
        HttpError { status, reason }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "http {} {}: {}",
            self.status,
            reason_phrase(self.status),
            self.reason
        )
    }
}

impl std::error::Error for HttpError {}

/// How far a message body extends after its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    Length(u64),
    /// Chunked transfer coding: feed the bytes through a [`ChunkedScanner`] to find the end.
    Chunked,
    /// Responses only: the body ends when the server closes, so the client connection must close
    /// too once it is relayed.
    UntilClose,
}

#[cfg(test)]
mod testutil {
    use super::*;

    pub(crate) const CHUNKED: &[u8] = b"5;name=\"v a\"\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Sum: 1\r\nX-Other: 2\r\n\r\n";

    /// Feeds `pieces` in order and returns the offset of the body's end in their concatenation.
    pub(crate) fn scan(pieces: &[&[u8]]) -> Result<Option<usize>, HttpError> {
        let mut scanner = ChunkedScanner::new();
        let mut offset = 0;
        for piece in pieces {
            if let Some(end) = scanner.feed(piece)? {
                return Ok(Some(offset + end));
            }
            offset += piece.len();
        }
        Ok(None)
    }

    pub(crate) fn done<T: fmt::Debug>(parsed: Parsed<T, HttpError>) -> (T, usize) {
        match parsed {
            Parsed::Done { value, consumed } => (value, consumed),
            other => panic!("expected Done, got {other:?}"),
        }
    }

    pub(crate) fn invalid<T: fmt::Debug>(parsed: Parsed<T, HttpError>) -> HttpError {
        match parsed {
            Parsed::Invalid(err) => err,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    pub(crate) fn request(text: &str) -> RequestHead {
        done(parse_request_head(text.as_bytes(), MAX_HEAD)).0
    }

    pub(crate) fn request_error(text: &str) -> u16 {
        invalid(parse_request_head(text.as_bytes(), MAX_HEAD)).status
    }

    pub(crate) fn response(text: &str) -> ResponseHead {
        done(parse_response_head(text.as_bytes(), MAX_HEAD)).0
    }

    pub(crate) fn forwarded(text: &str) -> String {
        let mut out = Vec::new();
        encode_forward_head(&request(text), &mut out);
        String::from_utf8(out).unwrap()
    }

    pub(crate) fn relayed(text: &str, keep_alive: bool) -> String {
        let mut out = Vec::new();
        encode_response_head(&response(text), keep_alive, &mut out);
        String::from_utf8(out).unwrap()
    }

    pub(crate) fn absolute(host: &str, port: u16, path: &str) -> RequestTarget {
        RequestTarget::Absolute {
            host: host.into(),
            port,
            path_and_query: path.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;
    use proptest::prelude::*;

    fn chunked_body(chunks: &[Vec<u8>], extension: bool, trailers: &[String]) -> Vec<u8> {
        let mut body = Vec::new();
        for chunk in chunks.iter().filter(|c| !c.is_empty()) {
            body.extend_from_slice(format!("{:x}", chunk.len()).as_bytes());
            if extension {
                body.extend_from_slice(b";ext=1");
            }
            body.extend_from_slice(b"\r\n");
            body.extend_from_slice(chunk);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n");
        for trailer in trailers {
            body.extend_from_slice(trailer.as_bytes());
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"\r\n");
        body
    }

    fn check_parsed<T, E>(parsed: Parsed<T, E>, len: usize) -> Result<(), TestCaseError> {
        if let Parsed::Done { consumed, .. } = parsed {
            prop_assert!(consumed <= len);
        }
        Ok(())
    }

    fn run_all_parsers(bytes: &[u8]) -> Result<(), TestCaseError> {
        for max in [64, MAX_HEAD] {
            let parsed = parse_request_head(bytes, max);
            if let Parsed::Done { value, .. } = &parsed {
                let _ = value.request_body();
                let _ = value.proxy_basic_credentials();
                let _ = value.wants_keep_alive();
                encode_forward_head(value, &mut Vec::new());
            }
            check_parsed(parsed, bytes.len())?;
            let parsed = parse_response_head(bytes, max);
            if let Parsed::Done { value, .. } = &parsed {
                let _ = value.response_body("GET");
                encode_response_head(value, true, &mut Vec::new());
            }
            check_parsed(parsed, bytes.len())?;
        }
        if let Ok(Some(end)) = ChunkedScanner::new().feed(bytes) {
            prop_assert!(end <= bytes.len());
        }
        let _ = decode_base64(bytes);
        Ok(())
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            run_all_parsers(&bytes)?;
        }

        #[test]
        fn parsers_never_panic_on_mangled_valid_messages(
            which in 0usize..4,
            cut in any::<prop::sample::Index>(),
            tail in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let messages: [&[u8]; 4] = [
                b"GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\nProxy-Authorization: Basic YTpi\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"CONNECT [2001:db8::1]:443 HTTP/1.1\r\nConnection: close\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: X\r\n\r\n",
                CHUNKED,
            ];
            let msg = messages[which];
            let mut bytes = msg[..cut.index(msg.len() + 1)].to_vec();
            bytes.extend_from_slice(&tail);
            run_all_parsers(&bytes)?;
        }

        #[test]
        fn valid_head_with_random_tail_consumes_only_the_head(
            tail in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let head = b"PUT http://example.com:81/a HTTP/1.1\r\nContent-Length: 3\r\n\r\n";
            let mut bytes = head.to_vec();
            bytes.extend_from_slice(&tail);
            let whole_head = matches!(
                parse_request_head(&bytes, MAX_HEAD),
                Parsed::Done { consumed, .. } if consumed == head.len()
            );
            prop_assert!(whole_head);
            let head = b"HTTP/1.1 204 No Content\r\nX: y\r\n\r\n";
            let mut bytes = head.to_vec();
            bytes.extend_from_slice(&tail);
            let whole_head = matches!(
                parse_response_head(&bytes, MAX_HEAD),
                Parsed::Done { consumed, .. } if consumed == head.len()
            );
            prop_assert!(whole_head);
        }

        #[test]
        fn chunked_end_is_independent_of_splits(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..6),
            extension in any::<bool>(),
            trailers in proptest::collection::vec("[A-Za-z-]{1,10}: [ -~]{0,20}", 0..3),
            tail in proptest::collection::vec(any::<u8>(), 0..64),
            splits in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let body = chunked_body(&chunks, extension, &trailers);
            let mut stream = body.clone();
            stream.extend_from_slice(&tail);
            let mut cuts: Vec<usize> = splits.iter().map(|s| s.index(stream.len() + 1)).collect();
            cuts.push(0);
            cuts.push(stream.len());
            cuts.sort_unstable();
            let pieces: Vec<&[u8]> = cuts.windows(2).map(|w| &stream[w[0]..w[1]]).collect();
            prop_assert_eq!(scan(&pieces), Ok(Some(body.len())));
        }
    }
}

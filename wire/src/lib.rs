//! Sans-I/O protocol codecs of egressd: bytes in, requests or errors out, and reply encoders.
//! No runtime, no sockets and no unsafe code, so that the proxy, fuzz targets and benches all
//! reach the same parsers.
//!
//! - `socks5`: RFC 1928 greeting, method selection, request and reply, RFC 1929
//!   username/password, and the UDP request header (section 7).
//! - `http`: HTTP/1.1 proxy request and response heads, body framing (length, chunked, until
//!   close), header rewriting for forwarding, and error responses.
#![forbid(unsafe_code)]

pub mod http;
pub mod socks5;

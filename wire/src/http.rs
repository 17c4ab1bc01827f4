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

use std::fmt;
use std::net::Ipv6Addr;

pub use super::socks5::Parsed;
use crate::socks5::{UserPass, normalize_host_name};

/// The largest request or response head (start line and header fields) accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Header fields per head; more is answered with 431 rather than parsed into a bigger array.
const MAX_HEADERS: usize = 100;
/// A chunk-size line (size and extensions) longer than this is an attack, not a chunk.
const MAX_CHUNK_LINE: usize = 1024;

/// Fields that describe one connection, not the message, so they never cross the proxy.
const HOP_BY_HOP: [&str; 8] = [
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
const NOT_REMOVABLE: [&str; 3] = ["content-length", "transfer-encoding", "host"];

/// Fields whose values `Debug` hides, so a head can be logged without leaking credentials.
const SENSITIVE: [&str; 4] = [
    "proxy-authorization",
    "authorization",
    "cookie",
    "set-cookie",
];

/// Codings from the IANA registry that may precede `chunked`; anything else is unknown to us.
const KNOWN_CODINGS: [&str; 6] = [
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

/// The standard reason phrase for the statuses this proxy sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => match status / 100 {
            4 => "Client Error",
            5 => "Server Error",
            _ => "Unknown",
        },
    }
}

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

/// The request-target, classified by what the proxy does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestTarget {
    /// `CONNECT host:port`: open a tunnel.
    Authority { host: String, port: u16 },
    /// `GET http://host[:port]/path?query`: forward the request.
    Absolute {
        host: String,
        port: u16,
        path_and_query: String,
    },
    /// `/path` (or `*`): a request addressed to this server rather than through it.
    Origin(String),
}

/// A parsed request head. Header names keep their case and order, values are raw bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub target: RequestTarget,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl fmt::Debug for RequestHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestHead")
            .field("method", &self.method)
            .field("target", &self.target)
            .field("version", &self.version)
            .field("headers", &RedactedHeaders(&self.headers))
            .finish()
    }
}

impl RequestHead {
    /// The first field called `name`, compared case-insensitively.
    pub fn header<'a>(&'a self, name: &str) -> Option<&'a [u8]> {
        find_header(&self.headers, name)
    }

    /// Whether the client wants its connection kept open after this exchange. `Proxy-Connection`
    /// is not standard but old clients send it to proxies in place of `Connection`, so it counts.
    pub fn wants_keep_alive(&self) -> bool {
        let says = |token| {
            has_token(&self.headers, "connection", token)
                || has_token(&self.headers, "proxy-connection", token)
        };
        if says("close") {
            return false;
        }
        self.version >= 1 || says("keep-alive")
    }

    /// `Proxy-Authorization: Basic base64(user:pass)`, if present and well-formed.
    ///
    /// Returned as [`UserPass`] so HTTP and SOCKS5 credentials reach the same authenticator as one
    /// type whose `Debug` hides the password. The decoded text must be UTF-8 (RFC 7617's only
    /// charset) and is split at the first `:`, since user names cannot contain one but passwords
    /// can.
    pub fn proxy_basic_credentials(&self) -> Option<UserPass> {
        let value = self.header("proxy-authorization")?.trim_ascii();
        let split = value.iter().position(|&b| b == b' ' || b == b'\t')?;
        let (scheme, token) = value.split_at(split);
        if !scheme.eq_ignore_ascii_case(b"basic") {
            return None;
        }
        let decoded = decode_base64(token.trim_ascii())?;
        let text = String::from_utf8(decoded).ok()?;
        let (username, password) = text.split_once(':')?;
        Some(UserPass {
            username: username.to_owned(),
            password: password.to_owned(),
        })
    }

    /// The request body's framing (RFC 9112 section 6.3).
    ///
    /// Every ambiguity is refused, because the body goes upstream verbatim and the upstream must
    /// delimit it exactly as we do: `Transfer-Encoding` together with `Content-Length`,
    /// `Transfer-Encoding` in an HTTP/1.0 request, differing or malformed lengths, and a coding
    /// list whose final coding is not `chunked` (400, as RFC 9112 requires, or 501 when the list
    /// names a coding we do not know).
    pub fn request_body(&self) -> Result<Body, HttpError> {
        let length = content_length(&self.headers);
        match transfer_coding(&self.headers) {
            TransferCoding::Absent => match length {
                ContentLength::Absent => Ok(Body::None),
                ContentLength::Valid(n) => Ok(Body::Length(n)),
                ContentLength::Invalid => Err(HttpError::new(400, "invalid Content-Length")),
            },
            _ if length != ContentLength::Absent => Err(HttpError::new(
                400,
                "both Transfer-Encoding and Content-Length",
            )),
            _ if self.version == 0 => Err(HttpError::new(
                400,
                "Transfer-Encoding in an HTTP/1.0 request",
            )),
            TransferCoding::ChunkedFinal => Ok(Body::Chunked),
            TransferCoding::NotChunkedFinal { unknown: true } => {
                Err(HttpError::new(501, "unknown transfer coding"))
            }
            TransferCoding::NotChunkedFinal { unknown: false } => Err(HttpError::new(
                400,
                "chunked is not the final transfer coding",
            )),
        }
    }
}

/// Parses a request head from the start of `buf`.
///
/// `consumed` is the head's length; body or pipelined bytes follow it. A head that is not complete
/// within `max_head` bytes is answered with 431 (414 while still in the request line), and more
/// than 100 fields with 431, so a client cannot make the session buffer without bound.
pub fn parse_request_head(buf: &[u8], max_head: usize) -> Parsed<RequestHead, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let consumed = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= max_head => n,
        Ok(httparse::Status::Complete(_)) => return Parsed::Invalid(head_too_large(buf)),
        Ok(httparse::Status::Partial) if buf.len() >= max_head => {
            return Parsed::Invalid(head_too_large(buf));
        }
        Ok(httparse::Status::Partial) => return Parsed::NeedMore,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Invalid(HttpError::new(431, "too many header fields"));
        }
        Err(httparse::Error::Version) if names_an_http_version(buf) => {
            return Parsed::Invalid(HttpError::new(505, "only HTTP/1.0 and HTTP/1.1"));
        }
        Err(_) => return Parsed::Invalid(HttpError::new(400, "malformed request head")),
    };
    let (Some(method), Some(raw_target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Parsed::Invalid(HttpError::new(400, "malformed request head"));
    };
    let target = match parse_target(method, raw_target) {
        Ok(target) => target,
        Err(err) => return Parsed::Invalid(err),
    };
    Parsed::Done {
        value: RequestHead {
            method: method.to_owned(),
            target,
            version,
            headers: owned_headers(request.headers),
        },
        consumed,
    }
}

/// 414 while the request line itself has not ended, 431 once the fields are what is too long.
fn head_too_large(buf: &[u8]) -> HttpError {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    if buf[start..].contains(&b'\n') {
        HttpError::new(431, "request head too large")
    } else {
        HttpError::new(414, "request line too long")
    }
}

/// Whether the request line is three tokens, the last `HTTP/<digits>[.<digits>]`: httparse reports
/// any bad version token the same way, but only a real version other than 1.x deserves 505 rather
/// than 400 (a space inside the target also lands on the version token).
fn names_an_http_version(buf: &[u8]) -> bool {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let line = &buf[start..];
    let line = line
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(line);
    let mut tokens = line.split(|&b| b == b' ');
    let (Some(_method), Some(_target), Some(version), None) =
        (tokens.next(), tokens.next(), tokens.next(), tokens.next())
    else {
        return false;
    };
    let Some(number) = version.strip_prefix(b"HTTP/") else {
        return false;
    };
    let mut parts = number.split(|&b| b == b'.');
    let all_digits = |part: &[u8]| !part.is_empty() && part.iter().all(u8::is_ascii_digit);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(major), None, None) => all_digits(major),
        (Some(major), Some(minor), None) => all_digits(major) && all_digits(minor),
        _ => false,
    }
}

/// Classifies the request-target.
///
/// Only `http://` is forwarded: an `https://` URI would need this proxy to originate TLS, and
/// sending it as plain HTTP would silently strip the encryption the client asked for, so clients
/// must use CONNECT for it. Userinfo (`http://user@host/`) is refused because it is deprecated,
/// never sent upstream, and a classic way to disguise the real host (`http://good.com@evil.com/`).
fn parse_target(method: &str, raw: &str) -> Result<RequestTarget, HttpError> {
    if method == "CONNECT" {
        let (host, port) = parse_authority(raw, None)?;
        return Ok(RequestTarget::Authority { host, port });
    }
    if raw.starts_with('/') || raw == "*" {
        return Ok(RequestTarget::Origin(raw.to_owned()));
    }
    if let Some(rest) = strip_prefix_ignore_case(raw, "http://") {
        return parse_absolute(rest);
    }
    if strip_prefix_ignore_case(raw, "https://").is_some() {
        return Err(HttpError::new(
            400,
            "https URIs must be tunnelled with CONNECT",
        ));
    }
    Err(HttpError::new(400, "request target is not an http URI"))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

fn parse_absolute(rest: &str) -> Result<RequestTarget, HttpError> {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return Err(HttpError::new(400, "userinfo in request URI"));
    }
    let (host, port) = parse_authority(authority, Some(80))?;
    // A fragment is client-side only and never part of what is sent.
    let tail = tail.split_once('#').map_or(tail, |(before, _)| before);
    let path_and_query = if tail.starts_with('/') {
        tail.to_owned()
    } else {
        format!("/{tail}")
    };
    Ok(RequestTarget::Absolute {
        host,
        port,
        path_and_query,
    })
}

/// `host[:port]` or `[v6]:port`; the port is required when there is no default (CONNECT).
fn parse_authority(s: &str, default_port: Option<u16>) -> Result<(String, u16), HttpError> {
    const BAD_HOST: HttpError = HttpError::new(400, "invalid host in request target");
    let (host, port) = match s.strip_prefix('[') {
        Some(rest) => {
            let (literal, after) = rest.split_once(']').ok_or(BAD_HOST)?;
            let ip: Ipv6Addr = literal.parse().map_err(|_| BAD_HOST)?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or(BAD_HOST)?),
            };
            (ip.to_string(), port)
        }
        None => {
            let (name, port) = match s.split_once(':') {
                Some((name, port)) => (name, Some(port)),
                None => (s, None),
            };
            (normalize_host_name(name).ok_or(BAD_HOST)?, port)
        }
    };
    let port = match port {
        None | Some("") => default_port.ok_or(HttpError::new(400, "CONNECT target has no port"))?,
        Some(digits) => parse_port(digits)?,
    };
    Ok((host, port))
}

fn parse_port(digits: &str) -> Result<u16, HttpError> {
    const BAD_PORT: HttpError = HttpError::new(400, "invalid port in request target");
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BAD_PORT);
    }
    match digits.parse::<u16>() {
        Ok(0) | Err(_) => Err(BAD_PORT),
        Ok(port) => Ok(port),
    }
}

fn owned_headers(headers: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|h| (h.name.to_owned(), h.value.to_vec()))
        .collect()
}

/// Writes the head to send upstream for a forwarded request.
///
/// - The request line uses origin-form and the client's own HTTP version: the body and the
///   response are relayed unchanged, so the upstream must answer in a framing the client reads
///   (an HTTP/1.1 upstream would chunk a response for an HTTP/1.0 client).
/// - For an absolute-form target, `Host` is rewritten from the URI, as RFC 9112 section 3.2.2
///   requires: the policy decided on the URI's host, and the upstream must see the same one.
/// - Hop-by-hop fields and those named by `Connection` are dropped, except the framing fields and
///   `Host` (see [`NOT_REMOVABLE`]).
/// - `Connection` is always written explicitly, mirroring [`RequestHead::wants_keep_alive`]: the
///   upstream connection lives exactly as long as the client's, and HTTP/1.0 upstreams need the
///   `keep-alive` token to keep a connection at all.
pub fn encode_forward_head(head: &RequestHead, out: &mut Vec<u8>) {
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    match &head.target {
        RequestTarget::Absolute { path_and_query, .. } => {
            out.extend_from_slice(path_and_query.as_bytes());
        }
        RequestTarget::Origin(path) => out.extend_from_slice(path.as_bytes()),
        RequestTarget::Authority { host, port } => write_authority(host, Some(*port), out),
    }
    out.extend_from_slice(version_token(head.version));
    out.extend_from_slice(b"\r\n");

    let uri_host = match &head.target {
        RequestTarget::Absolute { host, port, .. } => Some((host, *port)),
        _ => None,
    };
    if let Some((host, port)) = uri_host {
        out.extend_from_slice(b"Host: ");
        write_authority(host, (port != 80).then_some(port), out);
        out.extend_from_slice(b"\r\n");
    }
    let listed = connection_tokens(&head.headers);
    for (name, value) in &head.headers {
        let replaced_host = uri_host.is_some() && name.eq_ignore_ascii_case("host");
        if !replaced_host && is_end_to_end(name, &listed) {
            write_field(name, value, out);
        }
    }
    // Persistence is hop by hop: whatever the client wants for its own connection, the proxy
    // asks to keep the upstream one, so that later requests (this client's or another's, to
    // the same destination from the same egress address) can use it.
    out.extend_from_slice(b"Connection: keep-alive\r\n\r\n");
}

fn version_token(version: u8) -> &'static [u8] {
    if version == 0 {
        b" HTTP/1.0"
    } else {
        b" HTTP/1.1"
    }
}

fn write_authority(host: &str, port: Option<u16>, out: &mut Vec<u8>) {
    let bracket = host.contains(':');
    if bracket {
        out.push(b'[');
    }
    out.extend_from_slice(host.as_bytes());
    if bracket {
        out.push(b']');
    }
    if let Some(port) = port {
        out.push(b':');
        push_decimal(u64::from(port), out);
    }
}

fn write_field(name: &str, value: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn push_decimal(mut n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        // `n % 10` is a single digit, so the cast cannot truncate.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// A parsed response head from the upstream.
#[derive(Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    /// The upstream's reason phrase, relayed as is (empty when it had none or it was not ASCII).
    pub reason: String,
    pub version: u8,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl fmt::Debug for ResponseHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseHead")
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("version", &self.version)
            .field("headers", &RedactedHeaders(&self.headers))
            .finish()
    }
}

impl ResponseHead {
    pub fn header<'a>(&'a self, name: &str) -> Option<&'a [u8]> {
        find_header(&self.headers, name)
    }

    /// Whether the upstream will keep its connection open after this response, by its headers.
    /// A body that is [`Body::UntilClose`] ends the connection whatever this says.
    pub fn keep_alive(&self) -> bool {
        if has_token(&self.headers, "connection", "close") {
            return false;
        }
        self.version >= 1 || has_token(&self.headers, "connection", "keep-alive")
    }

    /// The response body's framing (RFC 9112 section 6.3), given the request's method.
    ///
    /// Unlike a request, a response whose transfer codings do not end in `chunked` (or an
    /// HTTP/1.0 response with `Transfer-Encoding`) is still readable: it runs until the upstream
    /// closes. An invalid `Content-Length` without `Transfer-Encoding` is the one unrecoverable
    /// case, and RFC 9112 tells a proxy to answer it with 502.
    pub fn response_body(&self, request_method: &str) -> Result<Body, HttpError> {
        let no_body = request_method == "HEAD"
            || (100..200).contains(&self.status)
            || self.status == 204
            || self.status == 304
            || (request_method == "CONNECT" && (200..300).contains(&self.status));
        if no_body {
            return Ok(Body::None);
        }
        match transfer_coding(&self.headers) {
            TransferCoding::Absent => match content_length(&self.headers) {
                ContentLength::Absent => Ok(Body::UntilClose),
                ContentLength::Valid(n) => Ok(Body::Length(n)),
                ContentLength::Invalid => Err(HttpError::new(
                    502,
                    "upstream sent an invalid Content-Length",
                )),
            },
            TransferCoding::ChunkedFinal if self.version >= 1 => Ok(Body::Chunked),
            _ => Ok(Body::UntilClose),
        }
    }
}

/// Parses the upstream's response head. Every failure, including a head over `max_head`, is the
/// upstream's fault and maps to 502 for the client.
pub fn parse_response_head(buf: &[u8], max_head: usize) -> Parsed<ResponseHead, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let consumed = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= max_head => n,
        Ok(httparse::Status::Partial) if buf.len() < max_head => return Parsed::NeedMore,
        Ok(_) | Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Invalid(HttpError::new(502, "upstream response head too large"));
        }
        Err(_) => {
            return Parsed::Invalid(HttpError::new(502, "malformed upstream response head"));
        }
    };
    let (Some(version), Some(status)) = (response.version, response.code) else {
        return Parsed::Invalid(HttpError::new(502, "malformed upstream response head"));
    };
    if status < 100 {
        return Parsed::Invalid(HttpError::new(502, "invalid upstream status code"));
    }
    Parsed::Done {
        value: ResponseHead {
            status,
            reason: response.reason.unwrap_or_default().to_owned(),
            version,
            headers: owned_headers(response.headers),
        },
        consumed,
    }
}

/// Writes the response head to relay to the client.
///
/// Hop-by-hop fields are dropped as for requests, keeping the framing fields so the relayed body
/// still parses. `Content-Length` is dropped when `Transfer-Encoding` is present (RFC 9112
/// section 6.1 asks intermediaries to), so the client cannot pick the wrong one. `keep_alive` is
/// the caller's decision for the client connection (the client wanted it, the upstream allows it
/// and the body is not [`Body::UntilClose`]) and becomes the `Connection` field; interim (1xx)
/// responses get none, since the connection's fate is announced by the final response.
pub fn encode_response_head(head: &ResponseHead, keep_alive: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(&version_token(head.version)[1..]);
    out.push(b' ');
    push_decimal(u64::from(head.status), out);
    out.push(b' ');
    let reason = if head.reason.is_empty() {
        reason_phrase(head.status)
    } else {
        &head.reason
    };
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");

    let listed = connection_tokens(&head.headers);
    let chunked = find_header(&head.headers, "transfer-encoding").is_some();
    for (name, value) in &head.headers {
        let shadowed_length = chunked && name.eq_ignore_ascii_case("content-length");
        if !shadowed_length && is_end_to_end(name, &listed) {
            write_field(name, value, out);
        }
    }
    if head.status >= 200 {
        out.extend_from_slice(if keep_alive {
            b"Connection: keep-alive\r\n"
        } else {
            b"Connection: close\r\n"
        });
    }
    out.extend_from_slice(b"\r\n");
}

/// A complete error response from the proxy itself, e.g. 407 with a `Proxy-Authenticate` field in
/// `extra_headers`. The connection closes after it, since the request's body (if any) is unread.
///
/// CR and LF are removed from the extra fields: they come from configuration (a realm), and one
/// stray line break there would let it inject fields.
pub fn encode_error(status: u16, extra_headers: &[(&str, &str)], out: &mut Vec<u8>) {
    let phrase = reason_phrase(status);
    let mut body = Vec::with_capacity(phrase.len() + 5);
    push_decimal(u64::from(status), &mut body);
    body.push(b' ');
    body.extend_from_slice(phrase.as_bytes());
    body.push(b'\n');

    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&body[..body.len() - 1]);
    out.extend_from_slice(b"\r\nContent-Type: text/plain\r\nContent-Length: ");
    push_decimal(body.len() as u64, out);
    out.extend_from_slice(b"\r\nConnection: close\r\n");
    for (name, value) in extra_headers {
        let clean = |s: &str| s.bytes().filter(|&b| b != b'\r' && b != b'\n').collect();
        let name: Vec<u8> = clean(name);
        let value: Vec<u8> = clean(value);
        out.extend_from_slice(&name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(&value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
}

/// The answer to a CONNECT once the tunnel is up; tunnelled bytes follow it directly.
pub fn encode_connect_established(out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 200 Connection established\r\n\r\n");
}

/// Finds where a chunked body ends while its bytes stream past unchanged.
///
/// It holds no body bytes, only a few counters, so memory stays constant however the body is
/// split. Line endings must be CRLF and chunk sizes plain hex: lenient chunk parsing is how
/// smuggling attacks make two hops disagree about where a body ends.
#[derive(Debug, Clone, Default)]
pub struct ChunkedScanner {
    state: ChunkState,
    /// Bytes of the current chunk-size line, bounded by `MAX_CHUNK_LINE`.
    line_len: usize,
    /// Bytes of the trailer section so far, bounded by `MAX_HEAD`.
    trailer_len: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ChunkState {
    /// The first hex digit of a chunk size.
    #[default]
    SizeStart,
    Size(u64),
    /// Whitespace after the size, which may only lead to an extension.
    SizeSpace(u64),
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk: a trailer field line or the final empty line.
    TrailerLineStart,
    TrailerLine,
    TrailerLf,
    FinalLf,
    Done,
}

impl ChunkedScanner {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Advances over `data`. Returns `Some(n)` once the body ends within it: the first `n` bytes
    /// belong to the body and the rest to whatever follows. After the end every call returns
    /// `Some(0)`.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<usize>, HttpError> {
        let mut at = 0;
        while at < data.len() {
            match self.state {
                ChunkState::Done => return Ok(Some(at)),
                ChunkState::Data(remaining) => {
                    let available = data.len() - at;
                    // Skip the whole run of chunk data at once, without looking at it.
                    let step = usize::try_from(remaining).map_or(available, |r| r.min(available));
                    at += step;
                    let left = remaining - step as u64;
                    self.state = if left == 0 {
                        ChunkState::DataCr
                    } else {
                        ChunkState::Data(left)
                    };
                }
                _ => {
                    self.step(data[at])?;
                    at += 1;
                }
            }
        }
        Ok(self.is_done().then_some(at))
    }

    fn step(&mut self, byte: u8) -> Result<(), HttpError> {
        const BAD_CHUNK: HttpError = HttpError::new(400, "malformed chunked body");
        use ChunkState as S;
        match self.state {
            S::SizeStart | S::Size(_) | S::SizeSpace(_) | S::Extension(_) => {
                self.line_len += 1;
                if self.line_len > MAX_CHUNK_LINE {
                    return Err(HttpError::new(400, "chunk-size line too long"));
                }
            }
            S::TrailerLineStart | S::TrailerLine | S::TrailerLf | S::FinalLf => {
                self.trailer_len += 1;
                if self.trailer_len > MAX_HEAD {
                    return Err(HttpError::new(431, "chunked trailer section too large"));
                }
            }
            _ => {}
        }
        self.state = match (self.state, byte) {
            (S::SizeStart, b) => S::Size(u64::from(hex_value(b).ok_or(BAD_CHUNK)?)),
            (S::Size(size), b) if b.is_ascii_hexdigit() => {
                let digit = u64::from(hex_value(b).ok_or(BAD_CHUNK)?);
                let size = size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(digit))
                    .ok_or(HttpError::new(400, "chunk size overflows"))?;
                S::Size(size)
            }
            (S::Size(size) | S::SizeSpace(size), b' ' | b'\t') => S::SizeSpace(size),
            (S::Size(size) | S::SizeSpace(size), b';') => S::Extension(size),
            (S::Size(size) | S::Extension(size), b'\r') => S::SizeLf(size),
            (S::Extension(size), b) if b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80 => {
                S::Extension(size)
            }
            (S::SizeLf(0), b'\n') => S::TrailerLineStart,
            (S::SizeLf(size), b'\n') => S::Data(size),
            (S::DataCr, b'\r') => S::DataLf,
            (S::DataLf, b'\n') => {
                self.line_len = 0;
                S::SizeStart
            }
            (S::TrailerLineStart, b'\r') => S::FinalLf,
            (S::TrailerLineStart | S::TrailerLine, b) if b != b'\r' && b != b'\n' => S::TrailerLine,
            (S::TrailerLine, b'\r') => S::TrailerLf,
            (S::TrailerLf, b'\n') => S::TrailerLineStart,
            (S::FinalLf, b'\n') => S::Done,
            _ => return Err(BAD_CHUNK),
        };
        Ok(())
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Standard-alphabet base64 with mandatory padding. Anything else (wrong length, stray
/// characters, padding in the middle, non-zero unused bits) is rejected, so one credential has
/// exactly one encoding.
fn decode_base64(input: &[u8]) -> Option<Vec<u8>> {
    if !input.len().is_multiple_of(4) {
        return None;
    }
    let quads = input.len() / 4;
    let mut out = Vec::with_capacity(quads * 3);
    for (index, quad) in input.chunks_exact(4).enumerate() {
        let padding = quad.iter().rev().take_while(|&&b| b == b'=').count();
        if padding > 2 || (padding > 0 && index + 1 != quads) {
            return None;
        }
        let mut bits: u32 = 0;
        for &byte in &quad[..4 - padding] {
            bits = (bits << 6) | u32::from(base64_value(byte)?);
        }
        bits <<= 6 * padding;
        let [_, b0, b1, b2] = bits.to_be_bytes();
        match padding {
            0 => out.extend_from_slice(&[b0, b1, b2]),
            1 if b2 == 0 => out.extend_from_slice(&[b0, b1]),
            2 if b1 == 0 && b2 == 0 => out.push(b0),
            _ => return None,
        }
    }
    Some(out)
}

fn base64_value(byte: u8) -> Option<u8> {
    match byte {
        b'A'..=b'Z' => Some(byte - b'A'),
        b'a'..=b'z' => Some(byte - b'a' + 26),
        b'0'..=b'9' => Some(byte - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

fn find_header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// The non-empty, trimmed elements of every `name` field's comma-separated list, in order
/// (RFC 9110 section 5.6.1: repeated fields are one list, empty elements are ignored).
fn list_elements<'a>(
    headers: &'a [(String, Vec<u8>)],
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|element| !element.is_empty())
}

fn has_token(headers: &[(String, Vec<u8>)], name: &str, token: &str) -> bool {
    list_elements(headers, name).any(|e| e.eq_ignore_ascii_case(token.as_bytes()))
}

fn connection_tokens(headers: &[(String, Vec<u8>)]) -> Vec<&[u8]> {
    list_elements(headers, "connection").collect()
}

/// Whether a field crosses the proxy: not hop-by-hop, and not named by `Connection` unless it is
/// one that must never be removed.
fn is_end_to_end(name: &str, connection_listed: &[&[u8]]) -> bool {
    let is = |list: &[&str]| list.iter().any(|h| name.eq_ignore_ascii_case(h));
    if is(&HOP_BY_HOP) {
        return false;
    }
    is(&NOT_REMOVABLE)
        || !connection_listed
            .iter()
            .any(|token| token.eq_ignore_ascii_case(name.as_bytes()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContentLength {
    Absent,
    Valid(u64),
    /// Malformed, empty, or several values that differ.
    Invalid,
}

/// Repeated identical values (`Content-Length: 5, 5`, or two fields) are one length, as RFC 9110
/// section 8.6 allows; any difference is refused.
fn content_length(headers: &[(String, Vec<u8>)]) -> ContentLength {
    if find_header(headers, "content-length").is_none() {
        return ContentLength::Absent;
    }
    let mut length = None;
    for element in list_elements(headers, "content-length") {
        let Some(value) = parse_decimal(element) else {
            return ContentLength::Invalid;
        };
        match length {
            Some(previous) if previous != value => return ContentLength::Invalid,
            _ => length = Some(value),
        }
    }
    length.map_or(ContentLength::Invalid, ContentLength::Valid)
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TransferCoding {
    Absent,
    /// `chunked` is the last coding and appears once.
    ChunkedFinal,
    /// Present, but the body length cannot be found from it; `unknown` if it names a coding
    /// outside the registry.
    NotChunkedFinal {
        unknown: bool,
    },
}

fn transfer_coding(headers: &[(String, Vec<u8>)]) -> TransferCoding {
    if find_header(headers, "transfer-encoding").is_none() {
        return TransferCoding::Absent;
    }
    let mut chunked_count = 0usize;
    let mut last_is_chunked = false;
    let mut unknown = false;
    for element in list_elements(headers, "transfer-encoding") {
        // Parameters (`;q=...`) follow the coding name and do not change the framing.
        let name = element
            .split(|&b| b == b';')
            .next()
            .unwrap_or(element)
            .trim_ascii();
        last_is_chunked = name.eq_ignore_ascii_case(b"chunked");
        if last_is_chunked {
            chunked_count += 1;
        }
        unknown |= !KNOWN_CODINGS
            .iter()
            .any(|known| name.eq_ignore_ascii_case(known.as_bytes()));
    }
    if last_is_chunked && chunked_count == 1 {
        TransferCoding::ChunkedFinal
    } else {
        TransferCoding::NotChunkedFinal { unknown }
    }
}

/// Headers for `Debug`, with credential values replaced by `***`.
struct RedactedHeaders<'a>(&'a [(String, Vec<u8>)]);

impl fmt::Debug for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for (name, value) in self.0 {
            let sensitive = SENSITIVE.iter().any(|s| name.eq_ignore_ascii_case(s));
            let shown = if sensitive {
                "***".into()
            } else {
                String::from_utf8_lossy(value)
            };
            list.entry(&(name, shown));
        }
        list.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn done<T: fmt::Debug>(parsed: Parsed<T, HttpError>) -> (T, usize) {
        match parsed {
            Parsed::Done { value, consumed } => (value, consumed),
            other => panic!("expected Done, got {other:?}"),
        }
    }

    fn invalid<T: fmt::Debug>(parsed: Parsed<T, HttpError>) -> HttpError {
        match parsed {
            Parsed::Invalid(err) => err,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn request(text: &str) -> RequestHead {
        done(parse_request_head(text.as_bytes(), MAX_HEAD)).0
    }

    fn request_error(text: &str) -> u16 {
        invalid(parse_request_head(text.as_bytes(), MAX_HEAD)).status
    }

    fn response(text: &str) -> ResponseHead {
        done(parse_response_head(text.as_bytes(), MAX_HEAD)).0
    }

    fn forwarded(text: &str) -> String {
        let mut out = Vec::new();
        encode_forward_head(&request(text), &mut out);
        String::from_utf8(out).unwrap()
    }

    fn relayed(text: &str, keep_alive: bool) -> String {
        let mut out = Vec::new();
        encode_response_head(&response(text), keep_alive, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn absolute(host: &str, port: u16, path: &str) -> RequestTarget {
        RequestTarget::Absolute {
            host: host.into(),
            port,
            path_and_query: path.into(),
        }
    }

    #[test]
    fn request_head_every_prefix_then_done_excluding_pipelined_bytes() {
        let head = "GET http://Example.COM/a?b=c HTTP/1.1\r\nHost: example.com\r\nX-Mixed-Case: v1\r\nx-mixed-case: v2\r\n\r\n";
        let bytes = head.as_bytes();
        for end in 0..bytes.len() {
            assert_eq!(
                parse_request_head(&bytes[..end], MAX_HEAD),
                Parsed::NeedMore,
                "prefix {end}"
            );
        }
        let mut pipelined = bytes.to_vec();
        pipelined.extend_from_slice(b"body bytes GET / HTTP/1.1\r\n");
        let (value, consumed) = done(parse_request_head(&pipelined, MAX_HEAD));
        assert_eq!(consumed, bytes.len());
        assert_eq!(value.method, "GET");
        assert_eq!(value.target, absolute("example.com", 80, "/a?b=c"));
        assert_eq!(value.version, 1);
        assert_eq!(
            value.headers,
            vec![
                ("Host".to_string(), b"example.com".to_vec()),
                ("X-Mixed-Case".to_string(), b"v1".to_vec()),
                ("x-mixed-case".to_string(), b"v2".to_vec()),
            ]
        );
    }

    #[test]
    fn connect_targets() {
        let head = request("CONNECT Example.com:443 HTTP/1.1\r\n\r\n");
        assert_eq!(
            head.target,
            RequestTarget::Authority {
                host: "example.com".into(),
                port: 443
            }
        );
        let head = request("CONNECT [2001:DB8::1]:8443 HTTP/1.0\r\n\r\n");
        assert_eq!(
            head.target,
            RequestTarget::Authority {
                host: "2001:db8::1".into(),
                port: 8443
            }
        );
        assert_eq!(head.version, 0);
        let head = request("CONNECT 192.0.2.1:22 HTTP/1.1\r\n\r\n");
        assert_eq!(
            head.target,
            RequestTarget::Authority {
                host: "192.0.2.1".into(),
                port: 22
            }
        );
    }

    #[test]
    fn connect_rejects_non_authority_targets() {
        for target in [
            "example.com",
            "example.com:",
            "/",
            "http://example.com:443/",
            "example.com:0",
            "example.com:65536",
            "example.com:44a",
            "example.com:+443",
            "[2001:db8::1]",
            "[2001:db8::1]443",
            "[not-v6]:443",
            "2001:db8::1:443",
            "user@example.com:443",
            "exa_mple..com:443",
        ] {
            assert_eq!(
                request_error(&format!("CONNECT {target} HTTP/1.1\r\n\r\n")),
                400,
                "{target}"
            );
        }
    }

    #[test]
    fn absolute_targets() {
        let cases = [
            ("http://example.com", absolute("example.com", 80, "/")),
            (
                "HTTP://Example.com:8080",
                absolute("example.com", 8080, "/"),
            ),
            ("http://example.com:/x", absolute("example.com", 80, "/x")),
            (
                "http://example.com?q=1",
                absolute("example.com", 80, "/?q=1"),
            ),
            (
                "http://example.com/p#frag",
                absolute("example.com", 80, "/p"),
            ),
            ("http://example.com#frag", absolute("example.com", 80, "/")),
            (
                "http://[2001:db8::5]:81/x",
                absolute("2001:db8::5", 81, "/x"),
            ),
            ("http://10.0.0.1/", absolute("10.0.0.1", 80, "/")),
        ];
        for (uri, expected) in cases {
            let head = request(&format!("GET {uri} HTTP/1.1\r\n\r\n"));
            assert_eq!(head.target, expected, "{uri}");
        }
    }

    #[test]
    fn origin_and_asterisk_targets() {
        assert_eq!(
            request("GET /proxy.pac HTTP/1.1\r\n\r\n").target,
            RequestTarget::Origin("/proxy.pac".into())
        );
        assert_eq!(
            request("OPTIONS * HTTP/1.1\r\n\r\n").target,
            RequestTarget::Origin("*".into())
        );
    }

    #[test]
    fn forward_targets_that_are_refused() {
        for target in [
            "https://example.com/",
            "HTTPS://example.com/",
            "ftp://example.com/",
            "http://user@example.com/",
            "http://user:pw@example.com/",
            "http://good.com@evil.com/",
            "http://",
            "http:///path",
            "http://exa mple.com/",
            "http://example.com:0/",
            "http://example.com:99999/",
            "example.com:80",
            "h",
        ] {
            assert_eq!(
                request_error(&format!("GET {target} HTTP/1.1\r\n\r\n")),
                400,
                "{target}"
            );
        }
    }

    #[test]
    fn malformed_heads_are_400() {
        for head in [
            "GET http://a/ HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET  http://a/ HTTP/1.1\r\n\r\n",
            "GET http://a/ HTTP/1.1\rX\n\r\n",
            "\x00\x01\x02 / HTTP/1.1\r\n\r\n",
            "GET http://a/ FOO/1.1\r\n\r\n",
            "GET http://a/ http/1.1\r\n\r\n",
        ] {
            assert_eq!(request_error(head), 400, "{head:?}");
        }
    }

    #[test]
    fn other_versions_are_505() {
        for head in [
            "GET http://a/ HTTP/2.0\r\n\r\n",
            "GET http://a/ HTTP/1.2\r\n\r\n",
            "GET http://a/ HTTP/3\r\n\r\n",
            "GET http://a/ HTTP/0.9\r\n\r\n",
        ] {
            assert_eq!(request_error(head), 505, "{head:?}");
        }
        // Detected before the line ends.
        assert_eq!(
            invalid(parse_request_head(b"GET / HTTP/2", MAX_HEAD)).status,
            505
        );
    }

    #[test]
    fn oversized_heads_are_431() {
        let mut head = b"GET http://a/ HTTP/1.1\r\n".to_vec();
        while head.len() < MAX_HEAD {
            head.extend_from_slice(b"X-Filler: ");
            head.extend_from_slice(&[b'a'; 400]);
            head.extend_from_slice(b"\r\n");
        }
        head.truncate(MAX_HEAD);
        assert_eq!(invalid(parse_request_head(&head, MAX_HEAD)).status, 431);
        assert_eq!(
            parse_request_head(&head[..MAX_HEAD - 1], MAX_HEAD),
            Parsed::NeedMore
        );
        // A complete head larger than the limit is refused too.
        let small = "GET http://a/ HTTP/1.1\r\nX-A: 0123456789\r\n\r\n";
        assert_eq!(
            invalid(parse_request_head(small.as_bytes(), small.len() - 1)).status,
            431
        );
        assert!(matches!(
            parse_request_head(small.as_bytes(), small.len()),
            Parsed::Done { .. }
        ));
    }

    #[test]
    fn overlong_request_line_is_414() {
        let mut line = b"GET http://a/".to_vec();
        line.resize(MAX_HEAD, b'a');
        assert_eq!(invalid(parse_request_head(&line, MAX_HEAD)).status, 414);
    }

    #[test]
    fn too_many_header_fields_are_431() {
        let mut head = String::from("GET http://a/ HTTP/1.1\r\n");
        for i in 0..MAX_HEADERS {
            head.push_str(&format!("X-{i}: v\r\n"));
        }
        let ok = format!("{head}\r\n");
        assert!(matches!(
            parse_request_head(ok.as_bytes(), MAX_HEAD),
            Parsed::Done { .. }
        ));
        head.push_str("X-Extra: v\r\n\r\n");
        assert_eq!(request_error(&head), 431);
    }

    #[test]
    fn header_lookup_is_case_insensitive_first_occurrence() {
        let head = request("GET http://a/ HTTP/1.1\r\nX-One: 1\r\nx-one: 2\r\n\r\n");
        assert_eq!(head.header("x-ONE"), Some(&b"1"[..]));
        assert_eq!(head.header("x-two"), None);
    }

    #[test]
    fn client_keep_alive() {
        let cases = [
            ("HTTP/1.1", "", true),
            ("HTTP/1.1", "Connection: close\r\n", false),
            ("HTTP/1.1", "Connection: Upgrade, CLOSE\r\n", false),
            ("HTTP/1.1", "Proxy-Connection: close\r\n", false),
            ("HTTP/1.1", "Connection: keep-alive\r\n", true),
            ("HTTP/1.0", "", false),
            ("HTTP/1.0", "Connection: Keep-Alive\r\n", true),
            ("HTTP/1.0", "Proxy-Connection: keep-alive\r\n", true),
            (
                "HTTP/1.0",
                "Connection: keep-alive\r\nConnection: close\r\n",
                false,
            ),
        ];
        for (version, fields, expected) in cases {
            let head = request(&format!("GET http://a/ {version}\r\n{fields}\r\n"));
            assert_eq!(head.wants_keep_alive(), expected, "{version} {fields:?}");
        }
    }

    fn credentials(value: &str) -> Option<UserPass> {
        request(&format!(
            "GET http://a/ HTTP/1.1\r\nProxy-Authorization: {value}\r\n\r\n"
        ))
        .proxy_basic_credentials()
    }

    #[test]
    fn basic_credentials() {
        // "alice:s3:cr:t"
        let creds = credentials("Basic YWxpY2U6czM6Y3I6dA==").unwrap();
        assert_eq!(creds.username, "alice");
        assert_eq!(creds.password, "s3:cr:t");
        // Scheme is case-insensitive; extra whitespace is tolerated. "bob:" has an empty password.
        let creds = credentials("bAsIc   Ym9iOg==  ").unwrap();
        assert_eq!(
            (creds.username.as_str(), creds.password.as_str()),
            ("bob", "")
        );
        // "user:pässword" in UTF-8.
        let creds = credentials("Basic dXNlcjpww6Rzc3dvcmQ=").unwrap();
        assert_eq!(creds.password, "pässword");
    }

    #[test]
    fn basic_credentials_rejections() {
        for value in [
            "Bearer YWxpY2U6cGFzcw==",
            "Basic",
            "BasicYWxpY2U6cGFzcw==",
            "Basic YWxpY2U6cGFzcw=",
            "Basic YWxpY2U6cGFzcw",
            "Basic YWxp Y2U6cGFzcw==",
            "Basic YWxpY2U6cGFzcw==!",
            "Basic YWxpY2U=",
            "Basic //79",
        ] {
            assert_eq!(credentials(value), None, "{value}");
        }
        assert_eq!(
            request("GET http://a/ HTTP/1.1\r\n\r\n").proxy_basic_credentials(),
            None
        );
    }

    #[test]
    fn base64_vectors_from_rfc_4648() {
        let vectors = [
            ("", ""),
            ("Zg==", "f"),
            ("Zm8=", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg==", "foob"),
            ("Zm9vYmE=", "fooba"),
            ("Zm9vYmFy", "foobar"),
        ];
        for (encoded, decoded) in vectors {
            assert_eq!(
                decode_base64(encoded.as_bytes()).as_deref(),
                Some(decoded.as_bytes())
            );
        }
        assert_eq!(decode_base64(b"+/+/").unwrap(), [0xFB, 0xFF, 0xBF]);
    }

    #[test]
    fn base64_rejects_invalid_input() {
        for bad in [
            "Zg", "Zg=", "Z===", "====", "Zm9v=Zm9", "Zg==Zm9v", "Zh==", "Zm9=", "Zm-v", "Zm_v",
            "Zm9v\n",
        ] {
            assert_eq!(decode_base64(bad.as_bytes()), None, "{bad:?}");
        }
    }

    fn body_of(fields: &str) -> Result<Body, HttpError> {
        request(&format!("POST http://a/ HTTP/1.1\r\n{fields}\r\n")).request_body()
    }

    #[test]
    fn request_body_framing() {
        assert_eq!(body_of(""), Ok(Body::None));
        assert_eq!(body_of("Content-Length: 0\r\n"), Ok(Body::Length(0)));
        assert_eq!(body_of("Content-Length: 42\r\n"), Ok(Body::Length(42)));
        assert_eq!(body_of("Content-Length: 5, 5\r\n"), Ok(Body::Length(5)));
        assert_eq!(
            body_of("Content-Length: 5\r\ncontent-length: 5\r\n"),
            Ok(Body::Length(5))
        );
        assert_eq!(
            body_of("Content-Length: 18446744073709551615\r\n"),
            Ok(Body::Length(u64::MAX))
        );
        assert_eq!(body_of("Transfer-Encoding: chunked\r\n"), Ok(Body::Chunked));
        assert_eq!(body_of("Transfer-Encoding: Chunked\r\n"), Ok(Body::Chunked));
        assert_eq!(
            body_of("Transfer-Encoding: gzip, chunked\r\n"),
            Ok(Body::Chunked)
        );
        assert_eq!(
            body_of("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"),
            Ok(Body::Chunked)
        );
        assert_eq!(
            body_of("Transfer-Encoding: x-custom, chunked\r\n"),
            Ok(Body::Chunked)
        );
    }

    #[test]
    fn request_smuggling_defenses() {
        let status = |fields: &str| body_of(fields).unwrap_err().status;
        assert_eq!(
            status("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"),
            400
        );
        assert_eq!(
            status("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
            400
        );
        assert_eq!(status("Content-Length: 5\r\nContent-Length: 6\r\n"), 400);
        assert_eq!(status("Content-Length: 5, 6\r\n"), 400);
        for bad in [
            "-1",
            "+5",
            "5a",
            "0x10",
            "1 2",
            "",
            ",",
            "18446744073709551616",
        ] {
            assert_eq!(status(&format!("Content-Length: {bad}\r\n")), 400, "{bad}");
        }
        assert_eq!(status("Transfer-Encoding: chunked, chunked\r\n"), 400);
        assert_eq!(status("Transfer-Encoding: chunked, gzip\r\n"), 400);
        assert_eq!(status("Transfer-Encoding: gzip\r\n"), 400);
        assert_eq!(status("Transfer-Encoding: \r\n"), 400);
        assert_eq!(status("Transfer-Encoding: identity\r\n"), 501);
        assert_eq!(status("Transfer-Encoding: chunked, foo\r\n"), 501);
        let head = request("POST http://a/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(head.request_body().unwrap_err().status, 400);
    }

    #[test]
    fn forward_head_strips_hop_by_hop_and_rewrites_host() {
        let out = forwarded(
            "POST http://Example.com:8080/submit?x=1 HTTP/1.1\r\n\
             Host: wrong.example\r\n\
             User-Agent: test\r\n\
             Connection: keep-alive, X-Secret\r\n\
             Keep-Alive: timeout=5\r\n\
             Proxy-Connection: keep-alive\r\n\
             Proxy-Authorization: Basic YWxpY2U6cGFzcw==\r\n\
             TE: trailers\r\n\
             Trailer: X-Checksum\r\n\
             Upgrade: websocket\r\n\
             x-secret: 1\r\n\
             Content-Length: 3\r\n\
             Accept: */*\r\n\r\n",
        );
        assert_eq!(
            out,
            "POST /submit?x=1 HTTP/1.1\r\n\
             Host: example.com:8080\r\n\
             User-Agent: test\r\n\
             Content-Length: 3\r\n\
             Accept: */*\r\n\
             Connection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn forward_head_inserts_host_and_brackets_ipv6() {
        assert_eq!(
            forwarded("GET http://example.com/ HTTP/1.1\r\n\r\n"),
            "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n"
        );
        assert_eq!(
            forwarded("GET http://[2001:db8::1]:81/x HTTP/1.1\r\n\r\n"),
            "GET /x HTTP/1.1\r\nHost: [2001:db8::1]:81\r\nConnection: keep-alive\r\n\r\n"
        );
        assert_eq!(
            forwarded("GET http://[::1]/ HTTP/1.1\r\n\r\n"),
            "GET / HTTP/1.1\r\nHost: [::1]\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn forward_head_keeps_framing_named_by_connection() {
        let out = forwarded(
            "POST http://a.example/ HTTP/1.1\r\n\
             Connection: Content-Length, Transfer-Encoding, Host, X-Drop\r\n\
             Transfer-Encoding: chunked\r\n\
             X-Drop: 1\r\n\r\n",
        );
        assert_eq!(
            out,
            "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn forward_head_keeps_the_version_and_asks_to_keep_the_upstream_connection() {
        assert_eq!(
            forwarded("GET http://a.example/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
            "GET / HTTP/1.0\r\nHost: a.example\r\nConnection: keep-alive\r\n\r\n"
        );
        // The client's own persistence does not travel: the client connection closes after
        // the response, the upstream one stays for the next request.
        assert_eq!(
            forwarded("GET http://a.example/ HTTP/1.0\r\n\r\n"),
            "GET / HTTP/1.0\r\nHost: a.example\r\nConnection: keep-alive\r\n\r\n"
        );
        assert_eq!(
            forwarded("GET http://a.example/ HTTP/1.1\r\nConnection: close\r\n\r\n"),
            "GET / HTTP/1.1\r\nHost: a.example\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn forward_head_for_origin_form_keeps_host() {
        assert_eq!(
            forwarded("GET /x HTTP/1.1\r\nHost: h.example\r\n\r\n"),
            "GET /x HTTP/1.1\r\nHost: h.example\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn request_debug_redacts_credentials() {
        let head = request(
            "GET http://a/ HTTP/1.1\r\nProxy-Authorization: Basic c2VjcmV0OnNlY3JldA==\r\nCookie: sid=abc\r\nAccept: text/html\r\n\r\n",
        );
        let shown = format!("{head:?}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        assert!(!shown.contains("sid=abc"), "{shown}");
        assert!(shown.contains("text/html"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
    }

    #[test]
    fn response_head_every_prefix_then_done_excluding_body() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        for end in 0..head.len() {
            assert_eq!(
                parse_response_head(&head[..end], MAX_HEAD),
                Parsed::NeedMore,
                "prefix {end}"
            );
        }
        let mut with_body = head.to_vec();
        with_body.extend_from_slice(b"hello");
        let (value, consumed) = done(parse_response_head(&with_body, MAX_HEAD));
        assert_eq!(consumed, head.len());
        assert_eq!(value.status, 200);
        assert_eq!(value.reason, "OK");
        assert_eq!(value.version, 1);
        assert_eq!(value.header("content-length"), Some(&b"5"[..]));
    }

    #[test]
    fn response_head_errors_are_502() {
        for bad in [
            "HTTP/2 200 OK\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 099 Odd\r\n\r\n",
            "SSH-2.0-OpenSSH\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        ] {
            let err = invalid(parse_response_head(bad.as_bytes(), MAX_HEAD));
            assert_eq!(err.status, 502, "{bad:?}");
        }
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        big.resize(MAX_HEAD, b'a');
        assert_eq!(invalid(parse_response_head(&big, MAX_HEAD)).status, 502);
        let mut many = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(
            invalid(parse_response_head(many.as_bytes(), MAX_HEAD)).status,
            502
        );
    }

    #[test]
    fn response_body_framing() {
        let body = |text: &str, method: &str| response(text).response_body(method);
        assert_eq!(
            body("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", "HEAD"),
            Ok(Body::None)
        );
        for status in [
            "100 Continue",
            "101 Switching Protocols",
            "204 No Content",
            "304 Not Modified",
        ] {
            assert_eq!(
                body(
                    &format!("HTTP/1.1 {status}\r\nContent-Length: 7\r\n\r\n"),
                    "GET"
                ),
                Ok(Body::None),
                "{status}"
            );
        }
        assert_eq!(body("HTTP/1.1 200 OK\r\n\r\n", "CONNECT"), Ok(Body::None));
        assert_eq!(
            body("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", "GET"),
            Ok(Body::Length(7))
        );
        assert_eq!(body("HTTP/1.1 200 OK\r\n\r\n", "GET"), Ok(Body::UntilClose));
        assert_eq!(
            body(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                "GET"
            ),
            Ok(Body::Chunked)
        );
        assert_eq!(
            body(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                "POST"
            ),
            Ok(Body::Chunked)
        );
        assert_eq!(
            body("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "GET"),
            Ok(Body::UntilClose)
        );
        assert_eq!(
            body(
                "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                "GET"
            ),
            Ok(Body::UntilClose)
        );
        assert_eq!(
            body("HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", "GET")
                .unwrap_err()
                .status,
            502
        );
        assert_eq!(
            body("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "GET")
                .unwrap_err()
                .status,
            502
        );
    }

    #[test]
    fn upstream_keep_alive() {
        let cases = [
            ("HTTP/1.1 200 OK\r\n\r\n", true),
            ("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", false),
            ("HTTP/1.0 200 OK\r\n\r\n", false),
            ("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", true),
        ];
        for (text, expected) in cases {
            assert_eq!(response(text).keep_alive(), expected, "{text:?}");
        }
    }

    #[test]
    fn response_head_relay_strips_hop_by_hop() {
        let text = "HTTP/1.1 200 Fine\r\n\
                    Connection: keep-alive, X-Internal\r\n\
                    Keep-Alive: timeout=5\r\n\
                    X-Internal: 1\r\n\
                    Proxy-Authenticate: Basic\r\n\
                    Content-Type: text/html\r\n\
                    Content-Length: 10\r\n\r\n";
        assert_eq!(
            relayed(text, true),
            "HTTP/1.1 200 Fine\r\nContent-Type: text/html\r\nContent-Length: 10\r\nConnection: keep-alive\r\n\r\n"
        );
        assert_eq!(
            relayed(text, false),
            "HTTP/1.1 200 Fine\r\nContent-Type: text/html\r\nContent-Length: 10\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn response_head_relay_keeps_framing() {
        assert_eq!(
            relayed(
                "HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                true
            ),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
        );
        assert_eq!(
            relayed("HTTP/1.0 404 \r\nContent-Length: 0\r\n\r\n", false),
            "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            relayed("HTTP/1.1 100 Continue\r\n\r\n", true),
            "HTTP/1.1 100 Continue\r\n\r\n"
        );
    }

    #[test]
    fn error_response_bytes() {
        let mut out = Vec::new();
        encode_error(
            407,
            &[("Proxy-Authenticate", "Basic realm=\"egressd\"")],
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 407 Proxy Authentication Required\r\n\
             Content-Type: text/plain\r\n\
             Content-Length: 34\r\n\
             Connection: close\r\n\
             Proxy-Authenticate: Basic realm=\"egressd\"\r\n\
             \r\n\
             407 Proxy Authentication Required\n"
        );
    }

    #[test]
    fn error_response_strips_line_breaks_from_extra_fields() {
        let mut out = Vec::new();
        encode_error(403, &[("X-A\r\n", "v\r\nSet-Cookie: evil")], &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("X-A: vSet-Cookie: evil\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n403 Forbidden\n"), "{text}");
    }

    #[test]
    fn error_response_content_length_matches_body() {
        for status in [
            400, 403, 405, 407, 408, 431, 500, 501, 502, 503, 504, 505, 599, 999,
        ] {
            let mut out = Vec::new();
            encode_error(status, &[], &mut out);
            let (head, body) = done(parse_response_head(&out, MAX_HEAD));
            assert_eq!(head.status, status);
            assert_eq!(
                head.response_body("GET"),
                Ok(Body::Length(body_len(&out, body)))
            );
            assert!(!head.keep_alive());
        }
    }

    fn body_len(out: &[u8], head_len: usize) -> u64 {
        (out.len() - head_len) as u64
    }

    #[test]
    fn reason_phrases() {
        let expected = [
            (400, "Bad Request"),
            (403, "Forbidden"),
            (405, "Method Not Allowed"),
            (407, "Proxy Authentication Required"),
            (408, "Request Timeout"),
            (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"),
            (501, "Not Implemented"),
            (502, "Bad Gateway"),
            (503, "Service Unavailable"),
            (504, "Gateway Timeout"),
            (505, "HTTP Version Not Supported"),
            (499, "Client Error"),
            (599, "Server Error"),
            (700, "Unknown"),
        ];
        for (status, phrase) in expected {
            assert_eq!(reason_phrase(status), phrase);
        }
    }

    #[test]
    fn connect_established_bytes() {
        let mut out = b"x".to_vec();
        encode_connect_established(&mut out);
        assert_eq!(out, b"xHTTP/1.1 200 Connection established\r\n\r\n");
    }

    #[test]
    fn error_display() {
        assert_eq!(
            HttpError::new(431, "too many header fields").to_string(),
            "http 431 Request Header Fields Too Large: too many header fields"
        );
    }

    const CHUNKED: &[u8] = b"5;name=\"v a\"\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Sum: 1\r\nX-Other: 2\r\n\r\n";

    /// Feeds `pieces` in order and returns the offset of the body's end in their concatenation.
    fn scan(pieces: &[&[u8]]) -> Result<Option<usize>, HttpError> {
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

    #[test]
    fn chunked_end_found_at_every_split_point() {
        let mut stream = CHUNKED.to_vec();
        stream.extend_from_slice(b"GET /next HTTP/1.1\r\n");
        for split in 0..=stream.len() {
            let (a, b) = stream.split_at(split);
            assert_eq!(scan(&[a, b]), Ok(Some(CHUNKED.len())), "split {split}");
        }
        for first in 0..CHUNKED.len() {
            for second in first..CHUNKED.len() {
                let pieces = [
                    &CHUNKED[..first],
                    &CHUNKED[first..second],
                    &CHUNKED[second..],
                ];
                assert_eq!(scan(&pieces), Ok(Some(CHUNKED.len())));
            }
        }
    }

    #[test]
    fn chunked_byte_by_byte_and_after_end() {
        let mut scanner = ChunkedScanner::new();
        for (i, byte) in CHUNKED.iter().enumerate() {
            let result = scanner.feed(std::slice::from_ref(byte)).unwrap();
            if i + 1 < CHUNKED.len() {
                assert_eq!(result, None, "byte {i}");
                assert!(!scanner.is_done());
            } else {
                assert_eq!(result, Some(1));
            }
        }
        assert!(scanner.is_done());
        assert_eq!(scanner.feed(b"more"), Ok(Some(0)));
        assert_eq!(scanner.feed(b""), Ok(Some(0)));
    }

    #[test]
    fn chunked_minimal_and_empty_feed() {
        let mut scanner = ChunkedScanner::new();
        assert_eq!(scanner.feed(b""), Ok(None));
        assert_eq!(scanner.feed(b"0\r\n\r\nrest"), Ok(Some(5)));
        assert_eq!(scan(&[b"00000\r\n\r\n"]), Ok(Some(9)));
        assert_eq!(
            scan(&[b"A;x\r\n0123456789\r\n0 ; y=z\r\n\r\n"]),
            Ok(Some(28))
        );
    }

    #[test]
    fn chunked_large_sizes_are_skipped_not_buffered() {
        let mut scanner = ChunkedScanner::new();
        assert_eq!(scanner.feed(b"FFFFFFFFFFFFFFFF\r\n"), Ok(None));
        assert_eq!(scanner.feed(&[0u8; 4096]), Ok(None));
        assert_eq!(scan(&[b"10000000000000000\r\n"]).unwrap_err().status, 400);
    }

    #[test]
    fn chunked_malformed_input() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"-1\r\n",
            b"5\nhello\r\n",
            b"5 \r\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5;\x01\r\n",
            b"5\r\r\n",
            b"0\r\nX-Sum: 1\n\r\n",
            b"0\r\n\n",
            b"0\r\n\rX",
            b"0x5\r\n",
            b"+5\r\n",
        ] {
            let status = scan(&[bad]).map_err(|e| e.status);
            assert_eq!(status, Err(400), "{bad:?}");
        }
    }

    #[test]
    fn chunked_limits() {
        let mut line = b"1;".to_vec();
        line.resize(MAX_CHUNK_LINE, b'a');
        assert_eq!(scan(&[&line]), Ok(None));
        line.push(b'a');
        assert_eq!(scan(&[&line]).unwrap_err().status, 400);

        let mut trailers = b"0\r\n".to_vec();
        while trailers.len() < MAX_HEAD {
            trailers.extend_from_slice(b"X-Trailer: 0123456789abcdef\r\n");
        }
        trailers.extend_from_slice(b"\r\n");
        assert_eq!(scan(&[&trailers]).unwrap_err().status, 431);
    }

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

//! Request heads from clients: parsing, request-targets, credentials, and the head
//! forwarded upstream.

use std::fmt;
use std::net::Ipv6Addr;

use super::*;
use crate::socks5::{UserPass, normalize_host_name};

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

    /// `Expect: 100-continue` (RFC 9110 section 10.1.1): the client waits for an interim
    /// answer (or a final one) before it sends the body. Only HTTP/1.1 clients may expect it.
    pub fn expects_continue(&self) -> bool {
        self.version >= 1
            && self.headers.iter().any(|(n, v)| {
                n.eq_ignore_ascii_case("expect")
                    && v.trim_ascii().eq_ignore_ascii_case(b"100-continue")
            })
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
pub(super) fn head_too_large(buf: &[u8]) -> HttpError {
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
pub(super) fn names_an_http_version(buf: &[u8]) -> bool {
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
pub(super) fn parse_target(method: &str, raw: &str) -> Result<RequestTarget, HttpError> {
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

pub(super) fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

pub(super) fn parse_absolute(rest: &str) -> Result<RequestTarget, HttpError> {
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
pub(super) fn parse_authority(
    s: &str,
    default_port: Option<u16>,
) -> Result<(String, u16), HttpError> {
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

pub(super) fn parse_port(digits: &str) -> Result<u16, HttpError> {
    const BAD_PORT: HttpError = HttpError::new(400, "invalid port in request target");
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BAD_PORT);
    }
    match digits.parse::<u16>() {
        Ok(0) | Err(_) => Err(BAD_PORT),
        Ok(port) => Ok(port),
    }
}

pub(super) fn owned_headers(headers: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
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

/// Standard-alphabet base64 with mandatory padding. Anything else (wrong length, stray
/// characters, padding in the middle, non-zero unused bits) is rejected, so one credential has
/// exactly one encoding: the `base64` crate's `STANDARD` engine decodes exactly that (canonical
/// padding required, trailing bits refused), and the tests below pin it.
pub(super) fn decode_base64(input: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(input).ok()
}

#[cfg(test)]
mod tests {

    #[test]
    fn expect_100_continue_is_recognised_only_as_sent_by_http_1_1() {
        let head = |text: &str| done(parse_request_head(text.as_bytes(), MAX_HEAD)).0;
        assert!(head("PUT http://h/ HTTP/1.1\r\nExpect: 100-Continue \r\n\r\n").expects_continue());
        assert!(!head("PUT http://h/ HTTP/1.1\r\nExpect: something\r\n\r\n").expects_continue());
        assert!(!head("PUT http://h/ HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expects_continue());
        assert!(!head("PUT http://h/ HTTP/1.1\r\n\r\n").expects_continue());
    }

    use super::super::testutil::*;
    use super::super::*;
    use crate::socks5::UserPass;

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
            "Zm9v\n", " Zm9v", "Zm9v====", "Zg==\0", "Zm8=Zg==",
        ] {
            assert_eq!(decode_base64(bad.as_bytes()), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        /// One credential, one encoding: whatever decodes is exactly the canonical encoding of
        /// what it decodes to.
        #[test]
        fn base64_accepts_only_canonical_encodings(text in "[A-Za-z0-9+/=]{0,16}") {
            use base64::Engine as _;
            if let Some(bytes) = decode_base64(text.as_bytes()) {
                proptest::prop_assert_eq!(
                    base64::engine::general_purpose::STANDARD.encode(bytes),
                    text
                );
            }
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
}

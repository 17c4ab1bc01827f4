//! Response heads from upstreams: parsing, body framing, and the head relayed to the client.

use std::fmt;

use super::*;

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

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::*;

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
}

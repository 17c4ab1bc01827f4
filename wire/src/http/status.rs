//! The proxy's own small responses: reason phrases, error responses, the CONNECT answer.

use super::*;

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

/// A complete error response from the proxy itself, e.g. 407 with a `Proxy-Authenticate` field in
/// `extra_headers`. The connection closes after it, since the request's body (if any) is unread.
///
/// CR and LF are removed from the extra fields: they come from configuration (a realm), and one
/// stray line break there would let it inject fields.
pub fn encode_error(status: u16, extra_headers: &[(&str, &str)], out: &mut Vec<u8>) {
    encode_refusal(status, "", extra_headers, out);
}

/// As `encode_error`, with the reason in one line of the body after the status
/// (`403 Forbidden: blocked by rule "ads"`), so that a person reading the client's output
/// learns why without the proxy's logs. Control characters in `reason` are dropped.
pub fn encode_refusal(
    status: u16,
    reason: &str,
    extra_headers: &[(&str, &str)],
    out: &mut Vec<u8>,
) {
    let phrase = reason_phrase(status);
    let mut body = Vec::with_capacity(phrase.len() + reason.len() + 8);
    push_decimal(u64::from(status), &mut body);
    body.push(b' ');
    body.extend_from_slice(phrase.as_bytes());
    let status_line_len = body.len();
    if !reason.is_empty() {
        body.extend_from_slice(b": ");
        body.extend(reason.bytes().filter(|b| !b.is_ascii_control()));
    }
    body.push(b'\n');

    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&body[..status_line_len]);
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

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::*;

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
    fn a_refusal_says_why_in_one_line_of_its_body() {
        let mut out = Vec::new();
        encode_refusal(403, "blocked by rule \"ads\"\r\nX: y", &[], &mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{text}");
        assert!(
            text.ends_with("\r\n\r\n403 Forbidden: blocked by rule \"ads\"X: y\n"),
            "{text}"
        );
        let (head, body) = done(parse_response_head(&out, MAX_HEAD));
        assert_eq!(
            head.response_body("GET"),
            Ok(Body::Length(body_len(&out, body)))
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
}

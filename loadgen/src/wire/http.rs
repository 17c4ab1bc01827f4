//! HTTP client messages for proxies: CONNECT requests, absolute-form forward requests, and the
//! response head parser for both.
//!
//! Response bodies must be delimited by `Content-Length` (or by close): the loadgen's own sink
//! always sends one, and a proxy that re-frames responses would distort the measurement anyway.

use super::head::{self, HeadError};
use base64::Engine as _;

use super::{Parsed, ReplyError};
use crate::credentials::Credentials;
use crate::target::Target;

/// The response head fields the client acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub content_length: Option<u64>,
    /// The server will close after this response.
    pub close: bool,
    /// `X-Peer-Addr` from the loadgen sink's `http` mode: the address the upstream saw.
    pub peer: Option<String>,
}

fn proxy_authorization(out: &mut String, credentials: Option<&Credentials>) {
    if let Some(c) = credentials {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", c.user(), c.password()).as_bytes());
        out.push_str("Proxy-Authorization: Basic ");
        out.push_str(&token);
        out.push_str("\r\n");
    }
}

/// `CONNECT host:port HTTP/1.1` with a matching Host header.
pub fn connect_request(target: &Target, credentials: Option<&Credentials>) -> Vec<u8> {
    let authority = target.authority();
    let mut out = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    proxy_authorization(&mut out, credentials);
    out.push_str("\r\n");
    out.into_bytes()
}

/// `GET http://host:port/ HTTP/1.1`; keep-alive is HTTP/1.1's default, so only close is said.
pub fn forward_request(
    target: &Target,
    credentials: Option<&Credentials>,
    keep_alive: bool,
) -> Vec<u8> {
    let authority = target.authority();
    let mut out = format!("GET http://{authority}/ HTTP/1.1\r\nHost: {authority}\r\n");
    proxy_authorization(&mut out, credentials);
    if !keep_alive {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

pub fn parse_response_head(buf: &[u8]) -> Parsed<ResponseHead> {
    let (head, used) = match head::scan(buf) {
        Ok(Some(found)) => found,
        Ok(None) => return Ok(None),
        Err(HeadError::TooLarge) => return Err(ReplyError::Malformed("response head too large")),
        Err(HeadError::Malformed(why)) => return Err(ReplyError::Malformed(why)),
    };
    let mut parts = head.start_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(ReplyError::Malformed("not an HTTP/1.x response")),
    };
    let status: u16 = parts
        .next()
        .filter(|code| code.len() == 3)
        .and_then(|code| code.parse().ok())
        .ok_or(ReplyError::Malformed("bad status code"))?;
    if head.has_token("transfer-encoding", "chunked") {
        return Err(ReplyError::Malformed("chunked responses are not supported"));
    }
    let content_length = head.content_length().map_err(|e| match e {
        HeadError::Malformed(why) => ReplyError::Malformed(why),
        HeadError::TooLarge => ReplyError::Malformed("response head too large"),
    })?;
    let close = head.has_token("connection", "close")
        || (http10 && !head.has_token("connection", "keep-alive"));
    let response = ResponseHead {
        status,
        content_length,
        close,
        peer: head.field("x-peer-addr").map(str::to_owned),
    };
    Ok(Some((response, used)))
}

/// A CONNECT or forward response other than 200 is a refusal, reported with its status.
pub fn require_ok(head: &ResponseHead) -> Result<(), ReplyError> {
    if head.status == 200 {
        Ok(())
    } else {
        Err(ReplyError::Refused(format!("http:{}", head.status)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(text: &str) -> Target {
        text.parse().unwrap()
    }

    #[test]
    fn connect_requests_are_byte_exact() {
        assert_eq!(
            connect_request(&target("10.0.0.1:443"), None),
            b"CONNECT 10.0.0.1:443 HTTP/1.1\r\nHost: 10.0.0.1:443\r\n\r\n"
        );
        let creds = Credentials::new("Aladdin".into(), "open sesame".into());
        assert_eq!(
            connect_request(&target("[::1]:80"), Some(&creds)),
            b"CONNECT [::1]:80 HTTP/1.1\r\nHost: [::1]:80\r\n\
              Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n"
        );
    }

    #[test]
    fn forward_requests_are_byte_exact() {
        assert_eq!(
            forward_request(&target("sink.test:8080"), None, true),
            b"GET http://sink.test:8080/ HTTP/1.1\r\nHost: sink.test:8080\r\n\r\n"
        );
        assert_eq!(
            forward_request(&target("1.2.3.4:80"), None, false),
            b"GET http://1.2.3.4:80/ HTTP/1.1\r\nHost: 1.2.3.4:80\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn parses_connect_and_forward_responses() {
        let raw = b"HTTP/1.1 200 Connection established\r\n\r\nTUNNEL";
        for cut in 0..raw.len() - 6 {
            assert_eq!(parse_response_head(&raw[..cut]), Ok(None));
        }
        let (head, used) = parse_response_head(raw).unwrap().unwrap();
        assert_eq!(used, raw.len() - 6);
        assert_eq!(head.status, 200);
        assert!(!head.close);
        assert_eq!(require_ok(&head), Ok(()));

        let raw = b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nX-Peer-Addr: 1.2.3.4:5\r\n\r\nabc";
        let (head, _) = parse_response_head(raw).unwrap().unwrap();
        assert_eq!(head.content_length, Some(3));
        assert!(head.close, "HTTP/1.0 closes unless keep-alive");
        assert_eq!(head.peer.as_deref(), Some("1.2.3.4:5"));
    }

    #[test]
    fn refusals_carry_the_status() {
        for (raw, code) in [
            (&b"HTTP/1.1 403 Forbidden\r\n\r\n"[..], "http:403"),
            (
                b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n",
                "http:407",
            ),
            (
                b"HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\n",
                "http:502",
            ),
        ] {
            let (head, _) = parse_response_head(raw).unwrap().unwrap();
            assert_eq!(require_ok(&head), Err(ReplyError::Refused(code.into())));
        }
    }

    #[test]
    fn rejects_malformed_responses() {
        for raw in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        ] {
            assert!(
                matches!(parse_response_head(raw), Err(ReplyError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}

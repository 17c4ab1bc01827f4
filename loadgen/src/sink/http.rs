//! The sink's `http` mode: a minimal HTTP/1.1 keep-alive origin for `http-forward` runs.
//!
//! Every request (head plus any Content-Length body) gets `200` with a fixed-size body and an
//! `X-Peer-Addr` header carrying the address the sink saw, which `--expect-egress` reads.

use std::io;
use std::net::SocketAddr;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::wire::head::{self, HeadError};

/// What the sink needs from a request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub content_length: u64,
    pub close: bool,
}

const READ: usize = 4096;

pub async fn serve(
    stream: &mut TcpStream,
    body: &[u8],
    peer: Option<SocketAddr>,
) -> io::Result<()> {
    let mut inbuf: Vec<u8> = Vec::new();
    let mut keep_alive_response: Option<Vec<u8>> = None;
    loop {
        match parse_request(&inbuf) {
            Ok(Some((request, used))) => {
                inbuf.drain(..used);
                skip_body(stream, &mut inbuf, request.content_length).await?;
                if request.close {
                    stream.write_all(&response(body, peer, true)).await?;
                    return Ok(());
                }
                let reply = keep_alive_response.get_or_insert_with(|| response(body, peer, false));
                stream.write_all(reply).await?;
            }
            Ok(None) => {
                let old = inbuf.len();
                inbuf.resize(old + READ, 0);
                let n = stream.read(&mut inbuf[old..]).await?;
                inbuf.truncate(old + n);
                if n == 0 {
                    return Ok(());
                }
            }
            Err(status) => {
                let reason = match status {
                    431 => "Request Header Fields Too Large",
                    501 => "Not Implemented",
                    _ => "Bad Request",
                };
                let refusal = format!(
                    "HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                stream.write_all(refusal.as_bytes()).await?;
                return Ok(());
            }
        }
    }
}

async fn skip_body(stream: &mut TcpStream, inbuf: &mut Vec<u8>, len: u64) -> io::Result<()> {
    let buffered = usize::try_from(len).unwrap_or(usize::MAX).min(inbuf.len());
    inbuf.drain(..buffered);
    let mut left = len - buffered as u64;
    if left == 0 {
        return Ok(());
    }
    let mut scratch = vec![0; READ];
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(READ).min(READ);
        let n = stream.read(&mut scratch[..want]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        left -= n as u64;
    }
    Ok(())
}

fn response(body: &[u8], peer: Option<SocketAddr>, close: bool) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n", body.len());
    if let Some(peer) = peer {
        head.push_str(&format!("X-Peer-Addr: {peer}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Parses a request head; an error is the status code to refuse it with.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, u16> {
    let (head, used) = match head::scan(buf) {
        Ok(Some(found)) => found,
        Ok(None) => return Ok(None),
        Err(HeadError::TooLarge) => return Err(431),
        Err(HeadError::Malformed(_)) => return Err(400),
    };
    let mut parts = head.start_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(400);
    };
    if method.is_empty() || target.is_empty() {
        return Err(400);
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(400),
    };
    if head.field("transfer-encoding").is_some() {
        return Err(501);
    }
    let content_length = head.content_length().map_err(|_| 400u16)?.unwrap_or(0);
    let close = head.has_token("connection", "close")
        || (http10 && !head.has_token("connection", "keep-alive"));
    Ok(Some((
        Request {
            content_length,
            close,
        },
        used,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keep_alive_and_close_requests() {
        let raw = b"GET http://x:1/ HTTP/1.1\r\nHost: x:1\r\n\r\nGET";
        assert_eq!(
            parse_request(raw),
            Ok(Some((
                Request {
                    content_length: 0,
                    close: false
                },
                raw.len() - 3
            )))
        );
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 7\r\nConnection: close\r\n\r\n";
        let (request, _) = parse_request(raw).unwrap().unwrap();
        assert_eq!(request.content_length, 7);
        assert!(request.close);
        let (request, _) = parse_request(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(request.close);
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\n"), Ok(None));
    }

    #[test]
    fn refuses_what_it_cannot_frame() {
        assert_eq!(parse_request(b"GET /\r\n\r\n"), Err(400));
        assert_eq!(parse_request(b"GET / SPDY/3\r\n\r\n"), Err(400));
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse_request(chunked), Err(501));
        assert_eq!(parse_request(&vec![b'a'; head::MAX_HEAD + 10]), Err(431));
    }

    #[test]
    fn responses_carry_length_and_peer() {
        let peer: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let out = response(b"abc", Some(peer), false);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Peer-Addr: 10.0.0.1:4000\r\n\r\nabc"
        );
        let out = String::from_utf8(response(b"", None, true)).unwrap();
        assert!(out.contains("Connection: close\r\n"));
    }
}

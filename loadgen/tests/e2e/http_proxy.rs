//! A tiny HTTP proxy: CONNECT tunnels and absolute-form forwarding, optional Basic auth.
//!
//! Forwarding is deliberately naive: the first request picks the origin, its request line is
//! rewritten to origin-form, and the connection is then relayed as bytes (the loadgen's sink
//! accepts the absolute-form requests that follow).

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;

use super::relay::relay;

#[derive(Clone, Default)]
pub struct HttpConfig {
    /// Expected `Proxy-Authorization` value, e.g. `Basic YWxpY2U6czNjcmV0`.
    pub authorization: Option<String>,
    /// Refuse every request with 403.
    pub refuse: bool,
}

/// `alice:s3cret` in base64, for `--user alice --password s3cret`.
pub const ALICE: &str = "Basic YWxpY2U6czNjcmV0";

pub fn start(config: HttpConfig) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let config = Arc::new(config);
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let config = Arc::clone(&config);
            thread::spawn(move || {
                let _ = session(client, &config);
            });
        }
    });
    addr
}

fn session(client: TcpStream, config: &HttpConfig) -> io::Result<()> {
    client.set_nodelay(true)?;
    let mut reader = BufReader::new(client);
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        lines.push(line.trim_end().to_owned());
    }
    let leftover = reader.buffer().to_vec();
    let mut client = reader.into_inner();
    let request_line = lines.first().cloned().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let headers = &lines[1..];
    let authorization = headers
        .iter()
        .find_map(|h| h.strip_prefix("Proxy-Authorization: "));
    if let Some(expected) = &config.authorization
        && authorization != Some(expected.as_str())
    {
        return client.write_all(
            b"HTTP/1.1 407 Proxy Authentication Required\r\n\
              Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n",
        );
    }
    if config.refuse {
        return client.write_all(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    if method == "CONNECT" {
        let Ok(mut upstream) = TcpStream::connect(target) else {
            return client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        };
        upstream.set_nodelay(true)?;
        client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
        upstream.write_all(&leftover)?;
        relay(client, upstream);
        return Ok(());
    }
    let rest = target
        .strip_prefix("http://")
        .expect("absolute-form target");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let Ok(mut upstream) = TcpStream::connect(authority) else {
        return client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
    };
    upstream.set_nodelay(true)?;
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for header in headers
        .iter()
        .filter(|h| !h.starts_with("Proxy-Authorization:"))
    {
        head.push_str(header);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    upstream.write_all(head.as_bytes())?;
    upstream.write_all(&leftover)?;
    relay(client, upstream);
    Ok(())
}

//! Each sink mode, checked with a plain std client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use super::support::Sink;

fn connect(sink: &Sink) -> TcpStream {
    let stream = TcpStream::connect(&sink.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

#[test]
fn echo_writes_back() {
    let sink = Sink::start(&["--mode", "echo", "--threads", "2"]);
    for _ in 0..4 {
        let mut s = connect(&sink);
        s.write_all(b"hello").unwrap();
        let mut got = [0; 5];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
    }
}

#[test]
fn discard_never_answers() {
    let sink = Sink::start(&["--mode", "discard"]);
    let mut s = connect(&sink);
    s.write_all(&[7; 10_000]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn fixed_answers_per_request_however_split() {
    let sink = Sink::start(&[
        "--mode",
        "fixed",
        "--request-size",
        "10",
        "--response-size",
        "3",
    ]);
    let mut s = connect(&sink);
    s.write_all(&[1; 25]).unwrap();
    let mut got = [0; 6];
    s.read_exact(&mut got).unwrap();
    s.write_all(&[1; 5]).unwrap();
    let mut more = [0; 3];
    s.read_exact(&mut more).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "no answer for a partial request");
}

#[test]
fn fixed_with_zero_request_size_streams() {
    let sink = Sink::start(&[
        "--mode",
        "fixed",
        "--request-size",
        "0",
        "--response-size",
        "1000",
    ]);
    let mut s = connect(&sink);
    let mut got = vec![0; 50_000];
    s.read_exact(&mut got).unwrap();
}

#[test]
fn peer_reports_the_client_address_then_echoes() {
    let sink = Sink::start(&["--mode", "peer"]);
    let s = connect(&sink);
    let local = s.local_addr().unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, format!("{local}\n"));
    (&s).write_all(b"ping").unwrap();
    let mut got = [0; 4];
    reader.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
}

#[test]
fn http_keeps_alive_and_reports_the_peer() {
    let sink = Sink::start(&["--mode", "http", "--response-size", "7"]);
    let s = connect(&sink);
    let local = s.local_addr().unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    for request in [
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    ] {
        (&s).write_all(request.as_bytes()).unwrap();
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            head.push(line);
        }
        assert_eq!(head[0], "HTTP/1.1 200 OK\r\n");
        assert!(
            head.contains(&"Content-Length: 7\r\n".to_owned()),
            "{head:?}"
        );
        assert!(
            head.contains(&format!("X-Peer-Addr: {local}\r\n")),
            "{head:?}"
        );
        let mut body = [0; 7];
        reader.read_exact(&mut body).unwrap();
    }
    (&s).write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    let rest = String::from_utf8(rest).unwrap();
    assert!(rest.contains("Connection: close"), "{rest}");
}

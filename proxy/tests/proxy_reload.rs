//! Reload and shutdown with the real binary: SIGHUP changes alice's egress for new
//! connections while an open tunnel keeps flowing; a broken file changes nothing; SIGTERM
//! stops accepting but lets open tunnels finish.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use support::{EchoUpstream, Proxy, Upstream, curl, hash};

fn config(alice_pool: &str) -> String {
    format!(
        r#"
[proxy]
deny_destinations = []
drain_timeout = "20s"

[[listener]]
name = "office"
bind = "127.0.0.1:0"
auth = "optional"

[[user]]
name = "alice"
password = "{alice}"

[[pool]]
name = "one"
ipv4 = ["127.0.0.2"]

[[pool]]
name = "two"
ipv4 = ["127.0.0.3"]

[[rule]]
name = "alice"
when = 'identity.name == "alice"'
action = "egress"
pool = "{alice_pool}"

[[rule]]
name = "catch-all"
action = "default"
"#,
        alice = hash("pw"),
    )
}

/// A SOCKS5 tunnel as alice to the echo upstream; returns the stream and the egress address
/// the upstream reported.
fn tunnel(proxy: SocketAddr, echo: SocketAddr) -> (BufReader<TcpStream>, String) {
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&[5, 1, 2]).unwrap();
    let mut b2 = [0u8; 2];
    s.read_exact(&mut b2).unwrap();
    s.write_all(&[1, 5, b'a', b'l', b'i', b'c', b'e', 2, b'p', b'w'])
        .unwrap();
    s.read_exact(&mut b2).unwrap();
    assert_eq!(b2, [1, 0]);
    let SocketAddr::V4(e) = echo else { panic!() };
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&e.ip().octets());
    req.extend_from_slice(&e.port().to_be_bytes());
    s.write_all(&req).unwrap();
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply[1], 0);
    let mut r = BufReader::new(s);
    let mut first = String::new();
    r.read_line(&mut first).unwrap();
    let ip = first.trim().rsplit_once(':').unwrap().0.to_string();
    (r, ip)
}

fn echo_round(r: &mut BufReader<TcpStream>, msg: &[u8]) -> Vec<u8> {
    r.get_mut().write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    r.read_exact(&mut got).unwrap();
    got
}

#[test]
fn reload_changes_new_connections_and_keeps_open_tunnels() {
    let up = Upstream::start("127.0.0.1:0");
    let echo = EchoUpstream::start("127.0.0.1:0");
    let mut proxy = Proxy::start(&config("one"));
    let socks = proxy.addr.to_string();
    let (mut open, ip) = tunnel(proxy.addr, echo.addr);
    assert_eq!(ip, "127.0.0.2");
    assert_eq!(echo_round(&mut open, b"before"), b"before");

    let line = proxy.reload(&config("two"));
    assert!(
        line.contains("\"reloaded\"") && line.contains("\"generation\":2"),
        "{line}"
    );
    let (code, body, _) = curl(&["--socks5", &socks, "-U", "alice:pw", &up.url("/")]);
    assert_eq!((code, body.as_str()), (0, "127.0.0.3"));
    // The tunnel opened under generation 1 is untouched.
    assert_eq!(echo_round(&mut open, b"after"), b"after");

    // A broken file is rejected whole: its diagnostics are logged, generation 2 keeps serving.
    let broken = config("one").replace("pool = \"one\"", "pool = \"nowhere\"");
    let line = proxy.reload(&broken);
    assert!(line.contains("reload rejected"), "{line}");
    let (code, body, _) = curl(&["--socks5", &socks, "-U", "alice:pw", &up.url("/")]);
    assert_eq!((code, body.as_str()), (0, "127.0.0.3"));
    let rec =
        proxy.wait_record(|r| r["user"] == "alice" && r["generation"] == 2 && r["outcome"] == "ok");
    assert_eq!(rec["pool"], "two");
    assert_eq!(echo_round(&mut open, b"still"), b"still");

    // Close the old tunnel: its record carries generation 1 and the bytes both ways.
    open.get_mut().shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = String::new();
    open.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "<eof>");
    let rec =
        proxy.wait_record(|r| r["user"] == "alice" && r["generation"] == 1 && r["outcome"] == "ok");
    assert_eq!(rec["bytes_up"], "beforeafterstill".len());
}

#[test]
fn sigterm_drains_open_tunnels_then_exits() {
    let echo = EchoUpstream::start("127.0.0.1:0");
    let mut proxy = Proxy::start(&config("one"));
    let (mut open, _) = tunnel(proxy.addr, echo.addr);
    support::signal(proxy.child.id(), "TERM");
    proxy.next_line("draining");
    // New connections are refused once the listeners are closed...
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(proxy.addr).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting after SIGTERM"
        );
        std::thread::yield_now();
    }
    // ...while the open tunnel keeps working until its client finishes.
    assert_eq!(echo_round(&mut open, b"draining"), b"draining");
    drop(open);
    let status = proxy.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

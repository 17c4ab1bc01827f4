//! Reload and shutdown with the real binary: SIGHUP changes alice's egress for new
//! connections while an open tunnel keeps flowing; a broken file changes nothing; SIGTERM
//! stops accepting but lets open tunnels finish.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use support::{Config, EchoUpstream, Proxy, Upstream, curl, eventually, socks5};

/// alice leaves from `alice_pool`, anyone else from the default address.
fn config(alice_pool: &str) -> Config {
    Config::new()
        .proxy("drain_timeout", "\"20s\"")
        .auth("optional")
        .user("alice", "pw", &[])
        .pool("one", &["127.0.0.2"], &[])
        .pool("two", &["127.0.0.3"], &[])
        .egress(
            &format!("alice-{alice_pool}"),
            "identity.name == \"alice\"",
            alice_pool,
        )
        .catch_all()
}

/// A SOCKS5 tunnel as alice to the echo upstream; returns the stream and the egress address
/// the upstream reported.
fn tunnel(proxy: SocketAddr, echo: SocketAddr) -> (BufReader<TcpStream>, String) {
    let (s, _) = socks5::tunnel(proxy, Some(("alice", "pw")), echo);
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
    let mut proxy = Proxy::start(config("one"));
    let socks = proxy.addr.to_string();
    let (mut open, ip) = tunnel(proxy.addr, echo.addr);
    assert_eq!(ip, "127.0.0.2");
    assert_eq!(echo_round(&mut open, b"before"), b"before");

    let line = proxy.reload(config("two"));
    assert!(
        line.contains("\"reloaded\"") && line.contains("\"generation\":2"),
        "{line}"
    );
    let (code, body, _) = curl(&["--socks5", &socks, "-U", "alice:pw", &up.url("/")]);
    assert_eq!((code, body.as_str()), (0, "127.0.0.3"));
    // The tunnel opened under generation 1 is untouched.
    assert_eq!(echo_round(&mut open, b"after"), b"after");

    // A broken file is rejected whole: its diagnostics are logged, generation 2 keeps serving.
    let broken = config("nowhere");
    let line = proxy.reload(broken);
    assert!(line.contains("reload rejected"), "{line}");
    let (code, body, _) = curl(&["--socks5", &socks, "-U", "alice:pw", &up.url("/")]);
    assert_eq!((code, body.as_str()), (0, "127.0.0.3"));
    let rec =
        proxy.wait_record(|r| r["user"] == "alice" && r["generation"] == 2 && r["outcome"] == "ok");
    assert_eq!(rec["pool"], "two");
    assert_eq!(rec["rule"], "alice-two");
    assert_eq!(echo_round(&mut open, b"still"), b"still");

    // Close the old tunnel: its record carries generation 1 and the bytes both ways.
    open.get_mut().shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = String::new();
    open.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "<eof>");
    let rec =
        proxy.wait_record(|r| r["user"] == "alice" && r["generation"] == 1 && r["outcome"] == "ok");
    assert_eq!(rec["bytes_up"], "beforeafterstill".len());
    // Decided by generation 1, logged under generation 2: named as generation 1 named them
    // (at the rule's position generation 2 has "alice-two" with pool "two").
    assert_eq!(rec["rule"], "alice-one");
    assert_eq!(rec["pool"], "one");
    assert_eq!(
        rec["egress"].as_str().unwrap().split(':').next(),
        Some("127.0.0.2")
    );
}

#[test]
fn sigterm_drains_open_tunnels_then_exits() {
    let echo = EchoUpstream::start("127.0.0.1:0");
    let mut proxy = Proxy::start(config("one"));
    let (mut open, _) = tunnel(proxy.addr, echo.addr);
    support::signal(proxy.child.id(), "TERM");
    proxy.next_line("draining");
    // New connections are refused once the listeners are closed...
    eventually(
        Duration::from_secs(10),
        "still accepting after SIGTERM",
        || TcpStream::connect(proxy.addr).is_err().then_some(()),
    );
    // ...while the open tunnel keeps working until its client finishes.
    assert_eq!(echo_round(&mut open, b"draining"), b"draining");
    drop(open);
    let status = proxy.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

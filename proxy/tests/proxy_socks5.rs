//! The real binary as a SOCKS5 proxy, with curl and raw clients, against a real upstream that
//! reports the source address it saw: per-user and per-destination egress, block and deny,
//! failover, wrong passwords, malformed and silent clients.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::socks5::{Handshake, Socks5};
use support::{Config, EchoUpstream, Proxy, Upstream, curl};

/// Users alice (finance) and bob (engineering) leave from their groups' pools, anyone else
/// from the default address; `extra` (TOML: pools, devices, rules) comes before those rules.
fn config(extra: &str) -> Config {
    Config::new()
        .deny(&["169.254.0.0/16", "127.0.0.9/32"])
        .proxy("handshake_timeout", "\"1s\"")
        .auth("optional")
        .user("alice", "alice-pw", &["finance"])
        .user("bob", "bob-pw", &["engineering"])
        .pool("finance", &["127.0.0.2"], &[])
        .pool(
            "engineering",
            &["192.0.2.1", "127.0.0.3"],
            &["fallback = \"deny\""],
        )
        .toml(extra)
        .egress_group("finance")
        .egress_group("engineering")
        .catch_all()
}

fn socks(proxy: &Proxy) -> String {
    proxy.addr.to_string()
}

#[test]
fn users_leave_from_their_pools_and_anonymous_from_the_default() {
    let up = Upstream::start("127.0.0.1:0");
    let proxy = Proxy::start(config(""));
    let url = up.url("/");
    let (code, body, err) = curl(&[
        "--socks5-hostname",
        &socks(&proxy),
        "-U",
        "alice:alice-pw",
        &url,
    ]);
    assert_eq!((code, body.as_str()), (0, "127.0.0.2"), "{err}");
    // bob's primary (192.0.2.1) is not an address of this host: it fails at bind, cools
    // down, and the secondary is used.
    let (code, body, err) = curl(&[
        "--socks5-hostname",
        &socks(&proxy),
        "-U",
        "bob:bob-pw",
        &url,
    ]);
    assert_eq!((code, body.as_str()), (0, "127.0.0.3"), "{err}");
    let (code, body, err) = curl(&["--socks5", &socks(&proxy), &url]);
    assert_eq!((code, body.as_str()), (0, "127.0.0.1"), "{err}");

    let rec = proxy.wait_record(|r| r["user"] == "alice" && r["outcome"] == "ok");
    assert_eq!(rec["rule"], "finance");
    assert_eq!(rec["action"], "egress");
    assert_eq!(rec["pool"], "finance");
    assert_eq!(rec["protocol"], "socks5");
    assert!(rec["egress"].as_str().unwrap().starts_with("127.0.0.2:"));
    assert_eq!(rec["dialled"], up.addr.to_string());
    assert!(rec["bytes_down"].as_u64().unwrap() > 0);
    assert_eq!(rec["generation"], 1);
    let bob = proxy.wait_record(|r| r["user"] == "bob" && r["outcome"] == "ok");
    assert!(
        bob["egress"].as_str().unwrap().starts_with("127.0.0.3:"),
        "{bob}"
    );
}

#[test]
fn per_destination_block_and_deny_rules() {
    let up = Upstream::start("127.0.0.1:0");
    let other = Upstream::start("127.0.0.5:0");
    let rules = format!(
        r#"
[[rule]]
name = "partner via finance"
when = 'net.dst.ip == 127.0.0.5 and net.dst.port == {port}'
action = "egress"
pool = "finance"

[[rule]]
name = "no admin"
when = 'net.dst.port == {up_port} and net.fqdn.host == "localhost"'
action = "block"
"#,
        port = other.addr.port(),
        up_port = up.addr.port()
    );
    let proxy = Proxy::start(config(&rules));
    let (code, body, _) = curl(&["--socks5", &socks(&proxy), &other.url("/")]);
    assert_eq!((code, body.as_str()), (0, "127.0.0.2"));

    // Blocked by rule: SOCKS5 reply 0x02 ("connection not allowed by ruleset"), which curl
    // reports with the code in parentheses.
    // The rule reads only the port and the name, so the proxy refuses before resolving.
    let target = format!("http://localhost:{}/", up.addr.port());
    let (code, _, err) = curl(&["--socks5-hostname", &socks(&proxy), &target]);
    assert_ne!(code, 0);
    assert!(err.contains("(2)"), "{err}");
    let rec = proxy.wait_record(|r| r["outcome"] == "blocked");
    assert_eq!(rec["rule"], "no admin");

    // A destination in deny_destinations is refused whatever the rule says.
    let denied = Upstream::start("127.0.0.9:0");
    let (code, _, err) = curl(&[
        "--socks5",
        &socks(&proxy),
        "-U",
        "alice:alice-pw",
        &denied.url("/"),
    ]);
    assert_ne!(code, 0, "{err}");
    assert_eq!(denied.connections(), 0);
    proxy.wait_record(|r| r["outcome"] == "denied_destination");
}

#[test]
fn bnd_addr_is_the_real_egress_address_and_tunnels_pass_half_close() {
    let echo = EchoUpstream::start("127.0.0.1:0");
    let proxy = Proxy::start(config(""));
    let mut client = Socks5::open(proxy.addr).unwrap();
    let done = client
        .handshake(Some(("alice", "alice-pw")), echo.addr)
        .unwrap();
    assert_eq!(&done.reply()[..4], &[5, 0, 0, 1]);
    let bnd = done.bound();
    let mut s = client.stream;
    // The upstream's first line is the peer it saw: exactly BND.ADDR:BND.PORT.
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while byte[0] != b'\n' {
        s.read_exact(&mut byte).unwrap();
        seen.push(byte[0]);
    }
    assert_eq!(String::from_utf8_lossy(&seen).trim(), bnd.to_string());
    assert_eq!(bnd.ip().to_string(), "127.0.0.2");
    s.write_all(b"hello").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = String::new();
    s.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "hello<eof>");
}

/// 32 MiB each way through one tunnel (upload echoed back while it is sent, then a
/// half-close), with bulk copied or, with `[proxy] splice = true`, moved through pipes.
fn bulk_echo_through_a_tunnel(splice: bool) {
    let echo = EchoUpstream::start("127.0.0.1:0");
    let cfg = config("").proxy("splice", &splice.to_string());
    let proxy = Proxy::start(cfg);
    let mut client = Socks5::open(proxy.addr).unwrap();
    let reply = client.handshake(None, echo.addr).unwrap().reply();
    assert_eq!(&reply[..2], &[5, 0]);
    let mut s = client.stream;
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let data: Vec<u8> = (0..32u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut writer = s.try_clone().unwrap();
    let sent = data.clone();
    let sender = std::thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut got = Vec::with_capacity(data.len() + 64);
    s.read_to_end(&mut got).unwrap();
    sender.join().unwrap();
    let line = got.iter().position(|&b| b == b'\n').unwrap() + 1;
    let body = &got[line..];
    assert!(body.ends_with(b"<eof>"), "the half-close came through");
    assert!(
        &body[..body.len() - 5] == data.as_slice(),
        "32 MiB came back intact ({} bytes)",
        body.len() - 5
    );
    let rec = proxy.wait_record(|r| r["outcome"] == "ok");
    assert_eq!(rec["bytes_up"], 32u64 << 20);
}

#[test]
fn bulk_tunnels_are_intact_copied_or_spliced() {
    bulk_echo_through_a_tunnel(false);
    bulk_echo_through_a_tunnel(true);
}

#[test]
fn wrong_passwords_and_required_auth_are_refused() {
    let up = Upstream::start("127.0.0.1:0");
    let proxy = Proxy::start(config(""));
    let (code, _, err) = curl(&[
        "--socks5",
        &socks(&proxy),
        "-U",
        "alice:wrong",
        &up.url("/"),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("rejected"), "{err}");
    let done = Socks5::open(proxy.addr)
        .unwrap()
        .handshake(Some(("nobody", "x")), up.addr)
        .unwrap();
    assert_eq!(done, Handshake::LoginRefused([1, 1]));
    proxy.wait_record(|r| r["outcome"] == "auth_failed" && r["user"] == "nobody");
    assert_eq!(up.connections(), 0);
    // The right password still works afterwards.
    let (code, body, _) = curl(&[
        "--socks5",
        &socks(&proxy),
        "-U",
        "alice:alice-pw",
        &up.url("/"),
    ]);
    assert_eq!((code, body.as_str()), (0, "127.0.0.2"));

    let required = config("").auth("required");
    let proxy = Proxy::start(required);
    let choice = Socks5::open(proxy.addr)
        .unwrap()
        .greet(support::socks5::NO_AUTH)
        .unwrap();
    assert_eq!(
        choice,
        [5, 0xff],
        "no acceptable method without credentials"
    );
}

#[test]
fn malformed_and_silent_clients_get_the_right_answer_and_the_shard_keeps_serving() {
    let up = Upstream::start("127.0.0.1:0");
    let proxy = Proxy::start(config(""));
    // Unknown address type: reply 0x08.
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).unwrap();
    s.write_all(&[5, 1, 0, 9, 1, 2, 3, 4, 0, 80]).unwrap();
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply[1], 0x08);
    // BIND: command not supported, 0x07.
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    s.read_exact(&mut choice).unwrap();
    s.write_all(&[5, 2, 0, 1, 127, 0, 0, 1, 0, 80]).unwrap();
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply[1], 0x07);
    // Garbage after the version byte: closed without a reply.
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[5, 0]).unwrap();
    let mut any = Vec::new();
    let _ = s.read_to_end(&mut any);
    assert!(any.is_empty(), "{any:?}");
    // A silent client is cut off by the 1 s handshake timeout.
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = std::time::Instant::now();
    let n = s.read(&mut [0u8; 16]).unwrap_or(0);
    assert_eq!(n, 0);
    assert!(started.elapsed() < Duration::from_secs(9));
    proxy.wait_record(|r| r["outcome"] == "handshake_timeout");
    // And everything still works.
    let (code, body, _) = curl(&["--socks5", &socks(&proxy), &up.url("/")]);
    assert_eq!((code, body.as_str()), (0, "127.0.0.1"));
}

#[test]
fn a_panicking_connection_is_logged_and_the_shard_keeps_serving() {
    let up = Upstream::start("127.0.0.1:0");
    let mut proxy = Proxy::start(config("").proxy("shards", "1"));
    // The debug build panics on this reserved name (a failpoint compiled out of releases).
    let (code, _, _) = curl(&[
        "--socks5-hostname",
        &socks(&proxy),
        "http://panic.egressd.invalid/",
    ]);
    assert_ne!(code, 0);
    let line = proxy.next_line("connection task panicked");
    assert!(line.contains("failpoint"), "{line}");
    for _ in 0..3 {
        let (code, body, _) = curl(&["--socks5", &socks(&proxy), &up.url("/")]);
        assert_eq!((code, body.as_str()), (0, "127.0.0.1"));
    }
}

#[test]
fn pool_interfaces_bind_the_device_and_a_missing_one_falls_back() {
    let up = Upstream::start("127.0.0.1:0");
    let rules = r#"
[[pool]]
name = "on-lo"
ipv4 = ["127.0.0.2"]
interface = "lo"
mark = 7

[[pool]]
name = "missing-device"
ipv4 = ["127.0.0.3"]
interface = "nonexistent0"
fallback = "default"

[[rule]]
name = "anonymous on lo"
when = 'identity.name == "" and net.dst.port != 1'
action = "egress"
pool = "on-lo"

[[rule]]
name = "alice on a missing device"
when = 'identity.name == "alice"'
action = "egress"
pool = "missing-device"
"#;
    let proxy = Proxy::start(config(rules));
    let (code, body, err) = curl(&["--socks5", &socks(&proxy), &up.url("/")]);
    assert_eq!((code, body.as_str()), (0, "127.0.0.2"), "{err}");
    let (code, body, err) = curl(&[
        "--socks5",
        &socks(&proxy),
        "-U",
        "alice:alice-pw",
        &up.url("/"),
    ]);
    assert_eq!((code, body.as_str()), (0, "127.0.0.1"), "{err}");
    let rec = proxy.wait_record(|r| r["user"] == "alice" && r["outcome"] == "ok");
    assert_eq!(rec["pool"], "missing-device");
    assert!(
        rec["fallback"].as_str().unwrap().contains("127.0.0.3"),
        "{rec}"
    );
}

#[test]
fn device_posture_from_the_client_address_picks_the_pool() {
    let up = Upstream::start("127.0.0.1:0");
    let rules = r#"
[[device]]
source = "127.0.0.1/32"
passed = ["disk-encryption"]
failed = ["os-up-to-date"]

[[rule]]
name = "encrypted disks via finance"
when = 'any(device_posture.checks.passed[*] == "disk-encryption") and not any(device_posture.checks.passed[*] == "os-up-to-date")'
action = "egress"
pool = "finance"
"#;
    let proxy = Proxy::start(config(rules));
    // From 127.0.0.1: the device's posture matches.
    let (code, body, err) = curl(&["--socks5", &socks(&proxy), &up.url("/")]);
    assert_eq!((code, body.as_str()), (0, "127.0.0.2"), "{err}");
    // From another address: no device, no posture, the catch-all.
    let (code, body, err) = curl(&[
        "--interface",
        "127.0.0.8",
        "--socks5",
        &socks(&proxy),
        &up.url("/"),
    ]);
    assert_eq!((code, body.as_str()), (0, "127.0.0.1"), "{err}");
}

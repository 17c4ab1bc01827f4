//! Starting egressd: from a compiled artifact, the connection cap, and an invalid config at
//! start-up (exit 78 with file:line:col diagnostics).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use support::{Proxy, Upstream, curl, tempdir};

const CONFIG: &str = r#"
[proxy]
deny_destinations = []
shards = 1
max_connections = 2
max_connections_per_client = 10

[[listener]]
name = "office"
bind = "127.0.0.1:0"

[[pool]]
name = "p"
ipv4 = ["127.0.0.7"]

[[rule]]
name = "all via p"
action = "egress"
pool = "p"
"#;

#[test]
fn runs_from_a_compiled_artifact() {
    let dir = tempdir("artifact");
    let toml = dir.path().join("p.toml");
    let bin = dir.path().join("p.bin");
    std::fs::write(&toml, CONFIG).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_egressd"))
        .args(["compile", "-c"])
        .arg(&toml)
        .arg("-o")
        .arg(&bin)
        .status()
        .unwrap();
    assert!(status.success());
    let up = Upstream::start("127.0.0.1:0");
    let mut proxy = Proxy::launch(bin.clone(), dir, &[], 1);
    let (code, body, _) = curl(&["--socks5", &proxy.addr.to_string(), &up.url("/")]);
    assert_eq!((code, body.as_str()), (0, "127.0.0.7"));
    // SIGHUP re-reads the artifact: same policy, generation 2.
    support::signal(proxy.child.id(), "HUP");
    let line = proxy.next_line("\"reloaded\"");
    assert!(line.contains("\"generation\":2"), "{line}");
    let (code, body, _) = curl(&["--socks5", &proxy.addr.to_string(), &up.url("/")]);
    assert_eq!((code, body.as_str()), (0, "127.0.0.7"));
}

#[test]
fn the_connection_cap_turns_extra_clients_away() {
    let up = Upstream::start("127.0.0.1:0");
    let proxy = Proxy::start(CONFIG);
    // Two silent clients take both slots (the handshake timeout is the default 10 s).
    let a = TcpStream::connect(proxy.addr).unwrap();
    let b = TcpStream::connect(proxy.addr).unwrap();
    // Wait until both are accepted: a third is closed at once without a byte.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = TcpStream::connect(proxy.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(2000)))
            .unwrap();
        let mut byte = [0u8; 1];
        if matches!(c.read(&mut byte), Ok(0)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "third client was not turned away"
        );
    }
    drop((a, b));
    // Slots free again: a real request goes through.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body, _) = curl(&["--socks5", &proxy.addr.to_string(), &up.url("/")]);
        if code == 0 {
            assert_eq!(body, "127.0.0.7");
            break;
        }
        assert!(std::time::Instant::now() < deadline);
    }
}

#[test]
fn an_invalid_config_exits_78_with_located_diagnostics() {
    let dir = tempdir("invalid");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[[rule]]\nname = \"x\"\naction = \"egress\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_egressd"))
        .args(["run", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:3:10: error: action = \\\"egress\\\" needs a `pool`"),
        "{err}"
    );
}

//! Starting egressd: from a compiled artifact, the connection cap, and an invalid config at
//! start-up (exit 78 with file:line:col diagnostics).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use support::{Config, Proxy, Upstream, curl, egressd, eventually, tempdir};

/// One shard of at most two connections; everything leaves from 127.0.0.7.
fn config() -> String {
    Config::new()
        .proxy("shards", "1")
        .proxy("max_connections", "2")
        .proxy("max_connections_per_client", "10")
        .pool("p", &["127.0.0.7"], &[])
        .egress("all via p", "", "p")
        .to_string()
}

#[test]
fn runs_from_a_compiled_artifact() {
    let dir = tempdir("artifact");
    let toml = dir.path().join("p.toml");
    let bin = dir.path().join("p.bin");
    std::fs::write(&toml, config()).unwrap();
    let (code, out, err) = egressd(&[
        "compile",
        "-c",
        toml.to_str().unwrap(),
        "-o",
        bin.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
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
    let proxy = Proxy::start(config());
    // Two silent clients take both slots (the handshake timeout is the default 10 s).
    let a = TcpStream::connect(proxy.addr).unwrap();
    let b = TcpStream::connect(proxy.addr).unwrap();
    // Wait until both are accepted: a third is closed at once without a byte.
    eventually(
        Duration::from_secs(10),
        "third client was not turned away",
        || {
            let mut c = TcpStream::connect(proxy.addr).unwrap();
            c.set_read_timeout(Some(Duration::from_millis(2000)))
                .unwrap();
            let mut byte = [0u8; 1];
            matches!(c.read(&mut byte), Ok(0)).then_some(())
        },
    );
    drop((a, b));
    // Slots free again: a real request goes through.
    let body = eventually(
        Duration::from_secs(10),
        "no request went through after the slots were freed",
        || {
            let (code, body, _) = curl(&["--socks5", &proxy.addr.to_string(), &up.url("/")]);
            (code == 0).then_some(body)
        },
    );
    assert_eq!(body, "127.0.0.7");
}

#[test]
fn an_invalid_config_exits_78_with_located_diagnostics() {
    let dir = tempdir("invalid");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[[rule]]\nname = \"x\"\naction = \"egress\"\n").unwrap();
    let (code, _, err) = egressd(&["run", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 78);
    assert!(
        err.contains("bad.toml:3:10: error: action = \\\"egress\\\" needs a `pool`"),
        "{err}"
    );
}

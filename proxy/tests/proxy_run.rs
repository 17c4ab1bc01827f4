//! Starting egressd: from a compiled artifact, the connection cap, and an invalid config at
//! start-up (exit 78 with file:line:col diagnostics).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::{Config, EchoUpstream, Proxy, Upstream, curl, egressd, eventually, socks5, tempdir};

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

/// A reader that stops reading the access log (a stalled pipe, a stuck log shipper) must not
/// stall connections: lines that cannot be written are dropped and counted, and every line is
/// either written or counted.
#[test]
fn a_stalled_access_log_reader_does_not_stall_connections() {
    const CLIENTS: usize = 4;
    const EACH: usize = 750;
    let echo = EchoUpstream::start("127.0.0.1:0");
    let mut proxy = Proxy::start_unread(Config::new().proxy("shards", "1").catch_all());
    let stdout = proxy.unread_stdout.take().unwrap();
    // Far more lines than the pipe (64 KiB) and the writer's queue hold, while nobody reads.
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (addr, echo) = (proxy.addr, echo.addr);
            std::thread::spawn(move || {
                for _ in 0..EACH {
                    let (s, _) = socks5::tunnel(addr, None, echo);
                    let mut s = BufReader::new(s);
                    let mut peer = String::new();
                    s.read_line(&mut peer).unwrap();
                    s.get_mut().write_all(b"x").unwrap();
                    let mut x = [0u8; 1];
                    s.read_exact(&mut x).unwrap();
                }
            })
        })
        .collect();
    for c in clients {
        c.join()
            .expect("a client stalled or failed while the access log was stalled");
    }
    // Reading again: the writer catches up and says how many lines it could not keep.
    let reader = std::thread::spawn(move || BufReader::new(stdout).lines().count());
    let warned = proxy.next_line("access-log lines dropped");
    assert!(warned.contains("\"total\":"), "{warned}");
    support::signal(proxy.child.id(), "TERM");
    let stopped: serde_json::Value = serde_json::from_str(&proxy.next_line("\"stopped\"")).unwrap();
    let dropped = stopped["access_log_dropped"].as_u64().unwrap();
    assert!(proxy.child.wait().unwrap().success());
    let written = reader.join().unwrap() as u64;
    assert!(dropped > 0, "{stopped}");
    assert_eq!(
        written + dropped,
        (CLIENTS * EACH) as u64,
        "every line written or counted ({written} written, {dropped} dropped)"
    );
    assert_eq!(stopped["accepted"], CLIENTS * EACH);
}

/// Shards share their port through SO_REUSEPORT, which would also let a second egressd on the
/// same port start and take part of the traffic with a policy of its own: it must refuse.
#[test]
fn a_second_instance_on_a_served_address_refuses_to_start() {
    let up = Upstream::start("127.0.0.1:0");
    let first = Proxy::start(Config::new().pool("p", &["127.0.0.7"], &[]).egress(
        "all via p",
        "",
        "p",
    ));
    let dir = tempdir("second");
    let path = dir.path().join("second.toml");
    let second = Config::new()
        .listener_line(&format!("bind = \"{}\"", first.addr))
        .catch_all();
    std::fs::write(&path, second.to_string()).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_egressd"))
        .args(["run", "-c"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // If it started, it would serve until killed: give it a bounded time to refuse.
    let status = eventually(
        Duration::from_secs(20),
        "the second egressd kept running",
        || child.try_wait().unwrap(),
    );
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(71), "{err}");
    assert!(err.contains("address in use"), "{err}");
    // The first one is untouched and serves every request with its own policy.
    for _ in 0..12 {
        let (code, body, _) = curl(&["--socks5", &first.addr.to_string(), &up.url("/")]);
        assert_eq!((code, body.as_str()), (0, "127.0.0.7"));
    }
}

/// Started by a person at a terminal (here: asked for text with --log-format), egressd says what it serves in
/// plain lines; for machines, the same in one JSON `ready` line.
#[test]
fn the_start_up_summary_says_what_is_served_and_refused() {
    let dir = tempdir("summary");
    let path = dir.path().join("egressd.toml");
    std::fs::write(
        &path,
        Config::new()
            .auth("required")
            .user("a", "pw", &[])
            .catch_all()
            .to_string(),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_egressd"))
        .args(["run", "--log-format", "text", "-c"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut said = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.contains("access log");
        said.push(line);
        if done {
            break;
        }
    }
    support::signal(child.id(), "TERM");
    assert!(child.wait().unwrap().success());
    let text = said.join("\n");
    assert!(
        text.contains("egressd is ready (generation 1, 1 rule)"),
        "{text}"
    );
    assert!(
        text.contains("listener \"office\", authentication required"),
        "{text}"
    );
    assert!(
        text.contains("default egress  the host's default route (rule \"catch-all\")"),
        "{text}"
    );
    assert!(
        text.contains("refused         nothing beyond the rules"),
        "{text}"
    );
    assert!(text.contains("access log      standard output"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no colour codes when not a terminal: {text}"
    );

    let mut proxy = Proxy::start(Config::new().deny(&["127.0.0.0/8"]).catch_all());
    let ready: serde_json::Value = serde_json::from_str(&proxy.next_line("\"ready\"")).unwrap();
    assert!(
        ready["refused"].as_str().unwrap().contains("127.0.0.0/8"),
        "{ready}"
    );
    assert!(
        ready["listeners"]
            .as_str()
            .unwrap()
            .contains(&proxy.addr.to_string()),
        "{ready}"
    );
}

//! The real binary as an HTTP proxy with curl: absolute-form forwarding with keep-alive and a
//! new decision per target, CONNECT, Proxy-Authorization and 407, block (403), deny,
//! malformed and oversized heads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::{Config, Proxy, Upstream, curl};

/// alice (finance) leaves from her group's pool, 127.0.0.6 is reached from the partners' pool,
/// `blocked_port` is blocked, and anyone else gets the default address.
fn config(blocked_port: u16) -> Config {
    Config::new()
        .deny(&["127.0.0.9/32"])
        .proxy("handshake_timeout", "\"1s\"")
        .auth("optional")
        .user("alice", "alice-pw", &["finance"])
        .pool("finance", &["127.0.0.2"], &[])
        .pool("partners", &["127.0.0.4"], &[])
        .block("blocked port", &format!("net.dst.port == {blocked_port}"))
        .egress("partner host", "net.dst.ip == 127.0.0.6", "partners")
        .egress_group("finance")
        .catch_all()
}

#[test]
fn forward_and_connect_leave_from_the_users_pool() {
    let up = Upstream::start("127.0.0.1:0");
    let proxy = Proxy::start(config(1));
    let p = format!("http://{}", proxy.addr);
    // Absolute-form forwarding.
    let (code, body, err) = curl(&["-x", &p, "-U", "alice:alice-pw", &up.url("/")]);
    assert_eq!((code, body.as_str()), (0, "127.0.0.2"), "{err}");
    // CONNECT tunnel (-p).
    let (code, body, err) = curl(&["-p", "-x", &p, "-U", "alice:alice-pw", &up.url("/")]);
    assert_eq!((code, body.as_str()), (0, "127.0.0.2"), "{err}");
    // Anonymous: default egress.
    let (code, body, err) = curl(&["-x", &p, &up.url("/")]);
    assert_eq!((code, body.as_str()), (0, "127.0.0.1"), "{err}");
    let rec = proxy
        .wait_record(|r| r["protocol"] == "http" && r["user"] == "alice" && r["outcome"] == "ok");
    assert_eq!(rec["pool"], "finance");
}

#[test]
fn keep_alive_reuses_the_upstream_and_a_new_target_gets_a_new_decision() {
    let up = Upstream::start("127.0.0.1:0");
    let partner = Upstream::start("127.0.0.6:0");
    let proxy = Proxy::start(config(1));
    let p = format!("http://{}", proxy.addr);
    // Three requests on one client connection: two to the same upstream, one to the partner.
    let (code, body, err) = curl(&[
        "-x",
        &p,
        "-w",
        "|",
        &up.url("/port"),
        &up.url("/port"),
        &partner.url("/"),
    ]);
    assert_eq!(code, 0, "{err}");
    let answers: Vec<&str> = body.split('|').collect();
    // The same source address and port twice: one upstream connection was reused.
    assert!(answers[0].starts_with("127.0.0.1:"), "{body}");
    assert_eq!(answers[0], answers[1], "{body}");
    // The partner target got its own decision and leaves from its pool.
    assert_eq!(answers[2], "127.0.0.4", "{body}");
    assert_eq!(up.connections(), 1);
    // Hop-by-hop headers do not reach the upstream; the request line is origin-form.
    let (code, _, err) = curl(&[
        "-v",
        "-x",
        &p,
        "-H",
        "Proxy-Connection: keep-alive",
        &up.url("/x?y=1"),
    ]);
    assert_eq!(code, 0);
    assert!(err.contains("X-Request-Line: GET /x?y=1 HTTP/1.1"), "{err}");
    let names = err
        .lines()
        .find(|l| l.contains("X-Request-Headers:"))
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        names.contains("host") && !names.contains("proxy-connection"),
        "{names}"
    );
    let (_, _, err) = curl(&["-v", "-x", &p, "-U", "alice:alice-pw", &up.url("/")]);
    let names = err
        .lines()
        .find(|l| l.contains("X-Request-Headers:"))
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        !names.contains("proxy-authorization"),
        "credentials must not reach the upstream: {names}"
    );
}

#[test]
fn auth_block_and_deny_statuses() {
    let up = Upstream::start("127.0.0.1:0");
    let proxy = Proxy::start(config(up.addr.port()));
    let p = format!("http://{}", proxy.addr);
    // Blocked by rule: 403.
    let (code, _, err) = curl(&["-f", "-x", &p, &up.url("/")]);
    assert_ne!(code, 0);
    assert!(err.contains("403"), "{err}");
    let (_, _, err) = curl(&["-p", "-x", &p, &up.url("/")]);
    assert!(err.contains("403"), "{err}");
    // Wrong password: 407 with a challenge.
    let (_, _, err) = curl(&["-v", "-x", &p, "-U", "alice:nope", &up.url("/")]);
    assert!(
        err.contains("407") && err.contains("Proxy-Authenticate: Basic"),
        "{err}"
    );
    // Denied destination: 403, and the upstream never sees a connection.
    let denied = Upstream::start("127.0.0.9:0");
    let (_, _, err) = curl(&["-f", "-x", &p, &denied.url("/")]);
    assert!(err.contains("403"), "{err}");
    assert_eq!(denied.connections(), 0);
    proxy.wait_record(|r| r["outcome"] == "denied_destination");
    assert_eq!(up.connections(), 0);
}

#[test]
fn required_auth_challenges_anonymous_clients() {
    let up = Upstream::start("127.0.0.1:0");
    let proxy = Proxy::start(config(1).auth("required"));
    let p = format!("http://{}", proxy.addr);
    let (_, _, err) = curl(&["-v", "-x", &p, &up.url("/")]);
    assert!(
        err.contains("< HTTP/1.1 407")
            && err.contains("Proxy-Authenticate: Basic realm=\"egressd\""),
        "{err}"
    );
    let (code, body, _) = curl(&["-x", &p, "-U", "alice:alice-pw", &up.url("/")]);
    assert_eq!((code, body.as_str()), (0, "127.0.0.2"));
}

fn raw(proxy: &Proxy, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn malformed_oversized_and_silent_http_clients() {
    let up = Upstream::start("127.0.0.1:0");
    let proxy = Proxy::start(config(1));
    assert!(raw(&proxy, b"GET http://x/ HTTP/1.1\r\nHost x\r\n\r\n").starts_with("HTTP/1.1 400"));
    let mut big = b"GET http://example.com/ HTTP/1.1\r\n".to_vec();
    for i in 0..2000 {
        big.extend_from_slice(format!("X-Filler-{i}: aaaaaaaaaaaaaaaa\r\n").as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    assert!(
        raw(&proxy, &big).starts_with("HTTP/1.1 431"),
        "oversized head"
    );
    assert!(
        raw(&proxy, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 400"),
        "origin-form is not a proxy request"
    );
    let smuggle = raw(
        &proxy,
        b"POST http://x/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert!(smuggle.starts_with("HTTP/1.1 400"), "smuggling: {smuggle}");
    // Silent after a partial head: closed by the 1 s handshake timeout, nothing sent upstream.
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.write_all(b"GET http://").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    proxy.wait_record(|r| r["outcome"] == "handshake_timeout" && r["protocol"] == "http");
    // Still serving.
    let (code, body, _) = curl(&["-x", &format!("http://{}", proxy.addr), &up.url("/")]);
    assert_eq!((code, body.as_str()), (0, "127.0.0.1"));
}

#[test]
fn post_bodies_are_relayed_both_framings() {
    let up = Upstream::start("127.0.0.1:0");
    let proxy = Proxy::start(config(1));
    let p = format!("http://{}", proxy.addr);
    let (code, body, err) = curl(&["-x", &p, "--data-binary", "hello body", &up.url("/echo")]);
    assert_eq!((code, body.as_str()), (0, "hello body"), "{err}");
    let (code, body, err) = curl(&[
        "-x",
        &p,
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        "chunky",
        &up.url("/echo"),
    ]);
    // The upstream decodes the chunked body the proxy relayed byte for byte.
    assert_eq!((code, body.as_str()), (0, "chunky"), "{err}");
}

#[test]
fn python_urllib_answers_the_407_challenge_and_tunnels_with_http_client() {
    let up = Upstream::start("127.0.0.1:0");
    let proxy = Proxy::start(config(1).auth("required"));
    // urllib first asks without credentials, gets 407 + Proxy-Authenticate, retries with them.
    let script = format!(
        r#"
import urllib.request, http.client, base64
proxy = "http://{proxy}"
mgr = urllib.request.HTTPPasswordMgrWithDefaultRealm()
mgr.add_password(None, proxy, "alice", "alice-pw")
opener = urllib.request.build_opener(
    urllib.request.ProxyHandler({{"http": proxy}}),
    urllib.request.ProxyBasicAuthHandler(mgr))
print(opener.open("{url}", timeout=20).read().decode())
c = http.client.HTTPConnection("{host}", {port}, timeout=20)
c.set_tunnel("127.0.0.1", {up_port}, headers={{"Proxy-Authorization": "Basic " + base64.b64encode(b"alice:alice-pw").decode()}})
c.request("GET", "/")
print(c.getresponse().read().decode())
"#,
        proxy = proxy.addr,
        url = up.url("/"),
        host = proxy.addr.ip(),
        port = proxy.addr.port(),
        up_port = up.addr.port(),
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "127.0.0.2\n127.0.0.2\n"
    );
}

/// Waits until the access log holds `n` records: a client's record is written when its
/// session has ended, after its upstream connection was parked.
fn wait_records(proxy: &Proxy, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while proxy.access_log().len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            proxy.access_log()
        );
        std::thread::yield_now();
    }
}

#[test]
fn idle_upstream_connections_serve_later_clients_leaving_from_the_same_address_only() {
    let up = Upstream::start("127.0.0.1:0");
    // Idle connections are kept per shard: one shard, so every client reaches the same.
    let proxy = Proxy::start(config(1).proxy("shards", "1"));
    let p = format!("http://{}", proxy.addr);
    // Two clients one after the other, anonymous (the catch-all: the kernel's source).
    let (code, first, err) = curl(&["-x", &p, &up.url("/port")]);
    assert_eq!(code, 0, "{err}");
    assert!(first.starts_with("127.0.0.1:"), "{first}");
    wait_records(&proxy, 1);
    let (_, second, _) = curl(&["-x", &p, &up.url("/port")]);
    assert_eq!(
        second, first,
        "the second client's request went over the first one's idle upstream connection"
    );
    assert_eq!(up.connections(), 1);
    wait_records(&proxy, 2);
    // alice's rule leaves from 127.0.0.2: the idle connection from 127.0.0.1 is not hers.
    let (_, alice, _) = curl(&["-x", &p, "-U", "alice:alice-pw", &up.url("/port")]);
    assert!(alice.starts_with("127.0.0.2:"), "{alice}");
    assert_eq!(up.connections(), 2);
    wait_records(&proxy, 3);
    let (_, again, _) = curl(&["-x", &p, "-U", "alice:alice-pw", &up.url("/port")]);
    assert_eq!(
        again, alice,
        "alice's next request reuses the connection from her address"
    );
    wait_records(&proxy, 4);
    let (_, anonymous, _) = curl(&["-x", &p, &up.url("/port")]);
    assert_eq!(anonymous, first);
    assert_eq!(up.connections(), 2);
    // A CONNECT tunnel never gets an idle connection: its bytes are the client's own.
    let (code, tunnelled, err) = curl(&["-p", "-x", &p, &up.url("/port")]);
    assert_eq!(code, 0, "{err}");
    assert_ne!(tunnelled, first);
    assert_eq!(up.connections(), 3);
}

/// An HTTP/1.1 server that answers the first request on each connection (keep-alive) and
/// closes, without answering, on the next one: what a server whose keep-alive timeout runs
/// out just as a request arrives looks like.
fn one_answer_per_connection() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if conn.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst");
                // The next request: read a byte of it, then close without a word.
                let _ = conn.read(&mut byte);
            });
        }
    });
    (addr, accepted)
}

#[test]
fn a_kept_connection_closed_by_the_server_is_replaced_and_the_request_sent_again() {
    let (addr, accepted) = one_answer_per_connection();
    let proxy = Proxy::start(config(1).proxy("shards", "1"));
    let p = format!("http://{}", proxy.addr);
    let url = format!("http://{addr}/");
    let (code, body, err) = curl(&["-x", &p, &url]);
    assert_eq!((code, body.as_str()), (0, "first"), "{err}");
    wait_records(&proxy, 1);
    // Over the parked connection the server hangs up; the proxy sends the request again on a
    // new connection and the client never notices.
    let (code, body, err) = curl(&["-x", &p, &url]);
    assert_eq!((code, body.as_str()), (0, "first"), "{err}");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    // Within one client connection too (keep-alive to the same target).
    let (code, body, err) = curl(&["-x", &p, "-w", "|", &url, &url]);
    assert_eq!((code, body.as_str()), (0, "first|first|"), "{err}");
}

/// An upstream that answers `Expect: 100-continue` as a server does: with `answer` (an
/// interim 100 Continue, then the body's length once it has read it; or a final refusal
/// without reading the body). Returns its address; each connection is served once.
fn expecting_upstream(interim: bool) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if conn.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                assert!(head.contains("expect: 100-continue"), "{head}");
                if !interim {
                    let _ = conn.write_all(
                        b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big\n",
                    );
                    return;
                }
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
                let mut body = vec![0u8; len];
                conn.read_exact(&mut body).unwrap();
                let text = len.to_string();
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                    text.len()
                );
                conn.write_all(answer.as_bytes()).unwrap();
            });
        }
    });
    addr
}

/// curl sends `Expect: 100-continue` with bodies above 1 MiB and waits (here up to a minute,
/// past its 20 s limit) for the answer before sending the body: the upstream's 100 Continue
/// must reach it at once, or a final answer must end the wait.
#[test]
fn expect_100_continue_gets_the_upstreams_answer_before_the_body() {
    let proxy = Proxy::start(config(1));
    let p = format!("http://{}", proxy.addr);
    let dir = support::tempdir("expect");
    let file = dir.path().join("upload.bin");
    std::fs::write(&file, vec![b'x'; 2 << 20]).unwrap();
    let data = format!("@{}", file.display());
    let up = expecting_upstream(true);
    let url = format!("http://{up}/upload");
    let (code, body, err) = curl(&[
        "-x",
        &p,
        "--expect100-timeout",
        "60",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        &data,
        &url,
    ]);
    assert_eq!((code, body.as_str()), (0, "2097152"), "{err}");
    let rec = proxy.wait_record(|r| r["method"] == "POST" && r["status"] == 200);
    assert_eq!(rec["outcome"], "ok");
    assert!(rec["bytes_up"].as_u64().unwrap() > 2 << 20, "{rec}");

    // A final answer instead of 100 Continue: the client learns it without sending its body.
    let refusing = expecting_upstream(false);
    let url = format!("http://{refusing}/upload");
    let (code, body, err) = curl(&[
        "-x",
        &p,
        "--expect100-timeout",
        "60",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        &data,
        "-w",
        "%{http_code}",
        &url,
    ]);
    assert_eq!((code, body.as_str()), (0, "too big\n413"), "{err}");
    let rec = proxy.wait_record(|r| r["method"] == "POST" && r["status"] == 413);
    assert!(
        rec["bytes_up"].as_u64().unwrap() < 1 << 20,
        "the body was not sent: {rec}"
    );
}

/// A refusal says why in the body curl prints (and in an RFC 9209 Proxy-Status field), and the
/// access-log line of a denied destination does not read as allowed.
#[test]
fn refusals_say_why_in_one_line() {
    let up = Upstream::start("127.0.0.1:0");
    let proxy = Proxy::start(config(up.addr.port()));
    let p = format!("http://{}", proxy.addr);
    let (_, body, err) = curl(&["-v", "-x", &p, &up.url("/")]);
    assert_eq!(
        body, "403 Forbidden: blocked by rule \"blocked port\"\n",
        "{err}"
    );
    assert!(
        err.contains("Proxy-Status: egressd; error=http_request_denied"),
        "{err}"
    );

    let denied = Upstream::start("127.0.0.9:0");
    let (_, body, _) = curl(&["-x", &p, &denied.url("/")]);
    assert_eq!(
        body,
        "403 Forbidden: denied destination: 127.0.0.9 is in [proxy] deny_destinations\n"
    );
    let rec = proxy.wait_record(|r| r["outcome"] == "denied_destination");
    assert_eq!(rec["action"], "deny", "{rec}");
    assert_eq!(rec["side"], "policy", "{rec}");

    // Nothing listens on port 1 of 127.0.0.1.
    let (_, body, _) = curl(&["-x", &p, "http://127.0.0.1:1/"]);
    assert_eq!(
        body,
        "502 Bad Gateway: upstream 127.0.0.1:1 refused the connection\n"
    );
    // A CONNECT refusal carries the same reason in its Proxy-Status field.
    let (_, _, err) = curl(&["-v", "-x", &p, "http://127.0.0.1:1/", "-p"]);
    assert!(
        err.contains("< HTTP/1.1 502")
            && err.contains("Proxy-Status: egressd; error=connection_refused"),
        "{err}"
    );
    let rec = proxy.wait_record(|r| r["outcome"] == "connect_failed" && r["method"] == "CONNECT");
    assert_eq!(rec["side"], "upstream", "{rec}");
}

/// When every address of a pool fails and so does its fallback, the line names the pool and
/// each address tried.
#[test]
fn a_pool_that_fails_whole_is_named_with_every_address_tried() {
    // 203.0.113.x is on no interface of a test machine: binding it fails; nothing is sent.
    // One shard: cool-downs are per shard.
    let proxy = Proxy::start(
        Config::new()
            .proxy("shards", "1")
            .pool(
                "gone",
                &["203.0.113.77", "203.0.113.78"],
                &["fallback = \"default\""],
            )
            .egress("everything", "", "gone"),
    );
    let p = format!("http://{}", proxy.addr);
    let (_, body, _) = curl(&["-x", &p, "http://127.0.0.1:1/"]);
    assert!(
        body.starts_with("502 Bad Gateway: no egress address (203.0.113.77: ")
            && body.contains("203.0.113.78: ")
            && body.contains("and the default address failed too"),
        "{body}"
    );
    let rec = proxy.wait_record(|r| r["outcome"] == "connect_failed");
    assert_eq!(rec["pool"], "gone", "{rec}");
    assert_eq!(rec["rule"], "everything", "{rec}");
    let tried = rec["tried"].as_array().unwrap();
    assert_eq!(tried.len(), 2, "{rec}");
    assert!(
        tried[0].as_str().unwrap().starts_with("203.0.113.77: "),
        "{rec}"
    );
}

/// curl fetching two URLs over one kept connection, each leaving from its own pool: one
/// access-log line per request, with its method, path length and hash (never the query),
/// start and end times.
#[test]
fn each_forwarded_request_has_its_own_line() {
    let up = Upstream::start("127.0.0.1:0");
    let partner = Upstream::start("127.0.0.6:0");
    let proxy = Proxy::start(config(1));
    let p = format!("http://{}", proxy.addr);
    let first = up.url("/reports?token=secret");
    let (code, body, err) = curl(&["-x", &p, "-U", "alice:alice-pw", &first, &partner.url("/b")]);
    assert_eq!((code, body.as_str()), (0, "127.0.0.2127.0.0.4"), "{err}");
    let mine = proxy.wait_record(|r| r["pool"] == "finance" && r["method"] == "GET");
    let theirs = proxy.wait_record(|r| r["pool"] == "partners" && r["method"] == "GET");
    assert_eq!(mine["path_len"], "/reports".len(), "{mine}");
    assert_eq!(theirs["path_len"], "/b".len(), "{theirs}");
    assert_ne!(mine["path_sha256"], theirs["path_sha256"]);
    for rec in [&mine, &theirs] {
        assert_eq!(rec["status"], 200, "{rec}");
        assert!(
            rec["time"].as_str().unwrap() <= rec["end_time"].as_str().unwrap(),
            "{rec}"
        );
    }
    let log = proxy.log.lock().unwrap().join("\n");
    assert!(
        !log.contains("secret") && !log.contains("/reports"),
        "{log}"
    );
}

//! The admin endpoint with the real binary: health checks for balancers, Prometheus metrics
//! after real traffic, and /readyz turning 503 as soon as a stop is asked for.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use support::{Config, EchoUpstream, Proxy, Upstream, curl, eventually, socks5};

fn admin_addr(proxy: &mut Proxy) -> SocketAddr {
    let line = proxy.next_line("admin endpoint listening");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    v["addr"].as_str().unwrap().parse().unwrap()
}

fn get(admin: SocketAddr, path: &str, extra: &[&str]) -> (String, String) {
    let url = format!("http://{admin}{path}");
    let mut args = vec!["-s", "-o", "-", "-w", "\n%{http_code}"];
    args.extend_from_slice(extra);
    args.push(&url);
    let (code, out, err) = curl(&args);
    assert_eq!(code, 0, "{err}");
    let (body, status) = out.rsplit_once('\n').unwrap();
    (status.to_string(), body.to_string())
}

/// The value of the sample named exactly `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_and_health_after_real_traffic() {
    let up = Upstream::start("127.0.0.1:0");
    let mut proxy = Proxy::start(
        Config::new()
            .proxy("admin", "\"127.0.0.1:0\"")
            .pool("p", &["127.0.0.7"], &[])
            .block("no port 1", "net.dst.port == 1")
            .egress("all via p", "", "p"),
    );
    let admin = admin_addr(&mut proxy);
    for _ in 0..3 {
        let (code, body, _) = curl(&["--socks5", &proxy.addr.to_string(), &up.url("/")]);
        assert_eq!((code, body.as_str()), (0, "127.0.0.7"));
    }
    let (code, _, _) = curl(&["--socks5", &proxy.addr.to_string(), "http://127.0.0.1:1/"]);
    assert_ne!(code, 0);
    assert_eq!(get(admin, "/livez", &[]).0, "200");
    assert_eq!(get(admin, "/readyz", &[]).0, "200");
    assert_eq!(get(admin, "/healthz", &[]).0, "200");
    // The shards count on their own and are asked when scraped: wait for the last lines.
    proxy.wait_record(|r| r["outcome"] == "blocked");
    let text = eventually(
        Duration::from_secs(10),
        "metrics never showed the traffic",
        || {
            let (status, text) = get(admin, "/metrics", &[]);
            assert_eq!(status, "200");
            (sample(&text, "egressd_pool_connections_total{pool=\"p\"}") == Some(3.0))
                .then_some(text)
        },
    );
    assert_eq!(
        sample(
            &text,
            "egressd_connections_finished_total{listener=\"office\",protocol=\"socks5\",outcome=\"ok\",side=\"none\"}"
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "egressd_connections_finished_total{listener=\"office\",protocol=\"socks5\",outcome=\"blocked\",side=\"policy\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "egressd_connections_accepted_total{listener=\"office\"}"
        ),
        Some(4.0)
    );
    assert!(
        text.contains("# TYPE egressd_connections_accepted_total counter"),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "egressd_relayed_bytes_total{direction=\"down\",pool=\"p\"}"
        )
        .unwrap()
            > 0.0
    );
    let (_, om) = get(
        admin,
        "/metrics",
        &["-H", "Accept: application/openmetrics-text;version=1.0.0"],
    );
    assert!(om.ends_with("# EOF\n"), "{om}");
    // Junk on the admin port gets an answer, and the endpoint keeps serving.
    assert_eq!(get(admin, "/nope", &[]).0, "404");
    assert_eq!(get(admin, "/metrics", &["-X", "POST"]).0, "405");
}

#[test]
fn readyz_turns_503_as_soon_as_a_stop_is_asked_for() {
    let echo = EchoUpstream::start("127.0.0.1:0");
    let mut proxy = Proxy::start(
        Config::new()
            .proxy("admin", "\"127.0.0.1:0\"")
            .proxy("drain_timeout", "\"30s\"")
            .catch_all(),
    );
    let admin = admin_addr(&mut proxy);
    // An open tunnel keeps the process draining.
    let (tunnel, _): (TcpStream, _) = socks5::tunnel(proxy.addr, None, echo.addr);
    assert_eq!(get(admin, "/readyz", &[]).0, "200");
    support::signal(proxy.child.id(), "TERM");
    proxy.next_line("draining");
    let (status, body) = get(admin, "/readyz", &[]);
    assert_eq!((status.as_str(), body.as_str()), ("503", "draining\n"));
    drop(tunnel);
    assert!(proxy.child.wait().unwrap().success());
}

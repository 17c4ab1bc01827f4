//! socks5, http-connect and http-forward runs through the in-test proxies, including auth,
//! refusals and the egress check.

use super::http_proxy::{self, ALICE, HttpConfig};
use super::socks5_proxy::{self, Socks5Config};
use super::support::{SHORT, Sink, errors, num, refused, run};

fn args<'a>(proto: &'a str, proxy: &'a str, target: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--proto", proto, "--proxy", proxy, "--target", target];
    all.extend_from_slice(extra);
    all.extend_from_slice(&SHORT);
    all
}

fn alice() -> Socks5Config {
    Socks5Config {
        auth: Some(("alice".into(), "s3cret".into())),
        reply: 0,
    }
}

#[test]
fn socks5_churn_and_rr_without_auth() {
    let sink = Sink::start(&["--mode", "echo"]);
    let proxy = socks5_proxy::start(Socks5Config::default());
    for workload in ["churn", "rr"] {
        let result = run(&args(
            "socks5",
            &proxy,
            &sink.addr,
            &["--workload", workload, "--connections", "2"],
        ));
        let json = result.clean();
        assert_eq!(json["proto"], "socks5");
        assert!(num(json, "requests_per_s") > 0.0);
    }
}

#[test]
fn socks5_with_username_password() {
    let sink = Sink::start(&["--mode", "echo"]);
    let proxy = socks5_proxy::start(alice());
    let result = run(&args(
        "socks5",
        &proxy,
        &sink.addr,
        &[
            "--workload",
            "rr",
            "--user",
            "alice",
            "--password",
            "s3cret",
        ],
    ));
    result.clean();

    let wrong = run(&args(
        "socks5",
        &proxy,
        &sink.addr,
        &[
            "--workload",
            "churn",
            "--user",
            "alice",
            "--password",
            "nope",
        ],
    ));
    let json = wrong.report();
    assert_eq!(json["completed"], 0);
    assert!(errors(json, "proxy-refused") > 0);
    assert_eq!(
        refused(json, "socks5-auth:0x01"),
        errors(json, "proxy-refused")
    );

    let anonymous = run(&args(
        "socks5",
        &proxy,
        &sink.addr,
        &["--workload", "churn"],
    ));
    let json = anonymous.report();
    assert!(refused(json, "socks5-method:0xff") > 0, "{json:#}");
}

#[test]
fn socks5_refusal_is_counted_with_its_code() {
    let sink = Sink::start(&["--mode", "echo"]);
    let proxy = socks5_proxy::start(Socks5Config {
        auth: None,
        reply: 0x02,
    });
    let result = run(&args(
        "socks5",
        &proxy,
        &sink.addr,
        &["--workload", "churn"],
    ));
    let json = result.report();
    assert_eq!(json["completed"], 0);
    let refusals = errors(json, "proxy-refused");
    assert!(refusals > 0);
    assert_eq!(refused(json, "socks5:0x02"), refusals);
    for class in ["connect", "handshake", "io", "timeout"] {
        assert_eq!(errors(json, class), 0, "{class}: {json:#}");
    }
    assert!(
        result.stdout.contains("refused socks5:0x02"),
        "{}",
        result.stdout
    );
}

#[test]
fn socks5_domain_target() {
    let sink = Sink::start(&["--mode", "echo"]);
    let proxy = socks5_proxy::start(Socks5Config::default());
    let port = sink.addr.rsplit_once(':').unwrap().1;
    let target = format!("localhost:{port}");
    let result = run(&args("socks5", &proxy, &target, &["--workload", "churn"]));
    result.clean();
}

#[test]
fn socks5_idle_and_bulk() {
    let echo = Sink::start(&["--mode", "echo"]);
    let proxy = socks5_proxy::start(Socks5Config::default());
    let idle = run(&args(
        "socks5",
        &proxy,
        &echo.addr,
        &["--workload", "idle", "--connections", "6"],
    ));
    let json = idle.clean();
    assert!(
        idle.stdout.contains("idle: 6 tunnels open"),
        "{}",
        idle.stdout
    );
    assert_eq!(json["completed"], 6);

    let discard = Sink::start(&["--mode", "discard"]);
    let bulk = run(&args(
        "socks5",
        &proxy,
        &discard.addr,
        &["--workload", "bulk", "--streams", "2"],
    ));
    assert!(num(bulk.clean(), "gbit_per_s") > 0.0);
}

#[test]
fn socks5_expect_egress() {
    let sink = Sink::start(&["--mode", "peer"]);
    let proxy = socks5_proxy::start(alice());
    let creds = ["--user", "alice", "--password", "s3cret"];
    let mut ok = vec!["--workload", "churn", "--expect-egress", "127.0.0.1"];
    ok.extend_from_slice(&creds);
    let result = run(&args("socks5", &proxy, &sink.addr, &ok));
    let json = result.clean();
    assert_eq!(json["egress"], "127.0.0.1");
    assert!(
        result.stdout.contains("(proxy reported 127.0.0.1:"),
        "{}",
        result.stdout
    );

    let mut wrong = vec!["--workload", "churn", "--expect-egress", "192.0.2.7"];
    wrong.extend_from_slice(&creds);
    let result = run(&args("socks5", &proxy, &sink.addr, &wrong));
    assert_eq!(result.status.code(), Some(1), "{}", result.stderr);
    assert!(result.stdout.contains("MISMATCH"), "{}", result.stdout);
    assert!(result.json.is_none(), "no measurement after a failed check");
}

#[test]
fn http_connect_with_basic_auth() {
    let sink = Sink::start(&["--mode", "echo"]);
    let proxy = http_proxy::start(HttpConfig {
        authorization: Some(ALICE.into()),
        refuse: false,
    });
    let creds = ["--user", "alice", "--password", "s3cret"];
    for workload in ["churn", "rr"] {
        let mut extra = vec!["--workload", workload, "--connections", "2"];
        extra.extend_from_slice(&creds);
        let result = run(&args("http-connect", &proxy, &sink.addr, &extra));
        assert!(num(result.clean(), "requests_per_s") > 0.0);
    }
    let anonymous = run(&args(
        "http-connect",
        &proxy,
        &sink.addr,
        &["--workload", "churn"],
    ));
    let json = anonymous.report();
    assert!(refused(json, "http:407") > 0, "{json:#}");
    assert_eq!(json["completed"], 0);
}

#[test]
fn http_connect_peer_line_follows_the_reply() {
    // The peer sink speaks first, so its line may arrive in the same read as the 200.
    let sink = Sink::start(&["--mode", "peer"]);
    let proxy = http_proxy::start(HttpConfig::default());
    let result = run(&args(
        "http-connect",
        &proxy,
        &sink.addr,
        &["--workload", "rr", "--expect-egress", "127.0.0.1"],
    ));
    assert_eq!(result.clean()["egress"], "127.0.0.1");
}

#[test]
fn http_refusal_is_counted_with_its_code() {
    let echo = Sink::start(&["--mode", "echo"]);
    let http = Sink::start(&["--mode", "http"]);
    let proxy = http_proxy::start(HttpConfig {
        authorization: None,
        refuse: true,
    });
    for (proto, target) in [("http-connect", &echo.addr), ("http-forward", &http.addr)] {
        let result = run(&args(proto, &proxy, target, &["--workload", "churn"]));
        let json = result.report();
        let refusals = errors(json, "proxy-refused");
        assert!(refusals > 0, "{proto}: {json:#}");
        assert_eq!(refused(json, "http:403"), refusals);
        assert_eq!(json["completed"], 0);
    }
}

#[test]
fn http_forward_keep_alive_and_close() {
    let sink = Sink::start(&["--mode", "http", "--response-size", "256"]);
    let proxy = http_proxy::start(HttpConfig {
        authorization: Some(ALICE.into()),
        refuse: false,
    });
    let creds = ["--user", "alice", "--password", "s3cret"];
    for workload in ["rr", "churn", "idle"] {
        let mut extra = vec!["--workload", workload, "--connections", "2"];
        extra.extend_from_slice(&creds);
        let result = run(&args("http-forward", &proxy, &sink.addr, &extra));
        let json = result.clean();
        assert_eq!(json["proto"], "http-forward");
    }
}

#[test]
fn http_forward_expect_egress_reads_the_header() {
    let sink = Sink::start(&["--mode", "http"]);
    let proxy = http_proxy::start(HttpConfig::default());
    let result = run(&args(
        "http-forward",
        &proxy,
        &sink.addr,
        &["--workload", "rr", "--expect-egress", "127.0.0.1"],
    ));
    assert_eq!(result.clean()["egress"], "127.0.0.1");
}

//! What reaches DNS: the real binary and curl inside a network namespace whose resolv.conf
//! names a DNS server the test runs there and that logs every question (needs root and
//! iproute2). A name the policy blocks whatever it resolves to is refused before any question
//! is asked, over SOCKS5 and HTTP; a name an earlier rule may let through by its address is
//! resolved and decided per address.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::netns::{CountingDns, Netns, Program, http_upstream};
use support::{Config, Proxy, require_root};

/// "pinned" reads the destination address, so `pinned.test` must be resolved before "ads"
/// can block it; `ads.test` is blocked whatever it resolves to; anything else is allowed.
fn config() -> Config {
    Config::new()
        .toml(
            r#"[[rule]]
name = "pinned"
when = 'net.fqdn.host == "pinned.test" and net.dst.ip == 127.0.0.1'
action = "default"
"#,
        )
        .block("ads", r#"net.fqdn.host in {"ads.test" "pinned.test"}"#)
        .catch_all()
}

/// egressd, an upstream and the counting DNS server in a namespace of their own. Fields are
/// dropped in order: the processes before the namespace.
struct World {
    proxy: Proxy,
    _upstream: Program,
    port: u16,
    dns: CountingDns,
    ns: Netns,
}

impl World {
    /// Fails (saying why) without the rights to make a namespace: never passes unrun.
    fn start(tag: &str) -> World {
        require_root("ip netns (a namespace with a DNS server of the test's own)");
        let ns = Netns::with_resolver(tag);
        let dns = CountingDns::start(&ns);
        let (upstream, port) = http_upstream(&ns);
        let prefix = ns.exec();
        let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
        let proxy = Proxy::start_with(config(), &prefix);
        World {
            proxy,
            _upstream: upstream,
            port,
            dns,
            ns,
        }
    }

    fn socks(&self, host: &str) -> (i32, String, String) {
        let url = format!("http://{host}:{}/", self.port);
        let proxy = self.proxy.addr.to_string();
        self.ns.curl(&["--socks5-hostname", &proxy, &url])
    }

    /// Through the HTTP proxy; returns the status curl saw.
    fn http(&self, host: &str) -> String {
        let url = format!("http://{host}:{}/", self.port);
        let proxy = format!("http://{}", self.proxy.addr);
        let (_, status, err) =
            self.ns
                .curl(&["-x", &proxy, "-o", "/dev/null", "-w", "%{http_code}", &url]);
        assert!(!status.is_empty(), "{err}");
        status
    }

    /// An allowed name, resolved: once its question is logged, so is every earlier one.
    fn settle_dns(&self) {
        let (code, body, err) = self.socks("allowed.test");
        assert_eq!((code, body.as_str()), (0, "ok"), "{err}");
        self.dns.wait_for("allowed.test");
    }

    /// The access-log record of the blocked request to `host`: the rule named, nothing dialled.
    fn assert_blocked_before_resolving(&self, host: &str) -> serde_json::Value {
        let target = format!("{host}:{}", self.port);
        let rec = self.proxy.wait_record(|r| r["host"] == target.as_str());
        assert_eq!(rec["outcome"], "blocked", "{rec}");
        assert_eq!(rec["rule"], "ads", "{rec}");
        assert!(rec["dialled"].is_null(), "{rec}");
        rec
    }
}

#[test]
fn socks5_hostname_to_a_blocked_name_is_refused_without_a_dns_query() {
    let w = World::start("dns-s");
    let (code, _, err) = w.socks("ads.test");
    assert_ne!(code, 0);
    // SOCKS5 reply 0x02, "connection not allowed by ruleset".
    assert!(err.contains("(2)"), "{err}");
    w.settle_dns();
    assert_eq!(w.dns.asked("ads.test"), 0, "{:?}", w.dns.questions());
    w.assert_blocked_before_resolving("ads.test");
}

#[test]
fn http_proxy_to_a_blocked_name_is_refused_without_a_dns_query() {
    let w = World::start("dns-h");
    assert_eq!(w.http("ads.test"), "403");
    assert_eq!(w.http("allowed.test"), "200");
    w.dns.wait_for("allowed.test");
    assert_eq!(w.dns.asked("ads.test"), 0, "{:?}", w.dns.questions());
    let rec = w.assert_blocked_before_resolving("ads.test");
    assert_eq!(rec["status"], 403);
}

#[test]
fn a_name_an_earlier_address_rule_may_pass_is_resolved_and_decided_per_address() {
    let w = World::start("dns-p");
    // The same blocking rule names both; only the name "pinned" could let through by
    // address is resolved.
    let (code, _, err) = w.socks("ads.test");
    assert!(code != 0 && err.contains("(2)"), "{err}");
    let (code, body, err) = w.socks("pinned.test");
    assert_eq!((code, body.as_str()), (0, "ok"), "{err}");
    let rec = w
        .proxy
        .wait_record(|r| r["host"] == format!("pinned.test:{}", w.port).as_str());
    assert_eq!(rec["outcome"], "ok", "{rec}");
    assert_eq!(rec["rule"], "pinned", "decided for the address: {rec}");
    assert_eq!(rec["dialled"], format!("127.0.0.1:{}", w.port), "{rec}");
    w.dns.wait_for("pinned.test");
    assert_eq!(w.dns.asked("ads.test"), 0, "{:?}", w.dns.questions());
    w.assert_blocked_before_resolving("ads.test");
}

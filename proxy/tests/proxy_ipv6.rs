//! An IPv6 prefix pool, inside a network namespace this test creates (needs root and
//! iproute2; without root it fails saying so rather than pass unrun): the host routes
//! 2001:db8:10::/64 locally, egressd binds addresses inside it with IPV6_FREEBIND, and an
//! upstream on ::1 sees an address from the prefix, the same one for the same user and
//! different ones for different users.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::Ipv6Addr;

use support::netns::{Netns, Program};
use support::{Config, Proxy, require_root};

/// An HTTP server on [::1]:0 inside the namespace answering with the peer address.
fn upstream(ns: &Netns) -> (Program, u16) {
    let script = r#"
import socket
s = socket.socket(socket.AF_INET6)
s.bind(("::1", 0))
s.listen(64)
print(s.getsockname()[1], flush=True)
while True:
    c, a = s.accept()
    c.recv(65536)
    body = a[0].encode()
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
    c.close()
"#;
    let (program, port) = Program::python(ns, script);
    (program, port.parse().unwrap())
}

fn curl_in(ns: &Netns, args: &[&str]) -> String {
    let (code, body, err) = ns.curl(args);
    assert_eq!(code, 0, "{err}");
    body
}

#[test]
fn ipv6_prefix_pool_in_a_namespace() {
    require_root("ip netns (a network namespace routing the test prefix)");
    let ns = Netns::create("t");
    ns.ip(&[
        "-6",
        "route",
        "add",
        "local",
        "2001:db8:10::/64",
        "dev",
        "lo",
    ]);
    let (_server, port) = upstream(&ns);
    let config = Config::new()
        .auth("optional")
        .user("alice", "a", &[])
        .user("bob", "b", &[])
        .toml(
            r#"[[pool]]
name = "pt6"
ipv6 = ["2001:db8:10::/64"]
ipv6_select = "sticky"
fallback = "deny""#,
        )
        .egress("everything via the prefix", "", "pt6")
        .to_string();
    let prefix: Vec<String> = ns.exec();
    let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
    let proxy = Proxy::start_with(&config, &prefix);
    let socks = proxy.addr.to_string();
    let url = format!("http://[::1]:{port}/");
    let seen = |user: &str| -> Ipv6Addr {
        let body = curl_in(&ns, &["--socks5", &socks, "-U", user, &url]);
        body.parse()
            .unwrap_or_else(|_| panic!("not an address: {body}"))
    };
    let alice = seen("alice:a");
    let net: ipnet::Ipv6Net = "2001:db8:10::/64".parse().unwrap();
    assert!(net.contains(&alice), "{alice}");
    assert_eq!(seen("alice:a"), alice, "sticky per user");
    let bob = seen("bob:b");
    assert!(net.contains(&bob) && bob != alice, "{bob} vs {alice}");
}

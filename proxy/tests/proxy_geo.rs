//! Destination-country rules with a tiny MaxMind database built in the test: the country rule
//! picks the pool (the upstream sees its address), replacing the database and sending SIGHUP
//! changes the decision, and a corrupted database is refused at start and on reload.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use mmdb_writer::{IpVersion, Value, Writer};
use support::{Proxy, Upstream, curl, tempdir};

/// A DB-IP-shaped database placing each address in a country.
fn database(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut w = Writer::builder("Test-Country")
        .ip_version(IpVersion::V6)
        .build();
    for (net, code) in entries {
        w.insert_value(
            net.parse::<ipnet::IpNet>().unwrap(),
            Value::map([("country_code", Value::from(*code))]),
        )
        .unwrap();
    }
    w.to_bytes().unwrap()
}

fn config(db: &std::path::Path) -> String {
    format!(
        r#"
[proxy]
deny_destinations = []

[geoip]
database = "{db}"

[[listener]]
name = "office"
bind = "127.0.0.1:0"

[[pool]]
name = "pt"
location = {{ country = "PT" }}
ipv4 = ["127.0.0.2"]

[[rule]]
name = "Portugal via Portugal"
when = 'net.dst.geo.country == "PT" and net.dst.geo.continent == "EU"'
action = "egress"
pool = "pt"

[[rule]]
name = "catch-all"
action = "default"
"#,
        db = db.display()
    )
}

#[test]
fn country_rules_pick_the_pool_and_follow_a_reloaded_database() {
    let pt = Upstream::start("127.0.0.5:0");
    let de = Upstream::start("127.0.0.6:0");
    let dir = tempdir("geo");
    let db = dir.path().join("countries.mmdb");
    std::fs::write(
        &db,
        database(&[("127.0.0.5/32", "PT"), ("127.0.0.6/32", "DE")]),
    )
    .unwrap();
    let mut proxy = Proxy::start(&config(&db));
    let socks = proxy.addr.to_string();
    assert_eq!(curl(&["--socks5", &socks, &pt.url("/")]).1, "127.0.0.2");
    assert_eq!(curl(&["--socks5", &socks, &de.url("/")]).1, "127.0.0.1");

    // The database changes: 127.0.0.6 is now in Portugal, 127.0.0.5 in Spain.
    std::fs::write(
        &db,
        database(&[("127.0.0.5/32", "ES"), ("127.0.0.6/32", "PT")]),
    )
    .unwrap();
    support::signal(proxy.child.id(), "HUP");
    let line = proxy.next_line("\"reloaded\"");
    assert!(line.contains("\"generation\":2"), "{line}");
    assert_eq!(curl(&["--socks5", &socks, &pt.url("/")]).1, "127.0.0.1");
    assert_eq!(curl(&["--socks5", &socks, &de.url("/")]).1, "127.0.0.2");

    // A corrupted database is a rejected reload: generation 2 keeps deciding.
    std::fs::write(&db, b"\xab\xcd\xefMaxMind.com garbage").unwrap();
    support::signal(proxy.child.id(), "HUP");
    let line = proxy.next_line("reload rejected");
    assert!(line.contains("countries.mmdb"), "{line}");
    assert_eq!(curl(&["--socks5", &socks, &de.url("/")]).1, "127.0.0.2");

    // ...and a clear error at start.
    let out = Command::new(env!("CARGO_BIN_EXE_egressd"))
        .args(["run", "-c"])
        .arg(&proxy.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("countries.mmdb") && err.contains("not a valid MaxMind DB"),
        "{err}"
    );
}

#[test]
fn explain_and_check_use_the_database() {
    let dir = tempdir("geo-explain");
    let db = dir.path().join("countries.mmdb");
    std::fs::write(
        &db,
        database(&[("127.0.0.2/32", "DE"), ("203.0.113.0/24", "PT")]),
    )
    .unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(&path, config(&db)).unwrap();
    let egressd = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_egressd"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let p = path.to_str().unwrap();
    let (code, out) = egressd(&["explain", "-c", p, "--dst", "203.0.113.7:443"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("geolocation: source unknown, destination PT (EU)"),
        "{out}"
    );
    assert!(
        out.contains("true  net.dst.geo.country == \"PT\"    [net.dst.geo.country = \"PT\"]"),
        "{out}"
    );
    // The pool says PT but its address geolocates to DE: a warning, not an error.
    let (code, out) = egressd(&["check", "-c", p]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("warning: pool \"pt\" says PT but 127.0.0.2 geolocates to DE"),
        "{out}"
    );
}

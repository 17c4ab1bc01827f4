//! Destination-country rules with a tiny MaxMind database built in the test: the country rule
//! picks the pool (the upstream sees its address), replacing the database and sending SIGHUP
//! changes the decision, and a corrupted database is refused at start and on reload.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use mmdb_writer::{IpVersion, Value, Writer};
use support::{Config, Proxy, Upstream, curl, egressd, tempdir};

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

/// Destinations in Portugal (per the database at `db`) are reached from pool "pt".
fn config(db: &std::path::Path) -> String {
    Config::new()
        .toml(&format!("[geoip]\ndatabase = \"{}\"", db.display()))
        .pool("pt", &["127.0.0.2"], &["location = { country = \"PT\" }"])
        .egress(
            "Portugal via Portugal",
            "net.dst.geo.country == \"PT\" and net.dst.geo.continent == \"EU\"",
            "pt",
        )
        .catch_all()
        .to_string()
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
    let mut proxy = Proxy::start(config(&db));
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
    let (code, _, err) = egressd(&["run", "-c", proxy.config.to_str().unwrap()]);
    assert_eq!(code, 78);
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
    let p = path.to_str().unwrap();
    let (code, out, _) = egressd(&["explain", "-c", p, "--dst", "203.0.113.7:443"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("geolocation: source unknown, destination PT (EU)"),
        "{out}"
    );
    assert!(
        out.contains("true  net.dst.geo.country == \"PT\"    [net.dst.geo.country = \"PT\"]"),
        "{out}"
    );
    // The pool says PT but its address geolocates to DE: a warning, not an error.
    let (code, out, _) = egressd(&["check", "-c", p]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: pool \"pt\" says PT but 127.0.0.2 geolocates to DE"),
        "{out}"
    );
}

//! The facts a decision is made on, assembled in one place for the proxy, `egressd explain`, a
//! policy's `[[test]]`s and the admin `/explain`: who the user is and their groups, the
//! device's posture (by client-certificate fingerprint, else by client address), and where the
//! client and the destination are.
//!
//! Users, listeners and devices are found through indexes built once per policy (a
//! [`CompiledPolicy`](crate::CompiledPolicy) owns them), not by scanning the policy's lists:
//! [`Directory::facts`] runs for every address the proxy dials. It allocates at most the
//! lower-case copy of a user name that has upper-case letters.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use rustc_hash::FxHashMap;

use crate::compile::trie::PrefixIndex;
use crate::geo::{Country, Geolocate};
use crate::meta::{ConnMeta, canonical_ip};
use crate::model::{Device, DeviceMatch, Listener, Policy, Protocol, User};

/// What is known about a connection before anything is looked up in the policy.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    /// Authenticated user name; "" when anonymous.
    pub user: &'a str,
    /// SHA-256 of the client certificate, when the client presented one.
    pub fingerprint: Option<&'a [u8; 32]>,
    /// Listener name (`proxy.endpoint`).
    pub listener: &'a str,
    /// The client's address, as the socket reports it (IPv4-mapped IPv6 included).
    pub src: Option<SocketAddr>,
    /// The address being dialled; `None` when explaining a host name that was not resolved.
    pub dst_ip: Option<IpAddr>,
    pub dst_port: u16,
    /// Lower-case host name without trailing dot; "" for an IP literal.
    pub host: &'a str,
    pub protocol: Protocol,
}

/// Users and listeners by name, devices by fingerprint and by source network: positions in
/// the policy's lists, built once per policy.
#[derive(Debug, Default)]
pub(crate) struct FactIndex {
    users: FxHashMap<Box<str>, usize>,
    listeners: FxHashMap<Box<str>, usize>,
    fingerprints: FxHashMap<[u8; 32], usize>,
    /// Every `source` network with its device's position. A lookup takes the smallest
    /// position among all networks containing the address, so the first device in file order
    /// wins however the networks nest (a longest-prefix match would pick the narrowest).
    sources: PrefixIndex,
}

impl FactIndex {
    pub(crate) fn new(policy: &Policy) -> Self {
        let mut index = FactIndex::default();
        // Names are unique in a valid policy; should one repeat, the first keeps it, as a
        // scan would find it.
        for (i, u) in policy.users.iter().enumerate() {
            index.users.entry(u.name.as_str().into()).or_insert(i);
        }
        for (i, l) in policy.listeners.iter().enumerate() {
            index.listeners.entry(l.name.as_str().into()).or_insert(i);
        }
        for (i, d) in policy.devices.iter().enumerate() {
            match &d.matcher {
                DeviceMatch::Fingerprint(fp) => {
                    index.fingerprints.entry(*fp).or_insert(i);
                }
                DeviceMatch::Source(net) => {
                    if let Ok(id) = u32::try_from(i) {
                        index.sources.insert(*net, id);
                    }
                }
            }
        }
        index
    }
}

/// A policy's users, listeners and devices, looked up through its indexes; and the
/// builder of a connection's [`Facts`]. Get one from
/// [`CompiledPolicy::directory`](crate::CompiledPolicy::directory).
#[derive(Debug, Clone, Copy)]
pub struct Directory<'p> {
    policy: &'p Policy,
    index: &'p FactIndex,
}

impl<'p> Directory<'p> {
    /// `index` must have been built from `policy`.
    pub(crate) fn new(policy: &'p Policy, index: &'p FactIndex) -> Self {
        Directory { policy, index }
    }

    /// The `[[user]]` of this name.
    pub fn user(self, name: &str) -> Option<&'p User> {
        let &i = self.index.users.get(name)?;
        self.policy.users.get(i)
    }

    /// The `[[listener]]` of this name.
    pub fn listener(self, name: &str) -> Option<&'p Listener> {
        let &i = self.index.listeners.get(name)?;
        self.policy.listeners.get(i)
    }

    /// The `[[device]]` with this client-certificate fingerprint.
    pub fn device_by_fingerprint(self, fp: &[u8; 32]) -> Option<&'p Device> {
        let &i = self.index.fingerprints.get(fp)?;
        self.policy.devices.get(i)
    }

    /// The first `[[device]]`, in file order, whose `source` contains the client address
    /// (IPv4-mapped IPv6 addresses count as the IPv4 address they carry).
    pub fn device_by_source(self, ip: IpAddr) -> Option<&'p Device> {
        let mut first = None::<u32>;
        self.index.sources.lookup(canonical_ip(ip), |ids| {
            // Positions were inserted in file order, so each list starts with its smallest.
            if let Some(&id) = ids.first() {
                first = Some(first.map_or(id, |f| f.min(id)));
            }
        });
        self.policy.devices.get(usize::try_from(first?).ok()?)
    }

    /// The device whose posture applies: the one of the certificate, else the one of the
    /// client address.
    pub fn device(self, fingerprint: Option<&[u8; 32]>, src: Option<IpAddr>) -> Option<&'p Device> {
        fingerprint
            .and_then(|fp| self.device_by_fingerprint(fp))
            .or_else(|| src.and_then(|ip| self.device_by_source(ip)))
    }

    /// The facts of one connection: the user's groups, the device's posture and, with `geo`,
    /// the countries and continents of the client and the destination ("" without it).
    pub fn facts<'a>(self, query: &Query<'a>, geo: Option<&dyn Geolocate>) -> Facts<'a>
    where
        'p: 'a,
    {
        let src_ip = query.src.map(|s| s.ip());
        let user = self.user(query.user);
        let device = self.device(query.fingerprint, src_ip);
        let locate =
            |ip: Option<IpAddr>| geo.zip(ip).and_then(|(g, ip)| g.country(canonical_ip(ip)));
        Facts {
            query: *query,
            email: lower_case(query.user),
            groups: user.map_or(&[][..], |u| &u.groups),
            posture_passed: device.map_or(&[][..], |d| &d.passed),
            posture_failed: device.map_or(&[][..], |d| &d.failed),
            src_country: locate(src_ip),
            dst_country: locate(query.dst_ip),
        }
    }
}

/// `identity.email`: the name in lower case, borrowed when it already is.
fn lower_case(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// The facts of one connection, from [`Directory::facts`]; [`Facts::meta`] is what the
/// decision table reads.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    query: Query<'a>,
    email: Cow<'a, str>,
    groups: &'a [String],
    posture_passed: &'a [String],
    posture_failed: &'a [String],
    src_country: Option<Country>,
    dst_country: Option<Country>,
}

impl<'a> Facts<'a> {
    /// Posture checks stated by the caller (a `[[test]]`'s `posture` and `device`,
    /// `explain --posture`) instead of the device looked up.
    pub fn with_posture(self, passed: &'a [String], failed: &'a [String]) -> Self {
        Facts {
            posture_passed: passed,
            posture_failed: failed,
            ..self
        }
    }

    /// Countries stated by the caller (a `[[test]]`'s `src_country` and `dst_country`)
    /// instead of geolocation.
    pub fn with_countries(self, src: Option<Country>, dst: Option<Country>) -> Self {
        Facts {
            src_country: src,
            dst_country: dst,
            ..self
        }
    }

    /// The connection as asked about.
    pub fn query(&self) -> &Query<'a> {
        &self.query
    }

    /// The facts as the decision table reads them.
    pub fn meta(&self) -> ConnMeta<'_> {
        let q = &self.query;
        ConnMeta {
            src_ip: q.src.map(|s| s.ip()),
            src_port: q.src.map_or(0, |s| s.port()),
            dst_ip: q.dst_ip,
            dst_port: q.dst_port,
            host: q.host,
            protocol: q.protocol,
            endpoint: q.listener,
            email: &self.email,
            name: q.user,
            groups: self.groups,
            posture_passed: self.posture_passed,
            posture_failed: self.posture_failed,
            src_country: self.src_country.as_ref().map_or("", Country::code),
            src_continent: self.src_country.and_then(|c| c.continent()).unwrap_or(""),
            dst_country: self.dst_country.as_ref().map_or("", Country::code),
            dst_continent: self.dst_country.and_then(|c| c.continent()).unwrap_or(""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CompiledPolicy;
    use crate::expr::ast::IpField;

    const FP_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn table(toml: &str) -> CompiledPolicy {
        let c = crate::check_str("facts.toml", toml);
        assert!(!c.diags.has_errors(), "{}", c.render());
        CompiledPolicy::new(c.policy.expect("valid policy"))
    }

    /// Users, a certificate device and source devices over nested and overlapping networks,
    /// in an order where file order and prefix length disagree.
    fn sample() -> CompiledPolicy {
        table(&format!(
            r#"
[[listener]]
name = "office"
bind = "127.0.0.1:1080"

[[listener]]
name = "lab"
bind = "127.0.0.1:1081"

[[user]]
name = "Alice@Example.com"
groups = ["finance", "oncall"]

[[user]]
name = "bob@example.com"
groups = []

[[device]]
id = "{FP_A}"
passed = ["managed"]
failed = ["os-up-to-date"]

[[device]]
source = "10.0.0.0/8"
passed = ["wide"]

[[device]]
source = "10.1.0.0/16"
passed = ["narrow"]

[[device]]
source = "10.1.2.3/32"
passed = ["host"]

[[device]]
source = "192.168.1.0/24"
passed = ["lan"]
failed = ["disk-encryption"]

[[device]]
source = "192.168.0.0/16"
passed = ["site"]

[[device]]
source = "2001:db8::/32"
passed = ["v6-wide"]

[[device]]
source = "2001:db8:1::/48"
passed = ["v6-narrow"]

[[rule]]
name = "catch-all"
action = "default"
"#
        ))
    }

    fn fp_a() -> [u8; 32] {
        [0xaa; 32]
    }

    fn query<'a>(user: &'a str, src: &str, dst: &str) -> Query<'a> {
        let dst: SocketAddr = dst.parse().expect("test destination");
        Query {
            user,
            fingerprint: None,
            listener: "office",
            src: Some(src.parse().expect("test source")),
            dst_ip: Some(dst.ip()),
            dst_port: dst.port(),
            host: "",
            protocol: Protocol::Tcp,
        }
    }

    fn posture(facts: &Facts<'_>) -> (Vec<String>, Vec<String>) {
        let m = facts.meta();
        (m.posture_passed.to_vec(), m.posture_failed.to_vec())
    }

    /// Places 192.0.2.0/24 in Portugal, 198.51.100.0/24 in the US and 203.0.113.0/24 in "ZZ"
    /// (a vendor code that is no country); records every address it is asked about.
    #[derive(Debug, Default)]
    struct TestGeo {
        asked: std::cell::RefCell<Vec<IpAddr>>,
    }

    impl Geolocate for TestGeo {
        fn country(&self, ip: IpAddr) -> Option<Country> {
            self.asked.borrow_mut().push(ip);
            let IpAddr::V4(v4) = ip else { return None };
            match v4.octets() {
                [192, 0, 2, _] => Country::from_code("PT"),
                [198, 51, 100, _] => Country::from_code("us"),
                [203, 0, 113, _] => Country::from_code("ZZ"),
                _ => None,
            }
        }
    }

    #[test]
    fn user_with_groups() {
        let t = sample();
        let q = query("Alice@Example.com", "172.16.0.1:40000", "198.51.100.7:443");
        let facts = t.directory().facts(&q, None);
        let m = facts.meta();
        assert_eq!(m.name, "Alice@Example.com");
        assert_eq!(m.email, "alice@example.com");
        assert_eq!(m.groups, ["finance", "oncall"]);
        assert_eq!(m.endpoint, "office");
        assert_eq!(m.src_port, 40000);
        assert_eq!(m.dst_port, 443);
        assert_eq!(m.dst_ip, Some("198.51.100.7".parse().expect("ip")));
        // A name already in lower case is not copied.
        let q = query("bob@example.com", "172.16.0.1:1", "198.51.100.7:443");
        let facts = t.directory().facts(&q, None);
        assert!(matches!(facts.email, Cow::Borrowed(_)));
        assert!(facts.meta().groups.is_empty());
        assert_eq!(
            t.directory()
                .user("bob@example.com")
                .map(|u| u.name.as_str()),
            Some("bob@example.com")
        );
    }

    #[test]
    fn unknown_or_anonymous_user_has_no_groups() {
        let t = sample();
        // Names are matched exactly: the e-mail's case is not the user's name.
        for name in ["mallory@example.com", "alice@example.com", ""] {
            let q = query(name, "172.16.0.1:1", "198.51.100.7:443");
            let facts = t.directory().facts(&q, None);
            let m = facts.meta();
            assert_eq!(m.name, name);
            assert_eq!(m.email, name.to_ascii_lowercase());
            assert!(m.groups.is_empty(), "{name:?}");
        }
        assert!(t.directory().user("nobody").is_none());
    }

    #[test]
    fn listeners_by_name() {
        let t = sample();
        let dir = t.directory();
        assert_eq!(dir.listener("lab").map(|l| l.name.as_str()), Some("lab"));
        assert_eq!(
            dir.listener("office").map(|l| l.bind),
            Some("127.0.0.1:1080".parse().expect("addr"))
        );
        assert!(dir.listener("Lab").is_none());
    }

    #[test]
    fn fingerprint_wins_over_source() {
        let t = sample();
        let fp = fp_a();
        let mut q = query("", "10.1.2.3:1", "198.51.100.7:443");
        q.fingerprint = Some(&fp);
        let facts = t.directory().facts(&q, None);
        assert_eq!(
            posture(&facts),
            (vec!["managed".into()], vec!["os-up-to-date".into()])
        );
        // An unknown certificate falls back to the client address.
        let other = [0xbb; 32];
        q.fingerprint = Some(&other);
        let facts = t.directory().facts(&q, None);
        assert_eq!(posture(&facts), (vec!["wide".into()], vec![]));
        // Without a client address, an unknown certificate means no device.
        q.src = None;
        let facts = t.directory().facts(&q, None);
        assert_eq!(posture(&facts), (vec![], vec![]));
    }

    #[test]
    fn overlapping_sources_first_in_file_order_wins() {
        let t = sample();
        let dir = t.directory();
        let passed = |ip: &str| {
            dir.device_by_source(ip.parse().expect("ip"))
                .map(|d| d.passed[0].as_str())
        };
        // The /8 comes first in the file: it wins over the /16 and the /32 inside it.
        assert_eq!(passed("10.1.2.3"), Some("wide"));
        assert_eq!(passed("10.1.9.9"), Some("wide"));
        assert_eq!(passed("10.200.0.1"), Some("wide"));
        // The /24 comes before the /16 around it: inside it the /24 wins, outside the /16.
        assert_eq!(passed("192.168.1.77"), Some("lan"));
        assert_eq!(passed("192.168.2.1"), Some("site"));
        assert_eq!(passed("2001:db8:1::5"), Some("v6-wide"));
        assert_eq!(passed("2001:db9::1"), None);
        assert_eq!(passed("11.0.0.1"), None);
        // The same answer as the scan in file order it replaces, for every address around
        // the networks' edges.
        let policy = t.policy();
        let scan = |ip: IpAddr| {
            policy.devices.iter().position(
                |d| matches!(&d.matcher, DeviceMatch::Source(n) if n.contains(&canonical_ip(ip))),
            )
        };
        for ip in [
            "9.255.255.255",
            "10.0.0.0",
            "10.0.255.255",
            "10.1.0.0",
            "10.1.2.2",
            "10.1.2.4",
            "10.1.255.255",
            "10.2.0.0",
            "10.255.255.255",
            "192.167.255.255",
            "192.168.0.255",
            "192.168.1.0",
            "192.168.1.255",
            "192.168.255.255",
            "192.169.0.0",
            "2001:db8::",
            "2001:db8:0:ffff::1",
            "2001:db8:2::",
            "::ffff:10.1.2.3",
            "::ffff:192.168.1.1",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            let found = dir
                .device_by_source(ip)
                .and_then(|d| policy.devices.iter().position(|x| std::ptr::eq(x, d)));
            assert_eq!(found, scan(ip), "{ip}");
        }
    }

    #[test]
    fn narrow_network_first_beats_wider_later() {
        let t = table(
            r#"
[[device]]
source = "10.1.2.0/24"
passed = ["narrow"]

[[device]]
source = "10.0.0.0/8"
passed = ["wide"]

[[device]]
source = "10.1.2.0/24"
passed = ["duplicate"]
"#,
        );
        let dir = t.directory();
        let passed = |ip: &str| {
            dir.device_by_source(ip.parse().expect("ip"))
                .map(|d| d.passed[0].as_str())
        };
        assert_eq!(passed("10.1.2.9"), Some("narrow"));
        assert_eq!(passed("10.1.3.9"), Some("wide"));
        // No source devices at all: nothing to find.
        let none = table("");
        assert!(
            none.directory()
                .device_by_source("10.1.2.9".parse().expect("ip"))
                .is_none()
        );
    }

    /// Random nested and overlapping networks, few or many prefix lengths (the index probes
    /// a hash table per length while lengths are few and walks its trie otherwise): the index
    /// finds the device a scan in file order finds.
    #[test]
    fn source_index_agrees_with_a_scan_in_file_order() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let base = crate::check_str("empty.toml", "")
            .policy
            .expect("valid policy");
        let mut hits = 0;
        for round in 0..200 {
            let mut policy = base.clone();
            // 128 addresses per family, so that networks meet and addresses fall in them.
            let v4 = |r: u64| IpAddr::from([10, 0, (r >> 8) as u8 & 1, r as u8 & 63]);
            let v6 = |r: u64| {
                IpAddr::from([
                    0x2001,
                    0xdb8,
                    0,
                    0,
                    0,
                    0,
                    (r >> 8) as u16 & 1,
                    r as u16 & 63,
                ])
            };
            // Six prefix lengths per family (hash probes), or up to 33 (trie walks).
            let lengths = if round % 2 == 0 { 6 } else { 33 };
            for _ in 0..(next() % 40) {
                let r = next();
                let shorter = (next() % lengths) as u8;
                let (ip, len) = if r % 4 == 0 {
                    (v6(next()), 128 - shorter)
                } else {
                    (v4(next()), 32 - shorter)
                };
                policy.devices.push(Device {
                    matcher: DeviceMatch::Source(ipnet::IpNet::new(ip, len).expect("net")),
                    passed: Vec::new(),
                    failed: Vec::new(),
                });
            }
            let index = FactIndex::new(&policy);
            let dir = Directory::new(&policy, &index);
            for _ in 0..200 {
                let r = next();
                let ip = match r % 3 {
                    0 => v6(next()),
                    1 => v4(next()),
                    _ => match v4(next()) {
                        IpAddr::V4(a) => IpAddr::V6(a.to_ipv6_mapped()),
                        v6 => v6,
                    },
                };
                let scan = policy.devices.iter().position(|d| {
                    matches!(&d.matcher, DeviceMatch::Source(n) if n.contains(&canonical_ip(ip)))
                });
                let found = dir
                    .device_by_source(ip)
                    .and_then(|d| policy.devices.iter().position(|x| std::ptr::eq(x, d)));
                assert_eq!(found, scan, "{ip} in {:?}", policy.devices);
                hits += usize::from(found.is_some());
            }
        }
        // Both answers occur often enough to mean something.
        assert!((10_000..30_000).contains(&hits), "{hits} of 40000 found");
    }

    #[test]
    fn mapped_client_addresses_are_ipv4() {
        let t = sample();
        let geo = TestGeo::default();
        let q = query("", "[::ffff:192.168.1.9]:5000", "[::ffff:198.51.100.7]:443");
        let facts = t.directory().facts(&q, Some(&geo));
        let m = facts.meta();
        assert_eq!(
            posture(&facts),
            (vec!["lan".into()], vec!["disk-encryption".into()])
        );
        // Geolocation is asked about the IPv4 addresses.
        assert_eq!(
            *geo.asked.borrow(),
            [
                "192.168.1.9".parse::<IpAddr>().expect("ip"),
                "198.51.100.7".parse().expect("ip")
            ]
        );
        assert_eq!((m.dst_country, m.dst_continent), ("US", "NA"));
        // Rules see the IPv4 address; the port is kept.
        assert_eq!(m.ip(IpField::Src), Some("192.168.1.9".parse().expect("ip")));
        assert_eq!(m.src_port, 5000);
    }

    #[test]
    fn geolocation_gives_countries_and_continents() {
        let t = sample();
        let geo = TestGeo::default();
        let q = query("", "192.0.2.10:1", "198.51.100.7:443");
        let facts = t.directory().facts(&q, Some(&geo));
        let m = facts.meta();
        assert_eq!((m.src_country, m.src_continent), ("PT", "EU"));
        assert_eq!((m.dst_country, m.dst_continent), ("US", "NA"));
        // A code that is no country has no continent; an address not placed is "".
        let q = query("", "203.0.113.1:1", "172.16.0.1:443");
        let facts = t.directory().facts(&q, Some(&geo));
        let m = facts.meta();
        assert_eq!((m.src_country, m.src_continent), ("ZZ", ""));
        assert_eq!((m.dst_country, m.dst_continent), ("", ""));
        // No client address, no destination address: geolocation is not asked.
        let mut q = query("", "192.0.2.10:1", "198.51.100.7:443");
        (q.src, q.dst_ip) = (None, None);
        geo.asked.borrow_mut().clear();
        let facts = t.directory().facts(&q, Some(&geo));
        assert!(geo.asked.borrow().is_empty());
        assert_eq!(facts.meta().src_country, "");
    }

    #[test]
    fn no_geolocation_means_empty_strings() {
        let t = sample();
        let q = query("", "192.0.2.10:1", "198.51.100.7:443");
        let facts = t.directory().facts(&q, None);
        let m = facts.meta();
        assert_eq!(
            [
                m.src_country,
                m.src_continent,
                m.dst_country,
                m.dst_continent
            ],
            [""; 4]
        );
    }

    #[test]
    fn stated_posture_and_countries_replace_lookups() {
        let t = sample();
        let geo = TestGeo::default();
        let q = query("", "10.1.2.3:1", "198.51.100.7:443");
        let passed = vec!["stated".to_string()];
        let facts = t
            .directory()
            .facts(&q, Some(&geo))
            .with_posture(&passed, &[])
            .with_countries(Country::from_code("jp"), None);
        let m = facts.meta();
        assert_eq!(m.posture_passed, ["stated"]);
        assert!(m.posture_failed.is_empty());
        assert_eq!((m.src_country, m.src_continent), ("JP", "AS"));
        assert_eq!((m.dst_country, m.dst_continent), ("", ""));
    }
}

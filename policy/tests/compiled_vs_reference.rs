//! The compiled table must decide exactly like the naive reference evaluator, on random
//! policies (every field kind, operator, list kind, nesting) and random connections; and a
//! decision made before the destination address is known must be the decision for every
//! address the name could resolve to.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use egressd_policy::compile::{
    CompiledPolicy, Decision, decide_reference, decide_reference_without_address,
};
use egressd_policy::diag::{FileId, Loc};
use egressd_policy::expr::ast::*;
use egressd_policy::meta::ConnMeta;
use egressd_policy::model::*;
use ipnet::IpNet;
use proptest::prelude::*;

const IPS: &[&str] = &[
    "10.0.0.1",
    "10.0.0.2",
    "10.0.1.1",
    "10.1.0.1",
    "192.168.1.10",
    "203.0.113.10",
    "0.0.0.0",
    "255.255.255.255",
    "2001:db8::1",
    "2001:db8::2",
    "2001:db8:1::1",
    "::1",
    "::ffff:10.0.0.1",
];
// More lengths than the flat prefix table takes, so both lookup paths are exercised.
const PREFIXES4: &[u8] = &[0, 1, 7, 8, 12, 16, 20, 23, 24, 28, 31, 32];
const PREFIXES6: &[u8] = &[0, 1, 16, 32, 48, 56, 64, 96, 120, 127, 128];
const PORTS: &[u16] = &[0, 1, 22, 80, 443, 8080, 8443, 65534, 65535];
const HOSTS: &[&str] = &[
    "",
    "example.com",
    "a.example.com",
    "b.a.example.com",
    "example.org",
    "com",
    "x.y",
    "api1.example.com",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "a.example.com",
    "com",
    "org",
    "y",
    "nothing.test",
];
const GROUPS: &[&str] = &["finance", "eng", "ops"];
const COUNTRIES: &[&str] = &["PT", "ES", "US", ""];
const CONTINENTS: &[&str] = &["EU", "NA", ""];
const ENDPOINTS: &[&str] = &["office", "vpn"];
const EMAILS: &[&str] = &["alice@example.com", "bob@example.com", ""];
const POSTURE: &[&str] = &["disk", "os", "fw"];
const PATTERNS: &[&str] = &["^a", "com$", "x", "^$", "example\\.(com|org)"];

fn pick<T: Clone + std::fmt::Debug + 'static>(
    xs: &'static [T],
) -> impl Strategy<Value = T> + Clone {
    proptest::sample::select(xs)
}

fn ip() -> impl Strategy<Value = IpAddr> {
    pick(IPS).prop_map(|s| s.parse().unwrap())
}

fn net() -> impl Strategy<Value = IpNet> {
    (ip(), any::<prop::sample::Index>()).prop_map(|(ip, i)| {
        let len = if ip.is_ipv4() {
            PREFIXES4[i.index(PREFIXES4.len())]
        } else {
            PREFIXES6[i.index(PREFIXES6.len())]
        };
        IpNet::new(ip, len).unwrap().trunc()
    })
}

fn port_range() -> impl Strategy<Value = (u16, u16)> {
    (pick(PORTS), pick(PORTS)).prop_map(|(a, b)| (a.min(b), a.max(b)))
}

fn cmp_op() -> impl Strategy<Value = CmpOp> {
    pick(&[
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Gt,
        CmpOp::Ge,
    ])
}

/// Lists: 0 ip, 1 port, 2 host, 3 domain, 4 string (groups and countries).
fn lists() -> impl Strategy<Value = Vec<List>> {
    (
        prop::collection::vec(net(), 0..5),
        prop::collection::vec(port_range(), 0..4),
        prop::collection::vec(
            pick(HOSTS).prop_filter("non-empty", |h| !h.is_empty()),
            0..4,
        ),
        prop::collection::vec(pick(DOMAINS), 0..4),
        prop::collection::vec(prop_oneof![pick(GROUPS), pick(COUNTRIES)], 0..4),
    )
        .prop_map(|(ips, ports, hosts, domains, strs)| {
            let s = |v: Vec<&str>| v.into_iter().map(String::from).collect();
            vec![
                List {
                    name: "ips".into(),
                    kind: ListKind::Ip,
                    items: ListItems::Ip(ips),
                },
                List {
                    name: "ports".into(),
                    kind: ListKind::Port,
                    items: ListItems::Port(ports),
                },
                List {
                    name: "hosts".into(),
                    kind: ListKind::Host,
                    items: ListItems::Str(s(hosts)),
                },
                List {
                    name: "domains".into(),
                    kind: ListKind::Domain,
                    items: ListItems::Str(s(domains)),
                },
                List {
                    name: "strs".into(),
                    kind: ListKind::String,
                    items: ListItems::Str(s(strs)),
                },
            ]
        })
}

fn str_pred(values: &'static [&'static str], hostish: bool) -> impl Strategy<Value = StrPred> {
    let list_ids: &'static [u32] = if hostish { &[2, 3, 4] } else { &[4] };
    prop_oneof![
        3 => (cmp_op(), pick(values)).prop_map(|(op, v)| StrPred::Cmp(op, v.to_string())),
        3 => prop::collection::vec(pick(values), 1..4).prop_map(|v| StrPred::In(v.into_iter().map(String::from).collect())),
        2 => pick(list_ids).prop_map(|i| StrPred::InList(ListId(i))),
        1 => pick(PATTERNS).prop_map(|p| StrPred::Matches(Pattern { source: p.into(), regex: regex::Regex::new(p).unwrap() })),
        1 => pick(values).prop_map(|v| StrPred::Contains(v.chars().take(2).collect())),
    ]
}

fn test_kind() -> impl Strategy<Value = TestKind> {
    let ipf = pick(&[IpField::Src, IpField::Dst]);
    let intf = pick(&[IntField::SrcPort, IntField::DstPort]);
    prop_oneof![
        (ipf.clone(), net()).prop_map(|(f, n)| TestKind::Ip(f, IpPred::Eq(n))),
        (ipf.clone(), net()).prop_map(|(f, n)| TestKind::Ip(f, IpPred::Ne(n))),
        (ipf.clone(), prop::collection::vec(net(), 1..4))
            .prop_map(|(f, n)| TestKind::Ip(f, IpPred::In(n))),
        ipf.prop_map(|f| TestKind::Ip(f, IpPred::InList(ListId(0)))),
        (intf.clone(), cmp_op(), pick(PORTS))
            .prop_map(|(f, op, p)| TestKind::Int(f, IntPred::Cmp(op, p))),
        (intf.clone(), prop::collection::vec(port_range(), 1..4))
            .prop_map(|(f, r)| TestKind::Int(f, IntPred::In(r))),
        intf.prop_map(|f| TestKind::Int(f, IntPred::InList(ListId(1)))),
        str_pred(HOSTS, true).prop_map(|p| TestKind::Str(StrField::Host, p)),
        str_pred(EMAILS, false).prop_map(|p| TestKind::Str(StrField::Email, p)),
        str_pred(EMAILS, false).prop_map(|p| TestKind::Str(StrField::Name, p)),
        str_pred(ENDPOINTS, false).prop_map(|p| TestKind::Str(StrField::Endpoint, p)),
        str_pred(&["tcp", "udp"], false).prop_map(|p| TestKind::Str(StrField::Protocol, p)),
        (
            pick(&[StrField::SrcCountry, StrField::DstCountry]),
            str_pred(COUNTRIES, false)
        )
            .prop_map(|(f, p)| TestKind::Str(f, p)),
        (
            pick(&[StrField::SrcContinent, StrField::DstContinent]),
            str_pred(CONTINENTS, false)
        )
            .prop_map(|(f, p)| TestKind::Str(f, p)),
        (
            pick(&[Quantifier::Any, Quantifier::All]),
            str_pred(DOMAINS, true)
        )
            .prop_map(|(q, p)| TestKind::Array(q, ArrayField::Domains, p)),
        (
            pick(&[Quantifier::Any, Quantifier::All]),
            str_pred(GROUPS, false)
        )
            .prop_map(|(q, p)| TestKind::Array(q, ArrayField::Groups, p)),
        (
            pick(&[Quantifier::Any, Quantifier::All]),
            pick(&[ArrayField::PosturePassed, ArrayField::PostureFailed]),
            str_pred(POSTURE, false)
        )
            .prop_map(|(q, f, p)| TestKind::Array(q, f, p)),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        1 => Just(Expr::True),
        12 => test_kind().prop_map(|kind| Expr::Test(Test { kind, start: 0, end: 0 })),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            3 => prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            2 => prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
            1 => inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
            1 => (inner.clone(), inner).prop_map(|(a, b)| Expr::Xor(Box::new(a), Box::new(b))),
        ]
    })
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        expr(),
        pick(&[
            Action::Egress,
            Action::Default,
            Action::Block,
            Action::Ingress,
        ]),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(when, action, enabled)| Rule {
            name: String::new(),
            when,
            when_text: String::new(),
            action,
            pool: (action == Action::Egress).then_some(PoolId(0)),
            family: Family::Auto,
            enabled,
            loc: Loc {
                file: FileId(0),
                start: 0,
                end: 0,
            },
        })
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        lists(),
        prop::collection::vec(rule(), 1..40),
        pick(&[DefaultAction::Default, DefaultAction::Block]),
    )
        .prop_map(|(lists, mut rules, default_action)| {
            for (i, r) in rules.iter_mut().enumerate() {
                r.name = format!("r{i}");
            }
            Policy {
                settings: ProxySettings::default(),
                default_action,
                listeners: Vec::new(),
                geoip: None,
                users: Vec::new(),
                devices: Vec::new(),
                pools: Vec::new(),
                lists,
                rules,
                tests: Vec::new(),
            }
        })
}

#[derive(Debug, Clone)]
struct Conn {
    src: Option<SocketAddr>,
    dst: Option<IpAddr>,
    dst_port: u16,
    host: &'static str,
    protocol: Protocol,
    endpoint: &'static str,
    email: &'static str,
    groups: Vec<String>,
    passed: Vec<String>,
    failed: Vec<String>,
    geo: [&'static str; 4],
}

fn conn() -> impl Strategy<Value = Conn> {
    let strs =
        |xs: &'static [&'static str]| prop::collection::vec(pick(xs).prop_map(String::from), 0..3);
    (
        (
            prop::option::weighted(
                0.9,
                (ip(), pick(PORTS)).prop_map(|(i, p)| SocketAddr::new(i, p)),
            ),
            prop::option::weighted(0.9, ip()),
            pick(PORTS),
        ),
        (
            pick(HOSTS),
            pick(&[Protocol::Tcp, Protocol::Udp]),
            pick(ENDPOINTS),
            pick(EMAILS),
        ),
        (strs(GROUPS), strs(POSTURE), strs(POSTURE)),
        (
            pick(COUNTRIES),
            pick(CONTINENTS),
            pick(COUNTRIES),
            pick(CONTINENTS),
        ),
    )
        .prop_map(
            |(
                (src, dst, dst_port),
                (host, protocol, endpoint, email),
                (groups, passed, failed),
                (a, b, c, d),
            )| Conn {
                src,
                dst,
                dst_port,
                host,
                protocol,
                endpoint,
                email,
                groups,
                passed,
                failed,
                geo: [a, b, c, d],
            },
        )
}

impl Conn {
    fn meta(&self) -> ConnMeta<'_> {
        ConnMeta {
            src_ip: self.src.map(|s| s.ip()),
            src_port: self.src.map_or(0, |s| s.port()),
            dst_ip: self.dst,
            dst_port: self.dst_port,
            host: self.host,
            protocol: self.protocol,
            endpoint: self.endpoint,
            email: self.email,
            name: self.email,
            groups: &self.groups,
            posture_passed: &self.passed,
            posture_failed: &self.failed,
            src_country: self.geo[0],
            src_continent: self.geo[1],
            dst_country: self.geo[2],
            dst_continent: self.geo[3],
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn compiled_decides_like_the_reference(p in policy(), conns in prop::collection::vec(conn(), 1..12)) {
        let table = CompiledPolicy::new(p.clone());
        for c in &conns {
            let m = c.meta();
            prop_assert_eq!(table.decide(&m), decide_reference(&p, &m), "conn {:?}", c);
        }
    }
}

/// Destination addresses to try a policy with: random ones of both families (and IPv4-mapped
/// IPv6), the test's fixed ones, and for every prefix the policy names, its first and last
/// address, one inside and the neighbours just outside, so the address rules get hit.
fn destinations(p: &Policy, random: &[(u32, u128)]) -> Vec<IpAddr> {
    let mut nets: Vec<IpNet> = Vec::new();
    for l in &p.lists {
        if let ListItems::Ip(ns) = &l.items {
            nets.extend(ns);
        }
    }
    for r in &p.rules {
        for t in r.when.tests() {
            match &t.kind {
                TestKind::Ip(_, IpPred::Eq(n) | IpPred::Ne(n)) => nets.push(*n),
                TestKind::Ip(_, IpPred::In(ns)) => nets.extend(ns),
                _ => {}
            }
        }
    }
    let mut out: Vec<IpAddr> = IPS.iter().map(|s| s.parse().unwrap()).collect();
    for &(a, b) in random {
        out.push(IpAddr::V4(Ipv4Addr::from(a)));
        out.push(IpAddr::V6(Ipv6Addr::from(b)));
        out.push(IpAddr::V6(Ipv4Addr::from(a).to_ipv6_mapped()));
    }
    for (n, &(a, b)) in nets.iter().zip(random.iter().cycle()) {
        match n {
            IpNet::V4(n) => {
                let (lo, hi) = (u32::from(n.network()), u32::from(n.broadcast()));
                let inside = lo + a % (hi - lo).saturating_add(1).max(1);
                for x in [
                    Some(lo),
                    Some(hi),
                    Some(inside),
                    lo.checked_sub(1),
                    hi.checked_add(1),
                ] {
                    out.extend(x.map(|x| IpAddr::V4(Ipv4Addr::from(x))));
                }
            }
            IpNet::V6(n) => {
                let (lo, hi) = (u128::from(n.network()), u128::from(n.broadcast()));
                let inside = lo + b % (hi - lo).saturating_add(1).max(1);
                for x in [
                    Some(lo),
                    Some(hi),
                    Some(inside),
                    lo.checked_sub(1),
                    hi.checked_add(1),
                ] {
                    out.extend(x.map(|x| IpAddr::V6(Ipv6Addr::from(x))));
                }
            }
        }
    }
    out
}

/// Whether an enabled rule reads the destination address or its geolocation.
fn reads_destination(p: &Policy) -> bool {
    p.rules.iter().filter(|r| r.enabled).any(|r| {
        r.when
            .tests()
            .iter()
            .any(|t| t.kind.field().reads_destination_address())
    })
}

/// Checks `free` (a decision made without the address) against the decision for every
/// destination in `dsts` under every geolocation answer; `Err` names the first that differs.
fn holds_for_every_address(
    table: &CompiledPolicy,
    p: &Policy,
    m: &ConnMeta<'_>,
    free: Decision,
    dsts: &[IpAddr],
) -> Result<(), String> {
    for &ip in dsts {
        for country in COUNTRIES {
            for continent in CONTINENTS {
                let at = ConnMeta {
                    dst_ip: Some(ip),
                    dst_country: country,
                    dst_continent: continent,
                    ..*m
                };
                let (d, r) = (table.decide(&at), decide_reference(p, &at));
                if d != free || r != free {
                    return Err(format!(
                        "decided {free:?} before resolving, but {d:?} (reference {r:?}) for {ip} in {country:?}/{continent:?}"
                    ));
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn decisions_before_resolving_hold_for_every_address(
        p in policy(),
        conns in prop::collection::vec(conn(), 1..6),
        random in prop::collection::vec((any::<u32>(), any::<u128>()), 4),
    ) {
        let table = CompiledPolicy::new(p.clone());
        let dsts = destinations(&p, &random);
        for c in &conns {
            // The connection's own address and countries are ignored: given or not, the
            // answer must hold for every address.
            let m = c.meta();
            let free = table.decide_without_address(&m);
            prop_assert_eq!(free, decide_reference_without_address(&p, &m), "conn {:?}", c);
            match free {
                Some(d) => {
                    let r = holds_for_every_address(&table, &p, &m, d, &dsts);
                    prop_assert!(r.is_ok(), "{} (conn {:?})", r.unwrap_err(), c);
                }
                // Only a rule that reads the address can leave the answer open.
                None => prop_assert!(reads_destination(&p), "undecided without address rules"),
            }
        }
    }
}

/// The property above is not vacuous: on the random policies, a good share of connections is
/// decided before resolving, and a good share is not.
#[test]
fn random_connections_are_often_decided_before_resolving() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut decided, mut open) = (0, 0);
    for _ in 0..200 {
        let p = policy().new_tree(&mut runner).unwrap().current();
        let table = CompiledPolicy::new(p);
        for _ in 0..5 {
            let c = conn().new_tree(&mut runner).unwrap().current();
            match table.decide_without_address(&c.meta()) {
                Some(_) => decided += 1,
                None => open += 1,
            }
        }
    }
    assert!(
        decided * 4 > decided + open && open * 4 > decided + open,
        "{decided} decided before resolving, {open} not"
    );
}

/// The generators do reach the index: a good share of random rules get a guard, so a bug in any index
/// would show up above rather than hide behind the unindexed list.
#[test]
fn random_policies_are_mostly_indexed() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut enabled, mut unindexed) = (0, 0);
    for _ in 0..200 {
        let p = policy().new_tree(&mut runner).unwrap().current();
        let s = CompiledPolicy::new(p).stats().clone();
        enabled += s.enabled;
        unindexed += s.unindexed;
    }
    assert!(
        unindexed * 3 < enabled * 2,
        "{unindexed} of {enabled} rules unindexed"
    );
}

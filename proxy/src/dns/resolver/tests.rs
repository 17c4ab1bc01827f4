//! Resolver tests against the fake server, each inside its own glommio executor.

use std::cell::Cell;
use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use glommio::LocalExecutorBuilder;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use super::*;
use crate::dns::message::tests::{a, aaaa, cname, name, reply_to};
use crate::dns::test_server::{FakeDns, Proto, Seen, zone, zone_reply};

fn run<T>(test: impl Future<Output = T>) -> T {
    LocalExecutorBuilder::default()
        .io_memory(64 << 10)
        .make()
        .expect("glommio executor")
        .run(test)
}

fn config(servers: &[&FakeDns], hosts: &str, resolv_conf: &str) -> Arc<ResolverConfig> {
    let mut config = ResolverConfig::from_texts(hosts, resolv_conf);
    config.nameservers = servers.iter().map(|s| s.addr).collect();
    Arc::new(config)
}

fn example_zone() -> Vec<hickory_proto::rr::Record> {
    vec![
        a("www.example.com.", 60, [192, 0, 2, 1]),
        a("www.example.com.", 60, [192, 0, 2, 2]),
        aaaa("www.example.com.", 120, "2001:db8::1"),
        a("v4only.example.com.", 60, [192, 0, 2, 4]),
    ]
}

fn seen(name: &str, rtype: RecordType, proto: Proto) -> Seen {
    Seen {
        name: name.to_owned(),
        rtype,
        proto,
        edns: false,
    }
}

fn v4(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, last)
}

#[test]
fn resolves_both_families() {
    let server = FakeDns::start(zone(example_zone(), 10));
    let resolver = Resolver::new(config(&[&server], "", ""));
    let found = run(resolver.lookup("www.example.com")).unwrap();
    assert_eq!(found.v4, vec![v4(1), v4(2)]);
    assert_eq!(found.v6, vec!["2001:db8::1".parse::<Ipv6Addr>().unwrap()]);
    let mut questions = server.seen();
    questions.sort_by_key(|s| u16::from(s.rtype));
    assert_eq!(
        questions,
        vec![
            seen("www.example.com.", RecordType::A, Proto::Udp),
            seen("www.example.com.", RecordType::AAAA, Proto::Udp),
        ]
    );
}

#[test]
fn one_family_only() {
    let server = FakeDns::start(zone(example_zone(), 10));
    let resolver = Resolver::new(config(&[&server], "", ""));
    let found = run(resolver.lookup("v4only.example.com.")).unwrap();
    assert_eq!(found.v4, vec![v4(4)]);
    assert!(found.v6.is_empty());
}

#[test]
fn answers_are_cached_until_their_ttl() {
    let server = FakeDns::start(zone(example_zone(), 10));
    let now = Rc::new(Cell::new(Instant::now()));
    let resolver = Resolver {
        clock: Clock::Manual(now.clone()),
        ..Resolver::new(config(&[&server], "", ""))
    };
    run(async {
        let first = resolver.lookup("www.example.com").await.unwrap();
        assert_eq!(server.count(), 2);
        // Case and a trailing dot do not defeat the cache.
        let second = resolver.lookup("WWW.example.com.").await.unwrap();
        assert_eq!(first, second);
        assert_eq!(server.count(), 2, "second lookup served from the cache");
        // A (60 s) has expired, AAAA (120 s) has not: only A is asked again.
        now.set(now.get() + Duration::from_secs(61));
        resolver.lookup("www.example.com").await.unwrap();
        assert_eq!(server.count(), 3);
        assert_eq!(server.seen()[2].rtype, RecordType::A);
        now.set(now.get() + Duration::from_secs(60));
        resolver.lookup("www.example.com").await.unwrap();
        assert_eq!(server.count(), 5);
    });
}

#[test]
fn nxdomain_is_not_found_and_cached_negatively() {
    let server = FakeDns::start(zone(example_zone(), 5));
    let now = Rc::new(Cell::new(Instant::now()));
    let resolver = Resolver {
        clock: Clock::Manual(now.clone()),
        ..Resolver::new(config(&[&server], "", ""))
    };
    run(async {
        let error = resolver.lookup("nope.example.com").await.unwrap_err();
        assert!(matches!(error, DnsError::NotFound), "{error}");
        assert!(!error.is_transient());
        assert_eq!(server.count(), 2);
        assert!(matches!(
            resolver.lookup("nope.example.com").await,
            Err(DnsError::NotFound)
        ));
        assert_eq!(server.count(), 2, "negative answer cached");
        // The SOA minimum (5 s) bounds the negative entry.
        now.set(now.get() + Duration::from_secs(5));
        assert!(resolver.lookup("nope.example.com").await.is_err());
        assert_eq!(server.count(), 4);
    });
}

#[test]
fn hosts_file_and_ip_literals_need_no_query() {
    let server = FakeDns::start(zone(example_zone(), 10));
    let resolver = Resolver::new(config(
        &[&server],
        "10.9.9.9 www.example.com\n2001:db8::99 www.example.com\n",
        "",
    ));
    run(async {
        let found = resolver.lookup("WWW.Example.Com.").await.unwrap();
        assert_eq!(found.v4, vec![Ipv4Addr::new(10, 9, 9, 9)]);
        assert_eq!(found.v6, vec!["2001:db8::99".parse::<Ipv6Addr>().unwrap()]);
        let literal = resolver.lookup("192.0.2.200").await.unwrap();
        assert_eq!(literal.v4, vec![v4(200)]);
        let literal = resolver.lookup("::1").await.unwrap();
        assert_eq!(literal.v6, vec![Ipv6Addr::LOCALHOST]);
    });
    assert_eq!(server.count(), 0);
}

#[test]
fn follows_cname_chains() {
    let mut records = example_zone();
    records.extend([
        cname("alias.example.com.", 300, "edge.cdn.example."),
        cname("edge.cdn.example.", 300, "www.example.com."),
    ]);
    let server = FakeDns::start(zone(records, 10));
    let resolver = Resolver::new(config(&[&server], "", ""));
    let found = run(resolver.lookup("alias.example.com")).unwrap();
    assert_eq!(found.v4, vec![v4(1), v4(2)]);
    assert_eq!(found.v6.len(), 1);
    assert_eq!(
        server.count(),
        2,
        "the chain is read from one answer per family"
    );
}

#[test]
fn silent_server_times_out() {
    let server = FakeDns::start(|_, _| Vec::new());
    let mut config = ResolverConfig::from_texts("", "options timeout:1 attempts:2");
    config.nameservers = vec![server.addr];
    config.timeout = Duration::from_millis(200);
    let resolver = Resolver::new(Arc::new(config));
    let started = Instant::now();
    let error = run(resolver.lookup("www.example.com")).unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(error, DnsError::Timeout), "{error}");
    assert!(error.is_transient());
    // Two rounds of 200 ms, A and AAAA in parallel.
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    assert_eq!(server.count(), 4);
}

#[test]
fn second_round_after_a_lost_reply() {
    let asked = Arc::new(AtomicUsize::new(0));
    let records = example_zone();
    let server = FakeDns::start({
        let asked = asked.clone();
        move |query, _| {
            // Drop each question the first time it is asked.
            if asked.fetch_add(1, Ordering::SeqCst) < 2 {
                return Vec::new();
            }
            vec![zone_reply(&records, 10, query).to_vec().unwrap()]
        }
    });
    let mut config = ResolverConfig::from_texts("", "");
    config.nameservers = vec![server.addr];
    config.timeout = Duration::from_millis(100);
    let resolver = Resolver::new(Arc::new(config));
    let found = run(resolver.lookup("www.example.com")).unwrap();
    assert_eq!(found.v4.len(), 2);
    assert_eq!(server.count(), 4);
}

#[test]
fn partial_answer_when_one_family_times_out() {
    let records = example_zone();
    let server = FakeDns::start(move |query, _| {
        if query.queries[0].query_type() == RecordType::AAAA {
            return Vec::new();
        }
        vec![zone_reply(&records, 10, query).to_vec().unwrap()]
    });
    let mut config = ResolverConfig::from_texts("", "options attempts:1");
    config.nameservers = vec![server.addr];
    config.timeout = Duration::from_millis(100);
    let resolver = Resolver::new(Arc::new(config));
    let found = run(resolver.lookup("www.example.com")).unwrap();
    assert_eq!(found.v4, vec![v4(1), v4(2)]);
    assert!(found.v6.is_empty());
}

#[test]
fn forged_replies_are_ignored() {
    let records = example_zone();
    let server = FakeDns::start(move |query, _| {
        let forged_answer = |message: &Message| {
            let mut forged = reply_to(message, ResponseCode::NoError, vec![]);
            forged.add_answer(a("www.example.com.", 3600, [203, 0, 113, 66]));
            forged.add_answer(aaaa("www.example.com.", 3600, "2001:db8::66"));
            forged
        };
        // Right question, wrong id.
        let mut wrong_id = forged_answer(query);
        wrong_id.metadata.id ^= 0x5a5a;
        // Right id, another question.
        let mut other = query.clone();
        other.queries[0].set_name(name("evil.example."));
        let wrong_question = forged_answer(&other);
        vec![
            wrong_id.to_vec().unwrap(),
            wrong_question.to_vec().unwrap(),
            b"\x00\x01garbage".to_vec(),
            zone_reply(&records, 10, query).to_vec().unwrap(),
        ]
    });
    let resolver = Resolver::new(config(&[&server], "", ""));
    let found = run(resolver.lookup("www.example.com")).unwrap();
    assert_eq!(found.v4, vec![v4(1), v4(2)]);
    assert_eq!(found.v6, vec!["2001:db8::1".parse::<Ipv6Addr>().unwrap()]);
}

#[test]
fn truncated_reply_is_retried_over_tcp() {
    let records = example_zone();
    let server = FakeDns::start(move |query, proto| {
        let reply = zone_reply(&records, 10, query);
        let reply = match proto {
            Proto::Udp => reply.truncate(),
            Proto::Tcp => reply,
        };
        vec![reply.to_vec().unwrap()]
    });
    let resolver = Resolver::new(config(&[&server], "", ""));
    let found = run(resolver.lookup("www.example.com")).unwrap();
    assert_eq!(found.v4, vec![v4(1), v4(2)]);
    assert_eq!(found.v6.len(), 1);
    let questions = server.seen();
    for rtype in [RecordType::A, RecordType::AAAA] {
        for proto in [Proto::Udp, Proto::Tcp] {
            assert!(
                questions.contains(&seen("www.example.com.", rtype, proto)),
                "{rtype} over {proto:?} missing from {questions:?}"
            );
        }
    }
    assert_eq!(questions.len(), 4);
}

#[test]
fn search_list_is_applied_per_ndots() {
    let server = FakeDns::start(zone(vec![a("db.other.example.", 60, [192, 0, 2, 9])], 10));
    let resolver = Resolver::new(config(
        &[&server],
        "",
        "search corp.example other.example\noptions ndots:1\n",
    ));
    run(async {
        let found = resolver.lookup("db").await.unwrap();
        assert_eq!(found.v4, vec![v4(9)]);
        let mut names: Vec<String> = server.seen().into_iter().map(|s| s.name).collect();
        names.dedup();
        assert_eq!(names, vec!["db.corp.example.", "db.other.example."]);
        // A trailing dot makes the name absolute: no suffix is tried.
        let before = server.count();
        assert!(matches!(
            resolver.lookup("db.").await,
            Err(DnsError::NotFound)
        ));
        let asked: Vec<String> = server.seen()[before..]
            .iter()
            .map(|s| s.name.clone())
            .collect();
        assert_eq!(asked, vec!["db.", "db."]);
    });
}

#[test]
fn concurrent_lookups_share_one_query() {
    let server = FakeDns::start(zone(example_zone(), 10));
    let resolver = Resolver::new(config(&[&server], "", ""));
    let (first, second) = run(future::zip(
        resolver.lookup("www.example.com"),
        resolver.lookup("www.example.com"),
    ));
    assert_eq!(first.unwrap(), second.unwrap());
    assert_eq!(server.count(), 2);
    assert_eq!(resolver.inflight.len(), 0);
}

#[test]
fn failing_server_falls_over_to_the_next() {
    let failing = FakeDns::start(|query, _| {
        vec![
            reply_to(query, ResponseCode::ServFail, vec![])
                .to_vec()
                .unwrap(),
        ]
    });
    let healthy = FakeDns::start(zone(example_zone(), 10));
    let resolver = Resolver::new(config(&[&failing, &healthy], "", ""));
    let found = run(resolver.lookup("www.example.com")).unwrap();
    assert_eq!(found.v4.len(), 2);
    assert_eq!(failing.count(), 2);
    assert_eq!(healthy.count(), 2);
}

#[test]
fn unreachable_server_falls_over_without_waiting() {
    // A port nothing listens on: the kernel answers with ICMP port unreachable.
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let healthy = FakeDns::start(zone(example_zone(), 10));
    let mut config = ResolverConfig::from_texts("", "");
    config.nameservers = vec![closed_addr, healthy.addr];
    // Long enough that passing within it proves the refusal was noticed, not waited out.
    config.timeout = Duration::from_secs(10);
    let resolver = Resolver::new(Arc::new(config));
    let started = Instant::now();
    let found = run(resolver.lookup("www.example.com")).unwrap();
    assert_eq!(found.v4.len(), 2);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn every_server_failing_is_a_transient_error() {
    let failing = FakeDns::start(|query, _| {
        vec![
            reply_to(query, ResponseCode::Refused, vec![])
                .to_vec()
                .unwrap(),
        ]
    });
    let resolver = Resolver::new(config(&[&failing], "", ""));
    let error = run(resolver.lookup("www.example.com")).unwrap_err();
    assert!(
        matches!(error, DnsError::ServerFailure { rcode: 5 }),
        "{error}"
    );
    assert!(error.is_transient());
    // Failures are not cached: the next lookup asks again (2 attempts x 2 families each time).
    assert_eq!(failing.count(), 4);
    run(resolver.lookup("www.example.com")).unwrap_err();
    assert_eq!(failing.count(), 8);
}

#[test]
fn invalid_names_are_never_sent() {
    let server = FakeDns::start(zone(example_zone(), 10));
    let resolver = Resolver::new(config(&[&server], "", ""));
    for host in ["", "bad host", "a..b", "x/y"] {
        let error = run(resolver.lookup(host)).unwrap_err();
        assert!(matches!(error, DnsError::InvalidName), "{host:?}: {error}");
    }
    assert_eq!(server.count(), 0);
}

#[test]
fn edns0_option_is_sent() {
    let server = FakeDns::start(zone(example_zone(), 10));
    let resolver = Resolver::new(config(&[&server], "", "options edns0"));
    run(resolver.lookup("www.example.com")).unwrap();
    assert!(server.seen().iter().all(|s| s.edns));
}

#[test]
fn rotate_spreads_queries() {
    let first = FakeDns::start(zone(example_zone(), 10));
    let second = FakeDns::start(zone(example_zone(), 10));
    let resolver = Resolver::new(config(&[&first, &second], "", "options rotate"));
    run(async {
        resolver.lookup("www.example.com").await.unwrap();
        resolver.lookup("v4only.example.com").await.unwrap();
    });
    assert!(first.count() > 0 && second.count() > 0);
    assert_eq!(first.count() + second.count(), 4);
}

#[test]
fn query_ids_vary() {
    let ids = QueryIds::new();
    let drawn: std::collections::HashSet<u16> = (0..1000).map(|_| ids.next()).collect();
    // 1000 draws from 65536 values: a handful of collisions at most.
    assert!(drawn.len() > 980, "{}", drawn.len());
    // Both bytes of the id vary (256 values each; 1000 draws miss about 5% of them).
    for shift in [0, 8] {
        let bytes: std::collections::HashSet<u16> =
            drawn.iter().map(|id| id >> shift & 0xff).collect();
        assert!(
            bytes.len() > 200,
            "byte at bit {shift}: {} values",
            bytes.len()
        );
    }
    // Every resolver (one per shard) has a generator of its own, seeded from the OS: two made
    // at the same instant draw different sequences.
    let (a, b) = (QueryIds::new(), QueryIds::new());
    let a: Vec<u16> = (0..8).map(|_| a.next()).collect();
    let b: Vec<u16> = (0..8).map(|_| b.next()).collect();
    assert_ne!(a, b);
    // The generator's state is never printed.
    assert_eq!(format!("{ids:?}"), "QueryIds { .. }");
}

#[test]
fn debug_is_short() {
    let resolver = Resolver::new(Arc::new(ResolverConfig::from_texts("", "")));
    let text = format!("{resolver:?}");
    assert!(text.contains("127.0.0.1:53"), "{text}");
}

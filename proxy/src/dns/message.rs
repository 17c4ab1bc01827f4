//! DNS messages for one A or AAAA question: encoding the query and judging a reply.
//!
//! Judging is where spoofing is stopped: a reply is only ours when its id, its QR bit, its
//! opcode and its question all match what we sent; anything else is a stray to ignore, not an
//! error to act on. Address extraction follows the CNAME chain inside the answer section and
//! takes the smallest TTL along it, so the cache never outlives any link of the chain.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::{DnsError, Family};

/// Longest CNAME chain followed inside one answer; anything longer is treated as a loop.
const MAX_CNAME_HOPS: usize = 16;
/// RFC 9715 / DNS flag day 2020: a payload that avoids IP fragmentation on any path.
pub(crate) const EDNS_PAYLOAD: u16 = 1232;
const HEADER_LEN: usize = 12;

/// What a name server told us, once the reply is known to answer our question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Addresses for the question (after CNAMEs), with the smallest TTL seen on the way.
    Addrs { addrs: Vec<IpAddr>, ttl: u32 },
    /// NXDOMAIN or NODATA; `soa_ttl` is the negative-caching TTL from the authority SOA.
    Negative { soa_ttl: Option<u32> },
    /// TC=1: the answer did not fit, ask again over TCP.
    Truncated,
    /// SERVFAIL, REFUSED, NOTIMP, FORMERR or another failure code: ask the next server.
    ServerFailure { rcode: u16 },
}

/// Why a packet was not accepted as the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// Not a reply to our question (wrong id, a query, another question): keep waiting.
    Stray,
    /// Our id, but the bytes do not decode.
    Malformed,
}

fn record_type(family: Family) -> RecordType {
    match family {
        Family::V4 => RecordType::A,
        Family::V6 => RecordType::AAAA,
    }
}

/// Encodes a recursive query for `name`'s A or AAAA records.
pub(crate) fn build_query(
    id: u16,
    name: &Name,
    family: Family,
    edns: bool,
) -> Result<Vec<u8>, DnsError> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name.clone(), record_type(family)));
    if edns {
        let mut opt = Edns::new();
        opt.set_max_payload(EDNS_PAYLOAD);
        message.set_edns(opt);
    }
    // Only an invalid name can fail to encode, and names are validated before they get here.
    message.to_vec().map_err(|_| DnsError::InvalidName)
}

/// Decides whether `bytes` is the reply to query `id` for (`name`, `family`) and what it says.
pub(crate) fn parse_reply(
    bytes: &[u8],
    id: u16,
    name: &Name,
    family: Family,
) -> Result<Reply, Rejected> {
    // The id is checked before decoding so a flood of forged packets costs two byte compares.
    if bytes.len() < HEADER_LEN || u16::from_be_bytes([bytes[0], bytes[1]]) != id {
        return Err(Rejected::Stray);
    }
    let message = Message::from_vec(bytes).map_err(|_| Rejected::Malformed)?;
    let meta = &message.metadata;
    if meta.message_type != MessageType::Response || meta.op_code != OpCode::Query {
        return Err(Rejected::Stray);
    }
    let rtype = record_type(family);
    let ours = match message.queries.as_slice() {
        [query] => {
            query.name().eq_ignore_root(name)
                && query.query_type() == rtype
                && query.query_class() == DNSClass::IN
        }
        // Some servers drop the question from error replies; an error is harmless to accept
        // (we only move to the next server), whereas an answer or NXDOMAIN would be cached.
        [] => !matches!(
            meta.response_code,
            ResponseCode::NoError | ResponseCode::NXDomain
        ),
        _ => false,
    };
    if !ours {
        return Err(Rejected::Stray);
    }
    if meta.truncation {
        return Ok(Reply::Truncated);
    }
    match meta.response_code {
        ResponseCode::NoError => Ok(answer(&message, name, rtype)),
        ResponseCode::NXDomain => Ok(Reply::Negative {
            soa_ttl: negative_ttl(&message.authorities),
        }),
        other => Ok(Reply::ServerFailure {
            rcode: u16::from(other),
        }),
    }
}

/// Follows `name` through CNAMEs in the answer section to its addresses.
fn answer(message: &Message, name: &Name, rtype: RecordType) -> Reply {
    let mut current = name;
    let mut ttl = u32::MAX;
    for _ in 0..MAX_CNAME_HOPS {
        // RFC 1034 3.6.2: a CNAME owner has no other data, so when one is present it is the
        // way on, and addresses published beside it are ignored.
        let cname = owned_by(&message.answers, current).find_map(|record| match &record.data {
            RData::CNAME(target) => Some((&target.0, record.ttl)),
            _ => None,
        });
        if let Some((target, cname_ttl)) = cname {
            current = target;
            ttl = ttl.min(cname_ttl);
            continue;
        }
        let mut addrs = Vec::new();
        for record in owned_by(&message.answers, current) {
            let ip = match (&record.data, rtype) {
                (RData::A(a), RecordType::A) => IpAddr::V4(a.0),
                (RData::AAAA(aaaa), RecordType::AAAA) => IpAddr::V6(aaaa.0),
                _ => continue,
            };
            if !addrs.contains(&ip) {
                addrs.push(ip);
            }
            ttl = ttl.min(record.ttl);
        }
        if !addrs.is_empty() {
            return Reply::Addrs { addrs, ttl };
        }
        break;
    }
    // NODATA: the name exists but has no address of this family (or the chain leads nowhere).
    Reply::Negative {
        soa_ttl: negative_ttl(&message.authorities),
    }
}

fn owned_by<'a>(records: &'a [Record], owner: &'a Name) -> impl Iterator<Item = &'a Record> {
    records
        .iter()
        .filter(move |r| r.dns_class == DNSClass::IN && r.name.eq_ignore_root(owner))
}

/// RFC 2308 section 5: a negative answer lives for the smaller of the SOA record's TTL and its
/// MINIMUM field.
fn negative_ttl(authorities: &[Record]) -> Option<u32> {
    authorities.iter().find_map(|record| match &record.data {
        RData::SOA(soa) => Some(record.ttl.min(soa.minimum)),
        _ => None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA};
    use std::net::{Ipv4Addr, Ipv6Addr};

    pub(crate) fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    /// A reply to `query` with the given code and sections, for these tests and the fake server.
    pub(crate) fn reply_to(query: &Message, rcode: ResponseCode, answers: Vec<Record>) -> Message {
        let mut reply = Message::response(query.metadata.id, OpCode::Query);
        reply.metadata.response_code = rcode;
        reply.metadata.recursion_desired = true;
        reply.metadata.recursion_available = true;
        reply.add_queries(query.queries.iter().cloned());
        reply.add_answers(answers);
        reply
    }

    pub(crate) fn a(owner: &str, ttl: u32, ip: [u8; 4]) -> Record {
        Record::from_rdata(name(owner), ttl, RData::A(A(Ipv4Addr::from(ip))))
    }

    pub(crate) fn aaaa(owner: &str, ttl: u32, ip: &str) -> Record {
        let ip: Ipv6Addr = ip.parse().unwrap();
        Record::from_rdata(name(owner), ttl, RData::AAAA(AAAA(ip)))
    }

    pub(crate) fn cname(owner: &str, ttl: u32, target: &str) -> Record {
        Record::from_rdata(name(owner), ttl, RData::CNAME(CNAME(name(target))))
    }

    pub(crate) fn soa(zone: &str, ttl: u32, minimum: u32) -> Record {
        let data = SOA::new(
            name(&format!("ns.{zone}")),
            name(&format!("hostmaster.{zone}")),
            1,
            3600,
            600,
            86400,
            minimum,
        );
        Record::from_rdata(name(zone), ttl, RData::SOA(data))
    }

    fn query(id: u16, qname: &str, family: Family) -> Message {
        Message::from_vec(&build_query(id, &name(qname), family, false).unwrap()).unwrap()
    }

    fn judge(reply: &Message, id: u16, qname: &str, family: Family) -> Result<Reply, Rejected> {
        parse_reply(&reply.to_vec().unwrap(), id, &name(qname), family)
    }

    #[test]
    fn query_encoding() {
        let bytes = build_query(0xbeef, &name("www.example.com."), Family::V6, true).unwrap();
        let message = Message::from_vec(&bytes).unwrap();
        assert_eq!(message.metadata.id, 0xbeef);
        assert!(message.metadata.recursion_desired);
        assert_eq!(message.metadata.message_type, MessageType::Query);
        assert_eq!(message.queries.len(), 1);
        assert_eq!(message.queries[0].query_type(), RecordType::AAAA);
        assert_eq!(message.queries[0].name(), &name("www.example.com."));
        assert_eq!(message.edns.map(|e| e.max_payload()), Some(EDNS_PAYLOAD));
        let plain = build_query(1, &name("a."), Family::V4, false).unwrap();
        assert!(Message::from_vec(&plain).unwrap().edns.is_none());
    }

    #[test]
    fn addresses_with_min_ttl() {
        let q = query(7, "www.example.com.", Family::V4);
        let r = reply_to(
            &q,
            ResponseCode::NoError,
            vec![
                a("www.example.com.", 300, [192, 0, 2, 1]),
                a("WWW.Example.com.", 60, [192, 0, 2, 2]),
                a("www.example.com.", 300, [192, 0, 2, 1]),
                a("other.example.com.", 1, [192, 0, 2, 99]),
                aaaa("www.example.com.", 1, "2001:db8::1"),
            ],
        );
        assert_eq!(
            judge(&r, 7, "www.example.com.", Family::V4),
            Ok(Reply::Addrs {
                addrs: vec![[192, 0, 2, 1].into(), [192, 0, 2, 2].into()],
                ttl: 60
            })
        );
    }

    #[test]
    fn cname_chain() {
        let q = query(9, "www.example.com.", Family::V6);
        let r = reply_to(
            &q,
            ResponseCode::NoError,
            vec![
                cname("www.example.com.", 100, "edge.cdn.example."),
                cname("edge.cdn.example.", 20, "pop7.cdn.example."),
                aaaa("pop7.cdn.example.", 50, "2001:db8::7"),
                aaaa("edge.cdn.example.", 5, "2001:db8::bad"),
            ],
        );
        // The AAAA beside the middle CNAME is ignored: only the chain's end counts.
        assert_eq!(
            judge(&r, 9, "www.example.com.", Family::V6),
            Ok(Reply::Addrs {
                addrs: vec!["2001:db8::7".parse().unwrap()],
                ttl: 20
            })
        );
    }

    #[test]
    fn cname_loop_and_dangling_chain_are_nodata() {
        let q = query(9, "a.example.", Family::V4);
        let looped = reply_to(
            &q,
            ResponseCode::NoError,
            vec![
                cname("a.example.", 100, "b.example."),
                cname("b.example.", 100, "a.example."),
            ],
        );
        assert_eq!(
            judge(&looped, 9, "a.example.", Family::V4),
            Ok(Reply::Negative { soa_ttl: None })
        );
        let dangling = reply_to(
            &q,
            ResponseCode::NoError,
            vec![cname("a.example.", 100, "elsewhere.example.")],
        );
        assert_eq!(
            judge(&dangling, 9, "a.example.", Family::V4),
            Ok(Reply::Negative { soa_ttl: None })
        );
    }

    #[test]
    fn negative_answers_carry_soa_ttl() {
        let q = query(3, "nope.example.", Family::V4);
        let mut nx = reply_to(&q, ResponseCode::NXDomain, vec![]);
        nx.add_authority(soa("example.", 900, 45));
        assert_eq!(
            judge(&nx, 3, "nope.example.", Family::V4),
            Ok(Reply::Negative { soa_ttl: Some(45) })
        );
        let mut nodata = reply_to(&q, ResponseCode::NoError, vec![]);
        nodata.add_authority(soa("example.", 10, 300));
        assert_eq!(
            judge(&nodata, 3, "nope.example.", Family::V4),
            Ok(Reply::Negative { soa_ttl: Some(10) })
        );
    }

    #[test]
    fn failures_and_truncation() {
        let q = query(4, "x.example.", Family::V4);
        let servfail = reply_to(&q, ResponseCode::ServFail, vec![]);
        assert_eq!(
            judge(&servfail, 4, "x.example.", Family::V4),
            Ok(Reply::ServerFailure { rcode: 2 })
        );
        let mut refused_no_question = Message::response(4, OpCode::Query);
        refused_no_question.metadata.response_code = ResponseCode::Refused;
        assert_eq!(
            judge(&refused_no_question, 4, "x.example.", Family::V4),
            Ok(Reply::ServerFailure { rcode: 5 })
        );
        let mut truncated = reply_to(&q, ResponseCode::NoError, vec![]);
        truncated.metadata.truncation = true;
        assert_eq!(
            judge(&truncated, 4, "x.example.", Family::V4),
            Ok(Reply::Truncated)
        );
    }

    #[test]
    fn strays_are_rejected() {
        let q = query(5, "x.example.", Family::V4);
        let good = reply_to(
            &q,
            ResponseCode::NoError,
            vec![a("x.example.", 60, [192, 0, 2, 5])],
        );
        assert_eq!(
            judge(&good, 6, "x.example.", Family::V4),
            Err(Rejected::Stray)
        );
        assert_eq!(
            judge(&good, 5, "y.example.", Family::V4),
            Err(Rejected::Stray)
        );
        assert_eq!(
            judge(&good, 5, "x.example.", Family::V6),
            Err(Rejected::Stray)
        );
        // A query echoed back is not a reply.
        assert_eq!(judge(&q, 5, "x.example.", Family::V4), Err(Rejected::Stray));
        // An answer without the question could be forged into the cache.
        let mut bare = Message::response(5, OpCode::Query);
        bare.add_answer(a("x.example.", 60, [192, 0, 2, 66]));
        assert_eq!(
            judge(&bare, 5, "x.example.", Family::V4),
            Err(Rejected::Stray)
        );
        assert_eq!(
            parse_reply(&[0, 5, 1], 5, &name("x.example."), Family::V4),
            Err(Rejected::Stray)
        );
    }

    #[test]
    fn garbage_with_our_id_is_malformed() {
        let mut bytes = vec![0, 5, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        bytes.extend_from_slice(&[3, b'f', b'o']);
        assert_eq!(
            parse_reply(&bytes, 5, &name("x.example."), Family::V4),
            Err(Rejected::Malformed)
        );
        // Random bytes never panic.
        let mut state = 0x1234_5678_u32;
        for len in 0..300 {
            let noise: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as u8
                })
                .collect();
            // Take the id from the noise itself so the decoder, not the id check, sees it.
            let id = match noise.as_slice() {
                [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
                _ => 0,
            };
            let _ = parse_reply(&noise, id, &name("x.example."), Family::V4);
        }
    }
}

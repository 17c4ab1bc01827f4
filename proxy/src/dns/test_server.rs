//! A scriptable DNS server on 127.0.0.1 for the resolver tests: UDP and TCP on the same port,
//! each on a plain std thread, answering through a closure and logging every question it got.
//!
//! The closure returns the raw datagrams (or TCP messages) to send back, so a test can answer
//! with forged ids, truncated replies or nothing at all. Sockets are bound before the threads
//! start, so the server is ready when `start` returns.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

pub(crate) use super::message::tests::a;
use super::message::tests::{reply_to, soa};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    Udp,
    Tcp,
}

/// One question the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub name: String,
    pub rtype: RecordType,
    pub proto: Proto,
    pub edns: bool,
}

type Handler = dyn Fn(&Message, Proto) -> Vec<Vec<u8>> + Send + Sync;

pub(crate) struct FakeDns {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl FakeDns {
    pub(crate) fn start(
        handler: impl Fn(&Message, Proto) -> Vec<Vec<u8>> + Send + Sync + 'static,
    ) -> Self {
        let (udp, tcp) = bind_pair();
        let addr = udp.local_addr().unwrap();
        let handler: Arc<Handler> = Arc::new(handler);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = vec![
            {
                let (handler, seen, stop) = (handler.clone(), seen.clone(), stop.clone());
                std::thread::spawn(move || serve_udp(udp, &*handler, &seen, &stop))
            },
            {
                let (handler, seen, stop) = (handler.clone(), seen.clone(), stop.clone());
                std::thread::spawn(move || serve_tcp(tcp, &*handler, &seen, &stop))
            },
        ];
        FakeDns {
            addr,
            seen,
            stop,
            threads,
        }
    }

    /// Every question received so far, in arrival order.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub(crate) fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake both blocking threads so they see the flag.
        if let Ok(waker) = UdpSocket::bind("127.0.0.1:0") {
            let _ = waker.send_to(b"stop", self.addr);
        }
        let _ = TcpStream::connect(self.addr);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A UDP socket and a TCP listener on the same 127.0.0.1 port, as a real server has.
fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(addr) {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP");
}

fn record(seen: &Mutex<Vec<Seen>>, query: &Message, proto: Proto) {
    if let Some(q) = query.queries.first() {
        seen.lock().unwrap().push(Seen {
            name: q.name().to_ascii().to_ascii_lowercase(),
            rtype: q.query_type(),
            proto,
            edns: query.edns.is_some(),
        });
    }
}

fn serve_udp(socket: UdpSocket, handler: &Handler, seen: &Mutex<Vec<Seen>>, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    while let Ok((len, from)) = socket.recv_from(&mut buf) {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(query) = Message::from_vec(&buf[..len]) else {
            continue;
        };
        record(seen, &query, Proto::Udp);
        for reply in handler(&query, Proto::Udp) {
            let _ = socket.send_to(&reply, from);
        }
    }
}

fn serve_tcp(listener: TcpListener, handler: &Handler, seen: &Mutex<Vec<Seen>>, stop: &AtomicBool) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut stream) = stream else { continue };
        let mut prefix = [0u8; 2];
        if stream.read_exact(&mut prefix).is_err() {
            continue;
        }
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        if stream.read_exact(&mut body).is_err() {
            continue;
        }
        let Ok(query) = Message::from_vec(&body) else {
            continue;
        };
        record(seen, &query, Proto::Tcp);
        for reply in handler(&query, Proto::Tcp) {
            let len = u16::try_from(reply.len()).unwrap();
            let _ = stream.write_all(&len.to_be_bytes());
            let _ = stream.write_all(&reply);
        }
    }
}

/// A handler answering from a fixed record set like an authoritative server with recursion:
/// it follows CNAMEs, says NODATA for a known name without the asked type and NXDOMAIN for an
/// unknown one, with an SOA whose minimum is `negative_ttl`.
pub(crate) fn zone(
    records: Vec<Record>,
    negative_ttl: u32,
) -> impl Fn(&Message, Proto) -> Vec<Vec<u8>> + Send + Sync + 'static {
    move |query, _| vec![zone_reply(&records, negative_ttl, query).to_vec().unwrap()]
}

pub(crate) fn zone_reply(records: &[Record], negative_ttl: u32, query: &Message) -> Message {
    let Some(question) = query.queries.first() else {
        return reply_to(query, ResponseCode::FormErr, vec![]);
    };
    let mut answers = Vec::new();
    let mut current: Name = question.name().clone();
    for _ in 0..8 {
        let matching: Vec<Record> = records
            .iter()
            .filter(|r| r.name == current && r.record_type() == question.query_type())
            .cloned()
            .collect();
        if !matching.is_empty() {
            answers.extend(matching);
            break;
        }
        let Some(link) = records
            .iter()
            .find(|r| r.name == current && r.record_type() == RecordType::CNAME)
        else {
            break;
        };
        answers.push(link.clone());
        match &link.data {
            RData::CNAME(target) => current = target.0.clone(),
            _ => break,
        }
    }
    if !answers.is_empty() {
        return reply_to(query, ResponseCode::NoError, answers);
    }
    let exists = records.iter().any(|r| &r.name == question.name());
    let rcode = if exists {
        ResponseCode::NoError
    } else {
        ResponseCode::NXDomain
    };
    let mut reply = reply_to(query, rcode, vec![]);
    reply.add_authority(soa("example.", 3600, negative_ttl));
    reply
}

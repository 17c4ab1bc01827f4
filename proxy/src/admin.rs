//! The admin endpoint: a small HTTP/1.1 server on a thread of its own, off the shards'
//! connection path. It answers health checks and Prometheus scrapes; what it serves comes from
//! an `Admin` implementation (the running proxy, or a test's).
//!
//! Every request stands alone (`Connection: close`), is read under a deadline and a size limit,
//! and is answered even when it is junk (400, 404, 405, 431), never a crash. A token, when set,
//! is required as `Authorization: Bearer` and compared in constant time.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use egressd_wire::http::{self as wire, RequestTarget};
use egressd_wire::socks5::Parsed;

/// Largest request head the admin endpoint reads.
const MAX_HEAD: usize = 8 * 1024;
/// A request must have arrived whole within this.
const READ_DEADLINE: Duration = Duration::from_secs(5);
/// Requests served at once; more are answered 503 at once.
const MAX_CONCURRENT: usize = 32;

/// A response: status, content type, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// What the endpoint serves: one method per path.
pub trait Admin: Send + Sync {
    /// `GET /livez`: the process and its shards answer.
    fn livez(&self) -> Reply;
    /// `GET /readyz` (and `/healthz`): serving, not draining.
    fn readyz(&self) -> Reply;
    /// `GET /metrics`; `openmetrics`: the scraper accepts OpenMetrics.
    fn metrics(&self, openmetrics: bool) -> Reply;
}

/// Compares in time that does not depend on where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// Reads one request head, by the deadline and within `MAX_HEAD`.
fn read_head(stream: &mut TcpStream) -> Result<wire::RequestHead, u16> {
    let until = Instant::now() + READ_DEADLINE;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        match wire::parse_request_head(&buf, MAX_HEAD) {
            Parsed::Done { value, .. } => return Ok(value),
            Parsed::Invalid(e) => return Err(e.status),
            Parsed::NeedMore if buf.len() > MAX_HEAD => return Err(431),
            Parsed::NeedMore => {}
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Err(408);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(0),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return Err(408),
        }
    }
}

/// Answers one request.
fn route(admin: &dyn Admin, token: Option<&str>, head: &wire::RequestHead) -> Reply {
    let path = match &head.target {
        RequestTarget::Origin(p) => p.split_once('?').map_or(p.as_str(), |(p, _)| p),
        _ => return Reply::text(400, "send origin-form requests: GET /metrics\n"),
    };
    if let Some(token) = token {
        let given = head
            .header("authorization")
            .and_then(|v| v.strip_prefix(b"Bearer "))
            .unwrap_or(b"");
        if !same_secret(given.trim_ascii(), token.as_bytes()) {
            return Reply::text(401, "a bearer token is required\n");
        }
    }
    let known = ["/livez", "/readyz", "/healthz", "/metrics"];
    if !known.contains(&path) {
        return Reply::text(404, format!("no such endpoint; try {}\n", known.join(", ")));
    }
    if head.method != "GET" && head.method != "HEAD" {
        return Reply::text(405, "only GET and HEAD\n");
    }
    match path {
        "/livez" => admin.livez(),
        "/readyz" | "/healthz" => admin.readyz(),
        _ => {
            let wanted = b"application/openmetrics-text";
            let openmetrics = head.header("accept").is_some_and(|a| {
                a.windows(wanted.len())
                    .any(|w| w.eq_ignore_ascii_case(wanted))
            });
            admin.metrics(openmetrics)
        }
    }
}

fn write_reply(stream: &mut TcpStream, head_only: bool, reply: &Reply) {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        wire::reason_phrase(reply.status),
        reply.content_type,
        reply.body.len()
    );
    if reply.status == 401 {
        out.push_str("WWW-Authenticate: Bearer\r\n");
    }
    if reply.status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(&reply.body);
    }
    let _ = stream.set_write_timeout(Some(READ_DEADLINE));
    let _ = stream.write_all(out.as_bytes());
}

fn serve_one(mut stream: TcpStream, admin: &dyn Admin, token: Option<&str>) {
    match read_head(&mut stream) {
        Ok(head) => {
            let reply = route(admin, token, &head);
            write_reply(&mut stream, head.method == "HEAD", &reply);
        }
        // The client left before a whole request.
        Err(0) => {}
        Err(status) => write_reply(&mut stream, false, &Reply::text(status, "bad request\n")),
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// A running admin endpoint.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
}

/// Binds `addr` and serves on threads of their own until the process ends.
pub fn start(addr: SocketAddr, token: Option<String>, admin: Arc<dyn Admin>) -> io::Result<Server> {
    let listener = TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    let busy = Arc::new(AtomicUsize::new(0));
    let token: Option<Arc<str>> = token.map(Into::into);
    std::thread::Builder::new()
        .name("egressd-admin".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                if busy.load(Ordering::Relaxed) >= MAX_CONCURRENT {
                    write_reply(&mut stream, false, &Reply::text(503, "busy\n"));
                    continue;
                }
                busy.fetch_add(1, Ordering::Relaxed);
                let (admin, token, busy) = (admin.clone(), token.clone(), busy.clone());
                let spawned = std::thread::Builder::new()
                    .name("egressd-admin-req".into())
                    .spawn(move || {
                        serve_one(stream, &*admin, token.as_deref());
                        busy.fetch_sub(1, Ordering::Relaxed);
                    });
                if spawned.is_err() {
                    tracing::warn!("admin endpoint: cannot start a thread for a request");
                }
            }
        })?;
    Ok(Server { addr })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl Admin for Fixed {
        fn livez(&self) -> Reply {
            Reply::text(200, "ok\n")
        }
        fn readyz(&self) -> Reply {
            Reply::text(503, "draining\n")
        }
        fn metrics(&self, openmetrics: bool) -> Reply {
            Reply::text(200, if openmetrics { "om\n" } else { "text\n" })
        }
    }

    fn ask(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn endpoints_answer_and_junk_gets_its_status() {
        let server = start("127.0.0.1:0".parse().unwrap(), None, Arc::new(Fixed)).unwrap();
        let a = server.addr;
        let live = ask(a, b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            live.starts_with("HTTP/1.1 200 OK\r\n") && live.ends_with("\r\n\r\nok\n"),
            "{live}"
        );
        assert!(ask(a, b"GET /healthz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 503"));
        let om = ask(
            a,
            b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0\r\n\r\n",
        );
        assert!(om.ends_with("om\n"), "{om}");
        assert!(ask(a, b"GET /metrics?x=1 HTTP/1.1\r\n\r\n").ends_with("text\n"));
        let head = ask(a, b"HEAD /livez HTTP/1.1\r\n\r\n");
        assert!(
            head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
        assert!(ask(a, b"GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        let post = ask(a, b"POST /livez HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(
            post.starts_with("HTTP/1.1 405") && post.contains("Allow: GET, HEAD"),
            "{post}"
        );
        assert!(ask(a, b"\x16\x03\x01junk\r\n\r\n").starts_with("HTTP/1.1 400"));
        let mut big = b"GET /livez HTTP/1.1\r\nX: ".to_vec();
        big.extend(vec![b'a'; 20_000]);
        assert!(ask(a, &big).starts_with("HTTP/1.1 431"));
        // Still serving after all that.
        assert!(ask(a, b"GET /livez HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
    }

    #[test]
    fn a_token_is_required_when_set() {
        let server = start(
            "127.0.0.1:0".parse().unwrap(),
            Some("s3cret".into()),
            Arc::new(Fixed),
        )
        .unwrap();
        let a = server.addr;
        let none = ask(a, b"GET /livez HTTP/1.1\r\n\r\n");
        assert!(none.starts_with("HTTP/1.1 401") && none.contains("WWW-Authenticate: Bearer"));
        assert!(
            ask(
                a,
                b"GET /livez HTTP/1.1\r\nAuthorization: Bearer s3cre\r\n\r\n"
            )
            .starts_with("HTTP/1.1 401")
        );
        assert!(
            ask(
                a,
                b"GET /livez HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n"
            )
            .starts_with("HTTP/1.1 200")
        );
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
        assert!(!same_secret(b"", b"a"));
        assert!(same_secret(b"", b""));
    }
}

/// The running proxy as the admin endpoint sees it.
pub struct Proxy {
    pub shared: crate::state::Shared,
    pub metrics: crate::metrics::Reader,
    pub shards: usize,
    /// Set as soon as a stop was asked for: `/readyz` answers 503 from then on.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

/// How long a scrape waits for the shards (each answers on its 50 ms tick).
const SHARD_WAIT: Duration = Duration::from_secs(1);

impl Admin for Proxy {
    fn livez(&self) -> Reply {
        let (_, answered) = self.metrics.collect(SHARD_WAIT);
        if answered == self.shards {
            Reply::text(200, "ok\n")
        } else {
            Reply::text(
                503,
                format!("{answered} of {} shards answered\n", self.shards),
            )
        }
    }

    fn readyz(&self) -> Reply {
        if self.draining.load(Ordering::Relaxed) {
            Reply::text(503, "draining\n")
        } else {
            Reply::text(
                200,
                format!("ready (generation {})\n", self.shared.load().id),
            )
        }
    }

    fn metrics(&self, openmetrics: bool) -> Reply {
        let (snapshot, _) = self.metrics.collect(SHARD_WAIT);
        let generation = self.shared.load();
        let names: Vec<String> = generation
            .policy()
            .listeners
            .iter()
            .map(|l| l.name.clone())
            .collect();
        let body = exposition(
            &snapshot,
            &names,
            generation.id,
            generation.policy().rules.len(),
            openmetrics,
        );
        Reply {
            status: 200,
            content_type: if openmetrics {
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            } else {
                "text/plain; version=0.0.4; charset=utf-8"
            },
            body,
        }
    }
}

/// The Prometheus exposition of `s` (`listeners`: names by index). OpenMetrics when the
/// scraper asks for it, else the 0.0.4 text format (counters' HELP and TYPE name the
/// `_total` series, and no `# EOF`).
pub fn exposition(
    s: &crate::metrics::Snapshot,
    listeners: &[String],
    generation: u64,
    rules: usize,
    openmetrics: bool,
) -> String {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Registry;

    type Labels = Vec<(&'static str, String)>;
    let mut r = Registry::with_prefix("egressd");
    let listener = |i: usize| listeners.get(i).cloned().unwrap_or_else(|| i.to_string());

    let info = Family::<Labels, Gauge>::default();
    info.get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_string())])
        .set(1);
    r.register("build_info", "egressd's version (always 1)", info);

    let accepted = Family::<Labels, Counter>::default();
    let finished = Family::<Labels, Counter>::default();
    for (i, l) in s.listeners.iter().enumerate() {
        accepted
            .get_or_create(&vec![("listener", listener(i))])
            .inc_by(l.accepted);
        let combos = crate::metrics::PROTOCOLS
            .iter()
            .flat_map(|p| crate::outcome::Outcome::ALL.iter().map(move |o| (*p, *o)));
        for ((protocol, o), n) in combos.zip(&l.finished) {
            if *n == 0 {
                continue;
            }
            let side = o.side().map_or("none", |s| match s {
                crate::outcome::Side::Client => "client",
                crate::outcome::Side::Policy => "policy",
                crate::outcome::Side::Upstream => "upstream",
                crate::outcome::Side::Internal => "internal",
            });
            finished
                .get_or_create(&vec![
                    ("listener", listener(i)),
                    (
                        "protocol",
                        if protocol.is_empty() {
                            "none"
                        } else {
                            protocol
                        }
                        .to_string(),
                    ),
                    ("outcome", o.name().to_string()),
                    ("side", side.to_string()),
                ])
                .inc_by(*n);
        }
    }
    r.register(
        "connections_accepted",
        "Connections accepted, by listener",
        accepted,
    );
    r.register(
        "connections_finished",
        "Connections and forwarded HTTP requests finished, by listener, protocol (none: closed \
         before its first byte), outcome and failing side",
        finished,
    );

    let pool_finished = Family::<Labels, Counter>::default();
    let bytes = Family::<Labels, Counter>::default();
    for (name, p) in &s.pools {
        pool_finished
            .get_or_create(&vec![("pool", name.clone())])
            .inc_by(p.finished);
        for (direction, n) in [("up", p.bytes_up), ("down", p.bytes_down)] {
            bytes
                .get_or_create(&vec![
                    ("direction", direction.to_string()),
                    ("pool", name.clone()),
                ])
                .inc_by(n);
        }
    }
    r.register(
        "pool_connections",
        "Finished connections that a rule sent to a pool, by pool",
        pool_finished,
    );
    r.register(
        "relayed_bytes",
        "Bytes relayed for connections sent to a pool, by direction (up: client to upstream) and pool",
        bytes,
    );

    let rejected = Family::<Labels, Counter>::default();
    rejected
        .get_or_create(&vec![("reason", "max_connections".to_string())])
        .inc_by(s.rejected_limit);
    rejected
        .get_or_create(&vec![("reason", "max_connections_per_client".to_string())])
        .inc_by(s.rejected_per_client);
    r.register(
        "connections_rejected",
        "Connections closed at accept for a connection limit, by limit",
        rejected,
    );
    let panics = Counter::<u64>::default();
    panics.inc_by(s.panics);
    r.register(
        "panics",
        "Connection tasks that panicked (the shard kept serving)",
        panics,
    );
    let dropped = Counter::<u64>::default();
    dropped.inc_by(s.log_dropped);
    r.register(
        "access_log_dropped_lines",
        "Access-log lines dropped because standard output did not keep up",
        dropped,
    );
    let active = Gauge::<i64>::default();
    active.set(i64::try_from(s.active).unwrap_or(i64::MAX));
    r.register("active_connections", "Connections open now", active);
    let serving = Gauge::<i64>::default();
    serving.set(i64::try_from(generation).unwrap_or(i64::MAX));
    r.register(
        "policy_generation",
        "The serving policy generation",
        serving,
    );
    let rule_count = Gauge::<i64>::default();
    rule_count.set(i64::try_from(rules).unwrap_or(i64::MAX));
    r.register("policy_rules", "Rules in the serving policy", rule_count);

    let mut out = String::new();
    if openmetrics {
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        return out;
    }
    let _ = prometheus_client::encoding::text::encode_registry(&mut out, &r);
    // 0.0.4: a counter's HELP and TYPE lines name its sample, which ends in _total.
    let mut text = String::with_capacity(out.len() + 256);
    let mut counters = Vec::new();
    for line in out.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|l| l.strip_suffix(" counter"))
        {
            counters.push(name.to_string());
        }
    }
    for line in out.lines() {
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|tag| {
            let rest = line.strip_prefix(tag)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name.to_string())
                .then(|| format!("{tag}{name}_total {tail}"))
        });
        text.push_str(renamed.as_deref().unwrap_or(line));
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod exposition_tests {
    use super::*;
    use crate::metrics::ShardMetrics;

    #[test]
    fn counters_are_named_by_prometheus_conventions_in_both_formats() {
        let m = ShardMetrics::new(1);
        m.accepted(0);
        m.finished(&crate::accesslog::ConnRecord {
            outcome: crate::outcome::Outcome::Blocked,
            ..Default::default()
        });
        let s = m.snapshot(0, 3);
        let names = ["office".to_string()];
        let text = exposition(&s, &names, 7, 12, false);
        assert!(
            text.contains("# TYPE egressd_connections_accepted_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("egressd_connections_accepted_total{listener=\"office\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("egressd_connections_finished_total{listener=\"office\",protocol=\"none\",outcome=\"blocked\",side=\"policy\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("egressd_active_connections 3\n"), "{text}");
        assert!(text.contains("egressd_policy_generation 7\n"), "{text}");
        assert!(text.contains("egressd_build_info{version="), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
        let om = exposition(&s, &names, 7, 12, true);
        assert!(
            om.contains("# TYPE egressd_connections_accepted counter\n"),
            "{om}"
        );
        assert!(om.ends_with("# EOF\n"), "{om}");
    }
}

//! Dialing a destination as a decision says: from a pool's addresses in order (skipping and
//! cooling down addresses that fail for a local reason), then the pool's fallback; from the
//! kernel's choice for `default`; from the client's own entry address for `ingress`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use egressd_policy::Decision;
use egressd_policy::egress::{self, Cooldown};
use egressd_policy::model::{Action, Fallback, Ipv6Select, Pool};

use super::socket::{SocketPools, SourceSpec, is_local_error};
use crate::conn::Conn;
use crate::readiness::Readiness;
use crate::state::Generation;

/// How long an address that failed for a local reason is skipped.
pub const COOL_DOWN: Duration = Duration::from_secs(10);

/// How long an idle upstream connection is kept for another forwarded request.
const IDLE_FOR: Duration = Duration::from_secs(15);
/// Idle upstream connections kept per (source, destination), and per shard.
const IDLE_PER_KEY: usize = 16;
const IDLE_PER_SHARD: usize = 512;

/// Where an upstream connection leaves from and goes to. A connection is only ever reused for
/// a dial with the same key, so reuse never changes the egress address, device or mark.
pub type ReuseKey = (SourceSpec, SocketAddr);

/// Per-shard dialing state.
#[derive(Debug)]
pub struct Dialer {
    pub sockets: RefCell<SocketPools>,
    pub cooldown: RefCell<Cooldown>,
    idle: RefCell<IdleConns>,
    /// The shard's readiness, which upstream connections are driven through.
    readiness: Rc<Readiness>,
    epoch: Instant,
    seq: std::cell::Cell<u64>,
}

/// Upstream connections left idle after a keep-alive HTTP response (plain-HTTP forwarding).
#[derive(Debug, Default)]
struct IdleConns {
    by_key: HashMap<ReuseKey, Vec<(Conn, Instant)>>,
    count: usize,
}

/// True while the peer has neither closed nor sent anything: an idle HTTP connection.
fn still_idle(stream: &Conn) -> bool {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    matches!(
        socket2::SockRef::from(stream)
            .recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock
    )
}

/// An upstream connection a session holds between two forwarded requests, offered to the
/// dial for the next one: taken only when that request's decision dials the same key.
pub type Held = Rc<RefCell<Option<(ReuseKey, Conn)>>>;

/// Which existing upstream connections a dial may take instead of a new one.
#[derive(Debug, Clone)]
pub enum Reuse {
    /// A new connection (tunnels, whose bytes are the client's own; a request sent again).
    Never,
    /// Plain-HTTP forwarding: the session's held connection if the key matches, else an idle
    /// one parked by the shard with the same key, else a new one.
    Idle(Held),
}

/// Who is dialing, for sticky IPv6 selection and ingress.
#[derive(Debug, Clone)]
pub struct DialCtx {
    pub user: String,
    pub client: SocketAddr,
    /// The local address the client connected to.
    pub ingress: SocketAddr,
    pub reuse: Reuse,
}

#[derive(Debug)]
pub struct Dialed {
    pub stream: Conn,
    /// The upstream socket's local address: the egress address and port actually used.
    pub local: SocketAddr,
    /// Why the connection did not leave from the pool, when it fell back.
    pub fallback: Option<String>,
    /// Where it leaves from and goes to, to park it for reuse (`Dialer::park`).
    pub reuse_key: ReuseKey,
    /// Taken from the idle connections rather than dialled: the server may have closed it a
    /// moment ago, so a request that gets no answer at all may be sent again on a new one.
    pub reused: bool,
}

#[derive(Debug)]
pub enum DialError {
    /// The decision is `block`.
    Blocked,
    /// The destination is in `deny_destinations`.
    Denied,
    /// No pool address worked and the pool's fallback is `deny`; what each attempt met.
    NoEgress(Vec<String>),
    /// The destination could not be reached (refused, unreachable, timed out).
    Connect(io::Error),
    /// No pool address worked, and neither did the fallback to the default address: what each
    /// pool address met, then the fallback's error.
    FallbackFailed {
        tried: Vec<String>,
        error: io::Error,
    },
}

impl DialError {
    /// What each egress address tried met (for the access log).
    pub fn tried(&self) -> &[String] {
        match self {
            DialError::NoEgress(tried) | DialError::FallbackFailed { tried, .. } => tried,
            _ => &[],
        }
    }
}

impl std::fmt::Display for DialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DialError::Blocked => f.write_str("blocked by policy"),
            DialError::Denied => f.write_str("destination is in deny_destinations"),
            DialError::NoEgress(tried) => write!(
                f,
                "no usable egress address and fallback is deny: {}",
                tried.join("; ")
            ),
            DialError::Connect(e) => write!(f, "connect failed: {e}"),
            DialError::FallbackFailed { tried, error } => write!(
                f,
                "no usable egress address ({}), and the fallback to the default address failed: {error}",
                tried.join("; ")
            ),
        }
    }
}

impl Dialer {
    pub fn new(depth: usize, readiness: Rc<Readiness>) -> Self {
        Dialer {
            sockets: RefCell::new(SocketPools::new(depth)),
            cooldown: RefCell::new(Cooldown::default()),
            idle: RefCell::new(IdleConns::default()),
            readiness,
            epoch: Instant::now(),
            seq: std::cell::Cell::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn mark_down(&self, addr: IpAddr) {
        self.cooldown
            .borrow_mut()
            .mark_down(addr, self.now_ms(), COOL_DOWN.as_millis() as u64);
    }

    /// Forgets addresses whose cool-down is over (on the shard's tick).
    pub fn expire_cooldowns(&self) {
        self.cooldown.borrow_mut().expire(self.now_ms());
    }

    /// Keeps an upstream connection whose last HTTP response left it open and idle, for the
    /// next forwarded request with the same key (dropped, and so closed, when full).
    pub fn park(&self, key: ReuseKey, stream: Conn) {
        let mut idle = self.idle.borrow_mut();
        if idle.count >= IDLE_PER_SHARD {
            return;
        }
        let list = idle.by_key.entry(key).or_default();
        if list.len() < IDLE_PER_KEY {
            list.push((stream, Instant::now()));
            idle.count += 1;
        }
    }

    /// The most recently parked connection for `key` that is still open and idle.
    fn take_idle(&self, spec: &SourceSpec, dst: SocketAddr) -> Option<Conn> {
        let mut idle = self.idle.borrow_mut();
        if idle.count == 0 {
            return None;
        }
        let key = (spec.clone(), dst);
        let list = idle.by_key.get_mut(&key)?;
        let before = list.len();
        let mut found = None;
        while let Some((stream, since)) = list.pop() {
            if since.elapsed() < IDLE_FOR && still_idle(&stream) {
                found = Some(stream);
                break;
            }
        }
        let taken = before - list.len();
        if list.is_empty() {
            idle.by_key.remove(&key);
        }
        idle.count -= taken;
        found
    }

    /// Closes idle connections kept longer than `IDLE_FOR` (on the shard's tick).
    pub fn expire_idle(&self) {
        let mut idle = self.idle.borrow_mut();
        if idle.count == 0 {
            return;
        }
        idle.by_key.retain(|_, list| {
            list.retain(|(_, since)| since.elapsed() < IDLE_FOR);
            !list.is_empty()
        });
        idle.count = idle.by_key.values().map(Vec::len).sum();
    }

    /// Tops the socket pools up; sources that cannot be prepared are cooled down.
    pub fn refill(&self) {
        let failed = self.sockets.borrow_mut().refill();
        for (spec, e) in failed {
            if let Some(addr) = spec.addr {
                tracing::warn!(%addr, error = %e, "egress address unusable; cooling down");
                self.mark_down(addr);
            }
        }
    }

    async fn dial_from(
        &self,
        spec: &SourceSpec,
        dst: SocketAddr,
        timeout: Duration,
        reuse: &Reuse,
    ) -> io::Result<(Conn, bool)> {
        if let Reuse::Idle(held) = reuse {
            let mut held = held.borrow_mut();
            if held
                .as_ref()
                .is_some_and(|((s, d), _)| *d == dst && s == spec)
                && let Some((_, stream)) = held.take()
                // A server that sent anything unasked (or closed) since its last response
                // must not answer this request with it.
                && still_idle(&stream)
            {
                return Ok((stream, true));
            }
            drop(held);
            if let Some(stream) = self.take_idle(spec, dst) {
                return Ok((stream, true));
            }
        }
        let socket = self.sockets.borrow_mut().take(spec)?;
        Ok((
            Conn::connect(socket, dst, timeout, &self.readiness).await?,
            false,
        ))
    }

    /// Dials `dst` as `decision` says.
    pub async fn dial(
        self: &Rc<Self>,
        generation: &Generation,
        decision: &Decision,
        dst: SocketAddr,
        ctx: &DialCtx,
    ) -> Result<Dialed, DialError> {
        if generation
            .deny
            .contains(egressd_policy::meta::canonical_ip(dst.ip()))
        {
            return Err(DialError::Denied);
        }
        let policy = generation.policy();
        let timeout = policy.settings.connect_timeout;
        let default_spec = SourceSpec {
            addr: None,
            ipv6: dst.is_ipv6(),
            interface: None,
            mark: None,
        };
        let reuse = &ctx.reuse;
        let finish =
            |(stream, reused): (Conn, bool), spec: &SourceSpec, fallback: Option<String>| {
                let local = stream.local_addr().map_err(DialError::Connect)?;
                Ok(Dialed {
                    stream,
                    local,
                    fallback,
                    reuse_key: (spec.clone(), dst),
                    reused,
                })
            };
        match decision.action {
            Action::Block => Err(DialError::Blocked),
            Action::Default => {
                let s = self
                    .dial_from(&default_spec, dst, timeout, reuse)
                    .await
                    .map_err(DialError::Connect)?;
                finish(s, &default_spec, None)
            }
            Action::Ingress => {
                let entry = ctx.ingress.ip();
                if entry.is_ipv4() != dst.is_ipv4() {
                    let s = self
                        .dial_from(&default_spec, dst, timeout, reuse)
                        .await
                        .map_err(DialError::Connect)?;
                    return finish(
                        s,
                        &default_spec,
                        Some(format!(
                            "ingress address {entry} cannot reach an {} destination",
                            if dst.is_ipv4() { "IPv4" } else { "IPv6" }
                        )),
                    );
                }
                let spec = SourceSpec {
                    addr: Some(entry),
                    ipv6: entry.is_ipv6(),
                    interface: None,
                    mark: None,
                };
                let s = self
                    .dial_from(&spec, dst, timeout, reuse)
                    .await
                    .map_err(DialError::Connect)?;
                finish(s, &spec, None)
            }
            Action::Egress => {
                let Some(pool) = decision.pool.and_then(|p| policy.pool(p)) else {
                    return Err(DialError::NoEgress(vec!["the rule names no pool".into()]));
                };
                self.dial_pool(pool, dst, ctx, timeout, &default_spec)
                    .await
                    .and_then(|(s, spec, fb)| finish(s, &spec, fb))
            }
        }
    }

    async fn dial_pool(
        &self,
        pool: &Pool,
        dst: SocketAddr,
        ctx: &DialCtx,
        timeout: Duration,
        default_spec: &SourceSpec,
    ) -> Result<((Conn, bool), SourceSpec, Option<String>), DialError> {
        let key = match pool.ipv6_select {
            Ipv6Select::PerConnection => {
                self.seq.set(self.seq.get().wrapping_add(1));
                egress::mix(self.seq.get() ^ (self.epoch.elapsed().as_nanos() as u64))
            }
            _ => egress::sticky_key(&ctx.user, Some(ctx.client.ip())),
        };
        let now = self.now_ms();
        // Addresses skipped because they failed a moment ago are named too, so a refusal
        // says what became of every address of the pool.
        let cooling = RefCell::new(Vec::new());
        let plan = {
            let cd = self.cooldown.borrow();
            egress::plan(
                pool,
                egressd_policy::meta::canonical_ip(dst.ip()),
                key,
                |a| {
                    let down = cd.is_down(a, now);
                    if down {
                        cooling
                            .borrow_mut()
                            .push(format!("{a}: cooling down after a recent failure"));
                    }
                    down
                },
            )
        };
        let mut tried = cooling.into_inner();
        if plan.attempts.is_empty() && tried.is_empty() {
            tried.push(format!(
                "pool \"{}\" has no usable {} address",
                pool.name,
                if dst.is_ipv4() { "IPv4" } else { "IPv6" }
            ));
        }
        for addr in plan.attempts {
            let spec = SourceSpec {
                addr: Some(addr),
                ipv6: addr.is_ipv6(),
                interface: pool.interface.clone(),
                mark: pool.mark,
            };
            match self.dial_from(&spec, dst, timeout, &ctx.reuse).await {
                Ok(s) => return Ok((s, spec, None)),
                Err(e) if is_local_error(&e) => {
                    tracing::warn!(pool = %pool.name, %addr, error = %e, "egress address failed; cooling down and trying the next");
                    self.mark_down(addr);
                    tried.push(format!("{addr}: {e}"));
                }
                Err(e) => return Err(DialError::Connect(e)),
            }
        }
        match plan.fallback {
            Fallback::Deny => Err(DialError::NoEgress(tried)),
            Fallback::Default => {
                match self.dial_from(default_spec, dst, timeout, &ctx.reuse).await {
                    Ok(s) => Ok((s, default_spec.clone(), Some(tried.join("; ")))),
                    Err(error) => Err(DialError::FallbackFailed { tried, error }),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{decision_of, generation, listener, on_test_shard as on_shard};

    /// 203.0.113.x is on no interface of a test machine: binding it fails locally, and nothing
    /// is ever sent to it.
    const POLICY: &str = r#"
[proxy]
deny_destinations = ["127.0.0.9/32"]

[[listener]]
name = "main"
bind = "127.0.0.1:0"

[[pool]]
name = "first-gone"
ipv4 = ["203.0.113.77", "127.0.0.3"]
fallback = "deny"

[[pool]]
name = "all-gone"
ipv4 = ["203.0.113.77"]
fallback = "deny"

[[pool]]
name = "gone-then-default"
ipv4 = ["203.0.113.78"]
fallback = "default"

[[rule]]
name = "first-gone"
when = "net.dst.port == 1"
action = "egress"
pool = "first-gone"

[[rule]]
name = "all-gone"
when = "net.dst.port == 2"
action = "egress"
pool = "all-gone"

[[rule]]
name = "gone-then-default"
when = "net.dst.port == 3"
action = "egress"
pool = "gone-then-default"

[[rule]]
name = "blocked"
when = "net.dst.port == 4"
action = "block"

[[rule]]
name = "ingress"
when = "net.dst.port == 5"
action = "ingress"

[[rule]]
name = "default"
action = "default"
"#;

    fn who(reuse: Reuse) -> DialCtx {
        DialCtx {
            user: "alice".into(),
            client: "127.0.0.1:40000".parse().unwrap(),
            ingress: "127.0.0.4:1080".parse().unwrap(),
            reuse,
        }
    }

    #[test]
    fn each_action_leaves_from_its_address_and_the_server_sees_it() {
        on_shard(|r| async move {
            let g = generation(POLICY);
            let dialer = Rc::new(Dialer::new(2, r.clone()));
            let upstream = listener(&r, "127.0.0.1");
            let dst = upstream.local_addr().unwrap();
            for (rule, source, fallback) in [
                ("default", "127.0.0.1", false),
                // The first address is not on this host: cooled down, the next one serves.
                ("first-gone", "127.0.0.3", false),
                ("gone-then-default", "127.0.0.1", true),
                ("ingress", "127.0.0.4", false),
            ] {
                let d = decision_of(&g, rule);
                let (dialed, accepted) = futures_lite::future::zip(
                    dialer.dial(&g, &d, dst, &who(Reuse::Never)),
                    upstream.accept(),
                )
                .await;
                let dialed = dialed.unwrap_or_else(|e| panic!("{rule}: {e}"));
                let seen = accepted.unwrap().peer.unwrap();
                assert_eq!(seen.ip().to_string(), source, "{rule}");
                assert_eq!(
                    dialed.local, seen,
                    "{rule}: the egress reported is the one seen"
                );
                assert_eq!(
                    dialed.fallback.is_some(),
                    fallback,
                    "{rule}: {:?}",
                    dialed.fallback
                );
            }
            // The failed address cools down: the next dial goes straight to the good one.
            let now = dialer.now_ms();
            assert!(
                dialer
                    .cooldown
                    .borrow()
                    .is_down("203.0.113.77".parse().unwrap(), now)
            );
        });
    }

    #[test]
    fn refusals_name_their_reason() {
        on_shard(|r| async move {
            let g = generation(POLICY);
            let dialer = Rc::new(Dialer::new(2, r.clone()));
            let upstream = listener(&r, "127.0.0.1");
            let dst = upstream.local_addr().unwrap();
            let dial = |rule: &str, dst: SocketAddr| {
                let d = decision_of(&g, rule);
                let dialer = dialer.clone();
                let g = g.clone();
                async move { dialer.dial(&g, &d, dst, &who(Reuse::Never)).await }
            };
            assert!(matches!(
                dial("blocked", dst).await,
                Err(DialError::Blocked)
            ));
            assert!(
                matches!(dial("all-gone", dst).await, Err(DialError::NoEgress(tried)) if tried.len() == 1 && tried[0].starts_with("203.0.113.77: "))
            );
            let denied = SocketAddr::new("127.0.0.9".parse().unwrap(), dst.port());
            assert!(matches!(
                dial("default", denied).await,
                Err(DialError::Denied)
            ));
            // Nothing listens there: refused, which is the destination's answer, not ours.
            drop(upstream);
            match dial("default", dst).await {
                Err(DialError::Connect(e)) => {
                    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused)
                }
                other => panic!("{other:?}"),
            }
        });
    }

    #[test]
    fn a_parked_connection_is_reused_only_for_the_same_source_and_destination() {
        on_shard(|r| async move {
            let g = generation(POLICY);
            let dialer = Rc::new(Dialer::new(2, r.clone()));
            let upstream = listener(&r, "127.0.0.1");
            let dst = upstream.local_addr().unwrap();
            let held: Held = Rc::new(RefCell::new(None));
            let default = decision_of(&g, "default");
            let (first, server) = futures_lite::future::zip(
                dialer.dial(&g, &default, dst, &who(Reuse::Idle(held.clone()))),
                upstream.accept(),
            )
            .await;
            let (first, _server) = (first.unwrap(), server.unwrap());
            assert!(!first.reused);
            let first_local = first.local;
            dialer.park(first.reuse_key, first.stream);
            // Same source and destination: the parked connection, no new accept.
            let again = dialer
                .dial(&g, &default, dst, &who(Reuse::Idle(held.clone())))
                .await
                .unwrap();
            assert!(again.reused);
            assert_eq!(again.local, first_local);
            dialer.park(again.reuse_key, again.stream);
            // Another source (the pool's address): a new connection.
            let pool = decision_of(&g, "first-gone");
            let (other, accepted) = futures_lite::future::zip(
                dialer.dial(&g, &pool, dst, &who(Reuse::Idle(held.clone()))),
                upstream.accept(),
            )
            .await;
            let other = other.unwrap();
            assert!(!other.reused);
            assert_eq!(
                accepted.unwrap().peer.unwrap().ip().to_string(),
                "127.0.0.3"
            );
            // A tunnel never takes a parked connection.
            let (tunnel, accepted) = futures_lite::future::zip(
                dialer.dial(&g, &default, dst, &who(Reuse::Never)),
                upstream.accept(),
            )
            .await;
            assert!(!tunnel.unwrap().reused);
            accepted.unwrap();
        });
    }
}

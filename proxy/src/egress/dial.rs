//! Dialing a destination as a decision says: from a pool's addresses in order (skipping and
//! cooling down addresses that fail for a local reason), then the pool's fallback; from the
//! kernel's choice for `default`; from the client's own entry address for `ingress`.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use egressd_policy::Decision;
use egressd_policy::egress::{self, Cooldown};
use egressd_policy::model::{Action, Fallback, Ipv6Select, Pool};
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use socket2::{SockAddr, Socket};

use super::socket::{SocketPools, SourceSpec, is_local_error};
use crate::state::Generation;

/// How long an address that failed for a local reason is skipped.
pub const COOL_DOWN: Duration = Duration::from_secs(10);

/// Per-shard dialing state.
#[derive(Debug)]
pub struct Dialer {
    pub sockets: RefCell<SocketPools>,
    pub cooldown: RefCell<Cooldown>,
    epoch: Instant,
    seq: std::cell::Cell<u64>,
}

/// Who is dialing, for sticky IPv6 selection and ingress.
#[derive(Debug, Clone)]
pub struct DialCtx {
    pub user: String,
    pub client: SocketAddr,
    /// The local address the client connected to.
    pub ingress: SocketAddr,
}

#[derive(Debug)]
pub struct Dialed {
    pub stream: TcpStream,
    /// The upstream socket's local address: the egress address and port actually used.
    pub local: SocketAddr,
    pub pool: Option<String>,
    /// Why the connection did not leave from the pool, when it fell back.
    pub fallback: Option<String>,
}

#[derive(Debug)]
pub enum DialError {
    /// The decision is `block`.
    Blocked,
    /// The destination is in `deny_destinations`.
    Denied,
    /// No pool address worked and the pool's fallback is `deny`.
    NoEgress(String),
    /// The destination could not be reached (refused, unreachable, timed out).
    Connect(io::Error),
}

impl std::fmt::Display for DialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DialError::Blocked => f.write_str("blocked by policy"),
            DialError::Denied => f.write_str("destination is in deny_destinations"),
            DialError::NoEgress(why) => {
                write!(f, "no usable egress address and fallback is deny: {why}")
            }
            DialError::Connect(e) => write!(f, "connect failed: {e}"),
        }
    }
}

/// Connects a prepared socket without blocking: start the connect, hand the socket to glommio,
/// and wait for writability with a zero-length write, which reports the connect's error.
pub async fn connect(socket: Socket, dst: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    match socket.connect(&SockAddr::from(dst)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let mut stream = TcpStream::from(socket);
    stream.set_write_timeout(Some(timeout))?;
    let result = stream.write(&[]).await;
    stream.set_write_timeout(None)?;
    result.map(|_| stream)
}

impl Dialer {
    pub fn new(depth: usize) -> Self {
        Dialer {
            sockets: RefCell::new(SocketPools::new(depth)),
            cooldown: RefCell::new(Cooldown::default()),
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
    ) -> io::Result<TcpStream> {
        let socket = self.sockets.borrow_mut().take(spec)?;
        connect(socket, dst, timeout).await
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
        let finish = |stream: TcpStream, pool: Option<String>, fallback: Option<String>| {
            let local = stream
                .local_addr()
                .map_err(|e| DialError::Connect(e.into()))?;
            Ok(Dialed {
                stream,
                local,
                pool,
                fallback,
            })
        };
        match decision.action {
            Action::Block => Err(DialError::Blocked),
            Action::Default => {
                let s = self
                    .dial_from(&default_spec, dst, timeout)
                    .await
                    .map_err(DialError::Connect)?;
                finish(s, None, None)
            }
            Action::Ingress => {
                let entry = ctx.ingress.ip();
                if entry.is_ipv4() != dst.is_ipv4() {
                    let s = self
                        .dial_from(&default_spec, dst, timeout)
                        .await
                        .map_err(DialError::Connect)?;
                    return finish(
                        s,
                        None,
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
                    .dial_from(&spec, dst, timeout)
                    .await
                    .map_err(DialError::Connect)?;
                finish(s, None, None)
            }
            Action::Egress => {
                let Some(pool) = decision.pool.and_then(|p| policy.pool(p)) else {
                    return Err(DialError::NoEgress("rule has no pool".into()));
                };
                self.dial_pool(pool, dst, ctx, timeout, &default_spec)
                    .await
                    .and_then(|(s, fb)| finish(s, Some(pool.name.clone()), fb))
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
    ) -> Result<(TcpStream, Option<String>), DialError> {
        let key = match pool.ipv6_select {
            Ipv6Select::PerConnection => {
                self.seq.set(self.seq.get().wrapping_add(1));
                egress::mix(self.seq.get() ^ (self.epoch.elapsed().as_nanos() as u64))
            }
            _ => egress::sticky_key(&ctx.user, Some(ctx.client.ip())),
        };
        let now = self.now_ms();
        let plan = {
            let cd = self.cooldown.borrow();
            egress::plan(
                pool,
                egressd_policy::meta::canonical_ip(dst.ip()),
                key,
                |a| cd.is_down(a, now),
            )
        };
        let mut why = if plan.attempts.is_empty() {
            format!(
                "pool \"{}\" has no usable {} address",
                pool.name,
                if dst.is_ipv4() { "IPv4" } else { "IPv6" }
            )
        } else {
            String::new()
        };
        for addr in plan.attempts {
            let spec = SourceSpec {
                addr: Some(addr),
                ipv6: addr.is_ipv6(),
                interface: pool.interface.clone(),
                mark: pool.mark,
            };
            match self.dial_from(&spec, dst, timeout).await {
                Ok(s) => return Ok((s, None)),
                Err(e) if is_local_error(&e) => {
                    tracing::warn!(pool = %pool.name, %addr, error = %e, "egress address failed; cooling down and trying the next");
                    self.mark_down(addr);
                    why = format!("{addr}: {e}");
                }
                Err(e) => return Err(DialError::Connect(e)),
            }
        }
        match plan.fallback {
            Fallback::Deny => Err(DialError::NoEgress(why)),
            Fallback::Default => {
                let s = self
                    .dial_from(default_spec, dst, timeout)
                    .await
                    .map_err(DialError::Connect)?;
                Ok((s, Some(why)))
            }
        }
    }
}

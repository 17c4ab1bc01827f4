//! A shard: one glommio executor on one CPU, with its own listeners (SO_REUSEPORT), its own
//! view of the current generation, socket pools, buffers, DNS cache, credential cache and
//! access-log buffer. Nothing here is shared with other shards except the generation pointer.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use egressd_policy::model::{Auth, ListenerProtocol};
use futures_lite::FutureExt;

use crate::accesslog::{Batcher, ConnRecord, LogSink};
use crate::auth::Authenticator;
use crate::dns::{Resolver, ResolverConfig};
use crate::egress::dial::Dialer;
use crate::listen::{Listener, ListenerSpec};
use crate::metrics::{Requests, ShardMetrics, Snapshot};
use crate::relay::BufPool;
use crate::session::{self, Ctx};
use crate::state::{Current, Shared};

/// Prepared sockets kept per egress source and shard.
const SOCKET_POOL_DEPTH: usize = 16;
/// How often a shard looks at the stop flag, flushes its log and refills socket pools.
const TICK: Duration = Duration::from_millis(50);

/// Everything a shard needs to start.
#[derive(Debug)]
pub struct ShardConfig {
    pub id: usize,
    pub shards: usize,
    /// Name, address, protocols and authentication of each `[[listener]]`, in order.
    pub listeners: Vec<(String, SocketAddr, Vec<ListenerProtocol>, Auth)>,
    pub shared: Shared,
    pub resolver: Arc<ResolverConfig>,
    pub stop: Arc<AtomicBool>,
    pub salt: [u8; 32],
    /// The access log's writer thread.
    pub log: LogSink,
    /// Where the metrics reader asks for this shard's counters.
    pub requests: Requests,
}

/// Why a shard could not start.
#[derive(Debug)]
pub enum StartError {
    Epoll(io::Error),
    Bind {
        listener: String,
        addr: SocketAddr,
        error: io::Error,
    },
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Epoll(e) => write!(f, "cannot create the shard's epoll instance: {e}"),
            StartError::Bind {
                listener,
                addr,
                error,
            } if error.kind() == io::ErrorKind::AddrInUse => write!(
                f,
                "listener \"{listener}\" cannot bind {addr}: address in use (another egressd, or another program, listens there)"
            ),
            StartError::Bind {
                listener,
                addr,
                error,
            } => write!(f, "listener \"{listener}\" cannot bind {addr}: {error}"),
        }
    }
}

impl std::error::Error for StartError {}

pub struct Shard {
    id: usize,
    /// What sessions get.
    ctx: Ctx,
    log: Rc<Batcher>,
    metrics: Rc<ShardMetrics>,
    active: Cell<usize>,
    max_active: usize,
    /// Open connections per client address on this shard.
    per_client: RefCell<HashMap<IpAddr, u32>>,
    /// Shards of the process: per-client limits are split over them like `max_connections`.
    shards: usize,
    /// When a refusal for the per-client limit was last reported (one warning per interval).
    per_client_warned: Cell<Option<Instant>>,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("id", &self.id)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// Keeps the active-connection counts right however the task ends.
struct ActiveGuard(Rc<Shard>, Option<IpAddr>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get().saturating_sub(1));
        if let Some(ip) = self.1 {
            let mut map = self.0.per_client.borrow_mut();
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    }
}

/// How often at most a shard warns that it refuses connections over the per-client limit.
const PER_CLIENT_WARN_EVERY: Duration = Duration::from_secs(10);

impl Shard {
    /// Counts a new connection from `ip` against its address's limit (this shard's share of
    /// `max_connections_per_client`); false when the address holds its share already.
    fn admit_client(&self, ip: IpAddr) -> bool {
        let limit = self
            .ctx
            .generation()
            .policy()
            .settings
            .per_client_limit()
            .div_ceil(self.shards as u64);
        let mut map = self.per_client.borrow_mut();
        let n = map.entry(ip).or_insert(0);
        if u64::from(*n) >= limit {
            return false;
        }
        *n += 1;
        true
    }

    fn snapshot(&self) -> Snapshot {
        self.metrics
            .snapshot(self.log.dropped(), self.active.get() as u64)
    }

    /// Periodic work: the log handed on, socket pools topped up, cool-downs and idle upstream
    /// connections expired.
    fn tick(&self) {
        self.log.flush();
        let dialer = &self.ctx.dialer;
        dialer.expire_cooldowns();
        dialer.expire_idle();
        if dialer.sockets.borrow().needs_refill() {
            dialer.refill();
        }
    }
}

/// Runs one shard until the stop flag is set and its tunnels have drained; returns its
/// counters.
pub async fn run(
    cfg: ShardConfig,
    ready: std::sync::mpsc::Sender<Result<usize, StartError>>,
) -> Snapshot {
    let current = Current::new(&cfg.shared);
    let settings = current.get().policy().settings.clone();
    let per_shard = (settings.max_connections as usize).div_ceil(cfg.shards.max(1));
    let readiness = match crate::readiness::Readiness::new() {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(StartError::Epoll(e)));
            return Snapshot::default();
        }
    };
    glommio::spawn_local(readiness.clone().run()).detach();
    let log = Rc::new(Batcher::new(cfg.log.clone()));
    let metrics = Rc::new(ShardMetrics::new(cfg.listeners.len()));
    let report = {
        let (log, metrics) = (log.clone(), metrics.clone());
        Box::new(move |rec: &mut ConnRecord| {
            rec.settle();
            metrics.finished(rec);
            log.write(rec);
        })
    };
    let shard = Rc::new(Shard {
        id: cfg.id,
        ctx: Ctx {
            current,
            dialer: Rc::new(Dialer::new(SOCKET_POOL_DEPTH, readiness.clone())),
            resolver: Resolver::new(cfg.resolver.clone()),
            auth: Authenticator::new(cfg.salt),
            bufs: BufPool::default(),
            report,
        },
        log,
        metrics,
        active: Cell::new(0),
        max_active: per_shard.max(1),
        per_client: RefCell::new(HashMap::new()),
        shards: cfg.shards.max(1),
        per_client_warned: Cell::new(None),
    });
    let mut accepting = Vec::new();
    for (index, (name, addr, protocols, auth)) in cfg.listeners.iter().enumerate() {
        match Listener::bind(*addr, &readiness) {
            Ok(listener) => {
                let spec = Rc::new(ListenerSpec {
                    index,
                    name: name.as_str().into(),
                    local: (!addr.ip().is_unspecified()).then_some(*addr),
                    protocols: protocols.clone(),
                    auth: *auth,
                });
                accepting.push(glommio::spawn_local(accept_loop(
                    shard.clone(),
                    listener,
                    spec,
                )));
            }
            Err(error) => {
                let _ = ready.send(Err(StartError::Bind {
                    listener: name.clone(),
                    addr: *addr,
                    error,
                }));
                return Snapshot::default();
            }
        }
    }
    let _ = ready.send(Ok(cfg.id));
    while !cfg.stop.load(Ordering::Relaxed) {
        glommio::timer::sleep(TICK).await;
        shard.tick();
        cfg.requests.answer(|| shard.snapshot());
    }
    // Stop accepting (dropping the tasks closes the listeners), then drain.
    drop(accepting);
    let drain = shard.ctx.generation().policy().settings.drain_timeout;
    let started = Instant::now();
    tracing::info!(shard = shard.id, active = shard.active.get(), "draining");
    while shard.active.get() > 0 && started.elapsed() < drain {
        glommio::timer::sleep(TICK).await;
        shard.log.flush();
        cfg.requests.answer(|| shard.snapshot());
    }
    if shard.active.get() > 0 {
        tracing::warn!(
            shard = shard.id,
            active = shard.active.get(),
            "drain timeout: closing remaining tunnels"
        );
    }
    shard.log.flush();
    shard.snapshot()
}

/// Connections accepted in a row before the accept loop lets other tasks run.
const ACCEPT_BATCH: u32 = 64;

async fn accept_loop(shard: Rc<Shard>, listener: Listener, spec: Rc<ListenerSpec>) {
    let mut since_yield = 0;
    loop {
        since_yield += 1;
        if since_yield > ACCEPT_BATCH {
            since_yield = 0;
            futures_lite::future::yield_now().await;
        }
        let accepted = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(listener = %spec.name, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if shard.active.get() >= shard.max_active {
            shard.metrics.rejected_limit();
            drop(accepted);
            continue;
        }
        let client = accepted
            .peer
            .map(|p| egressd_policy::meta::canonical_ip(p.ip()));
        if let Some(ip) = client
            && !shard.admit_client(ip)
        {
            let refused = shard.metrics.rejected_per_client();
            if shard
                .per_client_warned
                .get()
                .is_none_or(|t| t.elapsed() >= PER_CLIENT_WARN_EVERY)
            {
                shard.per_client_warned.set(Some(Instant::now()));
                tracing::warn!(shard = shard.id, listener = %spec.name, client = %ip, refused, "client address is at max_connections_per_client; refusing its new connections");
            }
            drop(accepted);
            continue;
        }
        shard.metrics.accepted(spec.index);
        shard.active.set(shard.active.get() + 1);
        let guard = ActiveGuard(shard.clone(), client);
        let (shard, spec) = (shard.clone(), spec.clone());
        let fut = async move {
            let _guard = guard;
            let task = AssertUnwindSafe(session::handle(&shard.ctx, accepted, &spec));
            match task.catch_unwind().await {
                Ok(Some(mut rec)) => (shard.ctx.report)(&mut rec),
                Ok(None) => {}
                Err(panic) => {
                    shard.metrics.panicked();
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    tracing::error!(shard = shard.id, listener = %spec.name, panic = %what, "connection task panicked; the shard keeps serving");
                }
            }
        };
        glommio::spawn_local(fut).detach();
    }
}

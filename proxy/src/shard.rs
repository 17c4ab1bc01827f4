//! A shard: one glommio executor on one CPU, with its own listeners (SO_REUSEPORT), its own
//! view of the current generation, socket pools, buffers, DNS cache, credential cache and
//! access-log buffer. Nothing here is shared with other shards except the generation pointer.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use egressd_policy::model::{Auth, ListenerProtocol};
use futures_lite::FutureExt;

use crate::accesslog::AccessLog;
use crate::auth::Authenticator;
use crate::dns::{Resolver, ResolverConfig};
use crate::egress::dial::Dialer;
use crate::listen::Listener;
use crate::relay::BufPool;
use crate::session;
use crate::state::{GenRef, GenerationCache, Shared};

/// Prepared sockets kept per egress source and shard.
const SOCKET_POOL_DEPTH: usize = 16;
/// How often a shard looks at the stop flag, flushes its log and refills socket pools.
const TICK: Duration = Duration::from_millis(50);

/// A listener as bound at start (listener changes need a restart).
#[derive(Debug, Clone)]
pub struct ListenerSpec {
    pub name: Rc<str>,
    /// The bound address when it names one address (what clients reached); for an
    /// unspecified address each connection asks the kernel.
    pub local: Option<SocketAddr>,
    pub protocols: Vec<ListenerProtocol>,
    pub auth: Auth,
}

/// Counters of one shard.
#[derive(Debug, Default)]
pub struct Counters {
    pub accepted: Cell<u64>,
    pub rejected_limit: Cell<u64>,
    /// Refused because the client's address held `max_connections_per_client` already.
    pub rejected_per_client: Cell<u64>,
    pub panics: Cell<u64>,
    pub tls_failures: Cell<u64>,
}

pub struct Shard {
    pub id: usize,
    generation: RefCell<GenerationCache>,
    /// The current generation wrapped once per shard, handed to connections.
    local: RefCell<GenRef>,
    pub dialer: Rc<Dialer>,
    pub bufs: BufPool,
    /// Tunnel sockets' readiness from the shard's epoll instance.
    pub readiness: Rc<crate::readiness::Readiness>,
    pub auth: Authenticator,
    pub resolver: Resolver,
    pub log: AccessLog,
    pub active: Cell<usize>,
    pub max_active: usize,
    /// Open connections per client address on this shard.
    per_client: RefCell<HashMap<IpAddr, u32>>,
    /// Shards of the process: per-client limits are split over them like `max_connections`.
    shards: usize,
    /// When a refusal for the per-client limit was last reported (one warning per interval).
    per_client_warned: Cell<Option<Instant>>,
    pub counters: Counters,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("id", &self.id)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl Shard {
    /// The current generation (one pointer comparison unless a reload happened).
    pub fn current(&self) -> GenRef {
        let mut cache = self.generation.borrow_mut();
        let latest = cache.load();
        let mut local = self.local.borrow_mut();
        if !Arc::ptr_eq(&local, latest) {
            *local = Rc::new(latest.clone());
        }
        local.clone()
    }
}

/// Everything a shard needs to start.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    pub id: usize,
    pub shards: usize,
    pub listeners: Vec<(String, SocketAddr, Vec<ListenerProtocol>, Auth)>,
    pub shared: Shared,
    pub resolver: Arc<ResolverConfig>,
    pub stop: Arc<AtomicBool>,
    pub salt: [u8; 32],
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
            .current()
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
}

/// Runs one shard until the stop flag is set and its tunnels have drained.
pub async fn run(cfg: ShardConfig, ready: std::sync::mpsc::Sender<Result<usize, String>>) {
    let generation = cfg.shared.load_full();
    let settings = generation.policy().settings.clone();
    let per_shard = (settings.max_connections as usize).div_ceil(cfg.shards.max(1));
    let readiness = match crate::readiness::Readiness::new() {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(format!(
                "cannot create the shard's epoll instance: {e}"
            )));
            return;
        }
    };
    glommio::spawn_local(readiness.clone().run()).detach();
    let shard = Rc::new(Shard {
        id: cfg.id,
        generation: RefCell::new(arc_swap::Cache::new(cfg.shared.clone())),
        local: RefCell::new(Rc::new(generation.clone())),
        dialer: Rc::new(Dialer::new(SOCKET_POOL_DEPTH, readiness.clone())),
        bufs: BufPool::default(),
        readiness,
        auth: Authenticator::new(cfg.salt),
        resolver: Resolver::new(cfg.resolver.clone()),
        log: AccessLog::stdout(),
        active: Cell::new(0),
        max_active: per_shard.max(1),
        per_client: RefCell::new(HashMap::new()),
        shards: cfg.shards.max(1),
        per_client_warned: Cell::new(None),
        counters: Counters::default(),
    });
    let mut accepting = Vec::new();
    for (name, addr, protocols, auth) in &cfg.listeners {
        match Listener::bind(*addr, &shard.readiness) {
            Ok(listener) => {
                let spec = Rc::new(ListenerSpec {
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
            Err(e) => {
                let _ = ready.send(Err(format!("listener \"{name}\" cannot bind {addr}: {e}")));
                return;
            }
        }
    }
    let _ = ready.send(Ok(cfg.id));
    while !cfg.stop.load(Ordering::Relaxed) {
        glommio::timer::sleep(TICK).await;
        shard.log.flush();
        shard.dialer.expire_cooldowns();
        shard.dialer.expire_idle();
        if shard.dialer.sockets.borrow().needs_refill() {
            shard.dialer.refill();
        }
    }
    // Stop accepting (dropping the tasks closes the listeners), then drain.
    drop(accepting);
    let drain = shard.current().policy().settings.drain_timeout;
    let started = Instant::now();
    tracing::info!(shard = shard.id, active = shard.active.get(), "draining");
    while shard.active.get() > 0 && started.elapsed() < drain {
        glommio::timer::sleep(TICK).await;
        shard.log.flush();
    }
    if shard.active.get() > 0 {
        tracing::warn!(
            shard = shard.id,
            active = shard.active.get(),
            "drain timeout: closing remaining tunnels"
        );
    }
    shard.log.flush();
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
            shard
                .counters
                .rejected_limit
                .set(shard.counters.rejected_limit.get() + 1);
            drop(accepted);
            continue;
        }
        let client = accepted
            .peer
            .map(|p| egressd_policy::meta::canonical_ip(p.ip()));
        if let Some(ip) = client
            && !shard.admit_client(ip)
        {
            let c = &shard.counters.rejected_per_client;
            c.set(c.get() + 1);
            if shard
                .per_client_warned
                .get()
                .is_none_or(|t| t.elapsed() >= PER_CLIENT_WARN_EVERY)
            {
                shard.per_client_warned.set(Some(Instant::now()));
                tracing::warn!(shard = shard.id, listener = %spec.name, client = %ip, refused = c.get(), "client address is at max_connections_per_client; refusing its new connections");
            }
            drop(accepted);
            continue;
        }
        shard
            .counters
            .accepted
            .set(shard.counters.accepted.get() + 1);
        shard.active.set(shard.active.get() + 1);
        let guard = ActiveGuard(shard.clone(), client);
        let (shard, spec) = (shard.clone(), spec.clone());
        let fut = async move {
            let _guard = guard;
            let task = AssertUnwindSafe(session::handle(shard.clone(), accepted, spec.clone()));
            if let Err(panic) = task.catch_unwind().await {
                shard.counters.panics.set(shard.counters.panics.get() + 1);
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(shard = shard.id, listener = %spec.name, panic = %what, "connection task panicked; the shard keeps serving");
            }
        };
        glommio::spawn_local(fut).detach();
    }
}

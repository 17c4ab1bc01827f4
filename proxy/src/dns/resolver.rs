//! The per-shard resolver: /etc/hosts, then the cache, then the name servers, never blocking.
//!
//! A lookup expands the host through the search list and, for each candidate name, asks for A
//! and AAAA at the same time; the first name that yields any address wins. Each question is
//! answered from the cache when fresh, else joins an identical question already in flight on
//! this shard, else goes to the name servers in resolv.conf order for `attempts` rounds, with a
//! fresh socket and a fresh random id per attempt and a TCP retry when the UDP reply is
//! truncated. Results are cached by TTL, failures (timeouts, server errors) are not.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use futures_lite::future;
use hickory_proto::rr::Name;
use rand::rngs::{StdRng, SysRng};
use rand::{Rng as _, SeedableRng as _};

use super::cache::{Cache, CacheKey, Cached, DEFAULT_CAPACITY};
use super::inflight::{Inflight, Join};
use super::message::{self, Reply};
use super::{DnsError, Family, Lookup, ResolverConfig, search, transport};

/// Resolves host names on one shard. Not `Send`: each shard builds its own from the shared
/// configuration, so the cache and the query bookkeeping need no locks.
pub struct Resolver {
    config: Arc<ResolverConfig>,
    cache: RefCell<Cache>,
    inflight: Inflight<CacheKey, Result<Cached, DnsError>>,
    ids: QueryIds,
    /// Where the next query starts in the server list when `rotate` is set.
    rotation: Cell<usize>,
    clock: Clock,
}

impl Resolver {
    /// A resolver whose cache holds up to 10,000 (name, family) answers.
    pub fn new(config: Arc<ResolverConfig>) -> Self {
        Self::with_cache_capacity(config, DEFAULT_CAPACITY)
    }

    /// A resolver whose cache holds at most `capacity` (name, family) answers.
    pub fn with_cache_capacity(config: Arc<ResolverConfig>, capacity: usize) -> Self {
        Resolver {
            config,
            cache: RefCell::new(Cache::new(capacity)),
            inflight: Inflight::new(),
            ids: QueryIds::new(),
            rotation: Cell::new(0),
            clock: Clock::System,
        }
    }

    /// The IPv4 and IPv6 addresses of `host`. An IP literal comes back as itself; a name listed
    /// in /etc/hosts is answered from there without a query. Otherwise at least one family has
    /// an address on success: a family whose query failed while the other answered is simply
    /// empty.
    pub async fn lookup(&self, host: &str) -> Result<Lookup, DnsError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Lookup::from(ip));
        }
        if let Some(listed) = self.config.hosts.get(host) {
            return Ok(listed.clone());
        }
        let names = search::query_names(host, &self.config.search, self.config.ndots)?;
        let mut failure = None;
        for name in &names {
            let (v4, v6) =
                future::zip(self.query(name, Family::V4), self.query(name, Family::V6)).await;
            let mut found = Lookup::default();
            for addrs in [&v4, &v6].into_iter().filter_map(|r| match r {
                Ok(Cached::Addrs(addrs)) => Some(addrs),
                _ => None,
            }) {
                addrs.iter().for_each(|&ip| found.push(ip));
            }
            if !found.is_empty() {
                return Ok(found);
            }
            let errors: Vec<DnsError> = [v4, v6].into_iter().filter_map(Result::err).collect();
            if let Some(stop) = errors.iter().find(|e| e.stops_search()) {
                return Err(stop.clone());
            }
            // Both negative, or a server failure: like glibc, go on to the next candidate but
            // remember the failure, which explains a final "not found" better than NXDOMAIN.
            if let Some(error) = errors.into_iter().next() {
                failure = Some(error);
            }
        }
        Err(failure.unwrap_or(DnsError::NotFound))
    }

    /// One (name, family) question: cache, else a query already in flight, else the network.
    async fn query(&self, name: &Name, family: Family) -> Result<Cached, DnsError> {
        let key = CacheKey {
            name: name.clone(),
            family,
        };
        loop {
            let hit = self.cache.borrow_mut().get(&key, self.clock.now());
            if let Some(hit) = hit {
                return Ok(hit);
            }
            match self.inflight.join(key.clone()) {
                Join::Leader(leader) => {
                    let result = self.ask_servers(name, family).await;
                    let result = self.remember(key, result);
                    leader.finish(result.clone());
                    return result;
                }
                Join::Follower(follower) => {
                    if let Some(result) = follower.await {
                        return result;
                    }
                    // The leader's lookup was dropped midway: look again, maybe lead this time.
                }
            }
        }
    }

    /// Caches what the servers said and turns it into the shared form.
    fn remember(&self, key: CacheKey, result: Result<Reply, DnsError>) -> Result<Cached, DnsError> {
        let now = self.clock.now();
        let mut cache = self.cache.borrow_mut();
        match result? {
            Reply::Addrs { addrs, ttl } => {
                cache.insert_positive(key, addrs.clone(), ttl, now);
                Ok(Cached::Addrs(addrs))
            }
            Reply::Negative { soa_ttl } => {
                cache.insert_negative(key, soa_ttl, now);
                Ok(Cached::Negative)
            }
            Reply::ServerFailure { rcode } => Err(DnsError::ServerFailure { rcode }),
            Reply::Truncated => Err(DnsError::Malformed),
        }
    }

    /// Asks the configured servers in order, `attempts` rounds, until one gives an answer
    /// (addresses or a negative). Server failures and silence move on to the next server.
    async fn ask_servers(&self, name: &Name, family: Family) -> Result<Reply, DnsError> {
        let servers = &self.config.nameservers;
        if servers.is_empty() {
            return Err(DnsError::Io(io::Error::new(
                io::ErrorKind::NotFound,
                "no name servers configured",
            )));
        }
        let first = if self.config.rotate {
            let next = self.rotation.get() % servers.len();
            self.rotation.set(next + 1);
            next
        } else {
            0
        };
        let mut last_error = DnsError::Timeout;
        for _round in 0..self.config.attempts.max(1) {
            for offset in 0..servers.len() {
                let server = servers[(first + offset) % servers.len()];
                let error = match self.ask(server, name, family).await {
                    Ok(reply @ (Reply::Addrs { .. } | Reply::Negative { .. })) => return Ok(reply),
                    Ok(Reply::ServerFailure { rcode }) => DnsError::ServerFailure { rcode },
                    Ok(Reply::Truncated) => DnsError::Malformed,
                    Err(DnsError::InvalidName) => return Err(DnsError::InvalidName),
                    Err(error) => error,
                };
                tracing::debug!(%server, %name, ?family, %error, "DNS query failed");
                last_error = error;
            }
        }
        Err(last_error)
    }

    /// One attempt at one server: UDP, then TCP if the UDP reply was truncated.
    async fn ask(
        &self,
        server: SocketAddr,
        name: &Name,
        family: Family,
    ) -> Result<Reply, DnsError> {
        let id = self.ids.next();
        let query = message::build_query(id, name, family, self.config.edns0)?;
        let judge = |bytes: &[u8]| message::parse_reply(bytes, id, name, family);
        let timeout = self.config.timeout;
        match transport::udp_exchange(server, &query, timeout, &judge).await? {
            Reply::Truncated => {
                match transport::tcp_exchange(server, &query, timeout, &judge).await? {
                    // TCP has no size limit to hit; a truncated reply there is a broken server.
                    Reply::Truncated => Err(DnsError::Malformed),
                    reply => Ok(reply),
                }
            }
            reply => Ok(reply),
        }
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("nameservers", &self.config.nameservers)
            .field("cached", &self.cache.borrow().len())
            .field("in_flight", &self.inflight.len())
            .finish_non_exhaustive()
    }
}

/// Where "now" comes from; tests move a manual clock instead of sleeping through TTLs.
#[derive(Debug)]
enum Clock {
    System,
    #[cfg(test)]
    Manual(std::rc::Rc<Cell<Instant>>),
}

impl Clock {
    fn now(&self) -> Instant {
        match self {
            Clock::System => Instant::now(),
            #[cfg(test)]
            Clock::Manual(now) => now.get(),
        }
    }
}

/// Query ids that an off-path attacker cannot predict (RFC 5452 section 9.2): a ChaCha12
/// generator (`rand`'s `StdRng`) seeded once per resolver, so once per shard, from the OS random
/// source (0.6 µs), then about 7 ns per draw. With the kernel's random ephemeral port per attempt
/// a forger has about 32 bits to guess per query.
struct QueryIds {
    rng: RefCell<StdRng>,
}

impl QueryIds {
    fn new() -> Self {
        // getrandom(2) fails only where the kernel offers no random source at all; the proxy
        // cannot resolve names safely there (and cannot salt its keys either: see `run`).
        let rng = StdRng::try_from_rng(&mut SysRng)
            .expect("the operating system's random source (getrandom) is unavailable");
        QueryIds {
            rng: RefCell::new(rng),
        }
    }

    fn next(&self) -> u16 {
        // The low 16 bits of a uniform u32 are uniform.
        self.rng.borrow_mut().next_u32() as u16
    }
}

impl fmt::Debug for QueryIds {
    /// The generator's state would predict every later id: never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryIds").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;

//! Preparing egress sockets ahead of time, and the per-shard pools that hold them.
//!
//! A prepared socket is created non-blocking with TCP_NODELAY, SO_BINDTODEVICE and SO_MARK
//! when the pool sets them, and bound to its source address with IP_BIND_ADDRESS_NO_PORT (the
//! port is chosen at connect, so idle prepared sockets hold no port). A dial is then a single
//! connect. IPv6 prefix addresses differ per user, so those sockets are bound at dial time
//! with IPV6_FREEBIND (the host routes the whole prefix locally). IPv4 addresses are bound
//! without FREEBIND so that an address the host does not have fails at bind, at once, and the
//! pool fails over instead of sending SYNs from an address nothing answers.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::sockopt;

/// Where a socket leaves from: source address (none = the kernel chooses), device, mark.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceSpec {
    pub addr: Option<IpAddr>,
    pub ipv6: bool,
    pub interface: Option<String>,
    pub mark: Option<u32>,
}

/// Creates and binds a socket for `spec`. Bind errors are the caller's signal that the
/// address is unusable here (a local reason: fail over).
pub fn prepare(spec: &SourceSpec) -> io::Result<Socket> {
    let domain = if spec.ipv6 {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(
        domain,
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_nodelay(true)?;
    if let Some(dev) = &spec.interface {
        socket.bind_device(Some(dev.as_bytes()))?;
    }
    if let Some(mark) = spec.mark {
        socket.set_mark(mark)?;
    }
    if let Some(addr) = spec.addr {
        match addr {
            IpAddr::V4(_) => sockopt::set_bind_address_no_port(&socket, true)?,
            // Needed for addresses inside a locally routed prefix that are not assigned.
            IpAddr::V6(_) => socket.set_freebind_ipv6(true)?,
        }
        socket.bind(&SockAddr::from(SocketAddr::new(addr, 0)))?;
    }
    Ok(socket)
}

/// Sockets prepared ahead, per source. Owned by one shard (no locking).
#[derive(Debug, Default)]
pub struct SocketPools {
    pools: HashMap<SourceSpec, Vec<Socket>>,
    depth: usize,
}

impl SocketPools {
    pub fn new(depth: usize) -> Self {
        SocketPools {
            pools: HashMap::new(),
            depth,
        }
    }

    /// A prepared socket for `spec`: from the pool if one is waiting, else made now.
    pub fn take(&mut self, spec: &SourceSpec) -> io::Result<Socket> {
        match self.pools.get_mut(spec).and_then(Vec::pop) {
            Some(s) => Ok(s),
            None => {
                let s = prepare(spec)?;
                // Remember the source so the refill task keeps a few ready from now on, except
                // IPv6 prefix addresses: they differ per user, and pooling each would hold
                // sockets for every user ever seen.
                if !matches!(spec.addr, Some(IpAddr::V6(_))) {
                    self.pools.entry(spec.clone()).or_default();
                }
                Ok(s)
            }
        }
    }

    /// Tops every known pool up to its depth. Returns sources that failed to prepare (their
    /// addresses are unusable: the caller cools them down) and forgets those pools.
    pub fn refill(&mut self) -> Vec<(SourceSpec, io::Error)> {
        let mut failed = Vec::new();
        for (spec, pool) in &mut self.pools {
            while pool.len() < self.depth {
                match prepare(spec) {
                    Ok(s) => pool.push(s),
                    Err(e) => {
                        failed.push((spec.clone(), e));
                        break;
                    }
                }
            }
        }
        for (spec, _) in &failed {
            self.pools.remove(spec);
        }
        failed
    }

    #[cfg(test)]
    fn ready(&self) -> usize {
        self.pools.values().map(Vec::len).sum()
    }

    pub fn needs_refill(&self) -> bool {
        self.pools.values().any(|p| p.len() < self.depth)
    }
}

/// Whether a dial error is the egress side's fault (this source address cannot be used here),
/// as opposed to the destination's: only local errors fail over to the next address.
pub fn is_local_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EADDRNOTAVAIL
                | libc::EADDRINUSE
                | libc::ENETUNREACH
                | libc::ENODEV
                | libc::EINVAL
                | libc::EPERM
                | libc::EACCES
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(addr: &str) -> SourceSpec {
        let addr: IpAddr = addr.parse().unwrap();
        SourceSpec {
            addr: Some(addr),
            ipv6: addr.is_ipv6(),
            interface: None,
            mark: None,
        }
    }

    #[test]
    fn binds_without_a_port() {
        let s = prepare(&spec("127.0.0.2")).unwrap();
        let local = s.local_addr().unwrap().as_socket().unwrap();
        assert_eq!(local, "127.0.0.2:0".parse().unwrap());
    }

    #[test]
    fn an_address_the_host_lacks_fails_at_bind_as_a_local_error() {
        let e = prepare(&spec("192.0.2.1")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EADDRNOTAVAIL));
        assert!(is_local_error(&e));
    }

    #[test]
    fn ipv6_prefix_addresses_are_not_pooled() {
        let mut pools = SocketPools::new(3);
        let v6 = SourceSpec {
            addr: Some("::1".parse().unwrap()),
            ipv6: true,
            interface: None,
            mark: None,
        };
        pools.take(&v6).unwrap();
        assert!(!pools.needs_refill());
        assert_eq!(pools.ready(), 0);
    }

    #[test]
    fn pools_refill_and_report_bad_sources() {
        let mut pools = SocketPools::new(3);
        pools.take(&spec("127.0.0.2")).unwrap();
        assert!(pools.needs_refill());
        assert!(pools.refill().is_empty());
        assert_eq!(pools.ready(), 3);
        pools.take(&spec("127.0.0.2")).unwrap();
        assert_eq!(pools.ready(), 2);
        pools.pools.insert(spec("192.0.2.1"), Vec::new());
        let failed = pools.refill();
        assert_eq!(failed.len(), 1);
        assert_eq!(pools.ready(), 3);
    }
}

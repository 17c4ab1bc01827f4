//! Pool addresses this host does not have. An IPv4 pool address is bound without
//! IP_FREEBIND (`egress::socket`), so one the host lacks fails every connection that picks it
//! and the pool fails over, at run time; an IPv6 address written without a prefix is bound
//! with IPV6_FREEBIND and works only if the host routes it locally. Both are worth a warning
//! before the first connection: `check` prints it at the address's `file:line:col`, `run`
//! logs it at start-up and after a reload, and neither refuses (the address may be added
//! later, or be routed locally).

use std::net::{IpAddr, UdpSocket};

use egressd_policy::diag::Loc;
use egressd_policy::named::Named;

/// A pool address binding says this host does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unassigned {
    pub pool: String,
    pub addr: IpAddr,
    pub loc: Option<Loc>,
}

impl Unassigned {
    /// The warning, in one line.
    pub fn message(&self) -> String {
        match self.addr {
            IpAddr::V4(addr) => format!(
                "pool \"{}\": {addr} is not an address of this host: connections through it \
                 will fail over to the pool's next address or its fallback (assign it, or \
                 remove it)",
                self.pool
            ),
            IpAddr::V6(addr) => format!(
                "pool \"{}\": {addr} is not an address of this host: unless the host routes it \
                 locally (ip -6 route add local {addr}/128 dev lo), nothing answers connections \
                 made from it",
                self.pool
            ),
        }
    }
}

/// The single pool addresses of `named` that this host does not have, in file order.
pub fn unassigned(named: &Named) -> Vec<Unassigned> {
    named
        .addresses
        .iter()
        .filter(|a| !is_local(a.addr))
        .map(|a| Unassigned {
            pool: a.pool.clone(),
            addr: a.addr,
            loc: a.loc,
        })
        .collect()
}

/// Whether a socket can be bound to `addr` without IP_FREEBIND. Errors other than "not
/// here" (EADDRNOTAVAIL, or no IPv6 at all) say nothing about the address: assumed local.
fn is_local(addr: IpAddr) -> bool {
    match UdpSocket::bind((addr, 0)) {
        Ok(_) => true,
        Err(e) => !matches!(
            e.raw_os_error(),
            Some(libc::EADDRNOTAVAIL | libc::EAFNOSUPPORT)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use egressd_policy::named::NamedAddress;

    fn named(addrs: &[&str]) -> Named {
        Named {
            files: Vec::new(),
            addresses: addrs
                .iter()
                .map(|a| NamedAddress {
                    pool: "p".into(),
                    addr: a.parse().unwrap(),
                    loc: None,
                })
                .collect(),
        }
    }

    #[test]
    fn loopback_addresses_are_local_and_documentation_addresses_are_not() {
        // All of 127.0.0.0/8 is local on Linux, not only 127.0.0.1.
        let found = unassigned(&named(&["127.0.0.1", "127.0.0.2", "203.0.113.77", "::1"]));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].addr, "203.0.113.77".parse::<IpAddr>().unwrap());
        assert!(
            found[0]
                .message()
                .starts_with("pool \"p\": 203.0.113.77 is not an address of this host"),
            "{}",
            found[0].message()
        );
    }

    #[test]
    fn an_ipv6_address_nobody_has_is_reported_with_the_route_that_would_serve_it() {
        let found = unassigned(&named(&["2001:db8:77::1"]));
        assert_eq!(found.len(), 1);
        assert!(
            found[0]
                .message()
                .contains("ip -6 route add local 2001:db8:77::1/128 dev lo"),
            "{}",
            found[0].message()
        );
    }
}

//! Host name resolution that never blocks a shard.
//!
//! A control thread reads /etc/hosts and /etc/resolv.conf once into a [`ResolverConfig`] and
//! shares it as an `Arc`; every shard owns a [`Resolver`] with its own TTL cache and speaks DNS
//! itself over glommio UDP/TCP sockets, so no lookup ever parks the executor thread the way
//! `getaddrinfo` would. The parsing, message, search-list and cache code is pure and tested
//! without sockets; only `transport` touches the runtime.
#![allow(dead_code)] // wired into dialing by the integrator

mod cache;
mod config;
mod error;
pub mod hosts;
mod inflight;
mod message;
pub mod resolv_conf;
mod resolver;
mod search;
#[cfg(test)]
pub(crate) mod test_server;
mod transport;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use config::ResolverConfig;
pub use error::DnsError;
pub use resolver::Resolver;

/// The addresses a host name resolved to, each family in the order the source gave them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookup {
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
}

impl Lookup {
    /// True when neither family has an address.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Adds an address to its family unless it is already there; duplicates would only make
    /// Happy Eyeballs dial the same address twice.
    pub(crate) fn push(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => {
                if !self.v4.contains(&v4) {
                    self.v4.push(v4);
                }
            }
            IpAddr::V6(v6) => {
                if !self.v6.contains(&v6) {
                    self.v6.push(v6);
                }
            }
        }
    }
}

impl From<IpAddr> for Lookup {
    fn from(ip: IpAddr) -> Self {
        let mut lookup = Lookup::default();
        lookup.push(ip);
        lookup
    }
}

/// Which address record a query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Family {
    V4,
    V6,
}

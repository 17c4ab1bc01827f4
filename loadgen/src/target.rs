//! The destination a run asks the proxy for: an IP literal or a host name, and a port.
//!
//! It is kept symbolic because SOCKS5 and HTTP send host names to the proxy unresolved; only
//! `--proto direct` resolves it, once, before the run.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;

/// The host part of a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

/// `host:port` as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: Host,
    pub port: u16,
}

impl Target {
    /// `host:port` with IPv6 literals bracketed, as HTTP authorities are written.
    pub fn authority(&self) -> String {
        self.to_string()
    }

    /// Resolves the target for a direct connection (blocking; done once, before the run).
    pub fn resolve(&self) -> io::Result<SocketAddr> {
        match &self.host {
            Host::Ip(ip) => Ok(SocketAddr::new(*ip, self.port)),
            Host::Name(name) => (name.as_str(), self.port)
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| io::Error::other(format!("{name} has no address"))),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}:{}", self.port),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

impl FromStr for Target {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Target {
                host: Host::Ip(addr.ip()),
                port: addr.port(),
            });
        }
        let bad = || format!("`{text}` is not HOST:PORT");
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let valid_name = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !valid_name {
            return Err(bad());
        }
        Ok(Target {
            host: Host::Name(host.to_owned()),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_literals_and_names() {
        let v4: Target = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(v4.host, Host::Ip("127.0.0.1".parse().unwrap()));
        assert_eq!(v4.authority(), "127.0.0.1:8080");
        let v6: Target = "[::1]:443".parse().unwrap();
        assert_eq!(v6.authority(), "[::1]:443");
        let name: Target = "sink.example:80".parse().unwrap();
        assert_eq!(name.host, Host::Name("sink.example".into()));
        assert_eq!(name.port, 80);
    }

    #[test]
    fn rejects_malformed_targets() {
        for bad in ["", "host", "host:", ":80", "host:99999", "a b:80", "::1:80"] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
    }
}

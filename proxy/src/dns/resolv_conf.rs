//! /etc/resolv.conf: which name servers to ask, which search suffixes to try, and how patiently.
//!
//! Follows glibc's reader so egressd resolves the way every other program on the host does:
//! at most three `nameserver` lines, `domain` and `search` replace each other (last one wins),
//! `options` accumulate, numbers are capped at glibc's limits, unknown keywords and options are
//! ignored, and with no usable `nameserver` the local one (127.0.0.1:53) is used.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV6};
use std::time::Duration;

/// glibc's MAXNS.
const MAX_NAMESERVERS: usize = 3;
/// glibc caps ndots at 15, timeout at RES_MAXRETRANS (30 s) and attempts at RES_MAXRETRY (5).
const MAX_NDOTS: u8 = 15;
const MAX_TIMEOUT_SECS: u64 = 30;
const MAX_ATTEMPTS: u8 = 5;
const DNS_PORT: u16 = 53;

/// The settings read from resolv.conf, with glibc's defaults for what the file leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<SocketAddr>,
    /// Search suffixes, lower-case, without a trailing dot.
    pub search: Vec<String>,
    pub ndots: u8,
    pub timeout: Duration,
    pub attempts: u8,
    pub rotate: bool,
    pub edns0: bool,
}

impl Default for ResolvConf {
    fn default() -> Self {
        ResolvConf {
            nameservers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            attempts: 2,
            rotate: false,
            edns0: false,
        }
    }
}

impl ResolvConf {
    /// Parses the text of a resolv.conf file. Never fails: like glibc, lines it does not
    /// understand are skipped.
    pub fn parse(text: &str) -> Self {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            // glibc treats `;` and `#` as comment starts; cutting there also drops trailing
            // comments after an address.
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut fields = line.split_ascii_whitespace();
            match fields.next() {
                Some("nameserver") => {
                    if conf.nameservers.len() < MAX_NAMESERVERS
                        && let Some(addr) = fields.next().and_then(parse_nameserver)
                    {
                        conf.nameservers.push(addr);
                    }
                }
                Some("domain") => {
                    conf.search = fields.next().into_iter().filter_map(suffix).collect();
                }
                Some("search") => conf.search = fields.filter_map(suffix).collect(),
                Some("options") => fields.for_each(|option| conf.apply_option(option)),
                _ => {}
            }
        }
        if conf.nameservers.is_empty() {
            conf.nameservers
                .push(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DNS_PORT));
        }
        conf
    }

    /// Applies a whitespace-separated option list, as found after `options` or in the
    /// `RES_OPTIONS` environment variable.
    pub fn apply_options(&mut self, options: &str) {
        options
            .split_ascii_whitespace()
            .for_each(|option| self.apply_option(option));
    }

    fn apply_option(&mut self, option: &str) {
        let (name, value) = match option.split_once(':') {
            Some((name, value)) => (name, value.parse::<u64>().ok()),
            None => (option, None),
        };
        match (name, value) {
            ("ndots", Some(n)) => {
                self.ndots = u8::try_from(n).map_or(MAX_NDOTS, |n| n.min(MAX_NDOTS))
            }
            // A zero timeout would never wait and zero attempts would never ask; glibc ends up
            // using one for both.
            ("timeout", Some(n)) => {
                self.timeout = Duration::from_secs(n.clamp(1, MAX_TIMEOUT_SECS));
            }
            ("attempts", Some(n)) => {
                self.attempts = u8::try_from(n).map_or(MAX_ATTEMPTS, |n| n.clamp(1, MAX_ATTEMPTS));
            }
            ("rotate", None) => self.rotate = true,
            ("edns0", None) => self.edns0 = true,
            _ => {}
        }
    }
}

/// A `nameserver` address. IPv6 may carry a numeric `%scope`; an interface name there would
/// need a system call to translate, which this pure parser does not make, so such a line is
/// skipped.
fn parse_nameserver(text: &str) -> Option<SocketAddr> {
    if let Some((addr, scope)) = text.split_once('%') {
        let addr = addr.parse().ok()?;
        let scope = scope.parse().ok()?;
        return Some(SocketAddr::V6(SocketAddrV6::new(addr, DNS_PORT, 0, scope)));
    }
    text.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
}

/// A search suffix in canonical form, or `None` for the root or something that is not a name.
pub(crate) fn suffix(text: &str) -> Option<String> {
    let text = text.strip_suffix('.').unwrap_or(text);
    super::search::is_valid_name(text).then(|| text.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_file() {
        let conf = ResolvConf::parse(
            "# generated by NetworkManager\n\
             ; another comment\n\
             nameserver 192.0.2.1 # primary\n\
             nameserver 2001:db8::53\n\
             nameserver fe80::1%2\n\
             nameserver 192.0.2.4\n\
             search Corp.Example. example.net\n\
             options ndots:2 timeout:3 attempts:4 rotate edns0 no-check-names inet6\n",
        );
        assert_eq!(
            conf.nameservers,
            vec![
                "192.0.2.1:53".parse().unwrap(),
                "[2001:db8::53]:53".parse().unwrap(),
                SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 53, 0, 2)),
            ]
        );
        assert_eq!(conf.search, vec!["corp.example", "example.net"]);
        assert_eq!(conf.ndots, 2);
        assert_eq!(conf.timeout, Duration::from_secs(3));
        assert_eq!(conf.attempts, 4);
        assert!(conf.rotate);
        assert!(conf.edns0);
    }

    #[test]
    fn defaults_when_empty() {
        let conf = ResolvConf::parse("");
        assert_eq!(conf.nameservers, vec!["127.0.0.1:53".parse().unwrap()]);
        assert!(conf.search.is_empty());
        assert_eq!(conf.ndots, 1);
        assert_eq!(conf.timeout, Duration::from_secs(5));
        assert_eq!(conf.attempts, 2);
        assert!(!conf.rotate);
    }

    #[test]
    fn domain_and_search_replace_each_other() {
        let conf = ResolvConf::parse("search a.example b.example\ndomain c.example\n");
        assert_eq!(conf.search, vec!["c.example"]);
        let conf = ResolvConf::parse("domain c.example\nsearch a.example b.example\n");
        assert_eq!(conf.search, vec!["a.example", "b.example"]);
        let conf = ResolvConf::parse("search . bad..name ok.example\n");
        assert_eq!(conf.search, vec!["ok.example"]);
    }

    #[test]
    fn garbage_and_limits() {
        let conf = ResolvConf::parse(
            "nameserver\n\
             nameserver not-an-ip\n\
             nameserver fe80::1%eth0\n\
             nameservers 192.0.2.9\n\
             \u{0}\u{ff}garbage\n\
             options ndots:99 timeout:0 attempts:100 ndots:x unknown:5\n\
             options timeout:1000\n",
        );
        assert_eq!(conf.nameservers, vec!["127.0.0.1:53".parse().unwrap()]);
        assert_eq!(conf.ndots, 15);
        assert_eq!(conf.timeout, Duration::from_secs(30));
        assert_eq!(conf.attempts, 5);
        let mut conf = ResolvConf::parse("options timeout:0 attempts:0");
        assert_eq!(conf.timeout, Duration::from_secs(1));
        assert_eq!(conf.attempts, 1);
        conf.apply_options("ndots:3 rotate");
        assert_eq!(conf.ndots, 3);
        assert!(conf.rotate);
    }
}

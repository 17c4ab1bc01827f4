//! Everything a shard's resolver needs to know about the host, gathered once on a control thread.
//!
//! Reading files is blocking, so it happens here, before the shards start (and again on reload);
//! shards only ever see the finished `Arc<ResolverConfig>`.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use super::hosts::Hosts;
use super::resolv_conf::{self, ResolvConf};

const HOSTS_PATH: &str = "/etc/hosts";
const RESOLV_CONF_PATH: &str = "/etc/resolv.conf";
const HOSTNAME_PATH: &str = "/proc/sys/kernel/hostname";

/// Resolver settings: the hosts table plus the resolv.conf knobs.
///
/// Fields are public so a caller (and tests) can point the resolver at other name servers; the
/// port in each address is honoured even though resolv.conf itself cannot express one.
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    pub hosts: Hosts,
    /// Asked in order (or round-robin with `rotate`); never empty when built by this module.
    pub nameservers: Vec<SocketAddr>,
    /// Search suffixes, lower-case, without a trailing dot.
    pub search: Vec<String>,
    pub ndots: u8,
    /// How long to wait for one server's answer to one query (UDP; a TCP retry after a
    /// truncated reply gets the same again).
    pub timeout: Duration,
    /// Rounds over the whole server list.
    pub attempts: u8,
    /// Start each query at the next server instead of the first.
    pub rotate: bool,
    /// Advertise a 1232-byte EDNS(0) UDP payload so large answers need TCP less often.
    pub edns0: bool,
}

impl ResolverConfig {
    /// Builds the configuration from the texts of /etc/hosts and /etc/resolv.conf.
    pub fn from_texts(hosts: &str, resolv_conf: &str) -> Self {
        Self::from_parts(Hosts::parse(hosts), ResolvConf::parse(resolv_conf))
    }

    /// Reads /etc/hosts and /etc/resolv.conf, plus the `LOCALDOMAIN` and `RES_OPTIONS`
    /// environment overrides and the host's own domain as the default search suffix, the way
    /// glibc initialises its resolver. A missing file counts as empty, as it does for glibc.
    ///
    /// Blocking file I/O: call it on a control thread, never on a shard.
    pub fn load_system() -> io::Result<Self> {
        let hosts = read_optional(HOSTS_PATH)?;
        let mut conf = ResolvConf::parse(&read_optional(RESOLV_CONF_PATH)?);
        if conf.search.is_empty()
            && let Ok(hostname) = std::fs::read_to_string(HOSTNAME_PATH)
            && let Some((_, domain)) = hostname.trim().split_once('.')
        {
            conf.search = resolv_conf::suffix(domain).into_iter().collect();
        }
        if let Ok(domains) = std::env::var("LOCALDOMAIN") {
            conf.search = domains
                .split_ascii_whitespace()
                .filter_map(resolv_conf::suffix)
                .collect();
        }
        if let Ok(options) = std::env::var("RES_OPTIONS") {
            conf.apply_options(&options);
        }
        Ok(Self::from_parts(Hosts::parse(&hosts), conf))
    }

    fn from_parts(hosts: Hosts, conf: ResolvConf) -> Self {
        ResolverConfig {
            hosts,
            nameservers: conf.nameservers,
            search: conf.search,
            ndots: conf.ndots,
            timeout: conf.timeout,
            attempts: conf.attempts,
            rotate: conf.rotate,
            edns0: conf.edns0,
        }
    }
}

fn read_optional(path: &str) -> io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_texts_combines_both_files() {
        let config = ResolverConfig::from_texts(
            "10.1.1.1 intranet\n",
            "nameserver 192.0.2.53\nsearch corp.example\noptions ndots:2 timeout:1 attempts:3\n",
        );
        assert!(config.hosts.get("INTRANET").is_some());
        assert_eq!(config.nameservers, vec!["192.0.2.53:53".parse().unwrap()]);
        assert_eq!(config.search, vec!["corp.example"]);
        assert_eq!(config.ndots, 2);
        assert_eq!(config.timeout, Duration::from_secs(1));
        assert_eq!(config.attempts, 3);
    }

    #[test]
    fn load_system_reads_this_host() {
        let config = ResolverConfig::load_system().unwrap();
        assert!(!config.nameservers.is_empty());
        assert!(config.attempts >= 1);
    }
}

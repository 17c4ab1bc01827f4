//! What a configuration names outside itself: the files the proxy reads (TLS certificates,
//! keys and client CAs, the geolocation database) and the local addresses it binds (pool
//! addresses), each with where the file says it, when it is known.
//!
//! This crate never looks at files or interfaces; the proxy checks these (`egressd check`,
//! and `egressd run` before it starts) and reports each problem at the key that named it.
//! [`Named::from_spec`] reads them from a configuration as written, so that they can be
//! checked even while the configuration has other errors; [`Named::from_policy`] from a
//! validated policy (a compiled artifact keeps no locations).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::config::spec::{ClientAuth, ConfigSpec};
use crate::diag::Loc;
use crate::model::{ListenerProtocol, Policy};

/// Which key named a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileRole {
    /// `tls.cert` of a listener: the certificate chain (PEM).
    TlsCert,
    /// `tls.key`: the private key (PEM).
    TlsKey,
    /// `tls.client_ca`: the CA certificates client certificates are verified against.
    TlsClientCa,
    /// `[geoip] database`.
    Geoip,
}

impl FileRole {
    /// The key as written in the file.
    pub fn key(self) -> &'static str {
        match self {
            FileRole::TlsCert => "cert",
            FileRole::TlsKey => "key",
            FileRole::TlsClientCa => "client_ca",
            FileRole::Geoip => "database",
        }
    }
}

/// A file the configuration names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedFile {
    pub role: FileRole,
    /// The listener whose `tls` table names it (TLS files only).
    pub listener: Option<String>,
    /// Relative paths already taken from the root configuration's directory.
    pub path: PathBuf,
    /// Where the path is written.
    pub loc: Option<Loc>,
}

/// A single address a pool binds as its source (IPv4 addresses and IPv6 addresses written
/// without a prefix; a prefix is used with IPV6_FREEBIND and need not be assigned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedAddress {
    pub pool: String,
    pub addr: IpAddr,
    pub loc: Option<Loc>,
}

/// Everything a configuration names outside itself, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Named {
    pub files: Vec<NamedFile>,
    pub addresses: Vec<NamedAddress>,
}

impl Named {
    /// From a configuration as written; relative paths are taken from `base`, the root
    /// file's directory, as the validator does. Files a running proxy would not read are left
    /// out: TLS files of a listener that does not speak `https`, and a `client_ca` with
    /// `client_auth = "none"`.
    pub fn from_spec(spec: &ConfigSpec, base: &Path) -> Named {
        let mut named = Named::default();
        for l in &spec.listeners {
            let l = &l.value;
            let (Some(name), Some(tls)) = (&l.name, &l.tls) else {
                continue;
            };
            let https = l
                .protocols
                .as_ref()
                .is_some_and(|p| p.value.iter().any(|p| p.value == ListenerProtocol::Https));
            if !https {
                continue;
            }
            let tls = &tls.value;
            let ca_used = tls
                .client_auth
                .as_ref()
                .is_none_or(|a| a.value != ClientAuth::None);
            let files = [
                (FileRole::TlsCert, tls.cert.as_ref()),
                (FileRole::TlsKey, tls.key.as_ref()),
                (
                    FileRole::TlsClientCa,
                    tls.client_ca.as_ref().filter(|_| ca_used),
                ),
            ];
            for (role, path) in files {
                if let Some(path) = path {
                    named.files.push(NamedFile {
                        role,
                        listener: Some(name.value.clone()),
                        path: base.join(&path.value),
                        loc: Some(path.loc),
                    });
                }
            }
        }
        if let Some(db) = spec.geoip.as_ref().and_then(|g| g.value.database.as_ref()) {
            named.files.push(NamedFile {
                role: FileRole::Geoip,
                listener: None,
                path: base.join(&db.value),
                loc: Some(db.loc),
            });
        }
        for p in &spec.pools {
            let p = &p.value;
            let Some(name) = &p.name else { continue };
            let v4 = p.ipv4.iter().map(|a| (a.value, a.loc));
            let v6 = p
                .ipv6
                .iter()
                .filter(|n| n.value.prefix_len() == n.value.max_prefix_len())
                .map(|n| (n.value.addr(), n.loc));
            for (addr, loc) in v4.chain(v6) {
                named.addresses.push(NamedAddress {
                    pool: name.value.clone(),
                    addr,
                    loc: Some(loc),
                });
            }
        }
        named
    }

    /// From a validated policy (no locations).
    pub fn from_policy(policy: &Policy) -> Named {
        let mut named = Named::default();
        for l in &policy.listeners {
            let Some(tls) = &l.tls else { continue };
            if !l.protocols.contains(&ListenerProtocol::Https) {
                continue;
            }
            let ca = tls
                .client_ca
                .as_ref()
                .filter(|_| tls.client_auth != ClientAuth::None);
            let files = [
                (FileRole::TlsCert, Some(&tls.cert)),
                (FileRole::TlsKey, Some(&tls.key)),
                (FileRole::TlsClientCa, ca),
            ];
            for (role, path) in files {
                if let Some(path) = path {
                    named.files.push(NamedFile {
                        role,
                        listener: Some(l.name.clone()),
                        path: path.clone(),
                        loc: None,
                    });
                }
            }
        }
        if let Some(db) = &policy.geoip {
            named.files.push(NamedFile {
                role: FileRole::Geoip,
                listener: None,
                path: db.clone(),
                loc: None,
            });
        }
        for p in &policy.pools {
            let v4 = p.ipv4.iter().map(|a| IpAddr::V4(*a));
            let v6 = p
                .ipv6
                .iter()
                .filter(|n| n.prefix_len() == 128)
                .map(|n| IpAddr::V6(n.addr()));
            for addr in v4.chain(v6) {
                named.addresses.push(NamedAddress {
                    pool: p.name.clone(),
                    addr,
                    loc: None,
                });
            }
        }
        named
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check_str;

    const CONFIG: &str = r#"
[geoip]
database = "geo/ranges.txt"

[[listener]]
name = "secure"
bind = "127.0.0.1:8443"
protocols = ["https"]
tls = { cert = "tls/a.pem", key = "/abs/a.key", client_ca = "ca.pem" }

[[listener]]
name = "no client certificates"
bind = "127.0.0.1:8444"
protocols = ["https"]
tls = { cert = "b.pem", key = "b.key", client_ca = "unused.pem", client_auth = "none" }

[[pool]]
name = "p"
ipv4 = ["198.51.100.10", "198.51.100.11"]
ipv6 = ["2001:db8::/64", "2001:db8:1::5"]

[[rule]]
name = "all"
action = "egress"
pool = "p"
"#;

    #[test]
    fn files_and_addresses_are_found_where_they_are_written() {
        let checked = check_str("/etc/egressd/main.toml", CONFIG);
        assert!(checked.diags.items.is_empty(), "{}", checked.render());
        let named = &checked.named;
        let files: Vec<String> = named
            .files
            .iter()
            .map(|f| {
                format!(
                    "{} {} {} {}",
                    checked.sources.position(f.loc.unwrap()),
                    f.listener.as_deref().unwrap_or("-"),
                    f.role.key(),
                    f.path.display(),
                )
            })
            .collect();
        assert_eq!(
            files,
            [
                "/etc/egressd/main.toml:9:16 secure cert /etc/egressd/tls/a.pem",
                "/etc/egressd/main.toml:9:35 secure key /abs/a.key",
                "/etc/egressd/main.toml:9:61 secure client_ca /etc/egressd/ca.pem",
                "/etc/egressd/main.toml:15:16 no client certificates cert /etc/egressd/b.pem",
                "/etc/egressd/main.toml:15:31 no client certificates key /etc/egressd/b.key",
                "/etc/egressd/main.toml:3:12 - database /etc/egressd/geo/ranges.txt",
            ]
        );
        let addresses: Vec<String> = named
            .addresses
            .iter()
            .map(|a| {
                format!(
                    "{} {} {}",
                    checked.sources.position(a.loc.unwrap()),
                    a.pool,
                    a.addr
                )
            })
            .collect();
        assert_eq!(
            addresses,
            [
                "/etc/egressd/main.toml:19:9 p 198.51.100.10",
                "/etc/egressd/main.toml:19:26 p 198.51.100.11",
                "/etc/egressd/main.toml:20:26 p 2001:db8:1::5",
            ]
        );
    }

    #[test]
    fn a_validated_policy_names_the_same_things_without_locations() {
        let checked = check_str("/etc/egressd/main.toml", CONFIG);
        let mut from_spec = checked.named.clone();
        for f in &mut from_spec.files {
            f.loc = None;
        }
        for a in &mut from_spec.addresses {
            a.loc = None;
        }
        let policy = checked.policy.unwrap();
        assert_eq!(Named::from_policy(&policy), from_spec);
    }

    #[test]
    fn an_invalid_configuration_still_names_its_files() {
        let checked = check_str(
            "main.toml",
            "[geoip]\ndatabase = \"x.mmdb\"\n[[rule]]\nname = 1\n",
        );
        assert!(checked.policy.is_none());
        assert_eq!(checked.named.files.len(), 1);
        assert_eq!(checked.named.files[0].path, Path::new("x.mmdb"));
    }
}

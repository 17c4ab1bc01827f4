//! What is known about one connection when its egress is decided.

use std::net::IpAddr;

use crate::config::spec::Protocol;
use crate::expr::ast::{ArrayField, Case, Field, IntField, IpField, StrField};

/// The facts a decision is made on. String fields must already be in canonical form (see
/// [`ConnMeta::normalize_host`]); [`Facts::meta`](crate::facts::Facts::meta) builds it, in the
/// proxy once per dialled address.
#[derive(Debug, Clone, Copy)]
pub struct ConnMeta<'a> {
    pub src_ip: Option<IpAddr>,
    pub src_port: u16,
    /// The address being dialled; `None` only when explaining a host name that was not
    /// resolved. Tests on `net.dst.ip` are then false.
    pub dst_ip: Option<IpAddr>,
    pub dst_port: u16,
    /// Lower-case host name without trailing dot; "" when the client gave an IP literal.
    pub host: &'a str,
    pub protocol: Protocol,
    /// Listener name.
    pub endpoint: &'a str,
    /// Lower-case e-mail of the authenticated user, "" when anonymous.
    pub email: &'a str,
    pub name: &'a str,
    pub groups: &'a [String],
    pub posture_passed: &'a [String],
    pub posture_failed: &'a [String],
    /// Upper-case ISO 3166 codes, "" when unknown.
    pub src_country: &'a str,
    pub src_continent: &'a str,
    pub dst_country: &'a str,
    pub dst_continent: &'a str,
}

impl Default for ConnMeta<'_> {
    fn default() -> Self {
        ConnMeta {
            src_ip: None,
            src_port: 0,
            dst_ip: None,
            dst_port: 0,
            host: "",
            protocol: Protocol::Tcp,
            endpoint: "",
            email: "",
            name: "",
            groups: &[],
            posture_passed: &[],
            posture_failed: &[],
            src_country: "",
            src_continent: "",
            dst_country: "",
            dst_continent: "",
        }
    }
}

impl<'a> ConnMeta<'a> {
    /// The canonical form of a host name for [`ConnMeta::host`].
    pub fn normalize_host(host: &str) -> String {
        Case::Lower.apply(host)
    }

    pub fn ip(&self, f: IpField) -> Option<IpAddr> {
        match f {
            IpField::Src => self.src_ip,
            IpField::Dst => self.dst_ip,
        }
        .map(canonical_ip)
    }

    pub fn port(&self, f: IntField) -> u16 {
        match f {
            IntField::SrcPort => self.src_port,
            IntField::DstPort => self.dst_port,
        }
    }

    pub fn str(&self, f: StrField) -> &'a str {
        match f {
            StrField::Host => self.host,
            StrField::Protocol => self.protocol.as_str(),
            StrField::Endpoint => self.endpoint,
            StrField::Email => self.email,
            StrField::Name => self.name,
            StrField::SrcCountry => self.src_country,
            StrField::SrcContinent => self.src_continent,
            StrField::DstCountry => self.dst_country,
            StrField::DstContinent => self.dst_continent,
        }
    }

    /// Calls `f` on each element of an array field until it returns `true`; returns whether
    /// it did. `net.fqdn.domains` is the host and each parent domain, longest first.
    pub fn any_of(&self, field: ArrayField, mut f: impl FnMut(&str) -> bool) -> bool {
        match field {
            ArrayField::Domains => domains(self.host).any(f),
            ArrayField::Groups => self.groups.iter().any(|s| f(s)),
            ArrayField::PosturePassed => self.posture_passed.iter().any(|s| f(s)),
            ArrayField::PostureFailed => self.posture_failed.iter().any(|s| f(s)),
        }
    }

    /// A field's value as text, for explain.
    pub fn describe(&self, field: Field) -> String {
        match field {
            Field::Ip(f) => self.ip(f).map_or("(none)".to_string(), |ip| ip.to_string()),
            Field::Int(f) => self.port(f).to_string(),
            Field::Str(f) => format!("{:?}", self.str(f)),
            Field::Array(f) => {
                let mut items = Vec::new();
                self.any_of(f, |s| {
                    items.push(format!("{s:?}"));
                    false
                });
                format!("[{}]", items.join(", "))
            }
        }
    }
}

/// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are treated as the IPv4 address.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The host and each parent domain: "a.b.c" gives "a.b.c", "b.c", "c". Empty host: nothing.
pub fn domains(host: &str) -> impl Iterator<Item = &str> {
    let mut next = if host.is_empty() { None } else { Some(host) };
    std::iter::from_fn(move || {
        let cur = next?;
        next = cur
            .split_once('.')
            .map(|(_, rest)| rest)
            .filter(|r| !r.is_empty());
        Some(cur)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_walk_up() {
        assert_eq!(
            domains("a.b.example.com").collect::<Vec<_>>(),
            ["a.b.example.com", "b.example.com", "example.com", "com"]
        );
        assert_eq!(domains("").count(), 0);
        assert_eq!(domains("localhost").collect::<Vec<_>>(), ["localhost"]);
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        let ip: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(canonical_ip(ip), "10.1.2.3".parse::<IpAddr>().unwrap());
    }
}

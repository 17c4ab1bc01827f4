//! The /etc/hosts table: static names that win over DNS and are answered without a query.
//!
//! Parsed like glibc's files backend: `#` starts a comment, each line is an address followed by
//! one or more names, names match case-insensitively and a trailing dot is ignored. Every line
//! naming a host contributes its address, in file order, so a name listed with both an IPv4 and
//! an IPv6 address gets both families.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;

use super::Lookup;

/// Host names from /etc/hosts and their addresses.
#[derive(Debug, Clone, Default)]
pub struct Hosts {
    by_name: HashMap<String, Lookup>,
}

impl Hosts {
    /// Parses the text of an /etc/hosts file. Lines that do not start with an address are
    /// skipped, as glibc does; so are IPv6 addresses with a `%zone`, since a zone cannot be
    /// carried in the [`Lookup`] and the address would be undiallable without it.
    pub fn parse(text: &str) -> Self {
        let mut by_name: HashMap<String, Lookup> = HashMap::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default();
            let mut fields = line.split_ascii_whitespace();
            let Some(Ok(ip)) = fields.next().map(str::parse::<IpAddr>) else {
                continue;
            };
            for name in fields {
                let name = normalize(name);
                if name.is_empty() {
                    continue;
                }
                by_name.entry(name.into_owned()).or_default().push(ip);
            }
        }
        Hosts { by_name }
    }

    /// The addresses listed for `name`, matched case-insensitively with any trailing dot
    /// ignored.
    pub fn get(&self, name: &str) -> Option<&Lookup> {
        self.by_name.get(normalize(name).as_ref())
    }

    /// Number of distinct names.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Lower-cases and drops one trailing dot; borrows when the name is already in that form, which
/// is the usual case on the lookup path.
fn normalize(name: &str) -> Cow<'_, str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SAMPLE: &str = "\
# The following lines are desirable for IPv4 capable hosts
127.0.0.1       localhost localhost.localdomain
::1             localhost ip6-localhost ip6-loopback   # trailing comment
10.0.0.5\tdb.corp.example. DB  db-alias
10.0.0.6 db.corp.example
2001:db8::5 db.corp.example
fe80::1%eth0 linklocal
not-an-address foo
   # indented comment
10.0.0.7
garbage line here
300.1.1.1 bad-v4
";

    #[test]
    fn parses_names_families_and_comments() {
        let hosts = Hosts::parse(SAMPLE);
        let localhost = hosts.get("localhost").unwrap();
        assert_eq!(localhost.v4, vec![Ipv4Addr::LOCALHOST]);
        assert_eq!(localhost.v6, vec![Ipv6Addr::LOCALHOST]);
        assert_eq!(
            hosts.get("ip6-loopback").unwrap().v6,
            vec![Ipv6Addr::LOCALHOST]
        );
        let db = hosts.get("db.corp.example").unwrap();
        assert_eq!(
            db.v4,
            vec![Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(10, 0, 0, 6)]
        );
        assert_eq!(db.v6, vec!["2001:db8::5".parse::<Ipv6Addr>().unwrap()]);
    }

    #[test]
    fn case_insensitive_and_trailing_dot() {
        let hosts = Hosts::parse(SAMPLE);
        assert!(hosts.get("DB.Corp.Example.").is_some());
        assert_eq!(
            hosts.get("db").unwrap().v4,
            vec![Ipv4Addr::new(10, 0, 0, 5)]
        );
        assert_eq!(hosts.get("Db-Alias").unwrap().v4.len(), 1);
    }

    #[test]
    fn skips_garbage() {
        let hosts = Hosts::parse(SAMPLE);
        for name in [
            "foo",
            "linklocal",
            "bad-v4",
            "here",
            "comment",
            "trailing",
            "",
        ] {
            assert!(hosts.get(name).is_none(), "{name}");
        }
        // localhost, localhost.localdomain, ip6-localhost, ip6-loopback, db.corp.example, db,
        // db-alias
        assert_eq!(hosts.len(), 7);
        assert!(Hosts::parse("").is_empty());
        assert!(Hosts::parse("\u{0}\u{1}\n#\n\n \t\n").is_empty());
    }
}

//! Membership sets used when verifying a candidate rule: address ranges searched by binary
//! search, port ranges, and hashed string sets.

use std::net::IpAddr;

use ipnet::IpNet;
use rustc_hash::FxHashSet;

use crate::meta::domains;

/// Inclusive ranges of addresses, merged and sorted, one list per family.
#[derive(Debug, Default, Clone)]
pub struct IpSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

fn merge<T: Ord + Copy>(mut r: Vec<(T, T)>, succ: impl Fn(T) -> Option<T>) -> Vec<(T, T)> {
    r.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(r.len());
    for (lo, hi) in r {
        match out.last_mut() {
            Some(last) if succ(last.1).is_none_or(|n| lo <= n) => {
                if hi > last.1 {
                    last.1 = hi;
                }
            }
            _ => out.push((lo, hi)),
        }
    }
    out
}

fn find<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    let i = ranges.partition_point(|r| r.1 < x);
    ranges.get(i).is_some_and(|r| r.0 <= x)
}

impl IpSet {
    pub fn new<'a>(nets: impl IntoIterator<Item = &'a IpNet>) -> Self {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for n in nets {
            match n {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        IpSet {
            v4: merge(v4, |x: u32| x.checked_add(1)),
            v6: merge(v6, |x: u128| x.checked_add(1)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => find(&self.v6, u128::from(a)),
        }
    }
}

/// Inclusive port ranges, merged and sorted.
#[derive(Debug, Default, Clone)]
pub struct PortSet(Vec<(u16, u16)>);

impl PortSet {
    pub fn new(ranges: impl IntoIterator<Item = (u16, u16)>) -> Self {
        PortSet(merge(ranges.into_iter().collect(), |x: u16| {
            x.checked_add(1)
        }))
    }

    pub fn contains(&self, p: u16) -> bool {
        find(&self.0, p)
    }

    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.0
    }
}

/// Strings compared for equality, or as domains (an item also matches its subdomains).
#[derive(Debug, Clone)]
pub struct StrSet {
    items: FxHashSet<Box<str>>,
    domains: bool,
}

impl StrSet {
    pub fn new<'a>(items: impl IntoIterator<Item = &'a String>, domains: bool) -> Self {
        StrSet {
            items: items.into_iter().map(|s| s.as_str().into()).collect(),
            domains,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn contains(&self, s: &str) -> bool {
        if self.domains {
            domains(s).any(|d| self.items.contains(d))
        } else {
            self.items.contains(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_ranges_merge_and_search() {
        let nets: Vec<IpNet> = [
            "10.0.0.0/24",
            "10.0.1.0/24",
            "10.0.0.128/25",
            "192.168.1.1/32",
            "::1/128",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let set = IpSet::new(&nets);
        assert_eq!(set.v4.len(), 2);
        for (ip, want) in [
            ("10.0.1.255", true),
            ("10.0.2.0", false),
            ("192.168.1.1", true),
            ("::1", true),
            ("::2", false),
        ] {
            assert_eq!(set.contains(ip.parse().unwrap()), want, "{ip}");
        }
    }

    #[test]
    fn ports_up_to_the_top() {
        let s = PortSet::new([(65535, 65535), (1, 1), (2, 3)]);
        assert_eq!(s.ranges(), [(1, 3), (65535, 65535)]);
        assert!(s.contains(65535) && !s.contains(0) && !s.contains(4));
    }
}

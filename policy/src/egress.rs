//! Egress address selection as pure functions: which source addresses to try, in which order,
//! for a decision and a destination; where inside an IPv6 prefix to leave from; which address
//! families to try for a host name. The caller supplies hash keys and time.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::Ipv6Net;
use serde::Serialize;

use crate::model::{Fallback, Family, Ipv6Select, Pool};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    pub fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() {
            IpFamily::V4
        } else {
            IpFamily::V6
        }
    }
}

/// The source addresses to try for one destination, then what to do if all fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EgressPlan {
    pub attempts: Vec<IpAddr>,
    pub fallback: Fallback,
}

/// The order in which a rule's `family` tries destination families for a host name. With
/// `auto`, IPv6 goes first (Happy Eyeballs, RFC 8305) unless the pool only has IPv4
/// addresses, so a pool's family is preferred over its fallback.
pub fn attempt_order(family: Family, pool: Option<&Pool>) -> &'static [IpFamily] {
    use IpFamily::{V4, V6};
    match family {
        Family::Ipv4 => &[V4],
        Family::Ipv6 => &[V6],
        Family::PreferIpv4 => &[V4, V6],
        Family::PreferIpv6 => &[V6, V4],
        Family::Auto => match pool {
            Some(p) if p.has_ipv4() && !p.has_ipv6() => &[V4, V6],
            _ => &[V6, V4],
        },
    }
}

/// Whether a rule's `family` lets it dial this destination address.
pub fn family_allows(family: Family, dst: IpAddr) -> bool {
    match family {
        Family::Ipv4 => dst.is_ipv4(),
        Family::Ipv6 => dst.is_ipv6(),
        _ => true,
    }
}

/// A stable 64-bit hash (FNV-1a with a final mix) for sticky address selection.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// SplitMix64's finaliser: spreads nearby keys over the whole range.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The key for `ipv6_select = "sticky"`: the user when authenticated, else the client address.
pub fn sticky_key(user: &str, client: Option<IpAddr>) -> u64 {
    if !user.is_empty() {
        stable_hash(user.as_bytes())
    } else {
        match client {
            Some(IpAddr::V4(a)) => stable_hash(&a.octets()),
            Some(IpAddr::V6(a)) => stable_hash(&a.octets()),
            None => stable_hash(b""),
        }
    }
}

/// An address inside `net`. `key` is the sticky key, or a per-connection value for
/// `per-connection`; `first` ignores it. The all-zero interface identifier (the
/// subnet-router anycast address) is never chosen.
pub fn ipv6_in_prefix(net: Ipv6Net, select: Ipv6Select, key: u64) -> Ipv6Addr {
    let host_bits = 128 - u32::from(net.prefix_len());
    let base = u128::from(net.network());
    if host_bits == 0 {
        return net.network();
    }
    let host_mask = if host_bits == 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    let host = match select {
        Ipv6Select::First => 1,
        Ipv6Select::Sticky | Ipv6Select::PerConnection => {
            let wide = (u128::from(mix(key)) << 64) | u128::from(mix(key ^ 0x9e37_79b9_7f4a_7c15));
            match wide & host_mask {
                0 => 1,
                h => h,
            }
        }
    };
    Ipv6Addr::from(base | (host & host_mask))
}

/// The source addresses to try, in order, for a destination of `dst`'s family, skipping
/// addresses that are cooling down. An empty plan means the pool's fallback applies at once.
pub fn plan(pool: &Pool, dst: IpAddr, key: u64, is_down: impl Fn(IpAddr) -> bool) -> EgressPlan {
    let attempts = match dst {
        IpAddr::V4(_) => pool
            .ipv4
            .iter()
            .map(|a| IpAddr::V4(*a))
            .filter(|a| !is_down(*a))
            .collect(),
        IpAddr::V6(_) => pool
            .ipv6
            .iter()
            .map(|n| IpAddr::V6(ipv6_in_prefix(*n, pool.ipv6_select, key)))
            .filter(|a| !is_down(*a))
            .collect(),
    };
    EgressPlan {
        attempts,
        fallback: pool.fallback,
    }
}

/// Addresses that failed for a local reason, each down until a deadline (milliseconds on the
/// caller's clock). Kept per shard; small, so a vector.
#[derive(Debug, Default, Clone)]
pub struct Cooldown {
    down: Vec<(IpAddr, u64)>,
}

impl Cooldown {
    pub fn mark_down(&mut self, ip: IpAddr, now_ms: u64, cool_ms: u64) {
        let until = now_ms.saturating_add(cool_ms);
        match self.down.iter_mut().find(|(a, _)| *a == ip) {
            Some(slot) => slot.1 = until,
            None => self.down.push((ip, until)),
        }
    }

    pub fn is_down(&self, ip: IpAddr, now_ms: u64) -> bool {
        self.down
            .iter()
            .any(|(a, until)| *a == ip && now_ms < *until)
    }

    /// Forgets addresses whose cool-down has passed.
    pub fn expire(&mut self, now_ms: u64) {
        self.down.retain(|(_, until)| now_ms < *until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Pool {
        Pool {
            name: "p".into(),
            location: None,
            ipv4: vec![
                "198.51.100.10".parse().unwrap(),
                "198.51.100.11".parse().unwrap(),
            ],
            ipv6: vec!["2001:db8:10::/64".parse().unwrap()],
            ipv6_select: Ipv6Select::Sticky,
            fallback: Fallback::Deny,
            interface: None,
            mark: None,
        }
    }

    #[test]
    fn ipv4_failover_skips_addresses_cooling_down() {
        let p = pool();
        let dst: IpAddr = "203.0.113.10".parse().unwrap();
        let mut cd = Cooldown::default();
        assert_eq!(
            plan(&p, dst, 0, |a| cd.is_down(a, 0)).attempts,
            [
                IpAddr::from([198, 51, 100, 10]),
                IpAddr::from([198, 51, 100, 11])
            ]
        );
        cd.mark_down("198.51.100.10".parse().unwrap(), 1_000, 30_000);
        assert_eq!(
            plan(&p, dst, 0, |a| cd.is_down(a, 2_000)).attempts,
            [IpAddr::from([198, 51, 100, 11])]
        );
        assert_eq!(
            plan(&p, dst, 0, |a| cd.is_down(a, 31_000)).attempts.len(),
            2
        );
        cd.mark_down("198.51.100.11".parse().unwrap(), 1_000, 30_000);
        let both_down = plan(&p, dst, 0, |a| cd.is_down(a, 2_000));
        assert!(both_down.attempts.is_empty());
        assert_eq!(both_down.fallback, Fallback::Deny);
        cd.expire(40_000);
        assert!(cd.down.is_empty());
    }

    #[test]
    fn sticky_ipv6_is_stable_per_user_and_spread_across_users() {
        let net: Ipv6Net = "2001:db8:10::/64".parse().unwrap();
        let a1 = ipv6_in_prefix(net, Ipv6Select::Sticky, sticky_key("alice", None));
        let a2 = ipv6_in_prefix(net, Ipv6Select::Sticky, sticky_key("alice", None));
        assert_eq!(a1, a2);
        assert!(net.contains(&a1));
        let distinct: std::collections::HashSet<Ipv6Addr> = (0..1000)
            .map(|i| {
                ipv6_in_prefix(
                    net,
                    Ipv6Select::Sticky,
                    sticky_key(&format!("user{i}"), None),
                )
            })
            .collect();
        assert_eq!(distinct.len(), 1000);
        assert!(distinct.iter().all(|a| net.contains(a)));
        // Different users land in both halves of the prefix.
        let upper = distinct
            .iter()
            .filter(|a| u128::from(**a) & (1 << 63) != 0)
            .count();
        assert!((300..700).contains(&upper), "{upper}");
    }

    #[test]
    fn first_and_single_address_prefixes() {
        let net: Ipv6Net = "2001:db8::/64".parse().unwrap();
        assert_eq!(
            ipv6_in_prefix(net, Ipv6Select::First, 99),
            "2001:db8::1".parse::<Ipv6Addr>().unwrap()
        );
        let one: Ipv6Net = "2001:db8::5/128".parse().unwrap();
        assert_eq!(
            ipv6_in_prefix(one, Ipv6Select::Sticky, 99),
            "2001:db8::5".parse::<Ipv6Addr>().unwrap()
        );
        let by_client = sticky_key("", Some("10.0.0.1".parse().unwrap()));
        assert_ne!(by_client, sticky_key("", Some("10.0.0.2".parse().unwrap())));
    }

    #[test]
    fn family_orders() {
        let mut p = pool();
        assert_eq!(
            attempt_order(Family::Auto, Some(&p)),
            [IpFamily::V6, IpFamily::V4]
        );
        p.ipv6.clear();
        assert_eq!(
            attempt_order(Family::Auto, Some(&p)),
            [IpFamily::V4, IpFamily::V6]
        );
        assert_eq!(attempt_order(Family::Ipv4, None), [IpFamily::V4]);
        assert_eq!(
            attempt_order(Family::PreferIpv6, None),
            [IpFamily::V6, IpFamily::V4]
        );
        assert!(!family_allows(Family::Ipv4, "::1".parse().unwrap()));
        assert!(family_allows(Family::Auto, "::1".parse().unwrap()));
    }
}

//! A shard's memory of recent answers, so a busy destination costs one query per TTL.
//!
//! Entries are per (name, family) so an A and an AAAA answer expire on their own TTLs. Positive
//! TTLs are clamped to [1 s, 1 h]: zero would defeat the cache under load, and a day-long TTL
//! would pin a stale address across an operator's migration. Negative answers (RFC 2308) live for
//! the SOA minimum clamped to [1 s, 60 s], or 30 s without an SOA. The cache is bounded: a full
//! cache drops an expired entry if there is one, else the oldest. Time is passed in, so all of
//! this is tested without a clock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use hickory_proto::rr::Name;

use super::Family;

pub(crate) const DEFAULT_CAPACITY: usize = 10_000;
const POSITIVE_TTL: (u32, u32) = (1, 3600);
const NEGATIVE_TTL: (u32, u32) = (1, 60);
const NEGATIVE_TTL_WITHOUT_SOA: u32 = 30;

/// One question: an absolute name (compared case-insensitively) and an address family.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    pub name: Name,
    pub family: Family,
}

/// What is known about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cached {
    Addrs(Vec<IpAddr>),
    /// NXDOMAIN or NODATA.
    Negative,
}

#[derive(Debug)]
struct Entry {
    value: Cached,
    expires: Instant,
    /// Insertion order; also the tie-breaker that makes expiry-index keys unique.
    seq: u64,
}

#[derive(Debug)]
pub(crate) struct Cache {
    capacity: usize,
    entries: HashMap<CacheKey, Entry>,
    by_expiry: BTreeSet<(Instant, u64)>,
    by_age: BTreeMap<u64, CacheKey>,
    next_seq: u64,
}

impl Cache {
    pub(crate) fn new(capacity: usize) -> Self {
        Cache {
            capacity,
            entries: HashMap::new(),
            by_expiry: BTreeSet::new(),
            by_age: BTreeMap::new(),
            next_seq: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The live entry for `key` at `now`; an expired one is dropped on the way.
    pub(crate) fn get(&mut self, key: &CacheKey, now: Instant) -> Option<Cached> {
        let entry = self.entries.get(key)?;
        if entry.expires > now {
            return Some(entry.value.clone());
        }
        self.remove(key);
        None
    }

    /// Caches addresses for `ttl` seconds (clamped). An empty set is cached as negative.
    pub(crate) fn insert_positive(
        &mut self,
        key: CacheKey,
        addrs: Vec<IpAddr>,
        ttl: u32,
        now: Instant,
    ) {
        if addrs.is_empty() {
            return self.insert_negative(key, None, now);
        }
        let ttl = ttl.clamp(POSITIVE_TTL.0, POSITIVE_TTL.1);
        self.insert(key, Cached::Addrs(addrs), ttl, now);
    }

    /// Caches a negative answer for the SOA-derived TTL (clamped), or the default without one.
    pub(crate) fn insert_negative(&mut self, key: CacheKey, soa_ttl: Option<u32>, now: Instant) {
        let ttl = soa_ttl.map_or(NEGATIVE_TTL_WITHOUT_SOA, |ttl| {
            ttl.clamp(NEGATIVE_TTL.0, NEGATIVE_TTL.1)
        });
        self.insert(key, Cached::Negative, ttl, now);
    }

    fn insert(&mut self, key: CacheKey, value: Cached, ttl: u32, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        self.remove(&key);
        while self.entries.len() >= self.capacity {
            self.evict_one(now);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let expires = now + Duration::from_secs(u64::from(ttl));
        self.by_expiry.insert((expires, seq));
        self.by_age.insert(seq, key.clone());
        self.entries.insert(
            key,
            Entry {
                value,
                expires,
                seq,
            },
        );
    }

    fn evict_one(&mut self, now: Instant) {
        let expired = self
            .by_expiry
            .first()
            .filter(|(expires, _)| *expires <= now)
            .map(|&(_, seq)| seq);
        let victim = expired.or_else(|| self.by_age.first_key_value().map(|(&seq, _)| seq));
        if let Some(key) = victim.and_then(|seq| self.by_age.get(&seq).cloned()) {
            self.remove(&key);
        }
    }

    fn remove(&mut self, key: &CacheKey) {
        if let Some(entry) = self.entries.remove(key) {
            self.by_expiry.remove(&(entry.expires, entry.seq));
            self.by_age.remove(&entry.seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, family: Family) -> CacheKey {
        CacheKey {
            name: Name::from_ascii(name).unwrap(),
            family,
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[allow(non_snake_case)]
    fn S(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn positive_entry_lives_for_its_ttl() {
        let t0 = Instant::now();
        let mut cache = Cache::new(10);
        let k = key("a.example.", Family::V4);
        cache.insert_positive(k.clone(), vec![ip(1)], 300, t0);
        assert_eq!(cache.get(&k, t0), Some(Cached::Addrs(vec![ip(1)])));
        assert_eq!(cache.get(&k, t0 + S(299)), Some(Cached::Addrs(vec![ip(1)])));
        assert_eq!(cache.get(&k, t0 + S(300)), None);
        assert_eq!(cache.len(), 0, "expired entry is dropped when read");
    }

    #[test]
    fn keys_are_case_insensitive_and_per_family() {
        let t0 = Instant::now();
        let mut cache = Cache::new(10);
        cache.insert_positive(key("A.Example.", Family::V4), vec![ip(1)], 60, t0);
        assert!(cache.get(&key("a.example.", Family::V4), t0).is_some());
        assert!(cache.get(&key("a.example.", Family::V6), t0).is_none());
    }

    #[test]
    fn positive_ttl_is_clamped() {
        let t0 = Instant::now();
        let mut cache = Cache::new(10);
        let zero = key("zero.example.", Family::V4);
        let huge = key("huge.example.", Family::V4);
        cache.insert_positive(zero.clone(), vec![ip(1)], 0, t0);
        cache.insert_positive(huge.clone(), vec![ip(2)], u32::MAX, t0);
        assert!(cache.get(&zero, t0 + Duration::from_millis(999)).is_some());
        assert!(cache.get(&zero, t0 + S(1)).is_none());
        assert!(cache.get(&huge, t0 + S(3599)).is_some());
        assert!(cache.get(&huge, t0 + S(3600)).is_none());
    }

    #[test]
    fn negative_ttl_from_soa_or_default() {
        let t0 = Instant::now();
        let mut cache = Cache::new(10);
        let soa_small = key("a.example.", Family::V4);
        let soa_large = key("b.example.", Family::V4);
        let no_soa = key("c.example.", Family::V4);
        cache.insert_negative(soa_small.clone(), Some(0), t0);
        cache.insert_negative(soa_large.clone(), Some(86400), t0);
        cache.insert_negative(no_soa.clone(), None, t0);
        assert_eq!(cache.get(&soa_small, t0), Some(Cached::Negative));
        assert!(cache.get(&soa_small, t0 + S(1)).is_none());
        assert!(cache.get(&soa_large, t0 + S(59)).is_some());
        assert!(cache.get(&soa_large, t0 + S(60)).is_none());
        assert!(cache.get(&no_soa, t0 + S(29)).is_some());
        assert!(cache.get(&no_soa, t0 + S(30)).is_none());
        // An empty positive answer is a negative one.
        let empty = key("d.example.", Family::V6);
        cache.insert_positive(empty.clone(), vec![], 300, t0);
        assert_eq!(cache.get(&empty, t0 + S(29)), Some(Cached::Negative));
    }

    #[test]
    fn reinsert_replaces() {
        let t0 = Instant::now();
        let mut cache = Cache::new(10);
        let k = key("a.example.", Family::V4);
        cache.insert_positive(k.clone(), vec![ip(1)], 10, t0);
        cache.insert_positive(k.clone(), vec![ip(2)], 100, t0 + S(5));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(&k, t0 + S(50)), Some(Cached::Addrs(vec![ip(2)])));
    }

    #[test]
    fn full_cache_evicts_expired_first_then_oldest() {
        let t0 = Instant::now();
        let mut cache = Cache::new(3);
        let (a, b, c, d, e) = (
            key("a.example.", Family::V4),
            key("b.example.", Family::V4),
            key("c.example.", Family::V4),
            key("d.example.", Family::V4),
            key("e.example.", Family::V4),
        );
        cache.insert_positive(a.clone(), vec![ip(1)], 1000, t0);
        cache.insert_positive(b.clone(), vec![ip(2)], 10, t0 + S(1));
        cache.insert_positive(c.clone(), vec![ip(3)], 1000, t0 + S(2));
        // At t0+20 b has expired: it goes, although a is older.
        cache.insert_positive(d.clone(), vec![ip(4)], 1000, t0 + S(20));
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&a, t0 + S(20)).is_some());
        assert!(cache.get(&b, t0 + S(20)).is_none());
        // Nothing has expired now: the oldest (a) goes.
        cache.insert_positive(e.clone(), vec![ip(5)], 1000, t0 + S(21));
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&a, t0 + S(21)).is_none());
        for k in [&c, &d, &e] {
            assert!(cache.get(k, t0 + S(21)).is_some());
        }
    }

    #[test]
    fn zero_capacity_stores_nothing() {
        let t0 = Instant::now();
        let mut cache = Cache::new(0);
        let k = key("a.example.", Family::V4);
        cache.insert_positive(k.clone(), vec![ip(1)], 60, t0);
        assert!(cache.get(&k, t0).is_none());
    }

    #[test]
    fn stays_bounded_under_churn() {
        let t0 = Instant::now();
        let mut cache = Cache::new(100);
        for i in 0..1000u64 {
            let k = key(&format!("h{i}.example."), Family::V4);
            cache.insert_positive(k, vec![ip(1)], 5, t0 + S(i / 10));
            assert!(cache.len() <= 100);
        }
        assert_eq!(cache.by_age.len(), cache.len());
        assert_eq!(cache.by_expiry.len(), cache.len());
    }
}

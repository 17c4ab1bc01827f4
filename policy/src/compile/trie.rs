//! IP prefix lookup: every stored prefix containing an address, each with its rule list.
//!
//! Prefixes live in a path-compressed binary trie (PATRICIA); a walk from the root visits at
//! most one node per prefix length on the address's path. Walking is a chain of dependent
//! memory loads, though, which at 100,000 prefixes means a cache miss per node. So while a
//! family uses few distinct prefix lengths (the usual case: /24s and /32s), the trie's nodes
//! are also flattened into one hash table keyed by (length, masked address), and a lookup
//! makes one independent probe per length present instead. Both paths give the same answer;
//! neither depends on how many prefixes are stored.

use std::net::IpAddr;

use ipnet::IpNet;

const NONE: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Node {
    /// Prefix bits, left-aligned in 128 bits.
    key: u128,
    len: u8,
    children: [u32; 2],
    /// Index into the owner's lists, or NONE.
    value: u32,
}

/// Prefixes of one family, keys left-aligned (IPv4 uses the top 32 bits).
#[derive(Debug, Clone, Default)]
struct Trie {
    nodes: Vec<Node>,
}

fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

fn bit(key: u128, i: u8) -> usize {
    ((key >> (127 - u32::from(i))) & 1) as usize
}

impl Trie {
    fn root(&mut self) -> u32 {
        if self.nodes.is_empty() {
            self.nodes.push(Node {
                key: 0,
                len: 0,
                children: [NONE; 2],
                value: NONE,
            });
        }
        0
    }

    fn push(&mut self, key: u128, len: u8) -> u32 {
        self.nodes.push(Node {
            key: key & mask(len),
            len,
            children: [NONE; 2],
            value: NONE,
        });
        (self.nodes.len() - 1) as u32
    }

    /// The node for exactly this prefix, created if needed.
    fn node_for(&mut self, key: u128, len: u8) -> u32 {
        let key = key & mask(len);
        let mut cur = self.root();
        loop {
            let n = &self.nodes[cur as usize];
            if n.len == len {
                return cur;
            }
            let dir = bit(key, n.len);
            let child = n.children[dir];
            if child == NONE {
                let new = self.push(key, len);
                self.nodes[cur as usize].children[dir] = new;
                return new;
            }
            let c = &self.nodes[child as usize];
            let common = ((c.key ^ key).leading_zeros().min(u32::from(c.len.min(len)))) as u8;
            if common == c.len {
                cur = child;
                continue;
            }
            // Split: a new node at the common prefix takes the old child and the new prefix.
            let split = if common == len {
                self.push(key, len)
            } else {
                self.push(key, common)
            };
            let old_dir = bit(self.nodes[child as usize].key, common);
            self.nodes[split as usize].children[old_dir] = child;
            self.nodes[cur as usize].children[dir] = split;
            if common == len {
                return split;
            }
            let new = self.push(key, len);
            self.nodes[split as usize].children[bit(key, common)] = new;
            return new;
        }
    }

    fn lookup(&self, key: u128, max_len: u8, mut f: impl FnMut(u32)) {
        let mut cur = 0u32;
        while let Some(n) = self.nodes.get(cur as usize) {
            if (key ^ n.key) & mask(n.len) != 0 {
                return;
            }
            if n.value != NONE {
                f(n.value);
            }
            if n.len >= max_len {
                return;
            }
            cur = n.children[bit(key, n.len)];
        }
    }
}

/// Most distinct prefix lengths per family for which lookups probe the flat table.
pub const MAX_PROBED_LENGTHS: usize = 8;

/// One family's prefixes: the trie, and its flat form while lengths are few.
#[derive(Debug, Clone, Default)]
struct Family {
    trie: Trie,
    /// Distinct prefix lengths, longest first.
    lengths: Vec<u8>,
    /// (length, masked key) → list index.
    flat: rustc_hash::FxHashMap<(u8, u128), u32>,
}

impl Family {
    fn probes(&self) -> bool {
        self.lengths.len() <= MAX_PROBED_LENGTHS
    }
}

/// Maps IP prefixes to lists of rule ids.
#[derive(Debug, Clone, Default)]
pub struct PrefixIndex {
    v4: Family,
    v6: Family,
    lists: Vec<Vec<u32>>,
}

fn key_of(ip: IpAddr) -> (u128, bool) {
    match ip {
        IpAddr::V4(a) => (u128::from(u32::from(a)) << 96, true),
        IpAddr::V6(a) => (u128::from(a), false),
    }
}

impl PrefixIndex {
    pub fn insert(&mut self, net: IpNet, rule: u32) {
        let (key, v4) = key_of(net.network());
        let len = net.prefix_len();
        let fam = if v4 { &mut self.v4 } else { &mut self.v6 };
        let node = fam.trie.node_for(key, len);
        let slot = &mut fam.trie.nodes[node as usize].value;
        if *slot == NONE {
            *slot = self.lists.len() as u32;
            self.lists.push(Vec::new());
            fam.flat.insert((len, key & mask(len)), *slot);
            if !fam.lengths.contains(&len) {
                fam.lengths.push(len);
                fam.lengths.sort_unstable_by(|a, b| b.cmp(a));
            }
        }
        let list = &mut self.lists[*slot as usize];
        if list.last() != Some(&rule) {
            list.push(rule);
        }
    }

    /// Calls `f` with the rule list of every stored prefix containing `ip`.
    pub fn lookup<'s>(&'s self, ip: IpAddr, mut f: impl FnMut(&'s [u32])) {
        let (key, v4) = key_of(ip);
        let (fam, max) = if v4 { (&self.v4, 32) } else { (&self.v6, 128) };
        if fam.probes() {
            for &len in &fam.lengths {
                if let Some(&i) = fam.flat.get(&(len, key & mask(len))) {
                    f(&self.lists[i as usize]);
                }
            }
        } else {
            fam.trie.lookup(key, max, |i| f(&self.lists[i as usize]));
        }
    }

    /// Walks the trie even when the flat table would be probed (tests compare the two).
    #[cfg(test)]
    fn lookup_trie(&self, ip: IpAddr, mut f: impl FnMut(&[u32])) {
        let (key, v4) = key_of(ip);
        let (fam, max) = if v4 { (&self.v4, 32) } else { (&self.v6, 128) };
        fam.trie.lookup(key, max, |i| f(&self.lists[i as usize]));
    }

    pub fn heap_bytes(&self) -> usize {
        let fam = |f: &Family| f.trie.nodes.capacity() * size_of::<Node>() + f.flat.capacity() * 40;
        fam(&self.v4)
            + fam(&self.v6)
            + self
                .lists
                .iter()
                .map(|l| l.capacity() * 4 + 24)
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hits through the flat table or the trie (whichever `lookup` picks), checked against
    /// a forced trie walk.
    fn hits(idx: &PrefixIndex, ip: &str) -> Vec<u32> {
        let ip = ip.parse().unwrap();
        let mut out = Vec::new();
        idx.lookup(ip, |l| out.extend_from_slice(l));
        out.sort();
        let mut walked = Vec::new();
        idx.lookup_trie(ip, |l| walked.extend_from_slice(l));
        walked.sort();
        assert_eq!(out, walked);
        out
    }

    #[test]
    fn many_lengths_use_the_trie_and_agree() {
        let mut idx = PrefixIndex::default();
        for len in 0..=32u8 {
            idx.insert(
                IpNet::new("10.1.2.3".parse().unwrap(), len)
                    .unwrap()
                    .trunc(),
                u32::from(len),
            );
        }
        assert!(!idx.v4.probes());
        assert_eq!(hits(&idx, "10.1.2.3").len(), 33);
        assert_eq!(hits(&idx, "10.1.2.2"), (0..=31).collect::<Vec<u32>>());
        assert_eq!(hits(&idx, "138.0.0.0"), [0]);
    }

    #[test]
    fn finds_every_containing_prefix() {
        let mut idx = PrefixIndex::default();
        for (i, n) in [
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.1.2.0/24",
            "10.1.2.3/32",
            "11.0.0.0/8",
            "0.0.0.0/0",
            "10.128.0.0/9",
            "2001:db8::/32",
        ]
        .iter()
        .enumerate()
        {
            idx.insert(n.parse().unwrap(), i as u32);
        }
        assert_eq!(hits(&idx, "10.1.2.3"), [0, 1, 2, 3, 5]);
        assert_eq!(hits(&idx, "10.1.2.4"), [0, 1, 2, 5]);
        assert_eq!(hits(&idx, "10.200.0.1"), [0, 5, 6]);
        assert_eq!(hits(&idx, "12.0.0.1"), [5]);
        assert_eq!(hits(&idx, "2001:db8::1"), [7]);
        assert_eq!(hits(&idx, "2001:db9::1"), Vec::<u32>::new());
    }

    #[test]
    fn insertion_order_does_not_matter() {
        let nets = [
            "10.1.2.3/32",
            "10.1.2.0/24",
            "10.0.0.0/8",
            "10.1.3.0/24",
            "10.1.0.0/16",
        ];
        let mut idx = PrefixIndex::default();
        for (i, n) in nets.iter().enumerate() {
            idx.insert(n.parse().unwrap(), i as u32);
        }
        assert_eq!(hits(&idx, "10.1.2.3"), [0, 1, 2, 4]);
        assert_eq!(hits(&idx, "10.1.3.9"), [2, 3, 4]);
    }
}

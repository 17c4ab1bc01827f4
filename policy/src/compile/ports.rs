//! A segment tree over the port space 0..=65535: a range is stored in the O(log n) canonical
//! nodes that cover it, and a lookup collects the lists on the 17 nodes from the root to the
//! port's leaf.

const LEAVES: usize = 1 << 16;

#[derive(Debug, Clone, Default)]
pub struct PortIndex {
    /// Heap-ordered nodes (root 1); each holds an index into `lists` plus one, or 0.
    nodes: Vec<u32>,
    lists: Vec<Vec<u32>>,
}

impl PortIndex {
    pub fn insert(&mut self, lo: u16, hi: u16, rule: u32) {
        if self.nodes.is_empty() {
            self.nodes = vec![0; 2 * LEAVES];
        }
        let (mut l, mut r) = (usize::from(lo) + LEAVES, usize::from(hi) + LEAVES + 1);
        while l < r {
            if l & 1 == 1 {
                self.add(l, rule);
                l += 1;
            }
            if r & 1 == 1 {
                r -= 1;
                self.add(r, rule);
            }
            l >>= 1;
            r >>= 1;
        }
    }

    fn add(&mut self, node: usize, rule: u32) {
        if self.nodes[node] == 0 {
            self.lists.push(Vec::new());
            self.nodes[node] = self.lists.len() as u32;
        }
        let list = &mut self.lists[self.nodes[node] as usize - 1];
        if list.last() != Some(&rule) {
            list.push(rule);
        }
    }

    pub fn lookup<'s>(&'s self, port: u16, mut f: impl FnMut(&'s [u32])) {
        if self.nodes.is_empty() {
            return;
        }
        let mut node = usize::from(port) + LEAVES;
        while node >= 1 {
            let slot = self.nodes[node];
            if slot != 0 {
                f(&self.lists[slot as usize - 1]);
            }
            node >>= 1;
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.nodes.capacity() * 4
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

    #[test]
    fn ranges_and_points() {
        let mut idx = PortIndex::default();
        idx.insert(443, 443, 0);
        idx.insert(0, 65535, 1);
        idx.insert(8000, 8080, 2);
        idx.insert(65535, 65535, 3);
        let hits = |p: u16| {
            let mut v = Vec::new();
            idx.lookup(p, |l| v.extend_from_slice(l));
            v.sort();
            v
        };
        assert_eq!(hits(443), [0, 1]);
        assert_eq!(hits(8000), [1, 2]);
        assert_eq!(hits(8080), [1, 2]);
        assert_eq!(hits(8081), [1]);
        assert_eq!(hits(65535), [1, 3]);
        assert_eq!(hits(0), [1]);
    }
}

//! The compiled decision table.
//!
//! Each enabled rule is filed in an index under a *guard*: a condition its expression implies,
//! on one selective field (destination or source prefix, host name, domain suffix, port range,
//! or the value of a string field such as a group, country or listener). A decision looks the
//! connection up in each index, which yields sorted lists of candidate rule ids, and walks
//! them in rule order, verifying each candidate's full expression; the first that holds wins.
//! Rules without a usable guard (a catch-all, a regex-only rule) sit in one "always" list that
//! takes part in the same walk. Cost depends on the number of candidates, not on the number
//! of rules.

pub mod cexpr;
mod ports;
pub mod sets;
mod trie;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::expr::ast::{
    ArrayField, CmpOp, Expr, IntField, IpField, IpPred, Quantifier, StrField, StrPred,
    TestKind,
};
use crate::meta::{ConnMeta, domains};
use crate::model::{Action, DefaultAction, Family, ListItems, ListKind, Policy, PoolId, RuleId};
use cexpr::{CExpr, CList, port_ranges};
use ports::PortIndex;
use trie::PrefixIndex;

/// What to do with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The matching rule; `None` when no rule matched and `[policy] default_action` applied.
    pub rule: Option<RuleId>,
    pub action: Action,
    pub pool: Option<PoolId>,
    pub family: Family,
}

impl Decision {
    fn unmatched(default: DefaultAction) -> Self {
        Decision {
            rule: None,
            action: match default {
                DefaultAction::Default => Action::Default,
                DefaultAction::Block => Action::Block,
            },
            pool: None,
            family: Family::Auto,
        }
    }
}

/// One key a guard files a rule under.
#[derive(Debug, Clone, PartialEq)]
enum Key {
    Ip(IpField, ipnet::IpNet),
    Port(IntField, u16, u16),
    Str(StrField, Box<str>),
    Elem(ArrayField, Box<str>),
    /// The host name is this domain or a subdomain of it.
    Suffix(Box<str>),
}

impl Key {
    /// Rough probability that a random connection satisfies the key; lower is more selective.
    fn weight(&self) -> f64 {
        match self {
            Key::Ip(_, n) => {
                let bits = if n.addr().is_ipv4() { n.prefix_len() } else { n.prefix_len() / 4 };
                2f64.powi(-i32::from(bits)).max(1e-7)
            }
            Key::Port(_, lo, hi) => (f64::from(*hi - *lo) + 1.0) / 65536.0 + 0.05,
            Key::Str(StrField::Host, _) => 1e-5,
            Key::Suffix(_) => 1e-4,
            Key::Str(StrField::Email | StrField::Name, _) => 1e-3,
            Key::Str(StrField::SrcCountry | StrField::DstCountry, _) => 0.05,
            Key::Elem(ArrayField::Groups | ArrayField::Domains, _) => 0.05,
            Key::Str(StrField::SrcContinent | StrField::DstContinent, _) => 0.2,
            Key::Elem(ArrayField::PosturePassed | ArrayField::PostureFailed, _) => 0.2,
            Key::Str(StrField::Endpoint, _) => 0.3,
            Key::Str(StrField::Protocol, _) => 0.5,
        }
    }
}

/// A disjunction of keys: whenever the expression holds, at least one key matches.
type Guard = Vec<Key>;

fn cost(g: &Guard) -> f64 {
    g.iter().map(Key::weight).sum()
}

fn str_keys(p: &StrPred, policy: &Policy, key: impl Fn(Box<str>) -> Key, hostish: bool) -> Option<Guard> {
    match p {
        StrPred::Cmp(CmpOp::Eq, v) => Some(vec![key(v.as_str().into())]),
        StrPred::In(vs) => Some(vs.iter().map(|v| key(v.as_str().into())).collect()),
        StrPred::InList(id) => {
            let l = policy.lists.get(id.0 as usize)?;
            let ListItems::Str(items) = &l.items else { return None };
            if l.kind == ListKind::Domain {
                // Only host-like fields accept domain lists; they index by suffix.
                hostish.then(|| items.iter().map(|i| Key::Suffix(i.as_str().into())).collect())
            } else {
                Some(items.iter().map(|i| key(i.as_str().into())).collect())
            }
        }
        _ => None,
    }
}

/// A guard implied by `e`, or `None` if none is known.
fn guard(e: &Expr, policy: &Policy) -> Option<Guard> {
    match e {
        Expr::True | Expr::Not(_) | Expr::Xor(..) => None,
        Expr::And(es) => es
            .iter()
            .filter_map(|e| guard(e, policy))
            .min_by(|a, b| cost(a).total_cmp(&cost(b))),
        Expr::Or(es) => {
            let mut all = Vec::new();
            for e in es {
                all.extend(guard(e, policy)?);
            }
            Some(all)
        }
        Expr::Test(t) => match &t.kind {
            TestKind::Ip(f, p) => match p {
                IpPred::Eq(n) => Some(vec![Key::Ip(*f, *n)]),
                IpPred::In(ns) => Some(ns.iter().map(|n| Key::Ip(*f, *n)).collect()),
                IpPred::InList(id) => match &policy.lists.get(id.0 as usize)?.items {
                    ListItems::Ip(ns) => Some(ns.iter().map(|n| Key::Ip(*f, *n)).collect()),
                    _ => None,
                },
                IpPred::Ne(_) => None,
            },
            TestKind::Int(f, p) => {
                let ranges = port_ranges(p, &policy.lists);
                Some(ranges.into_iter().map(|(lo, hi)| Key::Port(*f, lo, hi)).collect())
            }
            TestKind::Str(StrField::Host, p) => {
                str_keys(p, policy, |v| Key::Str(StrField::Host, v), true)
            }
            TestKind::Str(f, p) => str_keys(p, policy, |v| Key::Str(*f, v), false),
            // `all` holds on an empty array, so it implies nothing about the elements.
            TestKind::Array(Quantifier::All, ..) => None,
            TestKind::Array(Quantifier::Any, ArrayField::Domains, p) => {
                str_keys(p, policy, Key::Suffix, true)
            }
            TestKind::Array(Quantifier::Any, f, p) => {
                str_keys(p, policy, |v| Key::Elem(*f, v), false)
            }
        },
    }
}

/// Sorted rule-id lists keyed by string.
type StrIndex = FxHashMap<Box<str>, Vec<u32>>;

fn push_sorted(list: &mut Vec<u32>, rule: u32) {
    if list.last() != Some(&rule) {
        list.push(rule);
    }
}

#[derive(Debug, Default)]
struct Index {
    src_ip: PrefixIndex,
    dst_ip: PrefixIndex,
    src_port: PortIndex,
    dst_port: PortIndex,
    /// One map per string field, by `StrField` discriminant order in [`STR_FIELDS`].
    strs: Vec<(StrField, StrIndex)>,
    elems: Vec<(ArrayField, StrIndex)>,
    suffix: StrIndex,
    always: Vec<u32>,
}

impl Index {
    fn insert(&mut self, key: &Key, rule: u32) {
        match key {
            Key::Ip(IpField::Src, n) => self.src_ip.insert(*n, rule),
            Key::Ip(IpField::Dst, n) => self.dst_ip.insert(*n, rule),
            Key::Port(IntField::SrcPort, lo, hi) => self.src_port.insert(*lo, *hi, rule),
            Key::Port(IntField::DstPort, lo, hi) => self.dst_port.insert(*lo, *hi, rule),
            Key::Str(f, v) => {
                let map = match self.strs.iter_mut().position(|(g, _)| g == f) {
                    Some(i) => &mut self.strs[i].1,
                    None => {
                        self.strs.push((*f, StrIndex::default()));
                        &mut self.strs.last_mut().expect("just pushed").1
                    }
                };
                push_sorted(map.entry(v.clone()).or_default(), rule);
            }
            Key::Elem(f, v) => {
                let map = match self.elems.iter_mut().position(|(g, _)| g == f) {
                    Some(i) => &mut self.elems[i].1,
                    None => {
                        self.elems.push((*f, StrIndex::default()));
                        &mut self.elems.last_mut().expect("just pushed").1
                    }
                };
                push_sorted(map.entry(v.clone()).or_default(), rule);
            }
            Key::Suffix(v) => push_sorted(self.suffix.entry(v.clone()).or_default(), rule),
        }
    }

    /// Every candidate list for this connection.
    fn candidates<'s>(&'s self, m: &ConnMeta<'_>, out: &mut SmallVec<[&'s [u32]; 16]>) {
        if !self.always.is_empty() {
            out.push(&self.always);
        }
        if let Some(ip) = m.ip(IpField::Dst) {
            self.dst_ip.lookup(ip, |l| out.push(l));
        }
        if let Some(ip) = m.ip(IpField::Src) {
            self.src_ip.lookup(ip, |l| out.push(l));
        }
        self.dst_port.lookup(m.dst_port, |l| out.push(l));
        self.src_port.lookup(m.src_port, |l| out.push(l));
        for (f, map) in &self.strs {
            if let Some(l) = map.get(m.str(*f)) {
                out.push(l);
            }
        }
        for (f, map) in &self.elems {
            m.any_of(*f, |s| {
                if let Some(l) = map.get(s) {
                    out.push(l);
                }
                false
            });
        }
        if !self.suffix.is_empty() {
            for d in domains(m.host) {
                if let Some(l) = self.suffix.get(d) {
                    out.push(l);
                }
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        let map_bytes = |m: &StrIndex| {
            m.iter().map(|(k, v)| k.len() + v.capacity() * 4 + 48).sum::<usize>()
        };
        self.src_ip.heap_bytes()
            + self.dst_ip.heap_bytes()
            + self.src_port.heap_bytes()
            + self.dst_port.heap_bytes()
            + self.strs.iter().map(|(_, m)| map_bytes(m)).sum::<usize>()
            + self.elems.iter().map(|(_, m)| map_bytes(m)).sum::<usize>()
            + map_bytes(&self.suffix)
            + self.always.capacity() * 4
    }
}

#[derive(Debug)]
struct CRule {
    expr: CExpr,
    decision: Decision,
}

/// Statistics about how rules were indexed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexStats {
    pub rules: usize,
    pub enabled: usize,
    /// Enabled rules with no guard: checked for every connection.
    pub unindexed: usize,
    pub index_bytes: usize,
}

/// A policy compiled for deciding. Immutable: a new policy means a new table.
#[derive(Debug)]
pub struct CompiledPolicy {
    policy: Policy,
    rules: Vec<CRule>,
    index: Index,
    unmatched: Decision,
    stats: IndexStats,
}

impl CompiledPolicy {
    pub fn new(policy: Policy) -> Self {
        let clists: Vec<CList> = policy.lists.iter().map(CList::new).collect();
        let mut index = Index::default();
        let mut rules = Vec::with_capacity(policy.rules.len());
        let mut unindexed = 0;
        for (i, r) in policy.rules.iter().enumerate() {
            let id = u32::try_from(i).unwrap_or(u32::MAX);
            rules.push(CRule {
                expr: CExpr::new(&r.when, &policy.lists, &clists),
                decision: Decision {
                    rule: Some(RuleId(id)),
                    action: r.action,
                    pool: r.pool,
                    family: r.family,
                },
            });
            if !r.enabled {
                continue;
            }
            match guard(&r.when, &policy) {
                Some(keys) => keys.iter().for_each(|k| index.insert(k, id)),
                None => {
                    unindexed += 1;
                    index.always.push(id);
                }
            }
        }
        let stats = IndexStats {
            rules: policy.rules.len(),
            enabled: policy.rules.iter().filter(|r| r.enabled).count(),
            unindexed,
            index_bytes: index.heap_bytes(),
        };
        CompiledPolicy {
            unmatched: Decision::unmatched(policy.default_action),
            policy,
            rules,
            index,
            stats,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn stats(&self) -> &IndexStats {
        &self.stats
    }

    /// Decides for one connection: first matching enabled rule in rule order.
    pub fn decide(&self, m: &ConnMeta<'_>) -> Decision {
        self.decide_traced(m, |_, _| {})
    }

    /// As [`decide`](Self::decide), calling `seen` with each candidate rule verified, in
    /// order, and whether it matched.
    pub fn decide_traced(&self, m: &ConnMeta<'_>, mut seen: impl FnMut(RuleId, bool)) -> Decision {
        let mut lists: SmallVec<[&[u32]; 16]> = SmallVec::new();
        self.index.candidates(m, &mut lists);
        loop {
            let mut best = u32::MAX;
            for l in &lists {
                if let Some(&h) = l.first() {
                    best = best.min(h);
                }
            }
            if best == u32::MAX {
                return self.unmatched;
            }
            for l in lists.iter_mut() {
                if l.first() == Some(&best) {
                    *l = &l[1..];
                }
            }
            let Some(rule) = self.rules.get(best as usize) else {
                return self.unmatched;
            };
            let hit = rule.expr.eval(m);
            seen(RuleId(best), hit);
            if hit {
                return rule.decision;
            }
        }
    }
}

/// The naive linear evaluator over the validated policy: the meaning the compiled table must
/// reproduce exactly.
pub fn decide_reference(policy: &Policy, m: &ConnMeta<'_>) -> Decision {
    for (i, r) in policy.rules.iter().enumerate() {
        if r.enabled && crate::expr::eval::eval(&r.when, m, &policy.lists, &mut |_, _| {}) {
            return Decision {
                rule: Some(RuleId(u32::try_from(i).unwrap_or(u32::MAX))),
                action: r.action,
                pool: r.pool,
                family: r.family,
            };
        }
    }
    Decision::unmatched(policy.default_action)
}

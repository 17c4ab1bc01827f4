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
pub(crate) mod trie;

use rustc_hash::{FxHashMap, FxHashSet};
use smallvec::SmallVec;

use crate::expr::ast::{
    ArrayField, CmpOp, Expr, Field, IntField, IpField, IpPred, Quantifier, StrField, StrPred,
    TestKind,
};
use crate::facts::{Directory, FactIndex};
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
    /// Exact keys on two or three different fields, all required (from `a and b and c`),
    /// sorted by field.
    Tuple(Box<[Key]>),
}

impl Key {
    /// Whether a connection's match on this key depends on its destination address (the
    /// address itself, or its country or continent).
    fn reads_destination_address(&self) -> bool {
        match self {
            Key::Ip(IpField::Dst, _) => true,
            Key::Str(f, _) => Field::Str(*f).reads_destination_address(),
            Key::Tuple(keys) => keys.iter().any(Key::reads_destination_address),
            Key::Ip(IpField::Src, _) | Key::Port(..) | Key::Elem(..) | Key::Suffix(_) => false,
        }
    }
}

/// A field whose values are matched exactly through a hash map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Exact {
    Str(StrField),
    Elem(ArrayField),
    Port(IntField),
}

/// One exact value, as hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Val<'a> {
    Str(&'a str),
    Port(u16),
}

impl Exact {
    fn of(k: &Key) -> Option<(Exact, Val<'_>)> {
        match k {
            Key::Str(f, v) => Some((Exact::Str(*f), Val::Str(v))),
            Key::Elem(f, v) => Some((Exact::Elem(*f), Val::Str(v))),
            Key::Port(f, lo, hi) if lo == hi => Some((Exact::Port(*f), Val::Port(*lo))),
            _ => None,
        }
    }

    /// Calls `f` with each value the connection has for this field.
    fn each(self, m: &ConnMeta<'_>, mut f: impl FnMut(Val<'_>)) {
        match self {
            Exact::Str(s) => f(Val::Str(m.str(s))),
            Exact::Elem(a) => {
                m.any_of(a, |v| {
                    f(Val::Str(v));
                    false
                });
            }
            Exact::Port(p) => f(Val::Port(m.port(p))),
        }
    }
}

fn hash_val(h: &mut rustc_hash::FxHasher, v: Val<'_>) {
    use std::hash::Hasher;
    match v {
        Val::Str(s) => h.write(s.as_bytes()),
        Val::Port(p) => h.write(&p.to_be_bytes()),
    }
    h.write_u8(0xff);
}

fn tuple_hash<'a>(vals: impl IntoIterator<Item = Val<'a>>) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    for v in vals {
        hash_val(&mut h, v);
    }
    h.finish()
}

/// Calls `f` with the hash of every combination of the connection's values for `fields`.
fn each_tuple(fields: &[Exact], m: &ConnMeta<'_>, h: rustc_hash::FxHasher, f: &mut dyn FnMut(u64)) {
    use std::hash::Hasher;
    match fields.split_first() {
        None => f(h.finish()),
        Some((first, rest)) => first.each(m, |v| {
            let mut h = h.clone();
            hash_val(&mut h, v);
            each_tuple(rest, m, h, f);
        }),
    }
}

/// How many distinct values each exact field and the domain suffixes take in the policy: a
/// connection is expected to hit about one value in that many, so this estimates how many
/// candidates a key will bring.
#[derive(Debug, Default)]
struct Selectivity {
    distinct: FxHashMap<Exact, usize>,
    suffixes: usize,
}

impl Selectivity {
    fn new(policy: &Policy) -> Self {
        let mut seen: FxHashMap<Exact, FxHashSet<Val<'_>>> = FxHashMap::default();
        let mut suffixes = FxHashSet::default();
        let alts: Vec<Vec<Guard>> = policy
            .rules
            .iter()
            .filter(|r| r.enabled)
            .filter_map(|r| guard_alternatives(&r.when, policy))
            .collect();
        for k in alts.iter().flatten().flatten() {
            match k {
                Key::Suffix(v) => {
                    suffixes.insert(&**v);
                }
                k => {
                    if let Some((f, v)) = Exact::of(k) {
                        seen.entry(f).or_default().insert(v);
                    }
                }
            }
        }
        Selectivity {
            distinct: seen.into_iter().map(|(f, s)| (f, s.len())).collect(),
            suffixes: suffixes.len(),
        }
    }

    /// Rough probability that a connection satisfies the key; lower is more selective.
    fn weight(&self, k: &Key) -> f64 {
        let one_in = |n: usize| 1.0 / n.max(1) as f64;
        match k {
            Key::Ip(_, n) => {
                let bits = if n.addr().is_ipv4() {
                    n.prefix_len()
                } else {
                    n.prefix_len() / 4
                };
                2f64.powi(-i32::from(bits)).max(1e-9)
            }
            // Ports cluster on a few well-known values, so even one port is not rare.
            Key::Port(_, lo, hi) => (f64::from(*hi - *lo) + 1.0) / 65536.0 + 0.05,
            Key::Str(f, _) => one_in(self.distinct.get(&Exact::Str(*f)).copied().unwrap_or(1)),
            // A user has a couple of groups; a host has a few parent domains.
            Key::Elem(f, _) => {
                (2.0 * one_in(self.distinct.get(&Exact::Elem(*f)).copied().unwrap_or(1))).min(1.0)
            }
            Key::Suffix(_) => (3.0 * one_in(self.suffixes)).min(1.0),
            Key::Tuple(keys) => keys.iter().map(|k| self.weight(k)).product(),
        }
    }

    fn cost(&self, g: &Guard) -> f64 {
        g.iter().map(|k| self.weight(k)).sum()
    }
}

/// A disjunction of keys: whenever the expression holds, at least one key matches.
type Guard = Vec<Key>;

/// Largest guard a cross product of key sets may expand to.
const MAX_TUPLE_KEYS: usize = 64;

fn str_keys(
    p: &StrPred,
    policy: &Policy,
    key: impl Fn(Box<str>) -> Key,
    hostish: bool,
) -> Option<Guard> {
    match p {
        StrPred::Cmp(CmpOp::Eq, v) => Some(vec![key(v.as_str().into())]),
        StrPred::In(vs) => Some(vs.iter().map(|v| key(v.as_str().into())).collect()),
        StrPred::InList(id) => {
            let l = policy.lists.get(id.0 as usize)?;
            let ListItems::Str(items) = &l.items else {
                return None;
            };
            if l.kind == ListKind::Domain {
                // Only host-like fields accept domain lists; they index by suffix.
                hostish.then(|| {
                    items
                        .iter()
                        .map(|i| Key::Suffix(i.as_str().into()))
                        .collect()
                })
            } else {
                Some(items.iter().map(|i| key(i.as_str().into())).collect())
            }
        }
        _ => None,
    }
}

/// The guards `e` implies, one per conjunct for `a and b` (any one of them is a valid guard),
/// or `None` if none is known.
fn guard_alternatives(e: &Expr, policy: &Policy) -> Option<Vec<Guard>> {
    match e {
        Expr::And(es) => {
            let alts: Vec<Guard> = es.iter().filter_map(|e| guard(e, policy, None)).collect();
            (!alts.is_empty()).then_some(alts)
        }
        e => guard(e, policy, None).map(|g| vec![g]),
    }
}

/// Exact string keys all on one field, as (field, values), if `g` is such a guard.
fn single_exact_field(g: &Guard) -> Option<Exact> {
    let first = Exact::of(g.first()?)?.0;
    g.iter()
        .all(|k| Exact::of(k).is_some_and(|(f, _)| f == first))
        .then_some(first)
}

/// The best guard for `a and b and ...`: one conjunct's guard, or the cross product of two or
/// three conjuncts' exact keys on different fields when that is rarer.
fn best_conjunct(alts: Vec<Guard>, sel: &Selectivity) -> Option<Guard> {
    let mut best: Option<(f64, Guard)> = None;
    let mut consider = |g: Guard| {
        let c = sel.cost(&g);
        if best.as_ref().is_none_or(|(bc, _)| c < *bc) {
            best = Some((c, g));
        }
    };
    let mut exact: Vec<(Exact, &Guard)> = alts
        .iter()
        .filter_map(|g| Some((single_exact_field(g)?, g)))
        .collect();
    exact.sort_by_key(|(f, _)| *f);
    exact.dedup_by_key(|(f, _)| *f);
    let n = exact.len();
    let mut combos: Vec<Vec<usize>> = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            combos.push(vec![i, j]);
            for k in j + 1..n {
                combos.push(vec![i, j, k]);
            }
        }
    }
    for combo in combos {
        let size: usize = combo.iter().map(|&i| exact[i].1.len()).product();
        if size > MAX_TUPLE_KEYS {
            continue;
        }
        let mut tuples: Vec<Vec<Key>> = vec![Vec::new()];
        for &i in &combo {
            tuples = tuples
                .into_iter()
                .flat_map(|t| {
                    exact[i].1.iter().map(move |k| {
                        let mut t = t.clone();
                        t.push(k.clone());
                        t
                    })
                })
                .collect();
        }
        consider(tuples.into_iter().map(|t| Key::Tuple(t.into())).collect());
    }
    for g in alts {
        consider(g);
    }
    best.map(|(_, g)| g)
}

/// A guard implied by `e`, or `None` if none is known. Without selectivity figures (while
/// they are being gathered) a conjunction takes its first guard.
fn guard(e: &Expr, policy: &Policy, sel: Option<&Selectivity>) -> Option<Guard> {
    match e {
        Expr::True | Expr::Not(_) | Expr::Xor(..) => None,
        Expr::And(es) => {
            let alts: Vec<Guard> = es.iter().filter_map(|e| guard(e, policy, sel)).collect();
            match sel {
                Some(sel) => best_conjunct(alts, sel),
                None => alts.into_iter().next(),
            }
        }
        Expr::Or(es) => {
            let mut all = Vec::new();
            for e in es {
                all.extend(guard(e, policy, sel)?);
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
                Some(
                    ranges
                        .into_iter()
                        .map(|(lo, hi)| Key::Port(*f, lo, hi))
                        .collect(),
                )
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

/// Sorted rule-id lists keyed by a hash of a tuple's values.
type TupleIndex = FxHashMap<u64, Vec<u32>>;

/// Sorted rule-id lists keyed by string.
type StrIndex = FxHashMap<Box<str>, Vec<u32>>;

/// Number of dot-separated labels in a name.
fn labels(name: &str) -> usize {
    name.bytes().filter(|&b| b == b'.').count() + 1
}

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
    /// Bit n set when some suffix key has n labels: other parents of a host are not probed.
    suffix_labels: u64,
    /// Tuples of exact fields, keyed by a hash of their values (a collision only adds a
    /// candidate, which verification then rejects).
    tuples: Vec<(Box<[Exact]>, TupleIndex)>,
    always: Vec<u32>,
    /// Rules with a key on the destination address, country or continent: candidates for
    /// any connection whose address is not known yet.
    by_destination: Vec<u32>,
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
            Key::Suffix(v) => {
                self.suffix_labels |= 1u64 << labels(v).min(63);
                push_sorted(self.suffix.entry(v.clone()).or_default(), rule);
            }
            Key::Tuple(keys) => {
                let Some(parts) = keys.iter().map(Exact::of).collect::<Option<Vec<_>>>() else {
                    return;
                };
                let fields: Box<[Exact]> = parts.iter().map(|(f, _)| *f).collect();
                let map = match self.tuples.iter_mut().position(|(s, _)| *s == fields) {
                    Some(i) => &mut self.tuples[i].1,
                    None => {
                        self.tuples.push((fields, FxHashMap::default()));
                        &mut self.tuples.last_mut().expect("just pushed").1
                    }
                };
                let h = tuple_hash(parts.iter().map(|(_, v)| *v));
                push_sorted(map.entry(h).or_default(), rule);
            }
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
        for (fields, map) in &self.tuples {
            each_tuple(fields, m, rustc_hash::FxHasher::default(), &mut |h| {
                if let Some(l) = map.get(&h) {
                    out.push(l);
                }
            });
        }
        if !self.suffix.is_empty() {
            let mut n = labels(m.host);
            for d in domains(m.host) {
                let probe = self.suffix_labels & (1u64 << n.min(63)) != 0;
                n = n.saturating_sub(1);
                if !probe {
                    continue;
                }
                if let Some(l) = self.suffix.get(d) {
                    out.push(l);
                }
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        let map_bytes = |m: &StrIndex| {
            m.iter()
                .map(|(k, v)| k.len() + v.capacity() * 4 + 48)
                .sum::<usize>()
        };
        self.src_ip.heap_bytes()
            + self.dst_ip.heap_bytes()
            + self.src_port.heap_bytes()
            + self.dst_port.heap_bytes()
            + self.strs.iter().map(|(_, m)| map_bytes(m)).sum::<usize>()
            + self.elems.iter().map(|(_, m)| map_bytes(m)).sum::<usize>()
            + map_bytes(&self.suffix)
            + self
                .tuples
                .iter()
                .flat_map(|(_, m)| m.values())
                .map(|v| v.capacity() * 4 + 40)
                .sum::<usize>()
            + self.always.capacity() * 4
            + self.by_destination.capacity() * 4
    }
}

/// The smallest rule id at the head of `lists`, removed from every list it heads; `None`
/// when all are empty. Rule ids come out in rule order, each once.
#[inline]
fn next_candidate(lists: &mut [&[u32]]) -> Option<u32> {
    let mut best = u32::MAX;
    for l in lists.iter() {
        if let Some(&h) = l.first() {
            best = best.min(h);
        }
    }
    if best == u32::MAX {
        return None;
    }
    for l in lists.iter_mut() {
        if l.first() == Some(&best) {
            *l = &l[1..];
        }
    }
    Some(best)
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
    /// Users, listeners and devices by key, for building a connection's facts.
    facts: FactIndex,
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
        let sel = Selectivity::new(&policy);
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
            match guard(&r.when, &policy, Some(&sel)) {
                Some(keys) => {
                    keys.iter().for_each(|k| index.insert(k, id));
                    if keys.iter().any(Key::reads_destination_address) {
                        index.by_destination.push(id);
                    }
                }
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
            facts: FactIndex::new(&policy),
            policy,
            rules,
            index,
            stats,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The policy's users, listeners and devices, and the builder of a connection's facts.
    pub fn directory(&self) -> Directory<'_> {
        Directory::new(&self.policy, &self.facts)
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
        while let Some(id) = next_candidate(&mut lists) {
            let Some(rule) = self.rules.get(id as usize) else {
                break;
            };
            let hit = rule.expr.eval(m);
            seen(RuleId(id), hit);
            if hit {
                return rule.decision;
            }
        }
        self.unmatched
    }

    /// Decides before the destination address is known (a host name not yet resolved):
    /// `Some` when the decision is the same for every address the name could resolve to,
    /// whatever its geolocation; `None` when it may depend on the address, so the caller must
    /// resolve and decide per address. `m`'s destination address, country and continent are
    /// ignored.
    ///
    /// Rules are walked in order as by [`decide`](Self::decide), each evaluated in
    /// three-valued logic: a rule false for every address is passed over, the first rule true
    /// for every address decides, and a rule that may hold for some address before that
    /// means `None`. Candidates are the index's hits on the fields that are known, plus
    /// every rule filed under a destination key.
    pub fn decide_without_address(&self, m: &ConnMeta<'_>) -> Option<Decision> {
        let m = ConnMeta {
            dst_ip: None,
            dst_country: "",
            dst_continent: "",
            ..*m
        };
        let mut lists: SmallVec<[&[u32]; 16]> = SmallVec::new();
        self.index.candidates(&m, &mut lists);
        if !self.index.by_destination.is_empty() {
            lists.push(&self.index.by_destination);
        }
        while let Some(id) = next_candidate(&mut lists) {
            let rule = self.rules.get(id as usize)?;
            match rule.expr.eval_without_address(&m) {
                Some(true) => return Some(rule.decision),
                Some(false) => {}
                None => return None,
            }
        }
        Some(self.unmatched)
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

/// The naive meaning of [`CompiledPolicy::decide_without_address`]: every enabled rule in
/// order, evaluated in three-valued logic with the destination address unknown.
pub fn decide_reference_without_address(policy: &Policy, m: &ConnMeta<'_>) -> Option<Decision> {
    for (i, r) in policy.rules.iter().enumerate() {
        if !r.enabled {
            continue;
        }
        if crate::expr::eval::eval_without_address(&r.when, m, &policy.lists)? {
            return Some(Decision {
                rule: Some(RuleId(u32::try_from(i).unwrap_or(u32::MAX))),
                action: r.action,
                pool: r.pool,
                family: r.family,
            });
        }
    }
    Some(Decision::unmatched(policy.default_action))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rules: &str) -> CompiledPolicy {
        let text = format!(
            "[geoip]\ndatabase = \"/nonexistent/country.mmdb\"\n\n[policy]\ndefault_action = \"block\"\n\n{rules}"
        );
        let c = crate::check_str("rules.toml", &text);
        assert!(!c.diags.has_errors(), "{}", c.render());
        CompiledPolicy::new(c.policy.expect("valid policy"))
    }

    fn rule_name(t: &CompiledPolicy, d: Option<Decision>) -> Option<&str> {
        d.map(|d| {
            d.rule
                .and_then(|r| t.policy().rule(r))
                .map_or("(none)", |r| &r.name)
        })
    }

    /// Each side of the answer, on a hand-written policy: a rule on the host name alone
    /// decides before resolving; a rule on the address or its country before it means
    /// "resolve first"; rules that cannot match are passed over whatever they read.
    #[test]
    fn decides_without_the_address_only_where_it_cannot_matter() {
        let t = table(
            r#"
[[rule]]
name = "mail-by-address"
when = 'net.dst.port == 25 and net.dst.ip == 192.0.2.0/24'
action = "default"

[[rule]]
name = "iberia"
when = 'net.fqdn.host == "es.example" and net.dst.geo.country in {"ES" "PT"}'
action = "default"

[[rule]]
name = "not-the-lab"
when = 'net.fqdn.host == "lab.example" and net.dst.ip != 10.0.0.0/8'
action = "block"

[[rule]]
name = "ssh"
when = "net.dst.port == 22"
action = "block"

[[rule]]
name = "ads"
when = 'net.fqdn.host in {"ads.example" "es.example" "lab.example"} or (net.dst.ip == 203.0.113.0/24 and net.dst.port == 8443)'
action = "block"

[[rule]]
name = "web"
when = "net.dst.port in {80 443}"
action = "default"
"#,
        );
        let at = |host: &'static str, port: u16| ConnMeta {
            host,
            dst_port: port,
            ..ConnMeta::default()
        };
        let free = |m: ConnMeta<'_>| {
            let d = t.decide_without_address(&m);
            assert_eq!(d, decide_reference_without_address(t.policy(), &m), "{m:?}");
            rule_name(&t, d).map(str::to_string)
        };
        // The host alone decides: the earlier rules cannot hold on port 80.
        assert_eq!(free(at("ads.example", 80)).as_deref(), Some("ads"));
        // The port alone decides, for any host.
        assert_eq!(free(at("ok.example", 22)).as_deref(), Some("ssh"));
        assert_eq!(free(at("ok.example", 443)).as_deref(), Some("web"));
        // Nothing can match: `[policy] default_action` applies without resolving.
        assert_eq!(free(at("ok.example", 8080)).as_deref(), Some("(none)"));
        // The address part of "ads" could match on port 8443.
        assert_eq!(free(at("ok.example", 8443)), None);
        // An earlier rule on the address could match port 25.
        assert_eq!(free(at("ads.example", 25)), None);
        // An earlier rule on the destination country could match this host.
        assert_eq!(free(at("es.example", 80)), None);
        // `!=` on an unknown address is unknown too, not true or false.
        assert_eq!(free(at("lab.example", 80)), None);
        // The address is ignored when given: the answer must hold for every address.
        let given = ConnMeta {
            dst_ip: Some("192.0.2.1".parse().unwrap()),
            dst_country: "ES",
            ..at("ads.example", 25)
        };
        assert_eq!(free(given), None);
        assert_eq!(
            t.decide(&given)
                .rule
                .and_then(|r| t.policy().rule(r))
                .unwrap()
                .name,
            "mail-by-address"
        );
    }

    /// Kleene's logic on the unknown address: `not`, `xor` and `or` keep it unknown unless the
    /// known side settles the answer.
    #[test]
    fn unknown_address_propagates_through_operators() {
        let cases = [
            ("not net.dst.ip == 10.0.0.0/8", None),
            (
                "not (net.dst.ip == 10.0.0.0/8 and net.dst.port == 1)",
                Some(true),
            ),
            ("net.dst.ip == 10.0.0.0/8 or net.dst.port == 80", Some(true)),
            ("net.dst.ip == 10.0.0.0/8 or net.dst.port == 1", None),
            (
                "net.dst.ip == 10.0.0.0/8 and net.dst.port == 1",
                Some(false),
            ),
            ("net.dst.ip == 10.0.0.0/8 xor net.dst.port == 80", None),
            ("net.dst.port == 80 xor net.dst.port == 1", Some(true)),
            (
                "net.dst.geo.continent == \"EU\" or net.fqdn.host == \"x.example\"",
                Some(true),
            ),
            ("net.dst.geo.continent != \"EU\"", None),
            (
                "all(net.fqdn.domains[*] != \"example\") or net.dst.ip != ::/0",
                None,
            ),
            (
                "any(net.fqdn.domains[*] == \"example\") and net.dst.ip in $nets",
                None,
            ),
            (
                "net.fqdn.host matches \"^x\" and not net.dst.ip in $nets",
                None,
            ),
            (
                "net.fqdn.host matches \"^y\" and not net.dst.ip in $nets",
                Some(false),
            ),
        ];
        for (when, expected) in cases {
            let t = table(&format!(
                "[[list]]\nname = \"nets\"\nkind = \"ip\"\nitems = [\"10.0.0.0/8\"]\n\n[[rule]]\nname = \"r\"\nwhen = '{when}'\naction = \"default\"\n"
            ));
            let m = ConnMeta {
                host: "x.example",
                dst_port: 80,
                ..ConnMeta::default()
            };
            let got = t.decide_without_address(&m).map(|d| d.rule.is_some());
            assert_eq!(got, expected, "{when}");
            assert_eq!(
                decide_reference_without_address(t.policy(), &m).map(|d| d.rule.is_some()),
                expected,
                "{when} (reference)"
            );
        }
    }
}

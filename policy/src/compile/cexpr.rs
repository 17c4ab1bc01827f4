//! Expressions prepared for fast evaluation: every comparison becomes a membership test in a
//! prebuilt set (address ranges, port ranges, hashed strings), lists are compiled once and
//! shared by every rule that names them.

use std::sync::Arc;

use super::sets::{IpSet, PortSet, StrSet};
use crate::expr::ast::{
    ArrayField, CmpOp, Expr, Field, IntField, IntPred, IpField, IpPred, Pattern, Quantifier,
    StrField, StrPred, TestKind,
};
use crate::meta::ConnMeta;
use crate::model::{List, ListItems, ListKind};

/// A list, compiled once.
#[derive(Debug, Clone)]
pub enum CList {
    Ip(Arc<IpSet>),
    Port(Arc<PortSet>),
    Str(Arc<StrSet>),
}

impl CList {
    pub fn new(l: &List) -> Self {
        match &l.items {
            ListItems::Ip(nets) => CList::Ip(Arc::new(IpSet::new(nets))),
            ListItems::Port(rs) => CList::Port(Arc::new(PortSet::new(rs.iter().copied()))),
            ListItems::Str(items) => {
                CList::Str(Arc::new(StrSet::new(items, l.kind == ListKind::Domain)))
            }
        }
    }
}

#[derive(Debug, Clone)]
pub enum CStr {
    Eq(Box<str>),
    Cmp(CmpOp, Box<str>),
    Set(Arc<StrSet>),
    Matches(Pattern),
    Contains(Box<str>),
}

impl CStr {
    fn new(p: &StrPred, lists: &[CList]) -> Self {
        match p {
            StrPred::Cmp(CmpOp::Eq, v) => CStr::Eq(v.as_str().into()),
            StrPred::Cmp(op, v) => CStr::Cmp(*op, v.as_str().into()),
            StrPred::In(vs) => CStr::Set(Arc::new(StrSet::new(vs, false))),
            StrPred::InList(id) => match lists.get(id.0 as usize) {
                Some(CList::Str(s)) => CStr::Set(s.clone()),
                _ => CStr::Set(Arc::new(StrSet::new(&[], false))),
            },
            StrPred::Matches(p) => CStr::Matches(p.clone()),
            StrPred::Contains(v) => CStr::Contains(v.as_str().into()),
        }
    }

    #[inline]
    fn test(&self, s: &str) -> bool {
        match self {
            CStr::Eq(v) => **v == *s,
            CStr::Cmp(op, v) => op.holds(s, v),
            CStr::Set(set) => set.contains(s),
            CStr::Matches(p) => p.regex.is_match(s),
            CStr::Contains(v) => s.contains(&**v),
        }
    }
}

#[derive(Debug, Clone)]
pub enum CTest {
    /// Address in set, or not in it when `negate`; false when the address is unknown.
    Ip(IpField, Arc<IpSet>, bool),
    Port(IntField, Arc<PortSet>),
    Str(StrField, CStr),
    Array(Quantifier, ArrayField, CStr),
}

#[derive(Debug, Clone)]
pub enum CExpr {
    True,
    Test(CTest),
    Not(Box<CExpr>),
    And(Box<[CExpr]>),
    Or(Box<[CExpr]>),
    Xor(Box<CExpr>, Box<CExpr>),
}

/// The ports for which `port OP v` holds.
fn cmp_ranges(op: CmpOp, v: u16) -> Vec<(u16, u16)> {
    let below = v.checked_sub(1).map(|b| (0, b));
    let above = v.checked_add(1).map(|a| (a, u16::MAX));
    match op {
        CmpOp::Eq => vec![(v, v)],
        CmpOp::Ne => below.into_iter().chain(above).collect(),
        CmpOp::Lt => below.into_iter().collect(),
        CmpOp::Le => vec![(0, v)],
        CmpOp::Gt => above.into_iter().collect(),
        CmpOp::Ge => vec![(v, u16::MAX)],
    }
}

/// Port ranges a port predicate accepts (used by the index too).
pub fn port_ranges(p: &IntPred, lists: &[List]) -> Vec<(u16, u16)> {
    match p {
        IntPred::Cmp(op, v) => cmp_ranges(*op, *v),
        IntPred::In(rs) => rs.clone(),
        IntPred::InList(id) => match lists.get(id.0 as usize).map(|l| &l.items) {
            Some(ListItems::Port(rs)) => rs.clone(),
            _ => Vec::new(),
        },
    }
}

impl CExpr {
    pub fn new(e: &Expr, lists: &[List], clists: &[CList]) -> Self {
        match e {
            Expr::True => CExpr::True,
            Expr::Not(e) => CExpr::Not(Box::new(CExpr::new(e, lists, clists))),
            Expr::And(es) => CExpr::And(es.iter().map(|e| CExpr::new(e, lists, clists)).collect()),
            Expr::Or(es) => CExpr::Or(es.iter().map(|e| CExpr::new(e, lists, clists)).collect()),
            Expr::Xor(a, b) => CExpr::Xor(
                Box::new(CExpr::new(a, lists, clists)),
                Box::new(CExpr::new(b, lists, clists)),
            ),
            Expr::Test(t) => CExpr::Test(match &t.kind {
                TestKind::Ip(f, p) => {
                    let (set, negate) = match p {
                        IpPred::Eq(n) => (Arc::new(IpSet::new([n])), false),
                        IpPred::Ne(n) => (Arc::new(IpSet::new([n])), true),
                        IpPred::In(ns) => (Arc::new(IpSet::new(ns)), false),
                        IpPred::InList(id) => match clists.get(id.0 as usize) {
                            Some(CList::Ip(s)) => (s.clone(), false),
                            _ => (Arc::new(IpSet::default()), false),
                        },
                    };
                    CTest::Ip(*f, set, negate)
                }
                TestKind::Int(f, p) => {
                    let set = match p {
                        IntPred::InList(id) => match clists.get(id.0 as usize) {
                            Some(CList::Port(s)) => s.clone(),
                            _ => Arc::new(PortSet::default()),
                        },
                        other => Arc::new(PortSet::new(port_ranges(other, lists))),
                    };
                    CTest::Port(*f, set)
                }
                TestKind::Str(f, p) => CTest::Str(*f, CStr::new(p, clists)),
                TestKind::Array(q, f, p) => CTest::Array(*q, *f, CStr::new(p, clists)),
            }),
        }
    }

    pub fn eval(&self, m: &ConnMeta<'_>) -> bool {
        match self {
            CExpr::True => true,
            CExpr::Test(t) => t.eval(m),
            CExpr::Not(e) => !e.eval(m),
            CExpr::And(es) => es.iter().all(|e| e.eval(m)),
            CExpr::Or(es) => es.iter().any(|e| e.eval(m)),
            CExpr::Xor(a, b) => a.eval(m) != b.eval(m),
        }
    }

    /// As [`eval`](Self::eval) with the destination address unknown (Kleene's three-valued
    /// logic): `Some(b)` when the expression is `b` whatever the address and its geolocation,
    /// `None` when that may depend on them. `m`'s destination address, country and continent
    /// are ignored. Decides exactly as [`eval_without_address`](crate::expr::eval::eval_without_address).
    pub fn eval_without_address(&self, m: &ConnMeta<'_>) -> Option<bool> {
        match self {
            CExpr::True => Some(true),
            CExpr::Test(t) if t.reads_destination_address() => t.accepts_nothing().then_some(false),
            CExpr::Test(t) => Some(t.eval(m)),
            CExpr::Not(e) => e.eval_without_address(m).map(|b| !b),
            CExpr::And(es) => {
                let mut known = true;
                for e in es {
                    match e.eval_without_address(m) {
                        Some(false) => return Some(false),
                        Some(true) => {}
                        None => known = false,
                    }
                }
                known.then_some(true)
            }
            CExpr::Or(es) => {
                let mut known = true;
                for e in es {
                    match e.eval_without_address(m) {
                        Some(true) => return Some(true),
                        Some(false) => {}
                        None => known = false,
                    }
                }
                known.then_some(false)
            }
            CExpr::Xor(a, b) => Some(a.eval_without_address(m)? != b.eval_without_address(m)?),
        }
    }
}

impl CTest {
    #[inline]
    fn eval(&self, m: &ConnMeta<'_>) -> bool {
        match self {
            CTest::Ip(f, set, negate) => m.ip(*f).is_some_and(|ip| set.contains(ip) != *negate),
            CTest::Port(f, set) => set.contains(m.port(*f)),
            CTest::Str(f, p) => p.test(m.str(*f)),
            CTest::Array(Quantifier::Any, f, p) => m.any_of(*f, |s| p.test(s)),
            CTest::Array(Quantifier::All, f, p) => !m.any_of(*f, |s| !p.test(s)),
        }
    }

    /// Whether the test holds for no value at all (`in` an empty list): then it is false
    /// whatever the address, as the index knows (such a test files its rule under no key).
    fn accepts_nothing(&self) -> bool {
        match self {
            CTest::Ip(_, set, negate) => !negate && set.is_empty(),
            CTest::Str(_, CStr::Set(set)) => set.is_empty(),
            _ => false,
        }
    }

    fn reads_destination_address(&self) -> bool {
        let field = match self {
            CTest::Ip(f, ..) => Field::Ip(*f),
            CTest::Port(f, _) => Field::Int(*f),
            CTest::Str(f, _) => Field::Str(*f),
            CTest::Array(_, f, _) => Field::Array(*f),
        };
        field.reads_destination_address()
    }
}

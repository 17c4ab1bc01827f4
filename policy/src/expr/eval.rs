//! The reference evaluator: the plain meaning of an expression, evaluated by walking the tree
//! and scanning lists item by item. The compiled table must decide exactly as this does.

use super::ast::{Expr, IntPred, IpPred, ListId, Quantifier, StrPred, Test, TestKind};
use crate::meta::ConnMeta;
use crate::model::{List, ListItems, ListKind};

/// Evaluates `e`; `trace` sees each test evaluated (short-circuit order) with its result.
pub fn eval(
    e: &Expr,
    m: &ConnMeta<'_>,
    lists: &[List],
    trace: &mut dyn FnMut(&Test, bool),
) -> bool {
    match e {
        Expr::True => true,
        Expr::Test(t) => {
            let r = test(&t.kind, m, lists);
            trace(t, r);
            r
        }
        Expr::Not(e) => !eval(e, m, lists, trace),
        Expr::And(es) => es.iter().all(|e| eval(e, m, lists, trace)),
        Expr::Or(es) => es.iter().any(|e| eval(e, m, lists, trace)),
        Expr::Xor(a, b) => eval(a, m, lists, trace) != eval(b, m, lists, trace),
    }
}

/// Evaluates `e` with the destination address unknown (Kleene's three-valued logic):
/// `Some(b)` when `e` is `b` whatever the address and its geolocation turn out to be, `None`
/// when that may depend on them. Tests on fields that read the destination address are
/// unknown (false only when they hold for no value at all); `m`'s values for those fields are
/// ignored.
pub fn eval_without_address(e: &Expr, m: &ConnMeta<'_>, lists: &[List]) -> Option<bool> {
    match e {
        Expr::True => Some(true),
        Expr::Test(t) if t.kind.field().reads_destination_address() => {
            accepts_nothing(&t.kind, lists).then_some(false)
        }
        Expr::Test(t) => Some(test(&t.kind, m, lists)),
        Expr::Not(e) => eval_without_address(e, m, lists).map(|b| !b),
        Expr::And(es) => {
            let mut known = true;
            for e in es {
                match eval_without_address(e, m, lists) {
                    Some(false) => return Some(false),
                    Some(true) => {}
                    None => known = false,
                }
            }
            known.then_some(true)
        }
        Expr::Or(es) => {
            let mut known = true;
            for e in es {
                match eval_without_address(e, m, lists) {
                    Some(true) => return Some(true),
                    Some(false) => {}
                    None => known = false,
                }
            }
            known.then_some(false)
        }
        Expr::Xor(a, b) => {
            Some(eval_without_address(a, m, lists)? != eval_without_address(b, m, lists)?)
        }
    }
}

/// Whether a test holds for no value at all (`in` an empty list, or a list of another kind):
/// then it is false whatever the address.
fn accepts_nothing(k: &TestKind, lists: &[List]) -> bool {
    let items = |id| list(lists, id).map(|l| &l.items);
    match k {
        TestKind::Ip(_, IpPred::In(ns)) => ns.is_empty(),
        TestKind::Ip(_, IpPred::InList(id)) => {
            !matches!(items(*id), Some(ListItems::Ip(ns)) if !ns.is_empty())
        }
        TestKind::Str(_, StrPred::In(vs)) => vs.is_empty(),
        TestKind::Str(_, StrPred::InList(id)) => {
            !matches!(items(*id), Some(ListItems::Str(vs)) if !vs.is_empty())
        }
        _ => false,
    }
}

fn list(lists: &[List], id: ListId) -> Option<&List> {
    lists.get(id.0 as usize)
}

fn test(k: &TestKind, m: &ConnMeta<'_>, lists: &[List]) -> bool {
    match k {
        TestKind::Ip(f, p) => {
            let Some(ip) = m.ip(*f) else { return false };
            match p {
                IpPred::Eq(n) => n.contains(&ip),
                IpPred::Ne(n) => !n.contains(&ip),
                IpPred::In(ns) => ns.iter().any(|n| n.contains(&ip)),
                IpPred::InList(id) => match list(lists, *id).map(|l| &l.items) {
                    Some(ListItems::Ip(ns)) => ns.iter().any(|n| n.contains(&ip)),
                    _ => false,
                },
            }
        }
        TestKind::Int(f, p) => {
            let port = m.port(*f);
            let in_ranges =
                |rs: &[(u16, u16)]| rs.iter().any(|(lo, hi)| (*lo..=*hi).contains(&port));
            match p {
                IntPred::Cmp(op, v) => op.holds(&port, v),
                IntPred::In(rs) => in_ranges(rs),
                IntPred::InList(id) => match list(lists, *id).map(|l| &l.items) {
                    Some(ListItems::Port(rs)) => in_ranges(rs),
                    _ => false,
                },
            }
        }
        TestKind::Str(f, p) => str_pred(p, m.str(*f), lists),
        TestKind::Array(Quantifier::Any, f, p) => m.any_of(*f, |s| str_pred(p, s, lists)),
        TestKind::Array(Quantifier::All, f, p) => !m.any_of(*f, |s| !str_pred(p, s, lists)),
    }
}

/// Whether `s` is in a string list: domain lists also match subdomains.
pub fn in_str_list(l: &List, s: &str) -> bool {
    let ListItems::Str(items) = &l.items else {
        return false;
    };
    match l.kind {
        ListKind::Domain => items.iter().any(|d| {
            s == d
                || (s.len() > d.len()
                    && s.ends_with(d.as_str())
                    && s.as_bytes()[s.len() - d.len() - 1] == b'.')
        }),
        _ => items.iter().any(|i| i == s),
    }
}

fn str_pred(p: &StrPred, s: &str, lists: &[List]) -> bool {
    match p {
        StrPred::Cmp(op, v) => op.holds(s, v.as_str()),
        StrPred::In(vs) => vs.iter().any(|v| v == s),
        StrPred::InList(id) => list(lists, *id).is_some_and(|l| in_str_list(l, s)),
        StrPred::Matches(re) => re.regex.is_match(s),
        StrPred::Contains(v) => s.contains(v.as_str()),
    }
}

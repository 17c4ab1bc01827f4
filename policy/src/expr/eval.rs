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

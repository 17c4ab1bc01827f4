//! Parser and type checker for rule expressions (Cloudflare Gateway's wirefilter syntax).
//!
//! A hand-written recursive-descent parser over the expression text. Values are read according
//! to the type of the field they are compared with, so `fe80::/10` after an ip field is an IPv6
//! network while `80..90` after a port field is a range. Errors carry byte ranges into the text.

use ipnet::IpNet;

use super::ast::{
    ArrayField, CmpOp, Expr, Field, IntPred, IpPred, ListId, Pattern, Quantifier, StrField,
    StrPred, Test, TestKind,
};
use crate::config::reader::parse_net;
use crate::config::spec::ListKind;

/// A problem in an expression, at bytes `start..end` of its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub start: usize,
    pub end: usize,
    pub message: String,
}

/// What the parser needs to know about the policy's lists.
pub trait Lists {
    fn resolve(&self, name: &str) -> Option<(ListId, ListKind)>;
}

/// Parses and type-checks one expression.
pub fn parse(text: &str, lists: &dyn Lists) -> Result<Expr, ExprError> {
    let mut p = Parser {
        src: text,
        pos: 0,
        lists,
        depth: 0,
    };
    p.skip_ws();
    if p.at_end() {
        return Err(p.err(
            0,
            text.len(),
            "empty expression; omit `when` to match everything",
        ));
    }
    let e = p.or()?;
    p.skip_ws();
    if !p.at_end() {
        let (s, e2) = p.peek_word_span();
        return Err(p.err(s, e2, "unexpected text; expected `and`, `or` or the end"));
    }
    Ok(e)
}

const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    lists: &'a dyn Lists,
    depth: usize,
}

type PResult<T> = Result<T, ExprError>;

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

impl<'a> Parser<'a> {
    fn err(&self, start: usize, end: usize, msg: impl Into<String>) -> ExprError {
        ExprError {
            start,
            end: end.max(start),
            message: msg.into(),
        }
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.src.len() - trimmed.len();
    }

    /// The span of the next word-ish token, for error messages.
    fn peek_word_span(&self) -> (usize, usize) {
        let rest = self.rest();
        let len = rest
            .find(|c: char| c.is_whitespace())
            .unwrap_or(rest.len())
            .max(rest.chars().next().map_or(0, char::len_utf8));
        (self.pos, self.pos + len)
    }

    /// Consumes `sym` (punctuation) if it is next.
    fn eat_sym(&mut self, sym: &str) -> bool {
        self.skip_ws();
        if self.rest().starts_with(sym) {
            self.pos += sym.len();
            true
        } else {
            false
        }
    }

    /// Consumes the keyword `kw` if it is next as a whole word.
    fn eat_kw(&mut self, kw: &str) -> bool {
        self.skip_ws();
        let rest = self.rest();
        if rest
            .get(..kw.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(kw))
            && !rest[kw.len()..].starts_with(is_word_char)
        {
            self.pos += kw.len();
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, sym: &str, what: &str) -> PResult<()> {
        if self.eat_sym(sym) {
            Ok(())
        } else {
            let (s, e) = self.peek_word_span();
            Err(self.err(s, e, format!("expected {what}")))
        }
    }

    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(self.pos, self.pos, "expression nests too deeply"));
        }
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn or(&mut self) -> PResult<Expr> {
        let mut items = vec![self.xor()?];
        while self.eat_kw("or") || self.eat_sym("||") {
            items.push(self.xor()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn xor(&mut self) -> PResult<Expr> {
        let mut e = self.and()?;
        while self.eat_kw("xor") || self.eat_sym("^^") {
            let r = self.and()?;
            e = Expr::Xor(Box::new(e), Box::new(r));
        }
        Ok(e)
    }

    fn and(&mut self) -> PResult<Expr> {
        let mut items = vec![self.unary()?];
        while self.eat_kw("and") || self.eat_sym("&&") {
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn unary(&mut self) -> PResult<Expr> {
        self.nested(|p| {
            if p.eat_kw("not") || (!p.rest().trim_start().starts_with("!=") && p.eat_sym("!")) {
                return Ok(Expr::Not(Box::new(p.unary()?)));
            }
            if p.eat_sym("(") {
                let e = p.or()?;
                p.expect_sym(")", "`)`")?;
                return Ok(e);
            }
            p.comparison()
        })
    }

    /// Reads a field name; `[*]` after it is left for the caller.
    fn field(&mut self) -> PResult<(Field, usize, usize)> {
        self.skip_ws();
        let start = self.pos;
        let len = self
            .rest()
            .find(|c: char| !is_word_char(c))
            .unwrap_or(self.rest().len());
        if len == 0 {
            let (s, e) = self.peek_word_span();
            return Err(self.err(s, e, "expected a field name, `not` or `(`"));
        }
        let name = &self.src[start..start + len];
        self.pos += len;
        match Field::lookup(name) {
            Some(f) => Ok((f, start, self.pos)),
            None => Err(self.err(start, self.pos, format!("unknown field `{name}`"))),
        }
    }

    fn comparison(&mut self) -> PResult<Expr> {
        self.skip_ws();
        let start = self.pos;
        for (kw, quant) in [("any", Quantifier::Any), ("all", Quantifier::All)] {
            if self.rest().starts_with(kw)
                && self.src[self.pos + kw.len()..]
                    .trim_start()
                    .starts_with('(')
            {
                self.pos += kw.len();
                self.expect_sym("(", "`(`")?;
                let (field, fs, fe) = self.field()?;
                let Field::Array(af) = field else {
                    return Err(self.err(
                        fs,
                        fe,
                        format!(
                            "`{kw}(...)` takes an array field; `{}` is of type {}",
                            field.name(),
                            field.type_name()
                        ),
                    ));
                };
                self.expect_sym("[*]", "`[*]` after the array field")?;
                let pred = self.str_pred(Field::Array(af), Some(af))?;
                self.expect_sym(")", "`)`")?;
                return Ok(self.test(TestKind::Array(quant, af, pred), start));
            }
        }
        let (field, fs, fe) = self.field()?;
        let kind =
            match field {
                Field::Ip(f) => TestKind::Ip(f, self.ip_pred(field)?),
                Field::Int(f) => TestKind::Int(f, self.int_pred(field)?),
                Field::Str(f) => TestKind::Str(f, self.str_pred(field, None)?),
                Field::Array(_) => {
                    return Err(self.err(fs, fe, format!(
                    "`{0}` is an array: test its elements with any({0}[*] == ...) or all(...)",
                    field.name())));
                }
            };
        Ok(self.test(kind, start))
    }

    fn test(&self, kind: TestKind, start: usize) -> Expr {
        Expr::Test(Test {
            kind,
            start: u32::try_from(start).unwrap_or(u32::MAX),
            end: u32::try_from(self.pos).unwrap_or(u32::MAX),
        })
    }

    /// Reads a comparison operator or `in` / `matches` / `contains`.
    fn operator(&mut self) -> PResult<(Op, usize, usize)> {
        self.skip_ws();
        let start = self.pos;
        let table: &[(&str, Op, bool)] = &[
            ("==", Op::Cmp(CmpOp::Eq), false),
            ("!=", Op::Cmp(CmpOp::Ne), false),
            ("<=", Op::Cmp(CmpOp::Le), false),
            (">=", Op::Cmp(CmpOp::Ge), false),
            ("<", Op::Cmp(CmpOp::Lt), false),
            (">", Op::Cmp(CmpOp::Gt), false),
            ("~", Op::Matches, false),
            ("eq", Op::Cmp(CmpOp::Eq), true),
            ("ne", Op::Cmp(CmpOp::Ne), true),
            ("le", Op::Cmp(CmpOp::Le), true),
            ("ge", Op::Cmp(CmpOp::Ge), true),
            ("lt", Op::Cmp(CmpOp::Lt), true),
            ("gt", Op::Cmp(CmpOp::Gt), true),
            ("in", Op::In, true),
            ("matches", Op::Matches, true),
            ("contains", Op::Contains, true),
        ];
        for (text, op, word) in table {
            let hit = if *word {
                self.eat_kw(text)
            } else {
                self.eat_sym(text)
            };
            if hit {
                return Ok((*op, start, self.pos));
            }
        }
        let (s, e) = self.peek_word_span();
        Err(self.err(
            s,
            e,
            "expected an operator: == != < <= > >= in matches contains",
        ))
    }

    fn not_for(&self, field: Field, op_text: (usize, usize)) -> ExprError {
        let text = &self.src[op_text.0..op_text.1];
        self.err(
            op_text.0,
            op_text.1,
            format!(
                "operator `{text}` is not defined for `{}` (type {})",
                field.name(),
                field.type_name()
            ),
        )
    }

    /// `$name` resolved to a list, whose kind must be one of `kinds`.
    fn list_ref(&mut self, field: Field, kinds: &[ListKind]) -> PResult<ListId> {
        let start = self.pos;
        self.pos += 1;
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(self.rest().len());
        let name = &self.src[start + 1..start + 1 + len];
        self.pos += len;
        let Some((id, kind)) = self.lists.resolve(name) else {
            return Err(self.err(start, self.pos, format!("unknown list `${name}`")));
        };
        if !kinds.contains(&kind) {
            let want: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
            return Err(self.err(
                start,
                self.pos,
                format!(
                    "list `${name}` holds {} items, but `{}` needs a list of kind {}",
                    kind.as_str(),
                    field.name(),
                    want.join(" or ")
                ),
            ));
        }
        Ok(id)
    }

    /// Parses `{ a b c }` with `item` reading each element.
    fn set<T>(&mut self, mut item: impl FnMut(&mut Self) -> PResult<T>) -> PResult<Vec<T>> {
        let open = self.pos;
        self.expect_sym("{", "`{`")?;
        let mut out = Vec::new();
        loop {
            self.skip_ws();
            if self.eat_sym("}") {
                break;
            }
            if self.at_end() {
                return Err(self.err(open, self.pos, "unclosed `{`"));
            }
            out.push(item(self)?);
            self.eat_sym(",");
        }
        if out.is_empty() {
            return Err(self.err(open, self.pos, "empty set"));
        }
        Ok(out)
    }

    /// A run of characters that can make up an address, number or range.
    fn atom(&mut self) -> (usize, usize) {
        self.skip_ws();
        let start = self.pos;
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_hexdigit() || matches!(c, ':' | '.' | '/')))
            .unwrap_or(self.rest().len());
        self.pos += len;
        (start, self.pos)
    }

    fn net(&mut self) -> PResult<IpNet> {
        let (s, e) = self.atom();
        if s == e {
            let (s, e) = self.peek_word_span();
            return Err(self.err(s, e, "expected an IP address or CIDR"));
        }
        parse_net(&self.src[s..e]).map_err(|why| {
            self.err(
                s,
                e,
                format!("invalid address `{}`: {why}", &self.src[s..e]),
            )
        })
    }

    fn ip_pred(&mut self, field: Field) -> PResult<IpPred> {
        let (op, os, oe) = self.operator()?;
        self.skip_ws();
        match op {
            Op::Cmp(CmpOp::Eq) => Ok(IpPred::Eq(self.net()?)),
            Op::Cmp(CmpOp::Ne) => Ok(IpPred::Ne(self.net()?)),
            Op::In if self.rest().starts_with('$') => {
                Ok(IpPred::InList(self.list_ref(field, &[ListKind::Ip])?))
            }
            Op::In => Ok(IpPred::In(self.set(Self::net)?)),
            _ => Err(self.not_for(field, (os, oe))),
        }
    }

    fn port(&mut self) -> PResult<u16> {
        self.skip_ws();
        let start = self.pos;
        let len = self
            .rest()
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(self.rest().len());
        self.pos += len;
        if len == 0 {
            let (s, e) = self.peek_word_span();
            return Err(self.err(s, e, "expected a port number"));
        }
        self.src[start..self.pos]
            .parse::<u16>()
            .map_err(|_| self.err(start, self.pos, "port out of range (0 to 65535)"))
    }

    fn port_range(&mut self) -> PResult<(u16, u16)> {
        let start = self.pos;
        let lo = self.port()?;
        if self.rest().starts_with("..") {
            self.pos += 2;
            let hi = self.port()?;
            if hi < lo {
                return Err(self.err(start, self.pos, "empty range: the end is below the start"));
            }
            Ok((lo, hi))
        } else {
            Ok((lo, lo))
        }
    }

    fn int_pred(&mut self, field: Field) -> PResult<IntPred> {
        let (op, os, oe) = self.operator()?;
        self.skip_ws();
        let port = |p: &mut Self| {
            p.port().map_err(|e| {
                if e.message == "expected a port number" {
                    p.err(
                        e.start,
                        e.end,
                        format!(
                            "`{}` compares ports: expected a number from 0 to 65535",
                            field.name()
                        ),
                    )
                } else {
                    e
                }
            })
        };
        match op {
            Op::Cmp(c) => Ok(IntPred::Cmp(c, port(self)?)),
            Op::In if self.rest().starts_with('$') => {
                Ok(IntPred::InList(self.list_ref(field, &[ListKind::Port])?))
            }
            Op::In => Ok(IntPred::In(self.set(Self::port_range)?)),
            _ => Err(self.not_for(field, (os, oe))),
        }
    }

    /// A double-quoted string. `\"` and `\\` are escapes; any other backslash is kept, so
    /// regular expressions read naturally (`"^\d+$"`).
    fn string(&mut self) -> PResult<String> {
        self.skip_ws();
        let start = self.pos;
        if !self.rest().starts_with('"') {
            let (s, e) = self.peek_word_span();
            return Err(self.err(s, e, "expected a string in double quotes"));
        }
        let mut out = String::new();
        let mut chars = self.rest()[1..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 2;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, '"')) => out.push('"'),
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, other)) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => break,
                },
                other => out.push(other),
            }
        }
        Err(self.err(start, self.src.len(), "unterminated string"))
    }

    fn str_pred(&mut self, field: Field, array: Option<ArrayField>) -> PResult<StrPred> {
        let case = match field {
            Field::Str(f) => f.case(),
            Field::Array(f) => f.case(),
            _ => super::ast::Case::Exact,
        };
        let (op, _, _) = self.operator()?;
        self.skip_ws();
        let hostish =
            matches!(field, Field::Str(StrField::Host)) || array == Some(ArrayField::Domains);
        match op {
            Op::Cmp(c) => Ok(StrPred::Cmp(c, case.apply(&self.string_for(field)?))),
            Op::In if self.rest().starts_with('$') => {
                let kinds: &[ListKind] = if hostish {
                    &[ListKind::Host, ListKind::Domain, ListKind::String]
                } else {
                    &[ListKind::String]
                };
                Ok(StrPred::InList(self.list_ref(field, kinds)?))
            }
            Op::In => Ok(StrPred::In(
                self.set(|p| p.string_for(field).map(|s| case.apply(&s)))?,
            )),
            Op::Matches => {
                let start = self.pos;
                let source = self.string_for(field)?;
                match regex::Regex::new(&source) {
                    Ok(regex) => Ok(StrPred::Matches(Pattern { source, regex })),
                    Err(e) => {
                        let why = e.to_string();
                        let last = why.lines().last().unwrap_or("").trim();
                        let last = last.strip_prefix("error: ").unwrap_or(last).to_string();
                        Err(self.err(
                            start,
                            self.pos,
                            format!("invalid regular expression: {last}"),
                        ))
                    }
                }
            }
            Op::Contains => Ok(StrPred::Contains(case.apply(&self.string_for(field)?))),
        }
    }

    /// A string operand of `field`, with an error that names the field.
    fn string_for(&mut self, field: Field) -> PResult<String> {
        self.string().map_err(|e| {
            if e.message.starts_with("expected a string") {
                self.err(
                    e.start,
                    e.end,
                    format!(
                        "`{}` compares strings: expected a string in double quotes",
                        field.name()
                    ),
                )
            } else {
                e
            }
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Cmp(CmpOp),
    In,
    Matches,
    Contains,
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TwoLists;
    impl Lists for TwoLists {
        fn resolve(&self, name: &str) -> Option<(ListId, ListKind)> {
            match name {
                "ips" => Some((ListId(0), ListKind::Ip)),
                "hosts" => Some((ListId(1), ListKind::Host)),
                _ => None,
            }
        }
    }

    fn ok(s: &str) -> Expr {
        parse(s, &TwoLists).unwrap_or_else(|e| panic!("{s}: {e:?}"))
    }

    fn err(s: &str) -> (String, String) {
        let e = parse(s, &TwoLists).expect_err(s);
        (s[e.start..e.end].to_string(), e.message)
    }

    #[test]
    fn parses_the_spec_example() {
        let e = ok(r#"net.dst.ip in $ips and any(identity.groups[*] in {"finance"})"#);
        let Expr::And(items) = e else { panic!() };
        assert_eq!(items.len(), 2);
        assert!(matches!(
            &items[0],
            Expr::Test(Test {
                kind: TestKind::Ip(_, IpPred::InList(ListId(0))),
                ..
            })
        ));
    }

    #[test]
    fn values_follow_the_field_type() {
        assert!(matches!(ok("net.dst.ip in {fe80::/10 10.0.0.0/8 ::1}"),
            Expr::Test(Test { kind: TestKind::Ip(_, IpPred::In(v)), .. }) if v.len() == 3));
        assert!(matches!(ok("net.dst.port in {80 443 8000..8080}"),
            Expr::Test(Test { kind: TestKind::Int(_, IntPred::In(v)), .. }) if v == [(80, 80), (443, 443), (8000, 8080)]));
        assert!(matches!(ok(r#"net.fqdn.host == "Example.COM.""#),
            Expr::Test(Test { kind: TestKind::Str(_, StrPred::Cmp(CmpOp::Eq, s)), .. }) if s == "example.com"));
        assert!(matches!(ok(r#"net.dst.geo.country in {"pt" "es"}"#),
            Expr::Test(Test { kind: TestKind::Str(_, StrPred::In(v)), .. }) if v == ["PT", "ES"]));
    }

    #[test]
    fn precedence_and_keywords() {
        let e = ok("not net.dst.port == 1 or net.dst.port == 2 and net.src.port == 3");
        let Expr::Or(items) = e else { panic!("{e:?}") };
        assert!(matches!(items[0], Expr::Not(_)));
        assert!(matches!(items[1], Expr::And(_)));
        ok("!(net.dst.port == 1) && net.dst.port != 2 || net.dst.port ge 3");
        ok(r#"net.fqdn.host matches "^api\d+\.example\.com$""#);
        ok(r#"all(device_posture.checks.passed[*] != "x")"#);
        ok(r#"any(identity.groups.name[*] == "finance")"#);
    }

    #[test]
    fn errors_point_at_the_offending_text() {
        assert_eq!(
            err("net.dst.ipp == 1.2.3.4"),
            ("net.dst.ipp".into(), "unknown field `net.dst.ipp`".into())
        );
        assert_eq!(err("net.dst.ip in $nope").0, "$nope");
        assert_eq!(
            err("net.dst.port in $hosts").1,
            "list `$hosts` holds host items, but `net.dst.port` needs a list of kind port"
        );
        assert_eq!(err("net.dst.ip == 300.1.1.1").0, "300.1.1.1");
        assert_eq!(
            err("net.dst.port == \"80\"").1,
            "`net.dst.port` compares ports: expected a number from 0 to 65535"
        );
        assert_eq!(
            err("net.dst.port == 70000").1,
            "port out of range (0 to 65535)"
        );
        assert_eq!(
            err("net.fqdn.host == 3").1,
            "`net.fqdn.host` compares strings: expected a string in double quotes"
        );
        assert_eq!(err(r#"net.fqdn.host matches "(""#).0, r#""(""#);
        assert_eq!(err("identity.groups == \"a\"").0, "identity.groups");
        assert_eq!(
            err("net.dst.ip matches \"x\"").1,
            "operator `matches` is not defined for `net.dst.ip` (type ip)"
        );
        assert_eq!(err("(net.dst.port == 1").1, "expected `)`");
        assert_eq!(err("net.dst.port == 1 net.dst.port == 2").0, "net.dst.port");
        assert_eq!(err("net.dst.port in {}").1, "empty set");
        assert_eq!(
            err("  ").1,
            "empty expression; omit `when` to match everything"
        );
    }
}

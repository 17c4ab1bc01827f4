//! The typed rule expression: what a `when` string means once fields, operators, literal
//! values and list references have all been checked.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Index of a `[[list]]` in the validated policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ListId(pub u32);

/// Fields holding an IP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IpField {
    Src,
    Dst,
}

/// Fields holding a port number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum IntField {
    SrcPort,
    DstPort,
}

/// Fields holding one string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum StrField {
    Host,
    Protocol,
    Endpoint,
    Email,
    Name,
    SrcCountry,
    SrcContinent,
    DstCountry,
    DstContinent,
}

/// Fields holding an array of strings, used through `any(...)` / `all(...)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ArrayField {
    Domains,
    Groups,
    PosturePassed,
    PostureFailed,
}

/// Any field, as written in a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Field {
    Ip(IpField),
    Int(IntField),
    Str(StrField),
    Array(ArrayField),
}

/// Every field name the language knows, with its meaning. Aliases come after the canonical
/// name so that [`Field::name`] returns the canonical one.
pub const FIELDS: &[(&str, Field)] = &[
    ("net.src.ip", Field::Ip(IpField::Src)),
    ("net.src.port", Field::Int(IntField::SrcPort)),
    ("net.src.geo.country", Field::Str(StrField::SrcCountry)),
    ("net.src.geo.continent", Field::Str(StrField::SrcContinent)),
    ("net.dst.ip", Field::Ip(IpField::Dst)),
    ("net.dst.port", Field::Int(IntField::DstPort)),
    ("net.dst.geo.country", Field::Str(StrField::DstCountry)),
    ("net.dst.geo.continent", Field::Str(StrField::DstContinent)),
    ("net.fqdn.host", Field::Str(StrField::Host)),
    ("net.fqdn.domains", Field::Array(ArrayField::Domains)),
    ("net.protocol", Field::Str(StrField::Protocol)),
    ("proxy.endpoint", Field::Str(StrField::Endpoint)),
    ("identity.email", Field::Str(StrField::Email)),
    ("identity.name", Field::Str(StrField::Name)),
    ("identity.groups", Field::Array(ArrayField::Groups)),
    (
        "device_posture.checks.passed",
        Field::Array(ArrayField::PosturePassed),
    ),
    (
        "device_posture.checks.failed",
        Field::Array(ArrayField::PostureFailed),
    ),
    // Cloudflare Gateway spells the group names this way.
    ("identity.groups.name", Field::Array(ArrayField::Groups)),
];

impl Field {
    pub fn lookup(name: &str) -> Option<Field> {
        FIELDS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    pub fn name(self) -> &'static str {
        FIELDS
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(n, _)| n)
    }

    pub fn type_name(self) -> &'static str {
        match self {
            Field::Ip(_) => "ip",
            Field::Int(_) => "int",
            Field::Str(_) => "string",
            Field::Array(_) => "array",
        }
    }

    /// Whether the field's value comes from the destination address (the address itself, or
    /// its country and continent): unknown until the host name is resolved.
    pub fn reads_destination_address(self) -> bool {
        matches!(
            self,
            Field::Ip(IpField::Dst) | Field::Str(StrField::DstCountry | StrField::DstContinent)
        )
    }

    /// Whether the field needs a geolocation database.
    pub fn is_geo(self) -> bool {
        matches!(
            self,
            Field::Str(
                StrField::SrcCountry
                    | StrField::SrcContinent
                    | StrField::DstCountry
                    | StrField::DstContinent
            )
        )
    }
}

/// How string values of a field compare: host names and e-mail addresses ignore case,
/// country and continent codes are upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    Lower,
    Upper,
    Exact,
}

impl StrField {
    pub fn case(self) -> Case {
        match self {
            StrField::Host | StrField::Email | StrField::Protocol => Case::Lower,
            StrField::SrcCountry
            | StrField::SrcContinent
            | StrField::DstCountry
            | StrField::DstContinent => Case::Upper,
            StrField::Endpoint | StrField::Name => Case::Exact,
        }
    }
}

impl ArrayField {
    pub fn case(self) -> Case {
        match self {
            ArrayField::Domains => Case::Lower,
            _ => Case::Exact,
        }
    }
}

impl Case {
    /// Brings a value into the field's canonical form. Host names also lose a trailing dot.
    pub fn apply(self, s: &str) -> String {
        match self {
            Case::Lower => s.trim_end_matches('.').to_ascii_lowercase(),
            Case::Upper => s.to_ascii_uppercase(),
            Case::Exact => s.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    pub fn holds<T: Ord + ?Sized>(self, a: &T, b: &T) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
        }
    }
}

/// A test on an IP field. `Eq`/`Ne` with a network mean "inside"/"outside" it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IpPred {
    Eq(IpNet),
    Ne(IpNet),
    In(Vec<IpNet>),
    InList(ListId),
}

/// A test on a port field. Ranges are inclusive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IntPred {
    Cmp(CmpOp, u16),
    In(Vec<(u16, u16)>),
    InList(ListId),
}

/// A regular expression, kept with its source so a policy can be serialized.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub source: String,
    pub regex: regex::Regex,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}
impl Eq for Pattern {}
impl std::hash::Hash for Pattern {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.source.hash(state);
    }
}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.source.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = String::deserialize(d)?;
        let regex = regex::Regex::new(&source).map_err(serde::de::Error::custom)?;
        Ok(Pattern { source, regex })
    }
}

/// A test on a string value (a string field, or each element of an array field).
/// Literals are already in the field's canonical case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StrPred {
    Cmp(CmpOp, String),
    In(Vec<String>),
    InList(ListId),
    Matches(Pattern),
    Contains(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Quantifier {
    Any,
    All,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TestKind {
    Ip(IpField, IpPred),
    Int(IntField, IntPred),
    Str(StrField, StrPred),
    Array(Quantifier, ArrayField, StrPred),
}

/// One comparison, with its byte range in the expression text (for explain).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Test {
    pub kind: TestKind,
    pub start: u32,
    pub end: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Expr {
    /// No condition: matches everything.
    True,
    Test(Test),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Xor(Box<Expr>, Box<Expr>),
}

impl Expr {
    /// Every test in the expression, left to right.
    pub fn tests(&self) -> Vec<&Test> {
        let mut out = Vec::new();
        self.collect_tests(&mut out);
        out
    }

    fn collect_tests<'a>(&'a self, out: &mut Vec<&'a Test>) {
        match self {
            Expr::True => {}
            Expr::Test(t) => out.push(t),
            Expr::Not(e) => e.collect_tests(out),
            Expr::And(es) | Expr::Or(es) => es.iter().for_each(|e| e.collect_tests(out)),
            Expr::Xor(a, b) => {
                a.collect_tests(out);
                b.collect_tests(out);
            }
        }
    }
}

impl TestKind {
    pub fn field(&self) -> Field {
        match self {
            TestKind::Ip(f, _) => Field::Ip(*f),
            TestKind::Int(f, _) => Field::Int(*f),
            TestKind::Str(f, _) => Field::Str(*f),
            TestKind::Array(_, f, _) => Field::Array(*f),
        }
    }
}

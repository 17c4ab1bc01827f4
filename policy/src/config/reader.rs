//! A strict reader over spanned TOML: typed getters that report every problem (wrong type,
//! missing key, unknown key, bad value) as a located diagnostic and keep going, so one run
//! lists all the mistakes in a file.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diag::{Diagnostics, FileId, Loc, Located};

pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

/// Where diagnostics go while reading one file.
pub(crate) struct Reader<'d> {
    pub file: FileId,
    /// The file's text, to map positions inside string values.
    pub text: &'d str,
    pub diags: &'d mut Diagnostics,
}

impl Reader<'_> {
    pub fn loc(&self, v: &Value<'_>) -> Loc {
        Loc::new(self.file, v.span())
    }

    pub fn error(&mut self, loc: Loc, msg: impl Into<String>) {
        self.diags.error(loc, msg);
    }
}

/// A type that can be read from one TOML value.
pub(crate) trait FromToml: Sized {
    /// Reads the value; on failure reports a diagnostic and returns `None`.
    fn from_toml(v: &Value<'_>, r: &mut Reader<'_>) -> Option<Self>;
}

pub(crate) fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn wrong_type(v: &Value<'_>, r: &mut Reader<'_>, expected: &str) {
    let loc = r.loc(v);
    r.error(
        loc,
        format!("expected {expected}, found {}", type_name(v.get_ref())),
    );
}

pub(crate) fn as_str<'a>(v: &'a Value<'_>, r: &mut Reader<'_>) -> Option<&'a str> {
    match v.get_ref() {
        DeValue::String(s) => Some(s.as_ref()),
        _ => {
            wrong_type(v, r, "a string");
            None
        }
    }
}

/// Parses a string value with `FromStr`-like `parse`, reporting `what` on failure.
fn parse_str<T>(
    v: &Value<'_>,
    r: &mut Reader<'_>,
    what: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    let s = as_str(v, r)?;
    match parse(s) {
        Ok(t) => Some(t),
        Err(why) => {
            let loc = r.loc(v);
            if why.is_empty() {
                r.error(loc, format!("invalid {what} \"{s}\""));
            } else {
                r.error(loc, format!("invalid {what} \"{s}\": {why}"));
            }
            None
        }
    }
}

impl FromToml for String {
    fn from_toml(v: &Value<'_>, r: &mut Reader<'_>) -> Option<Self> {
        as_str(v, r).map(str::to_string)
    }
}

impl FromToml for bool {
    fn from_toml(v: &Value<'_>, r: &mut Reader<'_>) -> Option<Self> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                wrong_type(v, r, "a boolean (true or false)");
                None
            }
        }
    }
}

fn integer(v: &Value<'_>, r: &mut Reader<'_>) -> Option<i128> {
    match v.get_ref() {
        DeValue::Integer(i) => match i128::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Some(n),
            Err(_) => {
                let loc = r.loc(v);
                r.error(loc, "integer out of range");
                None
            }
        },
        _ => {
            wrong_type(v, r, "an integer");
            None
        }
    }
}

macro_rules! int_from_toml {
    ($($t:ty),*) => {$(
        impl FromToml for $t {
            fn from_toml(v: &Value<'_>, r: &mut Reader<'_>) -> Option<Self> {
                let n = integer(v, r)?;
                match <$t>::try_from(n) {
                    Ok(x) => Some(x),
                    Err(_) => {
                        let loc = r.loc(v);
                        r.error(loc, format!(
                            "{n} is out of range: expected {} to {}", <$t>::MIN, <$t>::MAX));
                        None
                    }
                }
            }
        }
    )*};
}
int_from_toml!(u16, u32, u64);

impl<T: FromToml> FromToml for Vec<Located<T>> {
    fn from_toml(v: &Value<'_>, r: &mut Reader<'_>) -> Option<Self> {
        match v.get_ref() {
            DeValue::Array(items) => Some(
                items
                    .iter()
                    .filter_map(|item| {
                        let loc = r.loc(item);
                        T::from_toml(item, r).map(|t| Located::new(t, loc))
                    })
                    .collect(),
            ),
            _ => {
                wrong_type(v, r, "an array");
                None
            }
        }
    }
}

impl FromToml for IpAddr {
    fn from_toml(v: &Value<'_>, r: &mut Reader<'_>) -> Option<Self> {
        parse_str(v, r, "IP address", |s| s.parse().map_err(|_| String::new()))
    }
}

impl FromToml for SocketAddr {
    fn from_toml(v: &Value<'_>, r: &mut Reader<'_>) -> Option<Self> {
        parse_str(v, r, "socket address", |s| {
            s.parse().map_err(|_| {
                "expected IP:PORT, e.g. \"127.0.0.1:1080\" or \"[::1]:1080\"".to_string()
            })
        })
    }
}

/// Parses a CIDR; a bare address means a single-address network (/32 or /128).
pub(crate) fn parse_net(s: &str) -> Result<IpNet, String> {
    if s.contains('/') {
        let net: IpNet = s
            .parse()
            .map_err(|_| "expected an address or CIDR like 10.0.0.0/8".to_string())?;
        if net.trunc() != net {
            return Err(format!("host bits are set; did you mean {}?", net.trunc()));
        }
        Ok(net)
    } else {
        s.parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| "expected an address or CIDR like 10.0.0.0/8".to_string())
    }
}

impl FromToml for IpNet {
    fn from_toml(v: &Value<'_>, r: &mut Reader<'_>) -> Option<Self> {
        parse_str(v, r, "CIDR", parse_net)
    }
}

/// Parses durations like "250ms", "30s", "5m", "1h", "1d".
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let hint = "expected a number with a unit: ms, s, m, h or d (e.g. \"30s\")";
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| hint.to_string())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| hint.to_string())?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => return Err(hint.to_string()),
    }
    .ok_or_else(|| "too large".to_string())?;
    Ok(Duration::from_millis(ms))
}

impl FromToml for Duration {
    fn from_toml(v: &Value<'_>, r: &mut Reader<'_>) -> Option<Self> {
        parse_str(v, r, "duration", parse_duration)
    }
}

/// A keyword enum read from a string: `keyword_enum!(Action { Egress = "egress", ... })`.
macro_rules! keyword_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $crate::config::reader::FromToml for $name {
            fn from_toml(
                v: &$crate::config::reader::Value<'_>,
                r: &mut $crate::config::reader::Reader<'_>,
            ) -> Option<Self> {
                let s = $crate::config::reader::as_str(v, r)?;
                match $name::parse(s) {
                    Some(x) => Some(x),
                    None => {
                        let loc = r.loc(v);
                        let choices: Vec<&str> = $name::ALL.iter().map(|x| x.as_str()).collect();
                        r.error(loc, format!(
                            "unknown value \"{s}\": expected one of {}", choices.join(", ")));
                        None
                    }
                }
            }
        }
    };
}
pub(crate) use keyword_enum;

/// Reads the keys of one table, remembering which were asked for so that the rest can be
/// reported as unknown.
pub(crate) struct Table<'a, 'i> {
    what: String,
    table: &'a DeTable<'i>,
    pub loc: Loc,
    asked: Vec<&'static str>,
}

impl<'a, 'i> Table<'a, 'i> {
    /// `what` names the table in messages, e.g. "[[pool]]" or "tls".
    pub fn new(v: &'a Value<'i>, what: impl Into<String>, r: &mut Reader<'_>) -> Option<Self> {
        let what = what.into();
        match v.get_ref() {
            DeValue::Table(table) => Some(Table {
                what,
                table,
                loc: r.loc(v),
                asked: Vec::new(),
            }),
            _ => {
                let loc = r.loc(v);
                r.error(
                    loc,
                    format!("{what} must be a table, found {}", type_name(v.get_ref())),
                );
                None
            }
        }
    }

    pub fn raw(&mut self, key: &'static str) -> Option<&'a Value<'i>> {
        self.asked.push(key);
        self.table.get(key)
    }

    /// An optional key.
    pub fn get<T: FromToml>(
        &mut self,
        r: &mut Reader<'_>,
        key: &'static str,
    ) -> Option<Located<T>> {
        let v = self.raw(key)?;
        let loc = r.loc(v);
        T::from_toml(v, r).map(|t| Located::new(t, loc))
    }

    /// A required key: its absence is reported at the table.
    pub fn req<T: FromToml>(
        &mut self,
        r: &mut Reader<'_>,
        key: &'static str,
    ) -> Option<Located<T>> {
        if self.table.get(key).is_none() {
            self.asked.push(key);
            r.error(
                self.loc,
                format!("{} is missing the required key `{key}`", self.what),
            );
            return None;
        }
        self.get(r, key)
    }

    /// Reports every key that was never asked for.
    pub fn finish(self, r: &mut Reader<'_>) {
        for (key, _) in self.table.iter() {
            if !self.asked.contains(&key.get_ref().as_ref()) {
                let loc = Loc::new(r.file, key.span());
                r.error(
                    loc,
                    format!(
                        "unknown key `{}` in {}; expected one of: {}",
                        key.get_ref(),
                        self.what,
                        self.asked.join(", ")
                    ),
                );
            }
        }
    }
}

/// Where the decoded text of a TOML string starts inside its source span, if the source text
/// between the quotes is exactly the decoded value (no escapes), so positions inside the string
/// can be mapped back to the file.
pub(crate) fn string_body_offset(raw: &str, decoded: &str) -> Option<usize> {
    let (open, skip_newline) = if raw.starts_with("'''") || raw.starts_with("\"\"\"") {
        (3, true)
    } else if raw.starts_with('\'') || raw.starts_with('"') {
        (1, false)
    } else {
        return None;
    };
    let mut start = open;
    if skip_newline {
        if raw[start..].starts_with("\r\n") {
            start += 2;
        } else if raw[start..].starts_with('\n') {
            start += 1;
        }
    }
    raw.get(start..start + decoded.len())
        .filter(|body| *body == decoded)
        .map(|_| start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("3 s").is_err());
        assert!(parse_duration("1y").is_err());
    }

    #[test]
    fn nets_reject_host_bits() {
        assert_eq!(
            parse_net("10.0.0.0/8").map(|n| n.to_string()),
            Ok("10.0.0.0/8".into())
        );
        assert_eq!(
            parse_net("10.0.0.1").map(|n| n.to_string()),
            Ok("10.0.0.1/32".into())
        );
        assert!(parse_net("10.0.0.1/8").unwrap_err().contains("10.0.0.0/8"));
        assert!(parse_net("10.0.0.0/33").is_err());
    }

    #[test]
    fn string_bodies() {
        assert_eq!(string_body_offset("'a b'", "a b"), Some(1));
        assert_eq!(string_body_offset("'''\na b'''", "a b"), Some(4));
        assert_eq!(string_body_offset("\"a\\\"b\"", "a\"b"), None);
    }
}

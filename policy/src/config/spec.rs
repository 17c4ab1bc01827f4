//! The configuration file as written: one struct per TOML table, every user-facing value
//! kept with its location. Reading checks types and syntax of single values; meaning and
//! cross-references are checked by [`crate::validate`].

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use toml::de::{DeTable, DeValue};

use super::reader::{FromToml, Reader, Table, Value, keyword_enum, string_body_offset};
use crate::diag::{Loc, Located};

keyword_enum!(
    /// What a rule does with a matching connection.
    Action { Egress = "egress", Default = "default", Ingress = "ingress", Block = "block" }
);
keyword_enum!(
    /// What an unmatched connection gets.
    DefaultAction { Default = "default", Block = "block" }
);
keyword_enum!(
    /// Which address families a rule may dial, and in which order.
    Family {
        Auto = "auto",
        Ipv4 = "ipv4",
        Ipv6 = "ipv6",
        PreferIpv4 = "prefer-ipv4",
        PreferIpv6 = "prefer-ipv6",
    }
);
keyword_enum!(
    /// How an address inside a pool's IPv6 prefix is chosen.
    Ipv6Select { Sticky = "sticky", PerConnection = "per-connection", First = "first" }
);
keyword_enum!(
    /// What happens when no pool address of the needed family works.
    Fallback { Default = "default", Deny = "deny" }
);
keyword_enum!(
    /// Protocols one listener speaks.
    ListenerProtocol { Socks5 = "socks5", Http = "http", Https = "https" }
);
keyword_enum!(
    /// Whether a listener asks clients to authenticate.
    Auth { None = "none", Optional = "optional", Required = "required" }
);
keyword_enum!(
    /// Whether the TLS listener asks for client certificates.
    ClientAuth { None = "none", Optional = "optional", Required = "required" }
);
keyword_enum!(
    /// What the items of a `[[list]]` are.
    ListKind { Ip = "ip", Host = "host", Domain = "domain", String = "string", Port = "port" }
);
keyword_enum!(
    /// Transport protocol of a connection (`net.protocol`).
    Protocol { Tcp = "tcp", Udp = "udp" }
);

#[derive(Debug, Default, Clone)]
pub struct ProxySpec {
    pub shards: Option<Located<u32>>,
    pub admin: Option<Located<SocketAddr>>,
    pub drain_timeout: Option<Located<Duration>>,
    pub handshake_timeout: Option<Located<Duration>>,
    pub connect_timeout: Option<Located<Duration>>,
    pub idle_timeout: Option<Located<Duration>>,
    pub keepalive_timeout: Option<Located<Duration>>,
    pub max_connections: Option<Located<u64>>,
    pub max_connections_per_client: Option<Located<u64>>,
    pub deny_destinations: Option<Located<Vec<Located<IpNet>>>>,
    pub splice: Option<Located<bool>>,
}

#[derive(Debug, Default, Clone)]
pub struct PolicySpec {
    pub default_action: Option<Located<DefaultAction>>,
}

#[derive(Debug, Clone)]
pub struct TlsSpec {
    pub cert: Option<Located<String>>,
    pub key: Option<Located<String>>,
    pub client_ca: Option<Located<String>>,
    pub client_auth: Option<Located<ClientAuth>>,
}

#[derive(Debug, Clone)]
pub struct ListenerSpec {
    pub name: Option<Located<String>>,
    pub bind: Option<Located<SocketAddr>>,
    pub protocols: Option<Located<Vec<Located<ListenerProtocol>>>>,
    pub auth: Option<Located<Auth>>,
    pub tls: Option<Located<TlsSpec>>,
}

#[derive(Debug, Clone)]
pub struct GeoipSpec {
    pub database: Option<Located<String>>,
}

#[derive(Clone)]
pub struct UserSpec {
    pub name: Option<Located<String>>,
    pub password: Option<Located<String>>,
    pub groups: Vec<Located<String>>,
}

impl std::fmt::Debug for UserSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSpec")
            .field("name", &self.name)
            .field("password", &"***")
            .field("groups", &self.groups)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct DeviceSpec {
    pub id: Option<Located<String>>,
    pub source: Option<Located<IpNet>>,
    pub passed: Vec<Located<String>>,
    pub failed: Vec<Located<String>>,
}

#[derive(Debug, Clone)]
pub struct LocationSpec {
    pub country: Option<Located<String>>,
    pub city: Option<Located<String>>,
}

#[derive(Debug, Clone)]
pub struct PoolSpec {
    pub name: Option<Located<String>>,
    pub location: Option<Located<LocationSpec>>,
    pub ipv4: Vec<Located<IpAddr>>,
    pub ipv6: Vec<Located<IpNet>>,
    pub ipv6_select: Option<Located<Ipv6Select>>,
    pub fallback: Option<Located<Fallback>>,
    pub interface: Option<Located<String>>,
    pub mark: Option<Located<u32>>,
}

/// A list item as written: lists of ports may use integers.
#[derive(Debug, Clone)]
pub enum RawItem {
    Str(String),
    Int(i128),
}

impl FromToml for RawItem {
    fn from_toml(v: &Value<'_>, r: &mut Reader<'_>) -> Option<Self> {
        match v.get_ref() {
            DeValue::String(s) => Some(RawItem::Str(s.to_string())),
            DeValue::Integer(_) => u64::from_toml(v, r).map(|n| RawItem::Int(i128::from(n))),
            other => {
                let loc = r.loc(v);
                r.error(
                    loc,
                    format!(
                        "expected a string or an integer, found {}",
                        super::reader::type_name(other)
                    ),
                );
                None
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct ListSpec {
    pub name: Option<Located<String>>,
    pub kind: Option<Located<ListKind>>,
    pub items: Vec<Located<RawItem>>,
}

/// An expression string with the position of its first character in the file, when the
/// string has no escapes (so offsets inside it map one to one).
#[derive(Debug, Clone)]
pub struct ExprSource {
    pub text: String,
    pub loc: Loc,
    pub body_start: Option<u32>,
}

impl ExprSource {
    /// The file location of bytes `start..end` of the expression text.
    pub fn loc_of(&self, start: usize, end: usize) -> Loc {
        match self.body_start {
            Some(b) => Loc {
                file: self.loc.file,
                start: b.saturating_add(u32::try_from(start).unwrap_or(u32::MAX)),
                end: b.saturating_add(u32::try_from(end).unwrap_or(u32::MAX)),
            },
            None => self.loc,
        }
    }
}

impl FromToml for ExprSource {
    fn from_toml(v: &Value<'_>, r: &mut Reader<'_>) -> Option<Self> {
        let text = String::from_toml(v, r)?;
        let loc = r.loc(v);
        let raw = r.text.get(v.span()).unwrap_or("");
        let body_start = string_body_offset(raw, &text)
            .and_then(|o| u32::try_from(o).ok())
            .map(|o| loc.start + o);
        Some(ExprSource {
            text,
            loc,
            body_start,
        })
    }
}

#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub loc: Loc,
    pub name: Option<Located<String>>,
    pub when: Option<Located<ExprSource>>,
    pub action: Option<Located<Action>>,
    pub pool: Option<Located<String>>,
    pub family: Option<Located<Family>>,
    pub enabled: Option<Located<bool>>,
}

#[derive(Debug, Clone)]
pub struct ConnSpec {
    pub user: Option<Located<String>>,
    pub dst: Option<Located<String>>,
    pub dst_ip: Option<Located<IpAddr>>,
    pub src: Option<Located<String>>,
    pub listener: Option<Located<String>>,
    pub protocol: Option<Located<Protocol>>,
    pub posture: Vec<Located<String>>,
    pub device: Option<Located<String>>,
    pub src_country: Option<Located<String>>,
    pub dst_country: Option<Located<String>>,
}

#[derive(Debug, Clone)]
pub struct ExpectSpec {
    pub rule: Option<Located<String>>,
    pub action: Option<Located<Action>>,
    pub pool: Option<Located<String>>,
    pub egress: Option<Located<IpAddr>>,
}

#[derive(Debug, Clone)]
pub struct TestSpec {
    pub loc: Loc,
    pub name: Option<Located<String>>,
    pub conn: Option<Located<ConnSpec>>,
    pub expect: Option<Located<ExpectSpec>>,
}

/// One file's worth of configuration (includes are merged by the loader).
#[derive(Debug, Default, Clone)]
pub struct ConfigSpec {
    pub proxy: Option<Located<ProxySpec>>,
    pub policy: Option<Located<PolicySpec>>,
    pub geoip: Option<Located<GeoipSpec>>,
    pub listeners: Vec<Located<ListenerSpec>>,
    pub users: Vec<Located<UserSpec>>,
    pub devices: Vec<Located<DeviceSpec>>,
    pub pools: Vec<Located<PoolSpec>>,
    pub lists: Vec<Located<ListSpec>>,
    pub rules: Vec<RuleSpec>,
    pub tests: Vec<TestSpec>,
}

fn list<T>(t: &mut Table<'_, '_>, r: &mut Reader<'_>, key: &'static str) -> Vec<Located<T>>
where
    Vec<Located<T>>: FromToml,
{
    t.get::<Vec<Located<T>>>(r, key)
        .map(|l| l.value)
        .unwrap_or_default()
}

fn read_proxy(v: &Value<'_>, r: &mut Reader<'_>) -> Option<ProxySpec> {
    let mut t = Table::new(v, "[proxy]", r)?;
    let spec = ProxySpec {
        shards: t.get(r, "shards"),
        admin: t.get(r, "admin"),
        drain_timeout: t.get(r, "drain_timeout"),
        handshake_timeout: t.get(r, "handshake_timeout"),
        connect_timeout: t.get(r, "connect_timeout"),
        idle_timeout: t.get(r, "idle_timeout"),
        keepalive_timeout: t.get(r, "keepalive_timeout"),
        max_connections: t.get(r, "max_connections"),
        max_connections_per_client: t.get(r, "max_connections_per_client"),
        deny_destinations: t.get(r, "deny_destinations"),
        splice: t.get(r, "splice"),
    };
    t.finish(r);
    Some(spec)
}

fn read_policy(v: &Value<'_>, r: &mut Reader<'_>) -> Option<PolicySpec> {
    let mut t = Table::new(v, "[policy]", r)?;
    let spec = PolicySpec {
        default_action: t.get(r, "default_action"),
    };
    t.finish(r);
    Some(spec)
}

fn read_geoip(v: &Value<'_>, r: &mut Reader<'_>) -> Option<GeoipSpec> {
    let mut t = Table::new(v, "[geoip]", r)?;
    let spec = GeoipSpec {
        database: t.req(r, "database"),
    };
    t.finish(r);
    Some(spec)
}

impl FromToml for TlsSpec {
    fn from_toml(v: &Value<'_>, r: &mut Reader<'_>) -> Option<Self> {
        let mut t = Table::new(v, "tls", r)?;
        let spec = TlsSpec {
            cert: t.req(r, "cert"),
            key: t.req(r, "key"),
            client_ca: t.get(r, "client_ca"),
            client_auth: t.get(r, "client_auth"),
        };
        t.finish(r);
        Some(spec)
    }
}

fn read_listener(v: &Value<'_>, r: &mut Reader<'_>) -> Option<ListenerSpec> {
    let mut t = Table::new(v, "[[listener]]", r)?;
    let spec = ListenerSpec {
        name: t.req(r, "name"),
        bind: t.req(r, "bind"),
        protocols: t.get(r, "protocols"),
        auth: t.get(r, "auth"),
        tls: t.get(r, "tls"),
    };
    t.finish(r);
    Some(spec)
}

fn read_user(v: &Value<'_>, r: &mut Reader<'_>) -> Option<UserSpec> {
    let mut t = Table::new(v, "[[user]]", r)?;
    let spec = UserSpec {
        name: t.req(r, "name"),
        password: t.get(r, "password"),
        groups: list(&mut t, r, "groups"),
    };
    t.finish(r);
    Some(spec)
}

fn read_device(v: &Value<'_>, r: &mut Reader<'_>) -> Option<DeviceSpec> {
    let mut t = Table::new(v, "[[device]]", r)?;
    let spec = DeviceSpec {
        id: t.get(r, "id"),
        source: t.get(r, "source"),
        passed: list(&mut t, r, "passed"),
        failed: list(&mut t, r, "failed"),
    };
    t.finish(r);
    Some(spec)
}

impl FromToml for LocationSpec {
    fn from_toml(v: &Value<'_>, r: &mut Reader<'_>) -> Option<Self> {
        let mut t = Table::new(v, "location", r)?;
        let spec = LocationSpec {
            country: t.get(r, "country"),
            city: t.get(r, "city"),
        };
        t.finish(r);
        Some(spec)
    }
}

fn read_pool(v: &Value<'_>, r: &mut Reader<'_>) -> Option<PoolSpec> {
    let mut t = Table::new(v, "[[pool]]", r)?;
    let spec = PoolSpec {
        name: t.req(r, "name"),
        location: t.get(r, "location"),
        ipv4: list(&mut t, r, "ipv4"),
        ipv6: list(&mut t, r, "ipv6"),
        ipv6_select: t.get(r, "ipv6_select"),
        fallback: t.get(r, "fallback"),
        interface: t.get(r, "interface"),
        mark: t.get(r, "mark"),
    };
    t.finish(r);
    Some(spec)
}

fn read_list(v: &Value<'_>, r: &mut Reader<'_>) -> Option<ListSpec> {
    let mut t = Table::new(v, "[[list]]", r)?;
    let spec = ListSpec {
        name: t.req(r, "name"),
        kind: t.req(r, "kind"),
        items: list(&mut t, r, "items"),
    };
    t.finish(r);
    Some(spec)
}

fn read_rule(v: &Value<'_>, r: &mut Reader<'_>) -> Option<RuleSpec> {
    let mut t = Table::new(v, "[[rule]]", r)?;
    let spec = RuleSpec {
        loc: t.loc,
        name: t.req(r, "name"),
        when: t.get(r, "when"),
        action: t.req(r, "action"),
        pool: t.get(r, "pool"),
        family: t.get(r, "family"),
        enabled: t.get(r, "enabled"),
    };
    t.finish(r);
    Some(spec)
}

impl FromToml for ConnSpec {
    fn from_toml(v: &Value<'_>, r: &mut Reader<'_>) -> Option<Self> {
        let mut t = Table::new(v, "conn", r)?;
        let spec = ConnSpec {
            user: t.get(r, "user"),
            dst: t.req(r, "dst"),
            dst_ip: t.get(r, "dst_ip"),
            src: t.get(r, "src"),
            listener: t.get(r, "listener"),
            protocol: t.get(r, "protocol"),
            posture: list(&mut t, r, "posture"),
            device: t.get(r, "device"),
            src_country: t.get(r, "src_country"),
            dst_country: t.get(r, "dst_country"),
        };
        t.finish(r);
        Some(spec)
    }
}

impl FromToml for ExpectSpec {
    fn from_toml(v: &Value<'_>, r: &mut Reader<'_>) -> Option<Self> {
        let mut t = Table::new(v, "expect", r)?;
        let spec = ExpectSpec {
            rule: t.get(r, "rule"),
            action: t.get(r, "action"),
            pool: t.get(r, "pool"),
            egress: t.get(r, "egress"),
        };
        t.finish(r);
        Some(spec)
    }
}

fn read_test(v: &Value<'_>, r: &mut Reader<'_>) -> Option<TestSpec> {
    let mut t = Table::new(v, "[[test]]", r)?;
    let spec = TestSpec {
        loc: t.loc,
        name: t.req(r, "name"),
        conn: t.req(r, "conn"),
        expect: t.req(r, "expect"),
    };
    t.finish(r);
    Some(spec)
}

/// Reads an array-of-tables section such as `[[rule]]`.
fn read_array<T>(
    v: &Value<'_>,
    key: &str,
    r: &mut Reader<'_>,
    read: impl Fn(&Value<'_>, &mut Reader<'_>) -> Option<T>,
) -> Vec<(T, Loc)> {
    match v.get_ref() {
        DeValue::Array(items) => items
            .iter()
            .filter_map(|item| {
                let loc = r.loc(item);
                read(item, r).map(|t| (t, loc))
            })
            .collect(),
        other => {
            let loc = r.loc(v);
            r.error(
                loc,
                format!(
                    "`{key}` must be an array of tables: write [[{key}]], found {}",
                    super::reader::type_name(other)
                ),
            );
            Vec::new()
        }
    }
}

fn located<T>(items: Vec<(T, Loc)>) -> Vec<Located<T>> {
    items
        .into_iter()
        .map(|(t, loc)| Located::new(t, loc))
        .collect()
}

/// Reads one parsed file. Returns the spec and the `include` patterns it names.
pub(crate) fn read_file(
    doc: &toml::Spanned<DeTable<'_>>,
    r: &mut Reader<'_>,
) -> (ConfigSpec, Vec<Located<String>>) {
    let mut spec = ConfigSpec::default();
    let mut includes = Vec::new();
    for (key, v) in doc.get_ref().iter() {
        let loc = r.loc(v);
        match key.get_ref().as_ref() {
            "include" => {
                includes = Vec::<Located<String>>::from_toml(v, r).unwrap_or_default();
            }
            "proxy" => spec.proxy = read_proxy(v, r).map(|s| Located::new(s, loc)),
            "policy" => spec.policy = read_policy(v, r).map(|s| Located::new(s, loc)),
            "geoip" => spec.geoip = read_geoip(v, r).map(|s| Located::new(s, loc)),
            "listener" => spec.listeners = located(read_array(v, "listener", r, read_listener)),
            "user" => spec.users = located(read_array(v, "user", r, read_user)),
            "device" => spec.devices = located(read_array(v, "device", r, read_device)),
            "pool" => spec.pools = located(read_array(v, "pool", r, read_pool)),
            "list" => spec.lists = located(read_array(v, "list", r, read_list)),
            "rule" => {
                spec.rules = read_array(v, "rule", r, read_rule)
                    .into_iter()
                    .map(|(s, _)| s)
                    .collect();
            }
            "test" => {
                spec.tests = read_array(v, "test", r, read_test)
                    .into_iter()
                    .map(|(s, _)| s)
                    .collect();
            }
            other => {
                let kloc = Loc::new(r.file, key.span());
                r.error(
                    kloc,
                    format!(
                        "unknown top-level key `{other}`; expected one of: include, proxy, \
                         policy, geoip, listener, user, device, pool, list, rule, test"
                    ),
                );
            }
        }
    }
    (spec, includes)
}

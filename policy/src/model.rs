//! The validated policy: checked, cross-referenced runtime types. Everything here is known to
//! be consistent (pools exist, lists have the right kind, expressions type-check), so runtime
//! code never re-checks it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::{IpNet, Ipv6Net};
use serde::{Deserialize, Serialize};

pub use crate::config::spec::{
    Action, Auth, ClientAuth, DefaultAction, Fallback, Family, Ipv6Select, ListKind,
    ListenerProtocol, Protocol,
};
use crate::diag::Loc;
use crate::expr::ast::Expr;

/// Position of a rule in evaluation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RuleId(pub u32);

/// Index of a pool in [`Policy::pools`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PoolId(pub u32);

/// Settings of the `[proxy]` table, defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxySettings {
    /// 0 means one shard per allowed CPU.
    pub shards: u32,
    /// Where the admin endpoint listens (loopback only), if anywhere.
    pub admin: Option<SocketAddr>,
    pub drain_timeout: Duration,
    pub handshake_timeout: Duration,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    /// How long a kept-alive HTTP client connection may wait for its next request's first
    /// byte (the rest of that head is under `handshake_timeout`).
    pub keepalive_timeout: Duration,
    pub max_connections: u64,
    /// Connections one client address may hold at once (`None`: the default, derived from
    /// `max_connections` by `per_client_limit`).
    pub max_connections_per_client: Option<u64>,
    pub deny_destinations: Vec<IpNet>,
    /// Tunnels that carry bulk data move it with splice(2) through a pipe instead of copying
    /// it through user space: less CPU per byte, but on loopback no more throughput (and less
    /// with several streams; benches/RESULTS.md), hence off by default.
    pub splice: bool,
}

impl ProxySettings {
    pub fn default_deny() -> Vec<IpNet> {
        [
            "127.0.0.0/8",
            "::1/128",
            "169.254.0.0/16",
            "fe80::/10",
            "0.0.0.0/8",
            "::/128",
        ]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
    }
}

impl ProxySettings {
    /// Connections one client address may hold: as configured, else 1,000 but never more than
    /// half of `max_connections`, so that one address never takes every slot.
    pub fn per_client_limit(&self) -> u64 {
        self.max_connections_per_client
            .unwrap_or_else(|| (self.max_connections / 2).clamp(1, DEFAULT_PER_CLIENT))
    }
}

/// `max_connections_per_client` when the file does not set it (and `max_connections` is large).
pub const DEFAULT_PER_CLIENT: u64 = 1_000;

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            shards: 0,
            admin: None,
            drain_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            keepalive_timeout: Duration::from_secs(60),
            max_connections: 100_000,
            max_connections_per_client: None,
            deny_destinations: Self::default_deny(),
            splice: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    pub name: String,
    pub bind: SocketAddr,
    pub protocols: Vec<ListenerProtocol>,
    pub auth: Auth,
    pub tls: Option<Tls>,
}

/// A password hash: never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Also the user's `identity.email`.
    pub name: String,
    pub password: Option<Secret>,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceMatch {
    /// SHA-256 of the client certificate (DER).
    Fingerprint([u8; 32]),
    Source(IpNet),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub matcher: DeviceMatch,
    pub passed: Vec<String>,
    pub failed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub country: Option<String>,
    pub city: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub name: String,
    pub location: Option<Location>,
    /// Tried in order: primary, secondary, ...
    pub ipv4: Vec<Ipv4Addr>,
    /// Prefixes (a single address is a /128).
    pub ipv6: Vec<Ipv6Net>,
    pub ipv6_select: Ipv6Select,
    pub fallback: Fallback,
    pub interface: Option<String>,
    pub mark: Option<u32>,
}

impl Pool {
    pub fn has_ipv4(&self) -> bool {
        !self.ipv4.is_empty()
    }

    pub fn has_ipv6(&self) -> bool {
        !self.ipv6.is_empty()
    }
}

/// List items in canonical form (host names lower case).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListItems {
    Ip(Vec<IpNet>),
    /// Host names, domains or plain strings, by the list's kind.
    Str(Vec<String>),
    Port(Vec<(u16, u16)>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct List {
    pub name: String,
    pub kind: ListKind,
    pub items: ListItems,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    /// `Expr::True` when the rule has no `when`.
    pub when: Expr,
    /// The expression as written, for explain.
    pub when_text: String,
    pub action: Action,
    pub pool: Option<PoolId>,
    pub family: Family,
    pub enabled: bool,
    pub loc: Loc,
}

impl Rule {
    pub fn is_catch_all(&self) -> bool {
        self.when == Expr::True
    }
}

/// The connection a `[[test]]` describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestConn {
    pub user: Option<String>,
    /// "" when the destination is an IP literal.
    pub host: String,
    pub dst_ip: Option<IpAddr>,
    pub dst_port: u16,
    pub src: Option<SocketAddr>,
    pub listener: String,
    pub protocol: Protocol,
    /// Posture checks passed and failed (from `posture`, or the `device` named).
    pub posture: Vec<String>,
    pub posture_failed: Vec<String>,
    /// Upper-case ISO 3166 codes given by the test ("" = unknown).
    pub src_country: String,
    pub dst_country: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestExpect {
    /// `Some("")` would never match; the validator resolves names, so this is a real rule.
    pub rule: Option<RuleId>,
    pub action: Option<Action>,
    pub pool: Option<PoolId>,
    pub egress: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyTest {
    pub name: String,
    pub loc: Loc,
    pub conn: TestConn,
    pub expect: TestExpect,
}

/// A whole validated configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub settings: ProxySettings,
    pub default_action: DefaultAction,
    pub listeners: Vec<Listener>,
    pub geoip: Option<PathBuf>,
    pub users: Vec<User>,
    pub devices: Vec<Device>,
    pub pools: Vec<Pool>,
    pub lists: Vec<List>,
    pub rules: Vec<Rule>,
    pub tests: Vec<PolicyTest>,
}

impl Policy {
    pub fn pool(&self, id: PoolId) -> Option<&Pool> {
        self.pools.get(id.0 as usize)
    }

    pub fn rule(&self, id: RuleId) -> Option<&Rule> {
        self.rules.get(id.0 as usize)
    }

    pub fn pool_by_name(&self, name: &str) -> Option<PoolId> {
        self.pools
            .iter()
            .position(|p| p.name == name)
            .and_then(|i| u32::try_from(i).ok())
            .map(PoolId)
    }
}

//! Turns a [`ConfigSpec`] into a [`Policy`]: fills defaults, resolves names, parses rule
//! expressions, and reports every inconsistency, plus warnings about rule order.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use ipnet::IpNet;

use crate::config::spec::{
    ConfigSpec, ConnSpec, DeviceSpec, ExpectSpec, ListSpec, ListenerSpec, PoolSpec, RawItem,
    RuleSpec, TestSpec, UserSpec,
};
use crate::config::{Loaded, reader::parse_net};
use crate::diag::{Diagnostics, Loc, Located, SourceMap};
use crate::expr::ast::{Expr, ListId};
use crate::expr::parse::{self, Lists};
use crate::meta::ConnMeta;
use crate::model::*;

/// Validates a loaded configuration. Returns the policy when there is no error; warnings are
/// added to `diags` either way.
pub fn validate(loaded: &Loaded, diags: &mut Diagnostics) -> Option<Policy> {
    let mut v = Validator {
        sources: &loaded.sources,
        diags,
    };
    let policy = v.policy(&loaded.spec, &loaded.base_dir);
    diags.sort();
    if diags.has_errors() {
        None
    } else {
        Some(policy)
    }
}

struct Validator<'a> {
    sources: &'a SourceMap,
    diags: &'a mut Diagnostics,
}

/// Name → (index, where it was defined), reporting duplicates.
struct Names {
    what: &'static str,
    map: HashMap<String, (u32, Loc)>,
}

impl Names {
    fn new(what: &'static str) -> Self {
        Names {
            what,
            map: HashMap::new(),
        }
    }

    fn define(&mut self, name: &Located<String>, index: usize, v: &mut Validator<'_>) {
        let idx = u32::try_from(index).unwrap_or(u32::MAX);
        if let Some((_, first)) = self.map.get(&name.value) {
            let at = v.sources.position(*first);
            v.diags.error(
                name.loc,
                format!(
                    "duplicate {} name \"{}\"; first defined at {at}",
                    self.what, name.value
                ),
            );
        } else {
            self.map.insert(name.value.clone(), (idx, name.loc));
        }
    }

    fn get(&self, name: &str) -> Option<u32> {
        self.map.get(name).map(|(i, _)| *i)
    }

    fn resolve(&self, name: &Located<String>, v: &mut Validator<'_>) -> Option<u32> {
        let found = self.get(&name.value);
        if found.is_none() {
            v.diags.error(
                name.loc,
                format!("unknown {} \"{}\"", self.what, name.value),
            );
        }
        found
    }
}

struct ListTable<'n> {
    names: &'n Names,
    kinds: &'n [ListKind],
}

impl Lists for ListTable<'_> {
    fn resolve(&self, name: &str) -> Option<(ListId, ListKind)> {
        let id = self.names.get(name)?;
        Some((ListId(id), *self.kinds.get(id as usize)?))
    }
}

fn val<T: Clone>(x: &Option<Located<T>>) -> Option<T> {
    x.as_ref().map(|l| l.value.clone())
}

impl Validator<'_> {
    fn policy(&mut self, spec: &ConfigSpec, base: &Path) -> Policy {
        let settings = self.settings(spec);
        let default_action = spec
            .policy
            .as_ref()
            .and_then(|p| val(&p.value.default_action))
            .unwrap_or(DefaultAction::Default);
        let listeners = self.listeners(&spec.listeners, base);
        let geoip = spec
            .geoip
            .as_ref()
            .and_then(|g| val(&g.value.database))
            .map(|d| base.join(d));

        let mut user_names = Names::new("user");
        let users: Vec<User> = spec
            .users
            .iter()
            .enumerate()
            .filter_map(|(i, u)| self.user(&u.value, i, &mut user_names))
            .collect();
        let devices: Vec<Device> = spec
            .devices
            .iter()
            .filter_map(|d| self.device(&d.value, d.loc))
            .collect();

        let mut pool_names = Names::new("pool");
        let pools: Vec<Pool> = spec
            .pools
            .iter()
            .enumerate()
            .filter_map(|(i, p)| self.pool(&p.value, p.loc, i, &mut pool_names))
            .collect();

        let mut list_names = Names::new("list");
        let lists: Vec<List> = spec
            .lists
            .iter()
            .enumerate()
            .map(|(i, l)| self.list(&l.value, i, &mut list_names))
            .collect();
        let kinds: Vec<ListKind> = lists.iter().map(|l| l.kind).collect();
        let list_table = ListTable {
            names: &list_names,
            kinds: &kinds,
        };

        let mut rule_names = Names::new("rule");
        let rules: Vec<Rule> = spec
            .rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                self.rule(
                    r,
                    i,
                    &mut rule_names,
                    &pool_names,
                    &list_table,
                    &pools,
                    geoip.is_some(),
                )
            })
            .collect();
        if rules.len() == spec.rules.len() {
            self.order_warnings(&rules, spec.rules.first().map(|r| r.loc));
        }

        let mut test_names = Names::new("test");
        let ctx = TestCtx {
            users: &user_names,
            rules: &rule_names,
            pools: &pool_names,
            listeners: &listeners,
        };
        let tests = spec
            .tests
            .iter()
            .enumerate()
            .filter_map(|(i, t)| self.test(t, i, &mut test_names, &ctx, &devices))
            .collect();

        Policy {
            settings,
            default_action,
            listeners,
            geoip,
            users,
            devices,
            pools,
            lists,
            rules,
            tests,
        }
    }

    fn settings(&mut self, spec: &ConfigSpec) -> ProxySettings {
        let mut s = ProxySettings::default();
        let Some(p) = &spec.proxy else { return s };
        let p = &p.value;
        if let Some(x) = &p.shards {
            s.shards = x.value;
        }
        // The admin endpoint has no authentication yet (admin_token comes with it): it may
        // only listen where nobody but this host reaches it.
        if let Some(admin) = &p.admin {
            if admin.value.ip().is_loopback() {
                s.admin = Some(admin.value);
            } else {
                self.diags.error(
                    admin.loc,
                    "`admin` must be a loopback address (127.0.0.1 or ::1): the endpoint has \
                     no authentication yet",
                );
            }
        }
        for (slot, given) in [
            (&mut s.drain_timeout, &p.drain_timeout),
            (&mut s.handshake_timeout, &p.handshake_timeout),
            (&mut s.connect_timeout, &p.connect_timeout),
            (&mut s.idle_timeout, &p.idle_timeout),
            (&mut s.keepalive_timeout, &p.keepalive_timeout),
        ] {
            if let Some(d) = given {
                if d.value.is_zero() {
                    self.diags
                        .error(d.loc, "a timeout must be greater than zero");
                } else {
                    *slot = d.value;
                }
            }
        }
        if let Some(x) = &p.splice {
            s.splice = x.value;
        }
        if let Some(m) = &p.max_connections {
            if m.value == 0 {
                self.diags
                    .error(m.loc, "max_connections must be at least 1");
            }
            s.max_connections = m.value;
        }
        if let Some(m) = &p.max_connections_per_client {
            if m.value == 0 {
                self.diags
                    .error(m.loc, "max_connections_per_client must be at least 1");
            }
            s.max_connections_per_client = Some(m.value);
        }
        if let Some(d) = &p.deny_destinations {
            s.deny_destinations = d.value.iter().map(|n| n.value).collect();
        }
        s
    }

    fn listeners(&mut self, specs: &[Located<ListenerSpec>], base: &Path) -> Vec<Listener> {
        if specs.is_empty() {
            return vec![Listener {
                name: "default".into(),
                bind: SocketAddr::from(([127, 0, 0, 1], 1080)),
                protocols: vec![ListenerProtocol::Socks5, ListenerProtocol::Http],
                auth: Auth::None,
                tls: None,
            }];
        }
        let mut names = Names::new("listener");
        let mut binds: HashMap<SocketAddr, Loc> = HashMap::new();
        let mut out = Vec::new();
        for (i, l) in specs.iter().enumerate() {
            let spec = &l.value;
            let (Some(name), Some(bind)) = (&spec.name, &spec.bind) else {
                continue;
            };
            names.define(name, i, self);
            if let Some(first) = binds.insert(bind.value, bind.loc) {
                let at = self.sources.position(first);
                self.diags.error(
                    bind.loc,
                    format!(
                        "address {} is already bound by a listener at {at}",
                        bind.value
                    ),
                );
            }
            let mut protocols = Vec::new();
            match &spec.protocols {
                Some(p) if p.value.is_empty() => self
                    .diags
                    .error(p.loc, "a listener needs at least one protocol"),
                Some(p) => {
                    for proto in &p.value {
                        if protocols.contains(&proto.value) {
                            self.diags.error(
                                proto.loc,
                                format!("protocol \"{}\" is listed twice", proto.value),
                            );
                        } else {
                            protocols.push(proto.value);
                        }
                    }
                }
                None => protocols = vec![ListenerProtocol::Socks5, ListenerProtocol::Http],
            }
            let wants_tls = protocols.contains(&ListenerProtocol::Https);
            if wants_tls
                && protocols.len() > 1
                && let Some(p) = &spec.protocols
            {
                self.diags.error(
                    p.loc,
                    "\"https\" cannot share a port with plain protocols; give it its own listener",
                );
            }
            let tls = match &spec.tls {
                Some(t) => {
                    if !wants_tls {
                        self.diags.error(
                            t.loc,
                            "`tls` is set but protocols does not include \"https\"",
                        );
                    }
                    let t = &t.value;
                    match (&t.cert, &t.key) {
                        (Some(cert), Some(key)) => Some(Tls {
                            cert: base.join(&cert.value),
                            key: base.join(&key.value),
                            client_ca: t.client_ca.as_ref().map(|c| base.join(&c.value)),
                            client_auth: t.client_auth.as_ref().map_or(
                                if t.client_ca.is_some() {
                                    ClientAuth::Optional
                                } else {
                                    ClientAuth::None
                                },
                                |c| c.value,
                            ),
                        }),
                        _ => None,
                    }
                }
                None => {
                    if wants_tls {
                        self.diags.error(
                            name.loc,
                            format!(
                                "listener \"{}\" speaks https but has no `tls` table",
                                name.value
                            ),
                        );
                    }
                    None
                }
            };
            if let (Some(t), Some(spec_tls)) = (&tls, &spec.tls)
                && t.client_auth != ClientAuth::None
                && t.client_ca.is_none()
            {
                self.diags
                    .error(spec_tls.loc, "client certificates need `client_ca`");
            }
            out.push(Listener {
                name: name.value.clone(),
                bind: bind.value,
                protocols,
                auth: spec.auth.as_ref().map_or(Auth::None, |a| a.value),
                tls,
            });
        }
        out
    }

    fn user(&mut self, u: &UserSpec, i: usize, names: &mut Names) -> Option<User> {
        let name = u.name.as_ref()?;
        names.define(name, i, self);
        if name.value.is_empty() {
            self.diags.error(name.loc, "a user name cannot be empty");
        }
        let password = match &u.password {
            Some(p) if !p.value.starts_with("$argon2id$") => {
                self.diags.error(p.loc, "password must be an argon2id hash ($argon2id$...); make one with `egressd hash-password`");
                None
            }
            Some(p) => Some(Secret(p.value.clone())),
            None => None,
        };
        Some(User {
            name: name.value.clone(),
            password,
            groups: u.groups.iter().map(|g| g.value.clone()).collect(),
        })
    }

    fn device(&mut self, d: &DeviceSpec, loc: Loc) -> Option<Device> {
        let matcher = match (&d.id, &d.source) {
            (Some(id), None) => match parse_fingerprint(&id.value) {
                Some(fp) => DeviceMatch::Fingerprint(fp),
                None => {
                    self.diags.error(id.loc, "device id must be \"sha256:\" followed by 64 hex digits (the client certificate's fingerprint)");
                    return None;
                }
            },
            (None, Some(src)) => DeviceMatch::Source(src.value),
            (Some(_), Some(src)) => {
                self.diags.error(
                    src.loc,
                    "a device is matched by `id` or by `source`, not both",
                );
                return None;
            }
            (None, None) => {
                self.diags.error(
                    loc,
                    "[[device]] needs `id` (certificate fingerprint) or `source` (client address)",
                );
                return None;
            }
        };
        Some(Device {
            matcher,
            passed: d.passed.iter().map(|s| s.value.clone()).collect(),
            failed: d.failed.iter().map(|s| s.value.clone()).collect(),
        })
    }

    fn pool(&mut self, p: &PoolSpec, loc: Loc, i: usize, names: &mut Names) -> Option<Pool> {
        let name = p.name.as_ref()?;
        names.define(name, i, self);
        let mut ipv4 = Vec::new();
        for a in &p.ipv4 {
            match a.value {
                IpAddr::V4(v4) => {
                    if ipv4.contains(&v4) {
                        self.diags.error(a.loc, format!("{v4} is listed twice"));
                    }
                    ipv4.push(v4);
                }
                IpAddr::V6(v6) => self
                    .diags
                    .error(a.loc, format!("{v6} is an IPv6 address; put it in `ipv6`")),
            }
        }
        let mut ipv6 = Vec::new();
        for n in &p.ipv6 {
            match n.value {
                IpNet::V6(v6) => ipv6.push(v6),
                IpNet::V4(v4) => self.diags.error(
                    n.loc,
                    format!(
                        "{} is an IPv4 address; `ipv6` takes IPv6 addresses or prefixes",
                        if v4.prefix_len() == 32 {
                            v4.addr().to_string()
                        } else {
                            v4.to_string()
                        }
                    ),
                ),
            }
        }
        if p.ipv4.is_empty() && p.ipv6.is_empty() {
            self.diags.error(
                loc,
                format!(
                    "pool \"{}\" has no address: give `ipv4` or `ipv6`",
                    name.value
                ),
            );
        }
        let location = p.location.as_ref().map(|l| {
            let country = l.value.country.as_ref().map(|c| {
                if c.value.len() != 2 || !c.value.chars().all(|ch| ch.is_ascii_alphabetic()) {
                    self.diags.error(
                        c.loc,
                        format!("\"{}\" is not an ISO 3166 two-letter country code", c.value),
                    );
                }
                c.value.to_ascii_uppercase()
            });
            Location {
                country,
                city: val(&l.value.city),
            }
        });
        if let Some(ifname) = &p.interface
            && (ifname.value.is_empty()
                || ifname.value.len() > 15
                || ifname.value.contains(['/', ' ']))
        {
            self.diags.error(
                ifname.loc,
                "interface must be a network interface name of 1 to 15 characters",
            );
        }
        Some(Pool {
            name: name.value.clone(),
            location,
            ipv4,
            ipv6,
            ipv6_select: p
                .ipv6_select
                .as_ref()
                .map_or(Ipv6Select::Sticky, |s| s.value),
            fallback: p.fallback.as_ref().map_or(Fallback::Default, |f| f.value),
            interface: val(&p.interface),
            mark: val(&p.mark),
        })
    }

    fn list(&mut self, l: &ListSpec, i: usize, names: &mut Names) -> List {
        let name = l
            .name
            .clone()
            .unwrap_or_else(|| Located::new(String::new(), Loc::new(crate::diag::FileId(0), 0..0)));
        if l.name.is_some() {
            names.define(&name, i, self);
            if name.value.is_empty()
                || !name
                    .value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                self.diags
                    .error(name.loc, "a list name may use letters, digits, `_` and `-`");
            }
        }
        let kind = l.kind.as_ref().map_or(ListKind::String, |k| k.value);
        let items = match kind {
            ListKind::Ip => ListItems::Ip(
                l.items
                    .iter()
                    .filter_map(|it| {
                        self.item_str(it, kind).and_then(|s| {
                            parse_net(&s)
                                .map_err(|why| {
                                    self.diags
                                        .error(it.loc, format!("invalid address \"{s}\": {why}"))
                                })
                                .ok()
                        })
                    })
                    .collect(),
            ),
            ListKind::Port => {
                ListItems::Port(l.items.iter().filter_map(|it| self.port_item(it)).collect())
            }
            ListKind::Host | ListKind::Domain => ListItems::Str(
                l.items
                    .iter()
                    .filter_map(|it| {
                        let s = self.item_str(it, kind)?;
                        let s = if kind == ListKind::Domain {
                            s.trim_start_matches("*.")
                                .trim_start_matches('.')
                                .to_string()
                        } else {
                            s
                        };
                        if is_host_name(&s) {
                            Some(ConnMeta::normalize_host(&s))
                        } else {
                            self.diags.error(
                                it.loc,
                                format!("\"{s}\" is not a valid {} name", kind.as_str()),
                            );
                            None
                        }
                    })
                    .collect(),
            ),
            ListKind::String => ListItems::Str(
                l.items
                    .iter()
                    .filter_map(|it| self.item_str(it, kind))
                    .collect(),
            ),
        };
        List {
            name: name.value,
            kind,
            items,
        }
    }

    fn item_str(&mut self, it: &Located<RawItem>, kind: ListKind) -> Option<String> {
        match &it.value {
            RawItem::Str(s) => Some(s.clone()),
            RawItem::Int(_) => {
                self.diags.error(
                    it.loc,
                    format!("a list of kind \"{}\" takes strings", kind.as_str()),
                );
                None
            }
        }
    }

    fn port_item(&mut self, it: &Located<RawItem>) -> Option<(u16, u16)> {
        let parsed = match &it.value {
            RawItem::Int(n) => u16::try_from(*n).ok().map(|p| (p, p)),
            RawItem::Str(s) => match s.split_once("..") {
                Some((a, b)) => a
                    .trim()
                    .parse()
                    .ok()
                    .zip(b.trim().parse().ok())
                    .filter(|(a, b)| a <= b),
                None => s.trim().parse().ok().map(|p| (p, p)),
            },
        };
        if parsed.is_none() {
            self.diags.error(
                it.loc,
                "a port list item is a port (0 to 65535) or a range \"LOW..HIGH\"",
            );
        }
        parsed
    }

    #[allow(clippy::too_many_arguments)]
    fn rule(
        &mut self,
        r: &RuleSpec,
        i: usize,
        names: &mut Names,
        pools: &Names,
        lists: &ListTable<'_>,
        pool_list: &[Pool],
        have_geoip: bool,
    ) -> Option<Rule> {
        let name = r.name.as_ref();
        if let Some(n) = name {
            names.define(n, i, self);
        }
        let (when, when_text) = match &r.when {
            None => (Some(Expr::True), String::new()),
            Some(src) => {
                let src = &src.value;
                match parse::parse(&src.text, lists) {
                    Ok(e) => {
                        if !have_geoip {
                            for t in e.tests() {
                                let field = t.kind.field();
                                if field.is_geo() {
                                    self.diags.error(src.loc_of(t.start as usize, t.end as usize), format!(
                                        "rule \"{}\" uses {} but no [geoip] database is configured",
                                        name.map_or("", |n| n.value.as_str()), field.name()));
                                }
                            }
                        }
                        (Some(e), src.text.clone())
                    }
                    Err(e) => {
                        self.diags.error(src.loc_of(e.start, e.end), e.message);
                        (None, src.text.clone())
                    }
                }
            }
        };
        let action = r.action.as_ref()?;
        let pool = match (&r.pool, action.value) {
            (Some(p), Action::Egress) => pools.resolve(p, self).map(PoolId),
            (None, Action::Egress) => {
                self.diags
                    .error(action.loc, "action = \"egress\" needs a `pool`");
                None
            }
            (Some(p), other) => {
                self.diags.error(
                    p.loc,
                    format!("`pool` is only used with action = \"egress\", not \"{other}\""),
                );
                None
            }
            (None, _) => None,
        };
        let family = r.family.as_ref().map_or(Family::Auto, |f| f.value);
        if let (Some(pid), Some(f)) = (pool, &r.family)
            && let Some(p) = pool_list.get(pid.0 as usize)
        {
            let missing = match f.value {
                Family::Ipv4 if !p.has_ipv4() => Some("IPv4"),
                Family::Ipv6 if !p.has_ipv6() => Some("IPv6"),
                _ => None,
            };
            if let Some(fam) = missing {
                self.diags.warning(f.loc, format!(
                        "pool \"{}\" has no {fam} address: every connection of this rule takes the pool's fallback", p.name));
            }
        }
        Some(Rule {
            name: name?.value.clone(),
            when: when?,
            when_text,
            action: action.value,
            pool: if action.value == Action::Egress {
                Some(pool?)
            } else {
                None
            },
            family,
            enabled: r.enabled.as_ref().is_none_or(|e| e.value),
            loc: name.map_or(r.loc, |n| n.loc),
        })
    }

    fn order_warnings(&mut self, rules: &[Rule], first_loc: Option<Loc>) {
        let enabled: Vec<&Rule> = rules.iter().filter(|r| r.enabled).collect();
        if let Some(catch_all) = enabled.iter().position(|r| r.is_catch_all()) {
            for r in &enabled[catch_all + 1..] {
                self.diags.warning(
                    r.loc,
                    format!(
                        "rule \"{}\" is unreachable: rule \"{}\" above it matches every connection",
                        r.name, enabled[catch_all].name
                    ),
                );
            }
        }
        let has_catch_all = enabled.iter().any(|r| r.is_catch_all());
        match enabled.last() {
            Some(last) if !has_catch_all => self.diags.warning(last.loc, format!(
                "the last enabled rule \"{}\" is not a catch-all: unmatched connections get [policy] default_action",
                last.name)),
            None if first_loc.is_some() => {
                if let Some(loc) = first_loc {
                    self.diags.warning(loc, "no rule is enabled: every connection gets [policy] default_action");
                }
            }
            _ => {}
        }
    }

    fn test(
        &mut self,
        t: &TestSpec,
        i: usize,
        names: &mut Names,
        ctx: &TestCtx<'_>,
        devices: &[Device],
    ) -> Option<PolicyTest> {
        let name = t.name.as_ref()?;
        names.define(name, i, self);
        let conn = self.test_conn(&t.conn.as_ref()?.value, ctx, devices);
        let expect = self.test_expect(&t.expect.as_ref()?.value, t.expect.as_ref()?.loc, ctx);
        Some(PolicyTest {
            name: name.value.clone(),
            loc: name.loc,
            conn: conn?,
            expect: expect?,
        })
    }

    fn test_conn(
        &mut self,
        c: &ConnSpec,
        ctx: &TestCtx<'_>,
        devices: &[Device],
    ) -> Option<TestConn> {
        let user = c
            .user
            .as_ref()
            .and_then(|u| ctx.users.resolve(u, self).map(|_| u.value.clone()));
        if c.user.is_some() && user.is_none() {
            return None;
        }
        let dst = c.dst.as_ref()?;
        let (host, dst_ip, dst_port) = match parse_target(&dst.value) {
            Ok(t) => t,
            Err(why) => {
                self.diags.error(dst.loc, why);
                return None;
            }
        };
        let dst_ip = val(&c.dst_ip).or(dst_ip);
        let src = match &c.src {
            Some(s) => match parse_src(&s.value) {
                Some(a) => Some(a),
                None => {
                    self.diags.error(
                        s.loc,
                        format!("invalid source \"{}\": expected IP or IP:PORT", s.value),
                    );
                    return None;
                }
            },
            None => None,
        };
        let listener = match &c.listener {
            Some(l) if ctx.listeners.iter().any(|x| x.name == l.value) => l.value.clone(),
            Some(l) => {
                self.diags
                    .error(l.loc, format!("unknown listener \"{}\"", l.value));
                return None;
            }
            None => ctx
                .listeners
                .first()
                .map(|l| l.name.clone())
                .unwrap_or_default(),
        };
        let mut posture: Vec<String> = c.posture.iter().map(|p| p.value.clone()).collect();
        let mut posture_failed = Vec::new();
        let mut bad = false;
        if let Some(d) = &c.device {
            let found = parse_fingerprint(&d.value).and_then(|fp| {
                devices
                    .iter()
                    .find(|dev| dev.matcher == DeviceMatch::Fingerprint(fp))
            });
            match found {
                Some(dev) => {
                    posture.extend(dev.passed.iter().cloned());
                    posture_failed.extend(dev.failed.iter().cloned());
                }
                None => {
                    self.diags.error(
                        d.loc,
                        format!("unknown device \"{}\": no [[device]] has this id", d.value),
                    );
                    bad = true;
                }
            }
        }
        let mut countries = [String::new(), String::new()];
        for (slot, given) in countries.iter_mut().zip([&c.src_country, &c.dst_country]) {
            if let Some(code) = given {
                if crate::geo::is_country(&code.value) {
                    *slot = code.value.to_ascii_uppercase();
                } else {
                    self.diags.error(
                        code.loc,
                        format!(
                            "\"{}\" is not an ISO 3166 two-letter country code",
                            code.value
                        ),
                    );
                    bad = true;
                }
            }
        }
        if bad {
            return None;
        }
        let [src_country, dst_country] = countries;
        Some(TestConn {
            user,
            host,
            dst_ip,
            dst_port,
            src,
            listener,
            protocol: c.protocol.as_ref().map_or(Protocol::Tcp, |p| p.value),
            posture,
            posture_failed,
            src_country,
            dst_country,
        })
    }

    fn test_expect(&mut self, e: &ExpectSpec, loc: Loc, ctx: &TestCtx<'_>) -> Option<TestExpect> {
        if e.rule.is_none() && e.action.is_none() && e.pool.is_none() && e.egress.is_none() {
            self.diags.error(
                loc,
                "expect needs at least one of rule, action, pool, egress",
            );
            return None;
        }
        let rule = match &e.rule {
            Some(r) => Some(RuleId(ctx.rules.resolve(r, self)?)),
            None => None,
        };
        let pool = match &e.pool {
            Some(p) => Some(PoolId(ctx.pools.resolve(p, self)?)),
            None => None,
        };
        Some(TestExpect {
            rule,
            action: val(&e.action),
            pool,
            egress: val(&e.egress),
        })
    }
}

struct TestCtx<'a> {
    users: &'a Names,
    rules: &'a Names,
    pools: &'a Names,
    listeners: &'a [Listener],
}

/// Parses "host:port", "1.2.3.4:port" or "[v6]:port". Returns (host, ip, port); host is ""
/// for IP literals.
pub fn parse_target(s: &str) -> Result<(String, Option<IpAddr>, u16), String> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok((String::new(), Some(sa.ip()), sa.port()));
    }
    let bad = || format!("invalid destination \"{s}\": expected HOST:PORT, IP:PORT or [IPv6]:PORT");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if !is_host_name(host) {
        return Err(bad());
    }
    Ok((ConnMeta::normalize_host(host), None, port))
}

fn parse_src(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0)))
}

/// Letters, digits, `-` and `_` in dot-separated labels of at most 63 characters.
pub fn is_host_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

fn parse_fingerprint(s: &str) -> Option<[u8; 32]> {
    let hex: String = s
        .strip_prefix("sha256:")?
        .chars()
        .filter(|c| *c != ':')
        .collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

//! Opening the upstream for a target: block a host name the policy blocks whatever it resolves
//! to before asking DNS about it, else resolve it, decide for each address dialled, order the
//! attempts by the rule's address family (Happy Eyeballs for `auto`, RFC 8305), and race them
//! with a head start for the earlier ones.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use egressd_policy::egress::{IpFamily, attempt_order, family_allows};
use egressd_policy::model::{Action, Protocol};
use egressd_policy::{Decision, Query};
use glommio::channels::local_channel;

use super::Ctx;
use crate::dns::DnsError;
use crate::egress::dial::{DialCtx, DialError, Dialed, Dialer, Reuse};
use crate::state::{GenRef, Generation};

/// RFC 8305's recommended connection attempt delay.
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Who is connecting, as the policy sees it.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub listener: Rc<str>,
    pub client: SocketAddr,
    pub local: SocketAddr,
    /// Authenticated user name ("" when anonymous).
    pub user: String,
    /// SHA-256 of the client certificate, when the client presented one.
    pub device: Option<[u8; 32]>,
}

/// What the client asked for.
#[derive(Debug, Clone)]
pub struct Target {
    /// Lower-case host name; "" for an IP literal.
    pub host: String,
    pub ip: Option<IpAddr>,
    pub port: u16,
}

impl Target {
    pub fn display(&self) -> String {
        match self.ip {
            Some(ip) if self.host.is_empty() => SocketAddr::new(ip, self.port).to_string(),
            _ => format!("{}:{}", self.host, self.port),
        }
    }
}

#[derive(Debug)]
pub struct Opened {
    pub dialed: Dialed,
    pub dst: SocketAddr,
    pub decision: Decision,
}

#[derive(Debug)]
pub enum OpenError {
    Resolve(DnsError),
    Dial {
        /// The address the decision was made for; `None` when a host name was decided (and
        /// blocked) before it was resolved, so nothing was dialled.
        dst: Option<SocketAddr>,
        decision: Decision,
        error: DialError,
    },
    /// No resolved address is allowed by the matching rules' address families.
    NoAddress,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Resolve(e) => write!(f, "resolve: {e}"),
            OpenError::Dial {
                dst: Some(dst),
                error,
                ..
            } => write!(f, "{dst}: {error}"),
            OpenError::Dial {
                dst: None, error, ..
            } => write!(f, "{error} (before resolving)"),
            OpenError::NoAddress => f.write_str("no address of a family the rule allows"),
        }
    }
}

/// What the policy is asked about a connection to `host` (at `dst_ip`, when known).
fn query<'a>(conn: &'a ConnInfo, host: &'a str, dst_ip: Option<IpAddr>, port: u16) -> Query<'a> {
    Query {
        user: &conn.user,
        fingerprint: conn.device.as_ref(),
        listener: &conn.listener,
        src: Some(conn.client),
        dst_ip,
        dst_port: port,
        host,
        protocol: Protocol::Tcp,
    }
}

/// The decision for one dialled address.
pub fn decide(generation: &Generation, conn: &ConnInfo, host: &str, dst: SocketAddr) -> Decision {
    let query = query(conn, host, Some(dst.ip()), dst.port());
    let table = &generation.table;
    let facts = table.directory().facts(&query, generation.geolocation());
    table.decide(&facts.meta())
}

/// The decision for a host name before it is resolved, when no address it could resolve to
/// (nor that address's country) would change it; `None` when it may.
pub fn decide_before_resolving(
    generation: &Generation,
    conn: &ConnInfo,
    host: &str,
    port: u16,
) -> Option<Decision> {
    let query = query(conn, host, None, port);
    let table = &generation.table;
    let facts = table.directory().facts(&query, generation.geolocation());
    table.decide_without_address(&facts.meta())
}

/// Resolves, decides and dials. A host name blocked whatever it resolves to is refused before
/// any DNS query; other decisions made before resolving still resolve (the dial needs an
/// address, and `deny_destinations` and the rule's family are checked on it). With
/// `Reuse::Idle` (plain-HTTP forwarding), a connection the session holds, or an idle one the
/// shard parked, from the very source the dial would use to the same destination is taken
/// instead of a new one; the held connection's destination is tried first when it is among
/// the candidates.
pub async fn open(
    ctx: &Ctx,
    generation: &GenRef,
    conn: &ConnInfo,
    target: &Target,
    reuse: Reuse,
) -> Result<Opened, OpenError> {
    // A failpoint for the tests that prove a panicking connection task leaves its shard
    // serving; absent from release builds.
    #[cfg(debug_assertions)]
    if target.host == "panic.egressd.invalid" {
        panic!("failpoint: panic.egressd.invalid");
    }
    let addrs: Vec<IpAddr> = match target.ip {
        Some(ip) => vec![ip],
        None => {
            if let Some(decision) =
                decide_before_resolving(generation, conn, &target.host, target.port)
                && decision.action == Action::Block
            {
                return Err(OpenError::Dial {
                    dst: None,
                    decision,
                    error: DialError::Blocked,
                });
            }
            let found = ctx
                .resolver
                .lookup(&target.host)
                .await
                .map_err(OpenError::Resolve)?;
            // Interleave by the preferred family below; start from v6-first order.
            found
                .v6
                .into_iter()
                .map(IpAddr::V6)
                .chain(found.v4.into_iter().map(IpAddr::V4))
                .collect()
        }
    };
    let mut candidates: Vec<(SocketAddr, Decision)> = addrs
        .into_iter()
        .map(|ip| {
            let dst = SocketAddr::new(ip, target.port);
            (dst, decide(generation, conn, &target.host, dst))
        })
        .filter(|(dst, d)| family_allows(d.family, dst.ip()))
        .collect();
    if candidates.is_empty() {
        return Err(OpenError::NoAddress);
    }
    if candidates.len() > 1 {
        order(&mut candidates, generation);
        if let Reuse::Idle(held) = &reuse {
            let held_dst = held.borrow().as_ref().map(|((_, dst), _)| *dst);
            if let Some(i) = candidates.iter().position(|(d, _)| Some(*d) == held_dst) {
                candidates[..=i].rotate_right(1);
            }
        }
    }
    let dial = DialCtx {
        user: conn.user.clone(),
        client: conn.client,
        ingress: conn.local,
        reuse,
    };
    if candidates.len() == 1 {
        let (dst, decision) = candidates[0];
        return dial_one(ctx.dialer.clone(), generation.clone(), decision, dst, dial).await;
    }
    race(&ctx.dialer, generation, candidates, dial).await
}

/// Orders candidates: families by the first candidate's rule (RFC 8305: the preferred family
/// first, then alternate families), keeping resolver order within a family.
fn order(candidates: &mut Vec<(SocketAddr, Decision)>, generation: &Generation) {
    let first = candidates[0].1;
    let pool = first.pool.and_then(|p| generation.policy().pool(p));
    let fams = attempt_order(
        first.family,
        pool.filter(|_| first.action == Action::Egress),
    );
    let (mut a, mut b): (Vec<_>, Vec<_>) = candidates
        .drain(..)
        .partition(|(dst, _)| IpFamily::of(dst.ip()) == fams[0]);
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut ai, mut bi) = (a.drain(..), b.drain(..));
    loop {
        match (ai.next(), bi.next()) {
            (None, None) => break,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
    *candidates = out;
}

async fn dial_one(
    dialer: Rc<Dialer>,
    generation: GenRef,
    decision: Decision,
    dst: SocketAddr,
    ctx: DialCtx,
) -> Result<Opened, OpenError> {
    match dialer.dial(&generation, &decision, dst, &ctx).await {
        Ok(dialed) => Ok(Opened {
            dialed,
            dst,
            decision,
        }),
        Err(error) => Err(OpenError::Dial {
            dst: Some(dst),
            decision,
            error,
        }),
    }
}

/// Starts the attempts one `ATTEMPT_DELAY` apart (or at once when the previous one failed);
/// the first success wins and the others are cancelled.
async fn race(
    dialer: &Rc<Dialer>,
    generation: &GenRef,
    candidates: Vec<(SocketAddr, Decision)>,
    ctx: DialCtx,
) -> Result<Opened, OpenError> {
    let (tx, rx) = local_channel::new_unbounded();
    let tx = Rc::new(tx);
    let mut pending = candidates.into_iter();
    let mut tasks = Vec::new();
    let mut running = 0usize;
    let mut last_err = None;
    loop {
        if running == 0 {
            match pending.next() {
                Some((dst, decision)) => {
                    tasks.push(start(dialer, generation, &tx, dst, decision, &ctx));
                    running += 1;
                }
                None => return Err(last_err.unwrap_or(OpenError::NoAddress)),
            }
        }
        let next = futures_lite::future::or(async { rx.recv().await.map(Some) }, async {
            glommio::timer::sleep(ATTEMPT_DELAY).await;
            Some(None)
        })
        .await;
        match next {
            Some(Some(Ok(opened))) => return Ok(opened),
            Some(Some(Err(e))) => {
                running -= 1;
                // A block or deny decision is final for that address only; keep trying.
                last_err = Some(e);
            }
            Some(None) => {
                if let Some((dst, decision)) = pending.next() {
                    tasks.push(start(dialer, generation, &tx, dst, decision, &ctx));
                    running += 1;
                }
            }
            None => return Err(last_err.unwrap_or(OpenError::NoAddress)),
        }
    }
}

fn start(
    dialer: &Rc<Dialer>,
    generation: &GenRef,
    tx: &Rc<local_channel::LocalSender<Result<Opened, OpenError>>>,
    dst: SocketAddr,
    decision: Decision,
    ctx: &DialCtx,
) -> glommio::Task<()> {
    let (dialer, generation, tx, ctx) =
        (dialer.clone(), generation.clone(), tx.clone(), ctx.clone());
    glommio::spawn_local(async move {
        let r = dial_one(dialer, generation, decision, dst, ctx).await;
        let _ = tx.try_send(r);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accesslog::ConnRecord;
    use crate::dns::test_server::{FakeDns, a, zone};
    use crate::outcome::Outcome;
    use crate::session::record_open_error;
    use crate::testutil::{
        SESSION_HOSTS, SESSION_POLICY, ctx, ctx_with_nameserver, generation, listener,
        on_test_shard as on_shard,
    };

    fn who() -> ConnInfo {
        ConnInfo {
            listener: "main".into(),
            client: "127.0.0.1:40000".parse().unwrap(),
            local: "127.0.0.1:1080".parse().unwrap(),
            user: String::new(),
            device: None,
        }
    }

    fn named(host: &str, port: u16) -> Target {
        Target {
            host: host.into(),
            ip: None,
            port,
        }
    }

    #[test]
    fn a_name_with_both_families_falls_back_to_the_one_that_answers() {
        on_shard(|r| async move {
            let (ctx, _) = ctx(&r, SESSION_POLICY, SESSION_HOSTS);
            let g = ctx.generation();
            // Only IPv4 listens: the IPv6 attempt (first, RFC 8305) is refused, IPv4 wins.
            let upstream = listener(&r, "127.0.0.1");
            let port = upstream.local_addr().unwrap().port();
            let (opened, accepted) = futures_lite::future::zip(
                open(&ctx, &g, &who(), &named("both.test", port), Reuse::Never),
                upstream.accept(),
            )
            .await;
            let opened = opened.unwrap();
            accepted.unwrap();
            assert_eq!(opened.dst, SocketAddr::from(([127, 0, 0, 1], port)));
            assert_eq!(opened.decision.action, Action::Default);
        });
    }

    #[test]
    fn failures_say_where_they_happened() {
        on_shard(|r| async move {
            let (ctx, _) = ctx(&r, SESSION_POLICY, SESSION_HOSTS);
            let g = ctx.generation();
            // The rule for this name allows IPv6 only; the name has only IPv4.
            let e = open(&ctx, &g, &who(), &named("v6only.test", 80), Reuse::Never)
                .await
                .unwrap_err();
            assert!(matches!(e, OpenError::NoAddress), "{e}");
            // Blocked whatever the name resolves to: refused before resolving, nothing
            // dialled, and the block names the rule that decided.
            let e = open(&ctx, &g, &who(), &named("blocked.test", 80), Reuse::Never)
                .await
                .unwrap_err();
            let OpenError::Dial {
                decision,
                error,
                dst,
            } = &e
            else {
                panic!("{e}")
            };
            assert!(matches!(error, DialError::Blocked));
            assert_eq!(*dst, None);
            let rule = decision.rule.and_then(|r| g.policy().rule(r)).unwrap();
            assert_eq!(rule.name, "blocked-name");
            // An IP literal is decided as it is, without resolving.
            let literal = Target {
                host: String::new(),
                ip: Some("127.0.0.1".parse().unwrap()),
                port: 4,
            };
            let e = open(&ctx, &g, &who(), &literal, Reuse::Never)
                .await
                .unwrap_err();
            assert!(
                matches!(
                    &e,
                    OpenError::Dial {
                        error: DialError::Blocked,
                        ..
                    }
                ),
                "{e}"
            );
        });
    }

    /// A name blocked whatever it resolves to, a name an earlier rule may let through by
    /// address, and a name that rule does not let through; the test's DNS server knows all
    /// three.
    const BY_NAME_POLICY: &str = r#"
[proxy]
deny_destinations = []

[[listener]]
name = "main"
bind = "127.0.0.1:0"

[[rule]]
name = "pinned"
when = 'net.fqdn.host in {"pinned.test" "moved.test"} and net.dst.ip == 127.0.0.1'
action = "default"

[[rule]]
name = "names"
when = 'net.fqdn.host in {"blocked.test" "pinned.test" "moved.test"}'
action = "block"

[[rule]]
name = "default"
action = "default"
"#;

    fn by_name_dns() -> FakeDns {
        FakeDns::start(zone(
            vec![
                a("blocked.test.", 60, [127, 0, 0, 1]),
                a("pinned.test.", 60, [127, 0, 0, 1]),
                a("moved.test.", 60, [127, 0, 0, 2]),
            ],
            60,
        ))
    }

    fn queries_for(dns: &FakeDns, name: &str) -> usize {
        dns.seen().iter().filter(|q| q.name == name).count()
    }

    #[test]
    fn a_name_blocked_whatever_it_resolves_to_is_refused_without_a_dns_query() {
        let dns = by_name_dns();
        let ns = dns.addr;
        on_shard(move |r| async move {
            let (ctx, _) = ctx_with_nameserver(&r, BY_NAME_POLICY, "", ns);
            let g = ctx.generation();
            let e = open(&ctx, &g, &who(), &named("blocked.test", 443), Reuse::Never)
                .await
                .unwrap_err();
            let OpenError::Dial {
                dst: None,
                decision,
                error: DialError::Blocked,
            } = &e
            else {
                panic!("not blocked before resolving: {e}")
            };
            let rule = decision.rule.and_then(|r| g.policy().rule(r)).unwrap();
            assert_eq!(rule.name, "names");
            // The access log names the rule, says blocked, and dialled nothing.
            let mut rec = ConnRecord::default();
            assert_eq!(record_open_error(&mut rec, &g, &e), Outcome::Blocked);
            rec.settle();
            assert_eq!(rec.rule.as_deref(), Some("names"));
            assert_eq!(rec.dialled, None);
            assert_eq!(
                rec.error.as_deref(),
                Some("blocked by policy (before resolving)")
            );
        });
        assert_eq!(dns.count(), 0, "{:?}", dns.seen());
    }

    #[test]
    fn a_name_an_earlier_rule_may_pass_by_address_is_resolved_and_decided_per_address() {
        let dns = by_name_dns();
        let ns = dns.addr;
        on_shard(move |r| async move {
            let (ctx, _) = ctx_with_nameserver(&r, BY_NAME_POLICY, "", ns);
            let g = ctx.generation();
            let rule_of = |d: &Decision| g.policy().rule(d.rule.unwrap()).unwrap().name.clone();
            // Resolved to 127.0.0.1: the address rule lets it through.
            let upstream = listener(&r, "127.0.0.1");
            let port = upstream.local_addr().unwrap().port();
            let (opened, accepted) = futures_lite::future::zip(
                open(&ctx, &g, &who(), &named("pinned.test", port), Reuse::Never),
                upstream.accept(),
            )
            .await;
            let opened = opened.unwrap();
            accepted.unwrap();
            assert_eq!(opened.dst, SocketAddr::from(([127, 0, 0, 1], port)));
            assert_eq!(rule_of(&opened.decision), "pinned");
            // Resolved to 127.0.0.2: the address rule does not hold, the name rule blocks
            // that address.
            let e = open(&ctx, &g, &who(), &named("moved.test", 80), Reuse::Never)
                .await
                .unwrap_err();
            let OpenError::Dial {
                dst: Some(dst),
                decision,
                error: DialError::Blocked,
            } = &e
            else {
                panic!("not blocked per address: {e}")
            };
            assert_eq!(*dst, SocketAddr::from(([127, 0, 0, 2], 80)));
            assert_eq!(rule_of(decision), "names");
        });
        assert!(queries_for(&dns, "pinned.test.") > 0, "{:?}", dns.seen());
        assert!(queries_for(&dns, "moved.test.") > 0, "{:?}", dns.seen());
    }

    #[test]
    fn decisions_see_the_connection_as_the_policy_describes_it() {
        let g = generation(
            r#"
[proxy]
deny_destinations = []

[[listener]]
name = "main"
bind = "127.0.0.1:0"

[[listener]]
name = "lab"
bind = "127.0.0.2:0"

[[user]]
name = "Alice@Example.com"
groups = ["finance"]

[[rule]]
name = "finance-from-lab"
when = 'any(identity.groups[*] == "finance") and proxy.endpoint == "lab" and identity.email == "alice@example.com"'
action = "block"

[[rule]]
name = "default"
action = "default"
"#,
        );
        let dst: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let mut conn = who();
        conn.user = "Alice@Example.com".into();
        conn.listener = "lab".into();
        let d = decide(&g, &conn, "", dst);
        assert_eq!(
            d.action,
            Action::Block,
            "groups, listener and lower-case email"
        );
        conn.listener = "main".into();
        assert_eq!(decide(&g, &conn, "", dst).action, Action::Default);
    }
}

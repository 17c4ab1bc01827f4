//! Opening the upstream for a target: resolve a host name, decide for each address dialled,
//! order the attempts by the rule's address family (Happy Eyeballs for `auto`, RFC 8305), and
//! race them with a head start for the earlier ones.

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
        dst: SocketAddr,
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
            OpenError::Dial { dst, error, .. } => write!(f, "{dst}: {error}"),
            OpenError::NoAddress => f.write_str("no address of a family the rule allows"),
        }
    }
}

/// The decision for one dialled address.
pub fn decide(generation: &Generation, conn: &ConnInfo, host: &str, dst: SocketAddr) -> Decision {
    let query = Query {
        user: &conn.user,
        fingerprint: conn.device.as_ref(),
        listener: &conn.listener,
        src: Some(conn.client),
        dst_ip: Some(dst.ip()),
        dst_port: dst.port(),
        host,
        protocol: Protocol::Tcp,
    };
    let table = &generation.table;
    let facts = table.directory().facts(&query, generation.geolocation());
    table.decide(&facts.meta())
}

/// Resolves, decides and dials. With `Reuse::Idle` (plain-HTTP forwarding), a connection the
/// session holds, or an idle one the shard parked, from the very source the dial would use to
/// the same destination is taken instead of a new one; the held connection's destination is
/// tried first when it is among the candidates.
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
            dst,
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
    use crate::testutil::{
        SESSION_HOSTS, SESSION_POLICY, ctx, generation, listener, on_test_shard as on_shard,
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
            // Decided per address: the block names the rule that decided.
            let e = open(&ctx, &g, &who(), &named("blocked.test", 80), Reuse::Never)
                .await
                .unwrap_err();
            let OpenError::Dial {
                decision, error, ..
            } = &e
            else {
                panic!("{e}")
            };
            assert!(matches!(error, DialError::Blocked));
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

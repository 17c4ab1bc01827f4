//! Test support shared by the unit tests: a one-off shard to run async tests on, connected
//! pairs of sockets driven by its readiness.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::rc::Rc;

use crate::readiness::Readiness;

/// Test support: runs `f` on a one-off glommio executor with a readiness poller of its own.
pub fn on_test_shard<F, Fut>(f: F)
where
    F: FnOnce(Rc<Readiness>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .io_memory(64 * 1024)
        .spawn(move || async move {
            let readiness = Readiness::new().unwrap();
            glommio::spawn_local(readiness.clone().run()).detach();
            f(readiness).await;
        })
        .unwrap()
        .join()
        .unwrap();
}

/// Test support: the two ends of one loopback connection, both driven by `r`.
pub async fn test_pair(r: &Rc<Readiness>) -> (crate::conn::Conn, crate::conn::Conn) {
    let listener = crate::listen::Listener::bind("127.0.0.1:0".parse().unwrap(), r).unwrap();
    let addr = listener.local_addr().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_nonblocking(true).unwrap();
    let (a, b) = futures_lite::future::zip(
        crate::conn::Conn::connect(socket, addr, std::time::Duration::from_secs(5), r),
        listener.accept(),
    )
    .await;
    (a.unwrap(), b.unwrap().stream)
}

/// A generation of this configuration (which must be valid).
pub fn generation(toml: &str) -> crate::state::GenRef {
    let checked = egressd_policy::check_str("<test>", toml);
    let rendered = checked.render();
    let policy = checked
        .policy
        .unwrap_or_else(|| panic!("test configuration invalid:\n{rendered}"));
    Rc::new(std::sync::Arc::new(
        crate::state::Generation::load(1, policy).unwrap(),
    ))
}

/// The decision the rule named `rule` makes.
pub fn decision_of(generation: &crate::state::Generation, rule: &str) -> egressd_policy::Decision {
    let policy = generation.policy();
    let (i, r) = policy
        .rules
        .iter()
        .enumerate()
        .find(|(_, r)| r.name == rule)
        .unwrap();
    egressd_policy::Decision {
        rule: Some(egressd_policy::model::RuleId(i as u32)),
        action: r.action,
        pool: r.pool,
        family: r.family,
    }
}

/// Records a session reported, in order.
pub type Reported = Rc<std::cell::RefCell<Vec<crate::accesslog::ConnRecord>>>;

/// A session context over `r` serving this configuration, with `hosts` as the resolver's
/// hosts file (and no DNS server), and the records it reports.
pub fn ctx(r: &Rc<Readiness>, toml: &str, hosts: &str) -> (crate::session::Ctx, Reported) {
    ctx_with_nameserver(r, toml, hosts, "127.0.0.1:53".parse().unwrap())
}

/// As [`ctx`], asking the DNS server at `nameserver` what `hosts` does not know.
pub fn ctx_with_nameserver(
    r: &Rc<Readiness>,
    toml: &str,
    hosts: &str,
    nameserver: std::net::SocketAddr,
) -> (crate::session::Ctx, Reported) {
    let generation = generation(toml);
    let mut resolver =
        crate::dns::ResolverConfig::from_texts(hosts, "options attempts:1 timeout:1\n");
    resolver.nameservers = vec![nameserver];
    let shared: crate::state::Shared =
        std::sync::Arc::new(arc_swap::ArcSwap::new(std::sync::Arc::clone(&generation)));
    let reported: Reported = Rc::default();
    let sink = reported.clone();
    let ctx = crate::session::Ctx {
        current: crate::state::Current::new(&shared),
        dialer: Rc::new(crate::egress::dial::Dialer::new(4, r.clone())),
        resolver: crate::dns::Resolver::new(std::sync::Arc::new(resolver)),
        auth: crate::auth::Authenticator::new([7; 32]),
        bufs: crate::relay::BufPool::default(),
        report: Box::new(move |rec| {
            rec.settle();
            sink.borrow_mut().push(std::mem::take(rec));
        }),
    };
    (ctx, reported)
}

/// A listener on `ip`, port 0, driven by `r`.
pub fn listener(r: &Rc<Readiness>, ip: &str) -> crate::listen::Listener {
    crate::listen::Listener::bind(std::net::SocketAddr::new(ip.parse().unwrap(), 0), r).unwrap()
}

/// The listener description sessions get (a listener named in the configuration takes its
/// authentication mode from there).
pub fn listener_spec(
    name: &str,
    protocols: &[egressd_policy::model::ListenerProtocol],
    auth: egressd_policy::model::Auth,
) -> crate::listen::ListenerSpec {
    crate::listen::ListenerSpec {
        index: 0,
        name: name.into(),
        local: None,
        protocols: protocols.to_vec(),
        auth,
    }
}

/// A policy for session tests: destination port 4 is blocked, the name `blocked.test` too, a
/// rule for `v6only.test` allows IPv6 only, everything else leaves from the default address.
pub const SESSION_POLICY: &str = r#"
[proxy]
deny_destinations = ["127.0.0.9/32"]
handshake_timeout = "300ms"

[[listener]]
name = "main"
bind = "127.0.0.1:0"

[[listener]]
name = "locked"
bind = "127.0.0.2:0"
auth = "required"

[[rule]]
name = "blocked-port"
when = "net.dst.port == 4"
action = "block"

[[rule]]
name = "blocked-name"
when = 'net.fqdn.host == "blocked.test"'
action = "block"

[[rule]]
name = "v6only"
when = 'net.fqdn.host == "v6only.test"'
action = "default"
family = "ipv6"

[[rule]]
name = "default"
action = "default"
"#;

/// Hosts for session tests.
pub const SESSION_HOSTS: &str =
    "127.0.0.1 upstream.test v6only.test blocked.test\n127.0.0.1 both.test\n::1 both.test\n";

/// Runs `session::handle` for the server end of a connection from `peer`.
pub fn serve(
    ctx: &Rc<crate::session::Ctx>,
    listener: crate::listen::ListenerSpec,
    stream: crate::conn::Conn,
) -> glommio::Task<Option<crate::accesslog::ConnRecord>> {
    let ctx = ctx.clone();
    glommio::spawn_local(async move {
        let accepted = crate::listen::Accepted {
            stream,
            peer: Some("127.0.0.1:40000".parse().unwrap()),
        };
        let mut rec = crate::session::handle(&ctx, accepted, &listener).await;
        if let Some(r) = &mut rec {
            r.settle();
        }
        rec
    })
}

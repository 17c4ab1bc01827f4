//! One client connection: pick the protocol from the first byte, run its handshake under the
//! handshake deadline, open the upstream by policy, relay, and write one access-log line (one
//! per request for forwarded HTTP).
//!
//! The handshake deadline bounds the whole exchange, not each read: `handshake_timeout` after
//! the connection was accepted, the client must have sent its complete SOCKS5 request, or its
//! TLS handshake and first HTTP request head, however it spaces its bytes. (Each later request
//! head on a kept HTTP connection has a deadline of its own; see `http`.)

pub mod http;
pub mod open;
pub mod socks5;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use egressd_policy::model::ListenerProtocol;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::accesslog::{ConnRecord, Timestamp};
use crate::auth::Authenticator;
use crate::conn::Conn;
use crate::dns::Resolver;
use crate::egress::dial::{DialError, Dialer};
use crate::listen::{Accepted, ListenerSpec};
use crate::outcome::Outcome;
use crate::relay::{BufPool, RelayEnd, relay};
use crate::state::{Current, GenRef};
use open::{OpenError, Opened};

/// Largest handshake a client may send before its request is complete (SOCKS5 messages are
/// far smaller; HTTP heads have their own limit in `wire::http`).
pub const MAX_HANDSHAKE: usize = 64 * 1024;

/// Reads more bytes into `buf` (at most `limit` in total). Ok(0) means the peer closed.
pub async fn read_more<R: AsyncRead + Unpin>(
    stream: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
) -> io::Result<usize> {
    let have = buf.len();
    let want = (limit.saturating_sub(have)).min(4096);
    if want == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message too large",
        ));
    }
    buf.resize(have + want, 0);
    let r = stream.read(&mut buf[have..]).await;
    buf.truncate(have + *r.as_ref().unwrap_or(&0));
    r
}

/// Runs `fut` until `deadline`; after it, fails with `TimedOut` (and `fut` is dropped).
pub async fn before<T>(
    deadline: Instant,
    fut: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    futures_lite::future::or(fut, async {
        glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "handshake deadline passed",
        ))
    })
    .await
}

/// A reader whose every wait for bytes is limited (an idle timeout between reads, as opposed
/// to `before`'s deadline for a whole exchange).
pub struct WaitLimited<'a, S> {
    stream: &'a mut S,
    limit: Duration,
    timer: Option<glommio::timer::Timer>,
}

impl<'a, S> WaitLimited<'a, S> {
    pub fn new(stream: &'a mut S, limit: Duration) -> Self {
        WaitLimited {
            stream,
            limit,
            timer: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WaitLimited<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut *this.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let limit = this.limit;
                let timer = this
                    .timer
                    .get_or_insert_with(|| glommio::timer::Timer::new(limit));
                if Pin::new(timer).poll(cx).is_ready() {
                    this.timer = None;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "nothing to read for the idle timeout",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

/// The access-log outcome for an I/O error during a handshake.
pub fn io_outcome(e: &io::Error) -> Outcome {
    if e.kind() == io::ErrorKind::TimedOut {
        Outcome::HandshakeTimeout
    } else {
        Outcome::ClientError
    }
}

/// Fills the record from an opened upstream (`generation`: the one that decided).
pub fn record_opened(rec: &mut ConnRecord, generation: &GenRef, opened: &Opened) {
    rec.decided(generation, opened.decision);
    rec.dialled = Some(opened.dst);
    rec.egress = Some(opened.dialed.local);
    rec.fallback = opened.dialed.fallback.clone();
}

/// Fills the record from a failed open and returns its outcome.
pub fn record_open_error(rec: &mut ConnRecord, generation: &GenRef, e: &OpenError) -> Outcome {
    rec.error = Some(e.to_string());
    match e {
        OpenError::Resolve(_) => Outcome::ResolveFailed,
        OpenError::NoAddress => Outcome::NoAddress,
        OpenError::Dial {
            dst,
            decision,
            error,
        } => {
            rec.decided(generation, *decision);
            rec.dialled = *dst;
            rec.tried = error.tried().to_vec();
            match error {
                DialError::Blocked => Outcome::Blocked,
                DialError::Denied => Outcome::DeniedDestination,
                DialError::NoEgress(_) => Outcome::NoEgress,
                DialError::Connect(_) | DialError::FallbackFailed { .. } => Outcome::ConnectFailed,
            }
        }
    }
}

/// What a client connection is carried over: plain TCP, or TLS on TCP.
pub trait ClientIo: AsyncRead + AsyncWrite + crate::relay::Splice + Unpin {
    /// The TCP connection underneath (for its addresses).
    fn tcp(&self) -> &Conn;
}

impl ClientIo for Conn {
    fn tcp(&self) -> &Conn {
        self
    }
}

impl ClientIo for futures_rustls::server::TlsStream<Conn> {
    fn tcp(&self) -> &Conn {
        self.get_ref().0
    }
}

/// What a session needs from the shard that runs it, and nothing else: the current
/// generation, the dialer, the resolver, the password checker, relay buffers, and where
/// finished requests are reported (the shard counts and logs them).
pub struct Ctx {
    pub current: Current,
    pub dialer: Rc<Dialer>,
    pub resolver: Resolver,
    pub auth: Authenticator,
    pub bufs: BufPool,
    /// Takes each finished request's record (for forwarded HTTP, every request but the last
    /// of a connection; the last one is `handle`'s return value).
    pub report: Box<dyn Fn(&mut ConnRecord)>,
}

impl Ctx {
    /// The current generation.
    pub fn generation(&self) -> GenRef {
        self.current.get()
    }
}

/// Where a session's handshake left the connection. Returned once per connection, so the
/// size difference between the variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Next<S = Conn> {
    /// Finished (or failed) with this outcome.
    Done(Outcome),
    /// Finished, and every request of the connection has been reported already.
    Reported,
    /// Tunnel established: relay these streams. `pending` holds client bytes that arrived
    /// with the handshake. The handshake's state is gone by now, so an idle tunnel costs only
    /// the relay's.
    Tunnel {
        client: S,
        upstream: Conn,
        pending: Vec<u8>,
    },
}

/// Relays an established tunnel and names the outcome (`None`: nothing left to report).
async fn finish<S: ClientIo>(
    next: Next<S>,
    ctx: &Ctx,
    generation: &GenRef,
    rec: &mut ConnRecord,
) -> Option<Outcome> {
    Some(match next {
        Next::Done(outcome) => outcome,
        Next::Reported => return None,
        Next::Tunnel {
            client,
            upstream,
            pending,
        } => {
            let settings = &generation.policy().settings;
            let stats = relay(
                client,
                upstream,
                pending,
                settings.idle_timeout,
                &ctx.bufs,
                settings.splice,
            )
            .await;
            rec.bytes_up += stats.up;
            rec.bytes_down += stats.down;
            match stats.end {
                RelayEnd::Closed => Outcome::Ok,
                RelayEnd::Idle => Outcome::IdleTimeout,
                RelayEnd::ClientFailed => Outcome::RelayErrorClient,
                RelayEnd::UpstreamFailed => Outcome::RelayErrorUpstream,
            }
        }
    })
}

/// An `https` listener's connection: the TLS handshake (under the handshake deadline), the
/// client certificate's identity and device id, then the HTTP proxy session inside TLS.
async fn serve_tls(
    ctx: &Ctx,
    generation: &GenRef,
    listener: &ListenerSpec,
    stream: Conn,
    rec: &mut ConnRecord,
    deadline: Instant,
) -> Option<Outcome> {
    rec.protocol = "https";
    let Some(config) = generation.tls.get(&*listener.name) else {
        return Some(Outcome::TlsNotConfigured);
    };
    let accept = futures_rustls::TlsAcceptor::from(config.clone()).accept(stream);
    let tls = match before(deadline, accept).await {
        Ok(tls) => tls,
        Err(e) => {
            // rustls' messages name the failure (bad certificate, unknown CA, timeout) and
            // never carry key material.
            rec.error = Some(e.to_string());
            return Some(if e.kind() == io::ErrorKind::TimedOut {
                Outcome::HandshakeTimeout
            } else {
                Outcome::TlsHandshakeFailed
            });
        }
    };
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(crate::tls::cert_identity);
    let next = Box::pin(http::serve(
        ctx,
        generation,
        listener,
        tls,
        Vec::new(),
        rec,
        cert,
        deadline,
    ))
    .await;
    finish(next, ctx, generation, rec).await
}

/// Serves one accepted connection to its end. Returns the record of what is left to report
/// (`None` when every request was reported through `Ctx::report` already).
pub async fn handle(ctx: &Ctx, accepted: Accepted, listener: &ListenerSpec) -> Option<ConnRecord> {
    // TCP_NODELAY came with the socket from the listener.
    let Accepted { mut stream, peer } = accepted;
    let started = Instant::now();
    let generation = ctx.generation();
    let mut rec = ConnRecord {
        time: Timestamp::now(),
        started: Some(started),
        listener: listener.name.clone(),
        listener_index: listener.index,
        client: peer,
        generation: generation.id,
        ..ConnRecord::default()
    };
    let deadline = started + generation.policy().settings.handshake_timeout;
    let outcome = if listener.protocols.contains(&ListenerProtocol::Https) {
        Box::pin(serve_tls(
            ctx,
            &generation,
            listener,
            stream,
            &mut rec,
            deadline,
        ))
        .await
    } else {
        let mut buf = Vec::with_capacity(512);
        let first = read_more(&mut stream, &mut buf, MAX_HANDSHAKE);
        match before(deadline, first).await {
            Ok(0) => Some(Outcome::ClosedBeforeRequest),
            Err(e) => Some(io_outcome(&e)),
            Ok(_) => {
                let allows = |p| listener.protocols.contains(&p);
                // Handshakes are boxed and dropped before relaying, so they take no room in
                // the task while a tunnel is idle.
                if buf[0] == egressd_wire::socks5::VERSION && allows(ListenerProtocol::Socks5) {
                    rec.protocol = "socks5";
                    let next = Box::pin(socks5::serve(
                        ctx, listener, stream, buf, &mut rec, deadline,
                    ))
                    .await;
                    finish(next, ctx, &generation, &mut rec).await
                } else if buf[0].is_ascii_alphabetic() && allows(ListenerProtocol::Http) {
                    rec.protocol = "http";
                    let next = Box::pin(http::serve(
                        ctx,
                        &generation,
                        listener,
                        stream,
                        buf,
                        &mut rec,
                        None,
                        deadline,
                    ))
                    .await;
                    finish(next, ctx, &generation, &mut rec).await
                } else {
                    Some(Outcome::UnknownProtocol)
                }
            }
        }
    };
    outcome.map(|outcome| {
        rec.outcome = outcome;
        rec
    })
}

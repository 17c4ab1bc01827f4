//! The HTTP proxy session: CONNECT tunnels, and absolute-form requests forwarded with
//! keep-alive, hop-by-hop headers removed, `Proxy-Authorization: Basic` checked against
//! `[[user]]`, 407 with `Proxy-Authenticate`.
//!
//! Every request on a kept connection stands alone, as in Squid and HAProxy: it is
//! authenticated with its own credentials, decided by the policy current when it starts, for
//! its own identity and target, and logged on its own access-log line. The previous request's
//! upstream connection is used again only when this request's decision dials the very same
//! source and destination.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use egressd_policy::model::Auth;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::open::{ConnInfo, OpenError, Opened, Target, open};
use super::{
    ClientIo, Ctx, Next, WaitLimited, io_outcome, read_more, record_open_error, record_opened,
};
use crate::accesslog::{ConnRecord, Timestamp};
use crate::auth::AuthOutcome;
use crate::egress::dial::{DialError, Held, Reuse, ReuseKey};
use crate::listen::ListenerSpec;
use crate::outcome::Outcome;
use crate::state::GenRef;
use egressd_wire::http::{self as wire, Body, ChunkedScanner, RequestTarget};
use egressd_wire::socks5::Parsed;

const UNSPECIFIED: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

async fn send_error<W: AsyncWrite + Unpin>(
    client: &mut W,
    status: u16,
    reason: &str,
    extra: &[(&str, &str)],
) {
    let mut out = Vec::with_capacity(256);
    wire::encode_refusal(status, reason, extra, &mut out);
    let _ = client.write_all(&out).await;
}

/// Why the upstream could not be opened: the status, the RFC 9209 `Proxy-Status` error type,
/// and one line for the person reading the client's output. `rule`: the deciding rule's name.
fn refusal(e: &OpenError, target: &Target, rule: Option<&str>) -> (u16, &'static str, String) {
    let host = target.display();
    match e {
        OpenError::Resolve(e) => (502, "dns_error", format!("cannot resolve {host}: {e}")),
        OpenError::NoAddress => (
            502,
            "destination_ip_prohibited",
            format!(
                "no address of {host} has a family that rule \"{}\" allows",
                rule.unwrap_or("?")
            ),
        ),
        OpenError::Dial { error, dst, .. } => {
            // The address dialled; none when the name was refused before resolving.
            let denied_ip = dst.map_or_else(|| host.clone(), |d| d.ip().to_string());
            let dst = dst.map_or(host, |d| d.to_string());
            match error {
                DialError::Blocked => (
                    403,
                    "http_request_denied",
                    match rule {
                        Some(r) => format!("blocked by rule \"{r}\""),
                        None => "blocked by the policy's default action".to_string(),
                    },
                ),
                DialError::Denied => (
                    403,
                    "destination_ip_prohibited",
                    format!("denied destination: {denied_ip} is in [proxy] deny_destinations"),
                ),
                DialError::NoEgress(tried) => (
                    503,
                    "proxy_internal_error",
                    format!("no egress address: {}", tried.join("; ")),
                ),
                DialError::FallbackFailed { tried, error } => (
                    502,
                    "destination_unavailable",
                    format!(
                        "no egress address ({}), and the default address failed too: {error}",
                        tried.join("; ")
                    ),
                ),
                DialError::Connect(io) if io.kind() == io::ErrorKind::TimedOut => (
                    504,
                    "connection_timeout",
                    format!("upstream {dst} did not answer in time"),
                ),
                DialError::Connect(io) if io.kind() == io::ErrorKind::ConnectionRefused => (
                    502,
                    "connection_refused",
                    format!("upstream {dst} refused the connection"),
                ),
                DialError::Connect(io) => (
                    502,
                    "destination_unavailable",
                    format!("cannot connect to upstream {dst}: {io}"),
                ),
            }
        }
    }
}

/// Bytes already read from a stream, consumed before reading more.
struct Pending<'a> {
    buf: &'a mut Vec<u8>,
}

impl Pending<'_> {
    /// Up to `max` bytes: buffered ones first, else one read.
    async fn next<R: AsyncRead + Unpin>(
        &mut self,
        stream: &mut R,
        max: usize,
        scratch: &mut [u8],
    ) -> io::Result<Vec<u8>> {
        if !self.buf.is_empty() {
            let n = self.buf.len().min(max);
            return Ok(self.buf.drain(..n).collect());
        }
        let want = scratch.len().min(max);
        let n = stream.read(&mut scratch[..want]).await?;
        Ok(scratch[..n].to_vec())
    }
}

/// Moves into `out`, after the head already encoded there, the part of the body that has
/// already arrived in `pending`, so that head and body leave in one write (one segment, one
/// wake-up of the peer) instead of two; returns the framing of what is still to come.
/// Nothing is waited for: a head goes out at once even when its body has not arrived (a
/// client sending `Expect: 100-continue` waits for the answer to the head). Chunked bodies
/// are left whole to `copy_body`, which finds where they end.
fn attach_ready_body(body: Body, pending: &mut Vec<u8>, out: &mut Vec<u8>) -> Body {
    match body {
        Body::Length(left) => {
            let n = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(pending.len());
            out.extend(pending.drain(..n));
            Body::Length(left - n as u64)
        }
        Body::UntilClose => {
            out.append(pending);
            Body::UntilClose
        }
        other => other,
    }
}

/// Copies a message body framed as `body` from `from` to `to`. Returns bytes copied and
/// whether the body ended with the connection (UntilClose).
async fn copy_body<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    body: Body,
    from: &mut R,
    pending: &mut Vec<u8>,
    to: &mut W,
) -> io::Result<u64> {
    let mut scratch = vec![0u8; 16 * 1024];
    let mut pending = Pending { buf: pending };
    let mut copied = 0u64;
    match body {
        Body::None => {}
        Body::Length(mut left) => {
            while left > 0 {
                let chunk = pending
                    .next(
                        from,
                        usize::try_from(left).unwrap_or(usize::MAX),
                        &mut scratch,
                    )
                    .await?;
                if chunk.is_empty() {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                to.write_all(&chunk).await?;
                left -= chunk.len() as u64;
                copied += chunk.len() as u64;
            }
        }
        Body::Chunked => {
            let mut scanner = ChunkedScanner::new();
            loop {
                let chunk = pending.next(from, usize::MAX, &mut scratch).await?;
                if chunk.is_empty() {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                match scanner
                    .feed(&chunk)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?
                {
                    Some(end) => {
                        to.write_all(&chunk[..end]).await?;
                        copied += end as u64;
                        // What follows belongs to the next message.
                        let rest = chunk[end..].to_vec();
                        pending.buf.splice(0..0, rest);
                        break;
                    }
                    None => {
                        to.write_all(&chunk).await?;
                        copied += chunk.len() as u64;
                    }
                }
            }
        }
        Body::UntilClose => loop {
            let chunk = pending.next(from, usize::MAX, &mut scratch).await?;
            if chunk.is_empty() {
                break;
            }
            to.write_all(&chunk).await?;
            copied += chunk.len() as u64;
        },
    }
    Ok(copied)
}

/// The upstream connection of the last forwarded request.
struct Upstream {
    stream: crate::conn::Conn,
    buf: Vec<u8>,
    /// Where it leaves from and goes to.
    key: ReuseKey,
    /// The last response ended cleanly with the connection left open and nothing else sent:
    /// the next request dialled with the same key (this client's or another's) may use it.
    reusable: bool,
    /// A request went over it before (here, or for another client before it was parked): the
    /// server may have closed it since.
    used: bool,
    /// How long a read may wait.
    idle: Duration,
}

impl Upstream {
    fn new(dialed: crate::egress::dial::Dialed, idle: Duration) -> Self {
        Upstream {
            stream: dialed.stream,
            buf: Vec::new(),
            key: dialed.reuse_key,
            reusable: false,
            used: dialed.reused,
            idle,
        }
    }

    /// Reads more of the response into `buf`.
    async fn read_more(&mut self) -> io::Result<usize> {
        let mut reader = WaitLimited::new(&mut self.stream, self.idle);
        read_more(&mut reader, &mut self.buf, wire::MAX_HEAD + 1).await
    }
}

/// Answers the client with an error status and the reason, and records it.
async fn answer<W: AsyncWrite + Unpin>(
    client: &mut W,
    rec: &mut ConnRecord,
    status: u16,
    reason: &str,
    extra: &[(&str, &str)],
) {
    rec.status = Some(status);
    send_error(client, status, reason, extra).await;
}

/// Opens the upstream for `target` and records it, or answers the client with the status
/// the failure maps to and returns the outcome to log.
#[allow(clippy::too_many_arguments)]
async fn open_or_answer<S: ClientIo>(
    ctx: &Ctx,
    generation: &GenRef,
    conn: &ConnInfo,
    target: &Target,
    reuse: Reuse,
    client: &mut S,
    rec: &mut ConnRecord,
) -> Result<Opened, Outcome> {
    match Box::pin(open(ctx, generation, conn, target, reuse)).await {
        Ok(opened) => {
            record_opened(rec, generation, &opened);
            Ok(opened)
        }
        Err(e) => {
            let outcome = record_open_error(rec, generation, &e);
            let (status, kind, reason) = refusal(&e, target, rec.rule_name());
            let proxy_status = format!("egressd; error={kind}");
            answer(
                client,
                rec,
                status,
                &reason,
                &[("Proxy-Status", &proxy_status)],
            )
            .await;
            Err(outcome)
        }
    }
}

/// Gives an upstream whose last response left it open and idle to the shard, for the next
/// forwarded request that would dial the same source and destination; otherwise closes it.
fn release(ctx: &Ctx, upstream: Option<Upstream>) {
    if let Some(up) = upstream
        && up.reusable
    {
        ctx.dialer.park(up.key, up.stream);
    }
}

/// Starts the access-log record of the next request on a kept connection: the connection's
/// fields stay, the request's start afresh.
fn next_record(rec: &mut ConnRecord, generation: &GenRef) {
    *rec = ConnRecord {
        time: Timestamp::now(),
        started: Some(Instant::now()),
        listener: rec.listener.clone(),
        listener_index: rec.listener_index,
        protocol: rec.protocol,
        client: rec.client,
        generation: generation.id,
        ..ConnRecord::default()
    };
}

/// What came first after a head with `Expect: 100-continue` was sent upstream.
enum Early {
    /// The client started its body anyway (RFC 9110 lets it after a while).
    Body,
    /// An interim answer (100 Continue, 103 ...), taken from the upstream's buffer: relay it,
    /// then the body follows.
    Interim(wire::ResponseHead),
    /// The final answer, left in the upstream's buffer: the body is not wanted.
    Final,
}

/// Waits for whichever speaks first after an `Expect: 100-continue` head went upstream: the
/// upstream (an interim or a final answer) or the client (its body).
async fn await_continue<S: ClientIo>(
    client: &mut S,
    buf: &mut Vec<u8>,
    up: &mut Upstream,
    idle: Duration,
) -> Result<Early, Outcome> {
    enum Spoke {
        Upstream(io::Result<usize>),
        Client(io::Result<usize>),
    }
    loop {
        match wire::parse_response_head(&up.buf, wire::MAX_HEAD) {
            Parsed::Done { value, consumed } => {
                if (100..200).contains(&value.status) && value.status != 101 {
                    up.buf.drain(..consumed);
                    return Ok(Early::Interim(value));
                }
                return Ok(Early::Final);
            }
            // The response loop answers a malformed head.
            Parsed::Invalid(_) => return Ok(Early::Final),
            Parsed::NeedMore => {}
        }
        // The side that loses the race is dropped mid-read: each reads into a buffer of its
        // own and keeps the bytes only once its read completed, so nothing is lost or padded.
        let (mut from_up, mut from_client) = ([0u8; 4096], [0u8; 4096]);
        let spoke = futures_lite::future::or(
            async {
                let mut reader = WaitLimited::new(&mut up.stream, up.idle);
                Spoke::Upstream(reader.read(&mut from_up).await)
            },
            async {
                let mut reader = WaitLimited::new(&mut *client, idle);
                Spoke::Client(reader.read(&mut from_client).await)
            },
        )
        .await;
        match spoke {
            Spoke::Client(Ok(n)) if n > 0 => {
                buf.extend_from_slice(&from_client[..n]);
                return Ok(Early::Body);
            }
            Spoke::Client(_) => return Err(Outcome::ClientError),
            // (A head too large is refused by the parse above, as in the response loop.)
            Spoke::Upstream(Ok(n)) if n > 0 => up.buf.extend_from_slice(&from_up[..n]),
            // Closed or failed: the response loop reports it.
            Spoke::Upstream(_) => return Ok(Early::Final),
        }
    }
}

/// How long, and how much, a client still sending is read after its 408.
const LINGER_FOR: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

/// After answering a client that is still sending (a late head), stops writing and reads, for
/// a moment, what it goes on sending: closing with its bytes unread would reset the connection
/// and could destroy the answer before the client reads it (the lingering close of HAProxy
/// and nginx). Bounded in time and bytes.
async fn linger<S: ClientIo>(client: &mut S) {
    let _ = client.close().await;
    let until = Instant::now() + LINGER_FOR;
    let mut sink = [0u8; 4096];
    let mut left = LINGER_BYTES;
    while left > 0 {
        match super::before(until, client.read(&mut sink)).await {
            Ok(n) if n > 0 => left = left.saturating_sub(n),
            _ => return,
        }
    }
}

/// How reading a request head ended, when it did not give a head.
enum HeadEnd {
    /// The client closed, or stayed idle past the keep-alive timeout, between requests.
    Quiet,
    /// Ends the connection with this outcome (the client was answered where that makes sense).
    Done(Outcome),
}

/// Reads the next request head. The first is due by the connection's handshake deadline
/// (`*deadline` is `Some`); a later one may be awaited for `keepalive_timeout`, and from its
/// first byte on the whole head is due within `handshake_timeout`: one deadline for the head,
/// however the client spaces its bytes (HAProxy's `timeout http-request`). When a later
/// head's first byte arrives, the record and generation move on to the new request.
#[allow(clippy::too_many_arguments)]
async fn read_head<S: ClientIo>(
    client: &mut S,
    buf: &mut Vec<u8>,
    deadline: &mut Option<Instant>,
    ctx: &Ctx,
    generation: &mut GenRef,
    rec: &mut ConnRecord,
) -> Result<wire::RequestHead, HeadEnd> {
    loop {
        if deadline.is_none() && !buf.is_empty() {
            *generation = ctx.generation();
            next_record(rec, generation);
            *deadline = Some(Instant::now() + generation.policy().settings.handshake_timeout);
        }
        match wire::parse_request_head(buf, wire::MAX_HEAD) {
            Parsed::Done { value, consumed } => {
                buf.drain(..consumed);
                // The request is decided by the policy current now, also the first one (its
                // connection may have been accepted before a reload).
                *generation = ctx.generation();
                rec.generation = generation.id;
                return Ok(value);
            }
            Parsed::Invalid(e) => {
                rec.error = Some(e.to_string());
                answer(client, rec, e.status, &e.to_string(), &[]).await;
                return Err(HeadEnd::Done(if e.status == 431 {
                    Outcome::HeadTooLarge
                } else {
                    Outcome::BadRequest
                }));
            }
            Parsed::NeedMore => {}
        }
        let Some(due) = *deadline else {
            // Between requests: wait for the next one's first byte.
            let keepalive = generation.policy().settings.keepalive_timeout;
            let wait = Instant::now() + keepalive;
            match super::before(wait, read_more(client, buf, wire::MAX_HEAD + 1)).await {
                Ok(n) if n > 0 => continue,
                _ => return Err(HeadEnd::Quiet),
            }
        };
        match super::before(due, read_more(client, buf, wire::MAX_HEAD + 1)).await {
            Ok(n) if n > 0 => {}
            Ok(_) if buf.is_empty() => return Err(HeadEnd::Done(Outcome::ClosedBeforeRequest)),
            Ok(_) => return Err(HeadEnd::Done(Outcome::ClientError)),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                if !buf.is_empty() {
                    answer(
                        client,
                        rec,
                        408,
                        "the request head did not arrive in time",
                        &[],
                    )
                    .await;
                    linger(client).await;
                }
                return Err(HeadEnd::Done(Outcome::HandshakeTimeout));
            }
            Err(e) => return Err(HeadEnd::Done(io_outcome(&e))),
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn serve<S: ClientIo>(
    ctx: &Ctx,
    generation: &GenRef,
    listener: &ListenerSpec,
    mut client: S,
    mut buf: Vec<u8>,
    rec: &mut ConnRecord,
    cert: Option<crate::tls::CertIdentity>,
    deadline: Instant,
) -> Next<S> {
    // Each request takes the generation current when it starts, and is authenticated and
    // decided on its own: nothing of an earlier request's identity or decision carries over.
    let mut generation = generation.clone();
    let mut upstream: Option<Upstream> = None;
    // The previous request's upstream while the next one is decided (see `Reuse::Idle`).
    let held: Held = Rc::new(RefCell::new(None));
    let mut head_deadline = Some(deadline);
    let mut served = 0u32;
    loop {
        let head = match read_head(
            &mut client,
            &mut buf,
            &mut head_deadline,
            ctx,
            &mut generation,
            rec,
        )
        .await
        {
            Ok(head) => head,
            Err(end) => {
                release(ctx, upstream.take());
                return match end {
                    HeadEnd::Quiet if served > 0 => Next::Reported,
                    HeadEnd::Quiet => Next::Done(Outcome::ClosedBeforeRequest),
                    HeadEnd::Done(outcome) => Next::Done(outcome),
                };
            }
        };
        // The head's deadline also bounds the password check; the next head gets its own.
        let due = head_deadline.take().unwrap_or_else(Instant::now);
        rec.method = Some(head.method.clone());
        let settings = &generation.policy().settings;
        let idle: Duration = settings.idle_timeout;
        let auth = generation
            .table
            .directory()
            .listener(&listener.name)
            .map_or(listener.auth, |l| l.auth);
        // A verified client certificate is an identity: no password needed.
        let mut user = cert.as_ref().map(|c| c.name.clone()).unwrap_or_default();
        if !user.is_empty() {
            rec.user = user.clone();
        }
        let challenge = [("Proxy-Authenticate", "Basic realm=\"egressd\"")];
        match (auth, head.proxy_basic_credentials()) {
            _ if !user.is_empty() => {}
            (Auth::None, _) | (Auth::Optional, None) => {}
            (Auth::Required, None) => {
                answer(
                    &mut client,
                    rec,
                    407,
                    "this proxy needs a user name and password",
                    &challenge,
                )
                .await;
                return Next::Done(Outcome::AuthRequired);
            }
            (_, Some(creds)) => {
                rec.user = creds.username.clone();
                let from = rec.client.unwrap_or(UNSPECIFIED).ip();
                match ctx
                    .auth
                    .check(&**generation, &creds.username, &creds.password, from, due)
                    .await
                {
                    AuthOutcome::Accepted => user = creds.username,
                    AuthOutcome::Rejected => {
                        answer(
                            &mut client,
                            rec,
                            407,
                            "wrong user name or password",
                            &challenge,
                        )
                        .await;
                        return Next::Done(Outcome::AuthFailed);
                    }
                    AuthOutcome::Busy => {
                        rec.error =
                            Some("password not verified in time (verifications busy)".into());
                        answer(
                            &mut client,
                            rec,
                            503,
                            "password checks are busy; try again",
                            &[("Retry-After", "1")],
                        )
                        .await;
                        return Next::Done(Outcome::AuthBusy);
                    }
                }
            }
        }
        let conn = ConnInfo {
            listener: listener.name.clone(),
            client: rec.client.unwrap_or(UNSPECIFIED),
            local: listener
                .local
                .or_else(|| client.tcp().local_addr().ok())
                .unwrap_or(UNSPECIFIED),
            user,
            device: cert.as_ref().map(|c| c.fingerprint),
        };
        let (host, port, path) = match &head.target {
            RequestTarget::Authority { host, port } => (host.clone(), *port, None),
            RequestTarget::Absolute {
                host,
                port,
                path_and_query,
            } => (host.clone(), *port, Some(path_and_query.clone())),
            RequestTarget::Origin(_) => {
                answer(&mut client, rec, 400, "this is a proxy: send absolute-form requests (GET http://host/path) or CONNECT host:port", &[]).await;
                return Next::Done(Outcome::NotAProxyRequest);
            }
        };
        let target = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => Target {
                host: String::new(),
                ip: Some(ip),
                port,
            },
            Err(_) => Target {
                host: host.clone(),
                ip: None,
                port,
            },
        };
        rec.host = target.display();
        if let Some(path) = &path {
            rec.path(path);
        }

        if path.is_none() {
            // CONNECT: open, answer 200, relay.
            release(ctx, upstream.take());
            let opened = match open_or_answer(
                ctx,
                &generation,
                &conn,
                &target,
                Reuse::Never,
                &mut client,
                rec,
            )
            .await
            {
                Ok(o) => o,
                Err(outcome) => return Next::Done(outcome),
            };
            let mut out = Vec::with_capacity(64);
            wire::encode_connect_established(&mut out);
            rec.status = Some(200);
            if client.write_all(&out).await.is_err() {
                return Next::Done(Outcome::ClientError);
            }
            return Next::Tunnel {
                client,
                upstream: opened.dialed.stream,
                pending: buf,
            };
        }

        // Forwarding: framing is checked before anything goes upstream (smuggling defence).
        let body = match head.request_body() {
            Ok(b) => b,
            Err(e) => {
                rec.error = Some(e.to_string());
                answer(&mut client, rec, e.status, &e.to_string(), &[]).await;
                return Next::Done(Outcome::BadRequest);
            }
        };
        // This request's decision picks the upstream: the previous request's connection is
        // offered to the dial, which takes it only for the same source and destination.
        if let Some(up) = upstream.take()
            && up.reusable
        {
            *held.borrow_mut() = Some((up.key, up.stream));
        }
        let opened = open_or_answer(
            ctx,
            &generation,
            &conn,
            &target,
            Reuse::Idle(held.clone()),
            &mut client,
            rec,
        )
        .await;
        if let Some((key, stream)) = held.borrow_mut().take() {
            ctx.dialer.park(key, stream);
        }
        let up = match opened {
            Ok(opened) => upstream.insert(Upstream::new(opened.dialed, idle)),
            Err(outcome) => return Next::Done(outcome),
        };
        let mut out = Vec::with_capacity(1024);
        wire::encode_forward_head(&head, &mut out);
        let body = attach_ready_body(body, &mut buf, &mut out);
        // The whole request is in `out`: it can be sent again if a kept connection turns out
        // to have been closed by the server before answering (the keep-alive race).
        let replayable = matches!(body, Body::None | Body::Length(0));
        let retry_on_silence = up.used && replayable;
        up.used = true;
        let sent = up.stream.write_all(&out).await.is_ok();
        if !sent && !retry_on_silence {
            answer(
                &mut client,
                rec,
                502,
                "cannot send the request upstream",
                &[],
            )
            .await;
            return Next::Done(Outcome::UpstreamError);
        }
        // A client that sent `Expect: 100-continue` waits for an answer before its body: the
        // upstream's interim (or final) answer must reach it now, not after the body.
        let mut answered_early = false;
        if head.expects_continue() && !replayable && buf.is_empty() {
            // Boxed: its read buffers take room only while it runs, not in every kept connection.
            match Box::pin(await_continue(&mut client, &mut buf, up, idle)).await {
                Ok(Early::Body) => {}
                Ok(Early::Interim(head)) => {
                    let mut interim = Vec::with_capacity(64);
                    wire::encode_response_head(&head, true, &mut interim);
                    if client.write_all(&interim).await.is_err() {
                        return Next::Done(Outcome::ClientError);
                    }
                    rec.bytes_down += interim.len() as u64;
                }
                Ok(Early::Final) => answered_early = true,
                Err(outcome) => return Next::Done(outcome),
            }
        }
        let mut from_client = WaitLimited::new(&mut client, idle);
        let copied = if answered_early {
            // The server answered without the body: it is not sent, and neither connection
            // can be used again (the client may still send it).
            Ok(0)
        } else {
            copy_body(body, &mut from_client, &mut buf, &mut up.stream).await
        };
        match copied {
            Ok(n) => rec.bytes_up += n + out.len() as u64,
            Err(_) => return Next::Done(Outcome::ClientError),
        }
        if retry_on_silence {
            let first = if sent { up.read_more().await } else { Ok(0) };
            match first {
                Ok(n) if n > 0 => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    answer(
                        &mut client,
                        rec,
                        504,
                        "the upstream did not answer in time",
                        &[],
                    )
                    .await;
                    return Next::Done(Outcome::UpstreamError);
                }
                _ => {
                    // Closed or reset without a byte of answer: a fresh connection, once.
                    let opened = match open_or_answer(
                        ctx,
                        &generation,
                        &conn,
                        &target,
                        Reuse::Never,
                        &mut client,
                        rec,
                    )
                    .await
                    {
                        Ok(o) => o,
                        Err(outcome) => return Next::Done(outcome),
                    };
                    *up = Upstream::new(opened.dialed, idle);
                    up.used = true;
                    if up.stream.write_all(&out).await.is_err() {
                        answer(
                            &mut client,
                            rec,
                            502,
                            "cannot send the request upstream",
                            &[],
                        )
                        .await;
                        return Next::Done(Outcome::UpstreamError);
                    }
                }
            }
        }
        // The response: interim 1xx heads are relayed, then the final one and its body.
        let (response, keep) = loop {
            let response = loop {
                match wire::parse_response_head(&up.buf, wire::MAX_HEAD) {
                    Parsed::Done { value, consumed } => {
                        up.buf.drain(..consumed);
                        break value;
                    }
                    Parsed::Invalid(_) => {
                        answer(
                            &mut client,
                            rec,
                            502,
                            "the upstream sent a malformed response head",
                            &[],
                        )
                        .await;
                        return Next::Done(Outcome::UpstreamError);
                    }
                    Parsed::NeedMore => match up.read_more().await {
                        Ok(n) if n > 0 => {}
                        Ok(_) => {
                            answer(
                                &mut client,
                                rec,
                                502,
                                "the upstream closed the connection without answering",
                                &[],
                            )
                            .await;
                            return Next::Done(Outcome::UpstreamClosed);
                        }
                        Err(e) => {
                            let status = if e.kind() == io::ErrorKind::TimedOut {
                                504
                            } else {
                                502
                            };
                            answer(
                                &mut client,
                                rec,
                                status,
                                if status == 504 {
                                    "the upstream did not answer in time"
                                } else {
                                    "the upstream connection failed"
                                },
                                &[],
                            )
                            .await;
                            return Next::Done(Outcome::UpstreamError);
                        }
                    },
                }
            };
            if (100..200).contains(&response.status) && response.status != 101 {
                let mut out = Vec::with_capacity(256);
                wire::encode_response_head(&response, true, &mut out);
                if client.write_all(&out).await.is_err() {
                    return Next::Done(Outcome::ClientError);
                }
                continue;
            }
            let body = match response.response_body(&head.method) {
                Ok(b) => b,
                Err(_) => {
                    answer(
                        &mut client,
                        rec,
                        502,
                        "the upstream response has invalid framing",
                        &[],
                    )
                    .await;
                    return Next::Done(Outcome::UpstreamError);
                }
            };
            let keep = head.wants_keep_alive()
                && response.keep_alive()
                && body != Body::UntilClose
                && !answered_early;
            break ((response, body), keep);
        };
        let (response, body) = response;
        rec.status = Some(response.status);
        let delimited = body != Body::UntilClose && response.status != 101;
        let mut out = Vec::with_capacity(512);
        wire::encode_response_head(&response, keep, &mut out);
        let body = attach_ready_body(body, &mut up.buf, &mut out);
        if client.write_all(&out).await.is_err() {
            return Next::Done(Outcome::ClientError);
        }
        rec.bytes_down += out.len() as u64;
        let mut from_upstream = WaitLimited::new(&mut up.stream, up.idle);
        match copy_body(body, &mut from_upstream, &mut up.buf, &mut client).await {
            Ok(n) => rec.bytes_down += n,
            Err(_) => return Next::Done(Outcome::UpstreamError),
        }
        up.reusable = delimited && response.keep_alive() && up.buf.is_empty() && !answered_early;
        served += 1;
        if !keep {
            release(ctx, upstream.take());
            return Next::Done(Outcome::Ok);
        }
        if !response.keep_alive() {
            upstream = None;
        }
        rec.outcome = Outcome::Ok;
        (ctx.report)(rec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attach(body: Body, pending: &[u8]) -> (Body, Vec<u8>, Vec<u8>) {
        let mut pending = pending.to_vec();
        let mut out = b"HEAD|".to_vec();
        let rest = attach_ready_body(body, &mut pending, &mut out);
        (rest, out, pending)
    }

    #[test]
    fn a_body_that_has_arrived_leaves_with_its_head() {
        assert_eq!(
            attach(Body::Length(5), b"hello"),
            (Body::Length(0), b"HEAD|hello".to_vec(), vec![])
        );
    }

    #[test]
    fn only_the_arrived_part_is_attached_and_the_rest_is_still_expected() {
        assert_eq!(
            attach(Body::Length(10), b"hel"),
            (Body::Length(7), b"HEAD|hel".to_vec(), vec![])
        );
        assert_eq!(
            attach(Body::Length(10), b""),
            (Body::Length(10), b"HEAD|".to_vec(), vec![])
        );
    }

    #[test]
    fn bytes_of_the_next_message_stay_behind() {
        assert_eq!(
            attach(Body::Length(2), b"hiGET / HTTP/1.1\r\n"),
            (
                Body::Length(0),
                b"HEAD|hi".to_vec(),
                b"GET / HTTP/1.1\r\n".to_vec()
            )
        );
        assert_eq!(
            attach(Body::None, b"GET /next HTTP/1.1\r\n"),
            (
                Body::None,
                b"HEAD|".to_vec(),
                b"GET /next HTTP/1.1\r\n".to_vec()
            )
        );
    }

    #[test]
    fn until_close_takes_everything_and_chunked_is_left_to_the_scanner() {
        assert_eq!(
            attach(Body::UntilClose, b"abc"),
            (Body::UntilClose, b"HEAD|abc".to_vec(), vec![])
        );
        assert_eq!(
            attach(Body::Chunked, b"3\r\nabc\r\n0\r\n\r\n"),
            (
                Body::Chunked,
                b"HEAD|".to_vec(),
                b"3\r\nabc\r\n0\r\n\r\n".to_vec()
            )
        );
    }
}

/// The session driven end to end over loopback sockets: raw HTTP/1.1 from a client on one
/// side, a real upstream server on the other.
#[cfg(test)]
mod session_tests {
    use std::rc::Rc;

    use egressd_policy::model::ListenerProtocol;

    use super::*;
    use crate::conn::Conn;
    use crate::outcome::Side;
    use crate::testutil::{
        SESSION_HOSTS, SESSION_POLICY, ctx, listener, listener_spec, on_test_shard as on_shard,
        serve, test_pair as pair,
    };

    /// Reads one request head (up to the blank line) from `c`.
    async fn read_head(c: &mut Conn) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(c.read(&mut byte).await.unwrap(), 1, "head cut short");
            head.push(byte[0]);
        }
        String::from_utf8(head).unwrap()
    }

    /// Reads one response with a Content-Length body.
    async fn read_response(c: &mut Conn) -> (String, Vec<u8>) {
        let head = read_head(c).await;
        let len = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap())
            })
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        c.read_exact(&mut body).await.unwrap();
        (head, body)
    }

    fn http_spec(name: &str) -> ListenerSpec {
        listener_spec(name, &[ListenerProtocol::Http], Auth::None)
    }

    #[test]
    fn kept_requests_are_forwarded_over_one_upstream_and_reported_one_by_one() {
        on_shard(|r| async move {
            let (ctx, reported) = ctx(&r, SESSION_POLICY, SESSION_HOSTS);
            let ctx = Rc::new(ctx);
            let upstream = listener(&r, "127.0.0.1");
            let port = upstream.local_addr().unwrap().port();
            let (mut app, server_side) = pair(&r).await;
            let session = serve(&ctx, http_spec("main"), server_side);
            let server = glommio::spawn_local(async move {
                let mut up = upstream.accept().await.unwrap();
                let mut heads = Vec::new();
                for body in ["one", "two"] {
                    heads.push(read_head(&mut up.stream).await);
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    up.stream.write_all(answer.as_bytes()).await.unwrap();
                }
                heads
            });
            for (path, body) in [("/a", "one"), ("/b", "two")] {
                let req = format!(
                    "GET http://upstream.test:{port}{path} HTTP/1.1\r\nHost: upstream.test:{port}\r\nProxy-Connection: keep-alive\r\n\r\n"
                );
                app.write_all(req.as_bytes()).await.unwrap();
                let (head, got) = read_response(&mut app).await;
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                assert_eq!(got, body.as_bytes());
            }
            drop(app);
            assert!(
                session.await.is_none(),
                "every request was reported already"
            );
            let heads = server.await;
            assert!(
                heads[0].starts_with("GET /a HTTP/1.1\r\n"),
                "origin form upstream: {}",
                heads[0]
            );
            assert!(
                !heads[0].to_ascii_lowercase().contains("proxy-connection"),
                "hop-by-hop removed"
            );
            assert!(heads[1].starts_with("GET /b HTTP/1.1\r\n"));
            let reported = reported.borrow();
            assert_eq!(reported.len(), 2);
            for rec in reported.iter() {
                assert_eq!(rec.outcome, Outcome::Ok);
                assert_eq!(rec.status, Some(200));
                assert_eq!(rec.method.as_deref(), Some("GET"));
                assert_eq!(rec.rule.as_deref(), Some("default"));
                assert!(rec.bytes_down > 0 && rec.bytes_up > 0);
            }
        });
    }

    /// Sends `request` on a fresh connection and reads the answer until the session closes.
    async fn refused(
        r: &Rc<crate::readiness::Readiness>,
        listener: &str,
        request: &str,
    ) -> (String, ConnRecord) {
        let (ctx, _) = ctx(r, SESSION_POLICY, SESSION_HOSTS);
        let ctx = Rc::new(ctx);
        let (mut app, server_side) = pair(r).await;
        let session = serve(&ctx, http_spec(listener), server_side);
        app.write_all(request.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let _ = app.read_to_end(&mut got).await;
        (
            String::from_utf8_lossy(&got).into_owned(),
            session.await.unwrap(),
        )
    }

    #[test]
    fn every_refusal_gets_its_status_and_outcome() {
        on_shard(|r| async move {
            let (answer, rec) = refused(
                &r,
                "main",
                "GET http://127.0.0.1:4/ HTTP/1.1\r\nHost: x\r\n\r\n",
            )
            .await;
            assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
            assert_eq!(
                (rec.outcome, rec.side),
                (Outcome::Blocked, Some(Side::Policy))
            );
            assert_eq!(rec.rule.as_deref(), Some("blocked-port"));
            assert_eq!(rec.status, Some(403));

            let (answer, rec) = refused(
                &r,
                "main",
                "CONNECT blocked.test:443 HTTP/1.1\r\nHost: blocked.test:443\r\n\r\n",
            )
            .await;
            assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
            assert_eq!(rec.method.as_deref(), Some("CONNECT"));
            assert_eq!(rec.rule.as_deref(), Some("blocked-name"));

            let (answer, rec) = refused(&r, "main", "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
            assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
            assert_eq!(rec.outcome, Outcome::NotAProxyRequest);

            let (answer, rec) = refused(
                &r,
                "locked",
                "GET http://upstream.test/ HTTP/1.1\r\nHost: upstream.test\r\n\r\n",
            )
            .await;
            assert!(answer.starts_with("HTTP/1.1 407"), "{answer}");
            assert!(answer.contains("Proxy-Authenticate: Basic"), "{answer}");
            assert_eq!(rec.outcome, Outcome::AuthRequired);

            let (answer, rec) = refused(
                &r,
                "main",
                "GET http://v6only.test/ HTTP/1.1\r\nHost: v6only.test\r\n\r\n",
            )
            .await;
            assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
            assert_eq!(
                (rec.outcome, rec.side),
                (Outcome::NoAddress, Some(Side::Policy))
            );

            // Nothing listens on 127.0.0.1:1.
            let (answer, rec) = refused(
                &r,
                "main",
                "GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: x\r\n\r\n",
            )
            .await;
            assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
            assert_eq!(
                (rec.outcome, rec.side),
                (Outcome::ConnectFailed, Some(Side::Upstream))
            );

            let (answer, rec) = refused(
                &r,
                "main",
                "GET http://x/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            )
            .await;
            assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
            assert_eq!(rec.outcome, Outcome::BadRequest);
        });
    }

    #[test]
    fn connect_answers_200_and_relays_both_ways() {
        on_shard(|r| async move {
            let (ctx, _) = ctx(&r, SESSION_POLICY, SESSION_HOSTS);
            let ctx = Rc::new(ctx);
            let upstream = listener(&r, "127.0.0.1");
            let port = upstream.local_addr().unwrap().port();
            let (mut app, server_side) = pair(&r).await;
            let session = serve(&ctx, http_spec("main"), server_side);
            let req = format!(
                "CONNECT upstream.test:{port} HTTP/1.1\r\nHost: upstream.test:{port}\r\n\r\nearly"
            );
            app.write_all(req.as_bytes()).await.unwrap();
            let mut up = upstream.accept().await.unwrap();
            let head = read_head(&mut app).await;
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            let mut got = [0u8; 5];
            up.stream.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"early", "bytes sent with the request are not lost");
            up.stream.write_all(b"back").await.unwrap();
            let mut got = [0u8; 4];
            app.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"back");
            drop(app);
            drop(up);
            let rec = session.await.unwrap();
            assert_eq!(rec.outcome, Outcome::Ok);
            assert_eq!(rec.status, Some(200));
            assert_eq!((rec.bytes_up, rec.bytes_down), (5, 4));
        });
    }
}

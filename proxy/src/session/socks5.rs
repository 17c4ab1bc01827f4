//! The SOCKS5 session (RFC 1928, RFC 1929): method negotiation by the listener's auth mode,
//! username/password, CONNECT, the right reply code for every failure, and BND.ADDR set to
//! the real egress address and port.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use egressd_policy::model::Auth;
use futures_lite::AsyncWriteExt;

use super::open::{ConnInfo, OpenError, Target, open};
use super::{Ctx, Next, before, io_outcome, read_more, record_open_error, record_opened};
use crate::accesslog::ConnRecord;
use crate::auth::AuthOutcome;
use crate::conn::Conn;
use crate::egress::dial::{DialError, Reuse};
use crate::listen::ListenerSpec;
use crate::outcome::Outcome;
use egressd_wire::socks5::{self as wire, Command, Parsed, Reply};

/// Largest SOCKS5 handshake message (a domain request is at most 262 bytes).
const MAX_MESSAGE: usize = 1024;

const UNSPECIFIED: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// How long a client whose password could not be verified in time has to send its request,
/// which is then answered "general failure".
const BUSY_GRACE: Duration = Duration::from_secs(1);

/// Reads until `parse` has a whole message, by `deadline`; `Err(outcome)` ends the session.
async fn next<T>(
    stream: &mut Conn,
    buf: &mut Vec<u8>,
    deadline: Instant,
    parse: impl Fn(&[u8]) -> Parsed<T, wire::Socks5Error>,
) -> Result<T, Result<wire::Socks5Error, Outcome>> {
    loop {
        match parse(buf) {
            Parsed::Done { value, consumed } => {
                buf.drain(..consumed);
                return Ok(value);
            }
            Parsed::Invalid(e) => return Err(Ok(e)),
            Parsed::NeedMore => match before(deadline, read_more(stream, buf, MAX_MESSAGE)).await {
                Ok(0) => return Err(Err(Outcome::ClosedBeforeRequest)),
                Ok(_) => {}
                Err(e) => return Err(Err(io_outcome(&e))),
            },
        }
    }
}

async fn reply(stream: &mut Conn, code: Reply, bound: SocketAddr) {
    let mut out = Vec::with_capacity(22);
    wire::encode_reply(code, bound, &mut out);
    let _ = stream.write_all(&out).await;
}

/// Answers a malformed message: its reply code if it has one, then close.
async fn refuse(stream: &mut Conn, e: wire::Socks5Error, rec: &mut ConnRecord) -> Outcome {
    rec.error = Some(e.message.to_string());
    if let Some(code) = e.reply {
        reply(stream, code, UNSPECIFIED).await;
        if code == Reply::CommandNotSupported {
            return Outcome::UnsupportedCommand;
        }
    }
    Outcome::BadRequest
}

pub async fn serve(
    ctx: &Ctx,
    listener: &ListenerSpec,
    mut stream: Conn,
    mut buf: Vec<u8>,
    rec: &mut ConnRecord,
    deadline: Instant,
) -> Next {
    let greeting = match next(&mut stream, &mut buf, deadline, wire::parse_greeting).await {
        Ok(g) => g,
        Err(Ok(e)) => return Next::Done(refuse(&mut stream, e, rec).await),
        Err(Err(outcome)) => return Next::Done(outcome),
    };
    // Authenticated and decided by the policy current once the client has spoken (its
    // connection may have been accepted before a reload).
    let generation = &ctx.generation();
    rec.generation = generation.id;
    let auth = generation
        .table
        .directory()
        .listener(&listener.name)
        .map_or(listener.auth, |l| l.auth);
    let method = match auth {
        Auth::None if greeting.offers(wire::METHOD_NO_AUTH) => wire::METHOD_NO_AUTH,
        Auth::Required | Auth::Optional if greeting.offers(wire::METHOD_USERPASS) => {
            wire::METHOD_USERPASS
        }
        Auth::Optional if greeting.offers(wire::METHOD_NO_AUTH) => wire::METHOD_NO_AUTH,
        _ => wire::METHOD_NO_ACCEPTABLE,
    };
    if stream
        .write_all(&wire::encode_method(method))
        .await
        .is_err()
    {
        return Next::Done(Outcome::ClientError);
    }
    if method == wire::METHOD_NO_ACCEPTABLE {
        return Next::Done(Outcome::AuthRequired);
    }
    let mut user = String::new();
    if method == wire::METHOD_USERPASS {
        let creds = match next(&mut stream, &mut buf, deadline, wire::parse_userpass).await {
            Ok(c) => c,
            Err(Ok(e)) => return Next::Done(refuse(&mut stream, e, rec).await),
            Err(Err(outcome)) => return Next::Done(outcome),
        };
        rec.user = creds.username.clone();
        let client = rec.client.unwrap_or(UNSPECIFIED).ip();
        let outcome = ctx
            .auth
            .check(
                &***generation,
                &creds.username,
                &creds.password,
                client,
                deadline,
            )
            .await;
        match outcome {
            AuthOutcome::Accepted => {}
            AuthOutcome::Rejected => {
                let _ = stream.write_all(&wire::encode_userpass_status(false)).await;
                return Next::Done(Outcome::AuthFailed);
            }
            AuthOutcome::Busy => {
                // RFC 1929 has no temporary failure: a non-zero status reads as a wrong
                // password. So the sub-negotiation is let through and the request is answered
                // "general SOCKS server failure" (0x01), which clients treat as transient.
                // Nothing is dialled: the password was never accepted.
                let _ = stream.write_all(&wire::encode_userpass_status(true)).await;
                let grace = Instant::now() + BUSY_GRACE;
                if next(&mut stream, &mut buf, grace, wire::parse_request)
                    .await
                    .is_ok()
                {
                    reply(&mut stream, Reply::GeneralFailure, UNSPECIFIED).await;
                }
                rec.error = Some("password not verified in time (verifications busy)".into());
                return Next::Done(Outcome::AuthBusy);
            }
        }
        let _ = stream.write_all(&wire::encode_userpass_status(true)).await;
        user = creds.username;
    }
    let request = match next(&mut stream, &mut buf, deadline, wire::parse_request).await {
        Ok(r) => r,
        Err(Ok(e)) => return Next::Done(refuse(&mut stream, e, rec).await),
        Err(Err(outcome)) => return Next::Done(outcome),
    };
    let target = match request.target {
        wire::Target::Ip(a) => Target {
            host: String::new(),
            ip: Some(a.ip()),
            port: a.port(),
        },
        wire::Target::Domain { host, port } => Target {
            host,
            ip: None,
            port,
        },
    };
    rec.host = target.display();
    if request.command != Command::Connect {
        reply(&mut stream, Reply::CommandNotSupported, UNSPECIFIED).await;
        return Next::Done(Outcome::UnsupportedCommand);
    }
    let conn = ConnInfo {
        listener: listener.name.clone(),
        client: rec.client.unwrap_or(UNSPECIFIED),
        local: listener
            .local
            .or_else(|| stream.local_addr().ok())
            .unwrap_or(UNSPECIFIED),
        user,
        device: None,
    };
    let opened = match Box::pin(open(ctx, generation, &conn, &target, Reuse::Never)).await {
        Ok(o) => o,
        Err(e) => {
            let outcome = record_open_error(rec, generation, &e);
            reply(&mut stream, reply_for(&e), UNSPECIFIED).await;
            return Next::Done(outcome);
        }
    };
    record_opened(rec, generation, &opened);
    let mut out = Vec::with_capacity(22);
    wire::encode_reply(Reply::Succeeded, opened.dialed.local, &mut out);
    if stream.write_all(&out).await.is_err() {
        return Next::Done(Outcome::ClientError);
    }
    Next::Tunnel {
        client: stream,
        upstream: opened.dialed.stream,
        pending: buf,
    }
}

/// The SOCKS5 reply for a failure to open the upstream.
fn reply_for(e: &OpenError) -> Reply {
    match e {
        OpenError::Resolve(_) | OpenError::NoAddress => Reply::HostUnreachable,
        OpenError::Dial { error, .. } => match error {
            DialError::Blocked | DialError::Denied | DialError::NoEgress(_) => Reply::NotAllowed,
            // EHOSTDOWN has no io::ErrorKind of its own; like EHOSTUNREACH, the host is not
            // reachable.
            DialError::Connect(io) | DialError::FallbackFailed { error: io, .. }
                if io.raw_os_error() == Some(libc::EHOSTDOWN) =>
            {
                Reply::HostUnreachable
            }
            DialError::Connect(io) | DialError::FallbackFailed { error: io, .. } => {
                Reply::from_io_error(io)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use egressd_policy::Decision;
    use egressd_policy::model::{Action, Family};

    use super::*;

    fn dial_failed(errno: i32) -> OpenError {
        OpenError::Dial {
            dst: Some(UNSPECIFIED),
            decision: Decision {
                rule: None,
                action: Action::Default,
                pool: None,
                family: Family::Auto,
            },
            error: DialError::Connect(std::io::Error::from_raw_os_error(errno)),
        }
    }

    /// The codec's own tests cover the errno table (`Reply::from_io_error`); these cover what
    /// the session adds to it.
    #[test]
    fn dial_errors_get_the_reply_that_names_them() {
        // No io::ErrorKind of its own: told apart by its errno.
        assert_eq!(
            reply_for(&dial_failed(libc::EHOSTDOWN)),
            Reply::HostUnreachable
        );
        // Everything else is the codec's choice.
        assert_eq!(
            reply_for(&dial_failed(libc::ECONNREFUSED)),
            Reply::ConnectionRefused
        );
        assert_eq!(reply_for(&OpenError::NoAddress), Reply::HostUnreachable);
    }
}

/// The session driven end to end over loopback sockets: a client speaking raw RFC 1928 bytes
/// on one side, a real upstream listener on the other.
#[cfg(test)]
mod session_tests {
    use std::rc::Rc;

    use egressd_policy::model::ListenerProtocol;
    use futures_lite::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::outcome::Side;
    use crate::testutil::{
        SESSION_HOSTS, SESSION_POLICY, ctx, listener, listener_spec, on_test_shard as on_shard,
        serve, test_pair as pair,
    };

    fn request(cmd: u8, dst: SocketAddr) -> Vec<u8> {
        let SocketAddr::V4(v4) = dst else {
            unreachable!()
        };
        let mut out = vec![5, cmd, 0, 1];
        out.extend(v4.ip().octets());
        out.extend(v4.port().to_be_bytes());
        out
    }

    fn domain_request(host: &str, port: u16) -> Vec<u8> {
        let mut out = vec![5, 1, 0, 3, host.len() as u8];
        out.extend(host.as_bytes());
        out.extend(port.to_be_bytes());
        out
    }

    #[test]
    fn a_connect_is_relayed_from_the_address_the_reply_names_and_reported_once() {
        on_shard(|r| async move {
            let (ctx, _) = ctx(&r, SESSION_POLICY, SESSION_HOSTS);
            let ctx = Rc::new(ctx);
            let upstream = listener(&r, "127.0.0.1");
            let dst = upstream.local_addr().unwrap();
            let (mut app, server_side) = pair(&r).await;
            let session = serve(
                &ctx,
                listener_spec("main", &[ListenerProtocol::Socks5], Auth::None),
                server_side,
            );
            app.write_all(&[5, 1, 0]).await.unwrap();
            app.write_all(&domain_request("upstream.test", dst.port()))
                .await
                .unwrap();
            let mut up = upstream.accept().await.unwrap();
            let mut head = [0u8; 12];
            app.read_exact(&mut head).await.unwrap();
            assert_eq!(&head[..2], &[5, 0], "no authentication chosen");
            assert_eq!(&head[2..6], &[5, 0, 0, 1], "succeeded, IPv4 bound address");
            let bound = SocketAddr::from((
                [head[6], head[7], head[8], head[9]],
                u16::from_be_bytes([head[10], head[11]]),
            ));
            assert_eq!(Some(bound), up.peer, "BND is the address the upstream saw");
            app.write_all(b"ping").await.unwrap();
            let mut got = [0u8; 4];
            up.stream.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"ping");
            up.stream.write_all(b"pong!").await.unwrap();
            let mut got = [0u8; 5];
            app.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"pong!");
            drop(app);
            drop(up);
            let rec = session.await.unwrap();
            assert_eq!(rec.outcome, Outcome::Ok);
            assert_eq!(rec.side, None);
            assert_eq!((rec.bytes_up, rec.bytes_down), (4, 5));
            assert_eq!(rec.protocol, "socks5");
            assert_eq!(rec.host, format!("upstream.test:{}", dst.port()));
            assert_eq!(rec.dialled, Some(dst));
            assert_eq!(rec.egress, Some(bound));
            assert_eq!(rec.rule.as_deref(), Some("default"));
            assert_eq!(rec.action, Some("default"));
        });
    }

    /// Sends `bytes` and reads everything until the session closes; returns what the client
    /// read and the record.
    async fn exchange(
        r: &Rc<crate::readiness::Readiness>,
        listener: &str,
        bytes: &[u8],
    ) -> (Vec<u8>, ConnRecord) {
        let (ctx, reported) = ctx(r, SESSION_POLICY, SESSION_HOSTS);
        let ctx = Rc::new(ctx);
        let (mut app, server_side) = pair(r).await;
        let session = serve(
            &ctx,
            listener_spec(listener, &[ListenerProtocol::Socks5], Auth::None),
            server_side,
        );
        app.write_all(bytes).await.unwrap();
        let mut got = Vec::new();
        let _ = app.read_to_end(&mut got).await;
        let rec = session.await.unwrap();
        assert!(reported.borrow().is_empty(), "one record, returned");
        (got, rec)
    }

    #[test]
    fn every_refusal_gets_its_reply_code_and_outcome() {
        on_shard(|r| async move {
            let port4 = SocketAddr::from(([127, 0, 0, 1], 4));
            let mut blocked = vec![5, 1, 0];
            blocked.extend(request(1, port4));
            let (got, rec) = exchange(&r, "main", &blocked).await;
            assert_eq!(
                &got[..4],
                &[5, 0, 5, 2],
                "connection not allowed by ruleset"
            );
            assert_eq!(rec.outcome, Outcome::Blocked);
            assert_eq!(rec.side, Some(Side::Policy));
            assert_eq!(rec.rule.as_deref(), Some("blocked-port"));
            assert_eq!(rec.dialled, Some(port4));

            // Blocked before resolving: the same reply and outcome, nothing dialled.
            let mut named = vec![5, 1, 0];
            named.extend(domain_request("blocked.test", 80));
            let (got, rec) = exchange(&r, "main", &named).await;
            assert_eq!(&got[..4], &[5, 0, 5, 2]);
            assert_eq!(rec.outcome, Outcome::Blocked);
            assert_eq!(rec.rule.as_deref(), Some("blocked-name"));
            assert_eq!(rec.dialled, None);

            let denied = SocketAddr::from(([127, 0, 0, 9], 80));
            let mut deny = vec![5, 1, 0];
            deny.extend(request(1, denied));
            let (got, rec) = exchange(&r, "main", &deny).await;
            assert_eq!(&got[..4], &[5, 0, 5, 2]);
            assert_eq!(rec.outcome, Outcome::DeniedDestination);

            let mut bind = vec![5, 1, 0];
            bind.extend(request(2, port4));
            let (got, rec) = exchange(&r, "main", &bind).await;
            assert_eq!(&got[..4], &[5, 0, 5, 7], "command not supported");
            assert_eq!(rec.outcome, Outcome::UnsupportedCommand);
            assert_eq!(rec.side, Some(Side::Client));

            let (got, rec) = exchange(&r, "locked", &[5, 1, 0]).await;
            assert_eq!(got, [5, 0xFF], "no acceptable method");
            assert_eq!(rec.outcome, Outcome::AuthRequired);

            let mut v6only = vec![5, 1, 0];
            v6only.extend(domain_request("v6only.test", 80));
            let (got, rec) = exchange(&r, "main", &v6only).await;
            assert_eq!(&got[..4], &[5, 0, 5, 4], "host unreachable");
            assert_eq!(rec.outcome, Outcome::NoAddress);

            // A request of another protocol version.
            let (got, rec) = exchange(&r, "main", &[5, 1, 0, 4, 1, 0, 1]).await;
            assert_eq!(&got[..2], &[5, 0]);
            assert_eq!(rec.outcome, Outcome::BadRequest);
        });
    }

    #[test]
    fn a_handshake_that_stops_halfway_ends_at_the_deadline() {
        on_shard(|r| async move {
            let (ctx, _) = ctx(&r, SESSION_POLICY, SESSION_HOSTS);
            let ctx = Rc::new(ctx);
            let (mut app, server_side) = pair(&r).await;
            let session = serve(
                &ctx,
                listener_spec("main", &[ListenerProtocol::Socks5], Auth::None),
                server_side,
            );
            // Greeting, then half a request, then nothing.
            app.write_all(&[5, 1, 0, 5, 1]).await.unwrap();
            let rec = session.await.unwrap();
            assert_eq!(rec.outcome, Outcome::HandshakeTimeout);
            let mut got = Vec::new();
            let _ = app.read_to_end(&mut got).await;
            assert_eq!(got, [5, 0], "the method choice, then the close");
        });
    }
}

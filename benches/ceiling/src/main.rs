//! `egressd-ceiling`: a **benchmark ceiling only**, not part of the egressd product, not
//! built by the egressd workspace (the root `Cargo.toml` excludes `benches/ceiling`) and
//! not run by CI.
//!
//! It is a minimal SOCKS5 CONNECT relay of the same shape as egressd (accept, RFC 1928
//! no-auth handshake, connect upstream from a socket bound to an egress address, relay both
//! directions with half-close), written on compio 0.19 (io_uring driver) instead of
//! glommio 0.9. Unlike glommio 0.9, compio lets us choose the ring setup flags, so comparing
//! the two tells how much of egressd's per-message cost is glommio's ring setup (no
//! `IORING_SETUP_COOP_TASKRUN`, so every completion's task work interrupts the thread) and
//! how much is egressd's own code.
//!
//! # Ring flags
//!
//! One thread, one compio runtime, built with
//! `compio::runtime::RuntimeBuilder::new().with_proactor(pb).build()` where
//! `pb: compio::driver::ProactorBuilder` gets, by default:
//!
//! * `pb.coop_taskrun(true)` → `IORING_SETUP_COOP_TASKRUN`
//! * `pb.taskrun_flag(true)` → `IORING_SETUP_TASKRUN_FLAG`
//! * `pb.single_issuer(true)` → `IORING_SETUP_SINGLE_ISSUER`
//!
//! `--no-coop` leaves all three off (compio's defaults, like glommio 0.9's ring), for an A/B
//! of the flags. `--defer-taskrun` additionally sets `pb.defer_taskrun(true)` →
//! `IORING_SETUP_DEFER_TASKRUN` (needs SINGLE_ISSUER, so it is ignored with `--no-coop`).
//! compio 0.19 can set every one of these; nothing asked for is missing.
//!
//! # Receive path
//!
//! Default: plain one-shot `recv` per read into a per-direction 16 KiB buffer (the same
//! read → write_all loop as egressd; compio itself adds `IORING_RECVSEND_POLL_FIRST` when
//! the previous completion said the socket was drained). `--multishot` switches to compio's
//! multishot receive (`AsyncReadMulti::read_multi`, `IORING_OP_RECV` + `IORING_RECV_MULTISHOT`
//! with a provided-buffer ring of `POOL_BUFFERS` × 16 KiB shared by all connections). It is
//! opt-in because the pool is shared: a connection whose writer is blocked keeps taking
//! buffers, and when the ring runs dry (`ENOBUFS`) the multishot ends and is re-armed.
//! Note egressd's relay buffers are 128 KiB (`BUF_SIZE` here is 16 KiB): it matters for bulk
//! throughput, not for small request/response messages. The half-close is a plain
//! `shutdown(2)` because `IORING_OP_SHUTDOWN` always goes to an io-wq worker thread.
//!
//! # Running
//!
//! ```text
//! cargo build --release --manifest-path benches/ceiling/Cargo.toml
//! ulimit -l unlimited   # io_uring memlock on older kernels
//! taskset -c 1 benches/ceiling/target/release/egressd-ceiling \
//!     --listen 127.0.0.1:0 --egress 127.0.0.7 [--no-coop] [--defer-taskrun] [--multishot]
//! ```
//!
//! It prints one line `listening ADDR` on stdout, then serves until killed (SIGTERM/SIGINT).
//! Upstream connections bind to `--egress` (port 0, `IP_BIND_ADDRESS_NO_PORT` for IPv4, as
//! egressd does); a target whose family differs from the egress address gets reply 01.
//! Domain-name targets get reply 08 (the benchmark uses literal addresses).

use std::io::{self, ErrorKind, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr};
use std::num::NonZero;
use std::pin::pin;

use compio::BufResult;
use compio::driver::ProactorBuilder;
use compio::io::{AsyncRead, AsyncReadExt, AsyncReadMulti, AsyncWriteExt};
use compio::net::{TcpListener, TcpSocket, TcpStream};
use compio::runtime::RuntimeBuilder;
use futures_util::StreamExt;
use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

const BUF_SIZE: usize = 16 * 1024;
/// Provided buffers for `--multishot` (power of two, shared by all connections).
const POOL_BUFFERS: u16 = 4096;
/// Greeting (≤ 257) + request (≤ 262) fit, with room so a read never gets a zero-length slot.
const HANDSHAKE_CAP: usize = 1024;

const REP_OK: u8 = 0x00;
const REP_FAILURE: u8 = 0x01;
const REP_NET_UNREACHABLE: u8 = 0x03;
const REP_HOST_UNREACHABLE: u8 = 0x04;
const REP_REFUSED: u8 = 0x05;
const REP_CMD_UNSUPPORTED: u8 = 0x07;
const REP_ATYP_UNSUPPORTED: u8 = 0x08;

#[derive(Clone, Copy)]
struct Config {
    listen: SocketAddr,
    egress: IpAddr,
    coop: bool,
    defer_taskrun: bool,
    multishot: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: egressd-ceiling --listen ADDR:PORT --egress IP [--no-coop] [--defer-taskrun] [--multishot]"
    );
    std::process::exit(2)
}

fn parse_args() -> Config {
    let (mut listen, mut egress) = (None, None);
    let (mut coop, mut defer_taskrun, mut multishot) = (true, false, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().and_then(|v| v.parse().ok()),
            "--egress" => egress = args.next().and_then(|v| v.parse().ok()),
            "--no-coop" => coop = false,
            "--defer-taskrun" => defer_taskrun = true,
            "--multishot" => multishot = true,
            _ => usage(),
        }
    }
    match (listen, egress) {
        (Some(listen), Some(egress)) => Config {
            listen,
            egress,
            coop,
            defer_taskrun,
            multishot,
        },
        _ => usage(),
    }
}

fn main() -> io::Result<()> {
    let cfg = parse_args();
    let mut pb = ProactorBuilder::new();
    if cfg.coop {
        pb.coop_taskrun(true)
            .taskrun_flag(true)
            .single_issuer(true)
            .defer_taskrun(cfg.defer_taskrun);
    }
    if cfg.multishot {
        pb.buffer_pool_size(NonZero::new(POOL_BUFFERS).expect("non-zero"))
            .buffer_pool_buffer_len(BUF_SIZE);
    }
    eprintln!(
        "egressd-ceiling: coop_taskrun+taskrun_flag+single_issuer={} defer_taskrun={} recv={}",
        cfg.coop,
        cfg.coop && cfg.defer_taskrun,
        if cfg.multishot {
            "multishot"
        } else {
            "oneshot"
        },
    );
    let runtime = RuntimeBuilder::new().with_proactor(pb).build()?;
    runtime.block_on(serve(cfg))
}

async fn serve(cfg: Config) -> io::Result<()> {
    let socket = Socket::new(
        Domain::for_address(cfg.listen),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&SockAddr::from(cfg.listen))?;
    socket.listen(1024)?;
    let listener = TcpListener::from_std(socket.into())?;
    {
        let mut out = io::stdout().lock();
        writeln!(out, "listening {}", listener.local_addr()?)?;
        out.flush()?;
    }
    loop {
        let (client, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // EMFILE and friends: keep serving.
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        compio::runtime::spawn(async move {
            let _ = session(client, cfg).await;
        })
        .detach();
    }
}

/// Reads until `buf` holds at least `need` bytes (`need < HANDSHAKE_CAP`).
async fn fill(mut stream: &TcpStream, mut buf: Vec<u8>, need: usize) -> io::Result<Vec<u8>> {
    while buf.len() < need {
        let BufResult(res, b) = stream.append(buf).await;
        buf = b;
        if res? == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(buf)
}

async fn reply(mut stream: &TcpStream, rep: u8, bound: Option<SocketAddr>) -> io::Result<()> {
    let mut msg = vec![5, rep, 0];
    match bound.unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))) {
        SocketAddr::V4(a) => {
            msg.push(1);
            msg.extend_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            msg.push(4);
            msg.extend_from_slice(&a.ip().octets());
        }
    }
    msg.extend_from_slice(&bound.map_or(0, |a| a.port()).to_be_bytes());
    stream.write_all(msg).await.0
}

async fn session(client: TcpStream, cfg: Config) -> io::Result<()> {
    client.set_nodelay(true)?;
    // Greeting: VER NMETHODS METHODS...
    let buf = fill(&client, Vec::with_capacity(HANDSHAKE_CAP), 2).await?;
    if buf[0] != 5 {
        return Ok(());
    }
    let p = 2 + usize::from(buf[1]);
    let buf = fill(&client, buf, p).await?;
    if !buf[2..p].contains(&0) {
        (&client).write_all([5u8, 0xFF]).await.0?;
        return Ok(());
    }
    (&client).write_all([5u8, 0]).await.0?;

    // Request: VER CMD RSV ATYP DST.ADDR DST.PORT
    let buf = fill(&client, buf, p + 4).await?;
    if buf[p] != 5 {
        return reply(&client, REP_FAILURE, None).await;
    }
    if buf[p + 1] != 1 {
        return reply(&client, REP_CMD_UNSUPPORTED, None).await;
    }
    let (buf, target, end) = match buf[p + 3] {
        1 => {
            let buf = fill(&client, buf, p + 10).await?;
            let ip: [u8; 4] = buf[p + 4..p + 8].try_into().expect("4 bytes");
            let port = u16::from_be_bytes([buf[p + 8], buf[p + 9]]);
            (buf, SocketAddr::from((Ipv4Addr::from(ip), port)), p + 10)
        }
        4 => {
            let buf = fill(&client, buf, p + 22).await?;
            let ip: [u8; 16] = buf[p + 4..p + 20].try_into().expect("16 bytes");
            let port = u16::from_be_bytes([buf[p + 20], buf[p + 21]]);
            (buf, SocketAddr::from((Ipv6Addr::from(ip), port)), p + 22)
        }
        _ => return reply(&client, REP_ATYP_UNSUPPORTED, None).await,
    };

    let upstream = match connect(target, cfg.egress).await {
        Ok(upstream) => upstream,
        Err(e) => {
            let rep = match e.kind() {
                ErrorKind::ConnectionRefused => REP_REFUSED,
                ErrorKind::NetworkUnreachable => REP_NET_UNREACHABLE,
                ErrorKind::HostUnreachable => REP_HOST_UNREACHABLE,
                _ => REP_FAILURE,
            };
            return reply(&client, rep, None).await;
        }
    };
    reply(&client, REP_OK, Some(upstream.local_addr()?)).await?;
    // Bytes the client sent after the request belong to the relay.
    if buf.len() > end {
        (&upstream).write_all(buf[end..].to_vec()).await.0?;
    }
    drop(buf);

    let up = relay(&client, &upstream, cfg.multishot);
    let down = relay(&upstream, &client, cfg.multishot);
    // The first error drops (cancels) the other direction; both sockets close on return.
    futures_util::future::try_join(up, down).await.map(|_| ())
}

/// Creates the upstream socket bound to `egress:0` (synchronous socket/setsockopt/bind, as
/// egressd does), then connects with an io_uring connect.
async fn connect(target: SocketAddr, egress: IpAddr) -> io::Result<TcpStream> {
    if target.is_ipv4() != egress.is_ipv4() {
        return Err(io::Error::other(
            "target family differs from egress address",
        ));
    }
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_tcp_nodelay(true)?;
    if egress.is_ipv4() {
        nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::IpBindAddressNoPort,
            &true,
        )
        .map_err(io::Error::from)?;
    }
    socket.bind(&SockAddr::from(SocketAddr::new(egress, 0)))?;
    let stream = TcpSocket::from_std_stream(socket.into())?
        .connect(target)
        .await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One direction: read → write_all until EOF, then half-close `to`.
async fn relay(mut from: &TcpStream, mut to: &TcpStream, multishot: bool) -> io::Result<()> {
    if multishot {
        let mut chunks = pin!(from.read_multi(0));
        while let Some(chunk) = chunks.next().await {
            match chunk {
                Ok(chunk) => to.write_all(chunk).await.0?,
                // ENOBUFS: the provided-buffer ring ran dry; the stream re-arms.
                Err(e) if e.kind() == ErrorKind::ResourceBusy => continue,
                Err(e) => return Err(e),
            }
        }
    } else {
        let mut buf = Vec::with_capacity(BUF_SIZE);
        loop {
            // compio reads to the start of the buffer but only ever grows its length.
            buf.clear();
            let BufResult(res, b) = from.read(buf).await;
            buf = b;
            if res? == 0 {
                break;
            }
            let BufResult(res, b) = to.write_all(buf).await;
            buf = b;
            res?;
        }
    }
    // A plain shutdown(2): IORING_OP_SHUTDOWN is always punted to an io-wq worker thread,
    // which would put a second thread into a benchmark that should have one.
    match SockRef::from(to).shutdown(Shutdown::Write) {
        Err(e) if e.kind() != ErrorKind::NotConnected => Err(e),
        _ => Ok(()),
    }
}

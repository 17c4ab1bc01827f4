//! Moving DNS messages over glommio sockets: one UDP exchange, or one TCP exchange after a
//! truncated reply. The only part of the resolver that touches the runtime.
//!
//! Each UDP exchange uses a fresh socket on a kernel-chosen ephemeral port, connected to the
//! server: the random port adds entropy against forged replies, the kernel then drops datagrams
//! from any other address, and an ICMP "port unreachable" surfaces as an error at once instead of
//! a silent wait for the timeout. Packets that are not the reply (wrong id, wrong question) are
//! skipped and the wait goes on until the deadline.

use std::cell::Cell;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use futures_lite::future;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpStream, UdpSocket};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::DnsError;
use super::message::Rejected;

/// Large enough for any EDNS reply we invite; a bigger datagram is cut and fails to decode.
const UDP_RECV_BUFFER: usize = 4096;

/// Sends `query` to `server` over UDP and returns the first datagram `judge` accepts, or
/// [`DnsError::Timeout`] when none arrives within `timeout`.
pub(crate) async fn udp_exchange<T>(
    server: SocketAddr,
    query: &[u8],
    timeout: Duration,
    judge: impl Fn(&[u8]) -> Result<T, Rejected>,
) -> Result<T, DnsError> {
    // Remembered so a deadline reached after an undecodable reply reports that, not silence.
    let saw_malformed = Cell::new(false);
    let exchange = async {
        let socket = connected_udp_socket(server)?;
        socket.send(query).await.map_err(io::Error::from)?;
        let mut buf = vec![0u8; UDP_RECV_BUFFER];
        loop {
            let (len, from) = socket.recv_from(&mut buf).await.map_err(io::Error::from)?;
            // The connected socket already filters by source; this is the belt to its braces.
            // Only address and port count: IPv6 flow labels may differ.
            if from.ip() != server.ip() || from.port() != server.port() {
                continue;
            }
            match judge(&buf[..len]) {
                Ok(reply) => return Ok(reply),
                Err(Rejected::Stray) => {}
                Err(Rejected::Malformed) => saw_malformed.set(true),
            }
        }
    };
    // One deadline for the whole exchange: a stream of stray packets must not extend it.
    future::or(exchange, async {
        glommio::timer::sleep(timeout).await;
        Err(if saw_malformed.get() {
            DnsError::Malformed
        } else {
            DnsError::Timeout
        })
    })
    .await
}

/// A UDP socket on its own ephemeral port, connected to `server`.
///
/// Built with socket2 rather than glommio's `UdpSocket::bind`, which sets SO_REUSEPORT: with it
/// the kernel may give two of our sockets the same ephemeral port, and two such sockets connected
/// to the same server would receive each other's replies (rejected by id, then timed out).
fn connected_udp_socket(server: SocketAddr) -> io::Result<UdpSocket> {
    let (domain, local): (Domain, SocketAddr) = if server.is_ipv4() {
        (Domain::IPV4, (Ipv4Addr::UNSPECIFIED, 0).into())
    } else {
        (Domain::IPV6, (Ipv6Addr::UNSPECIFIED, 0).into())
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    socket.bind(&SockAddr::from(local))?;
    // Connecting a UDP socket only records the peer; it never waits.
    socket.connect(&SockAddr::from(server))?;
    Ok(UdpSocket::from(socket))
}

/// Sends `query` to `server` over TCP (two-byte length prefix, RFC 1035 4.2.2) and judges the
/// single reply; the whole exchange, connect included, is bounded by `timeout`.
pub(crate) async fn tcp_exchange<T>(
    server: SocketAddr,
    query: &[u8],
    timeout: Duration,
    judge: impl Fn(&[u8]) -> Result<T, Rejected>,
) -> Result<T, DnsError> {
    let exchange = async {
        let len = u16::try_from(query.len()).map_err(|_| DnsError::InvalidName)?;
        let mut stream = TcpStream::connect(server).await.map_err(io::Error::from)?;
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(query);
        stream.write_all(&framed).await?;
        stream.flush().await?;
        let mut prefix = [0u8; 2];
        stream.read_exact(&mut prefix).await?;
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        stream.read_exact(&mut reply).await?;
        // One connection carries one question, so anything but our reply is a broken server.
        judge(&reply).map_err(|_| DnsError::Malformed)
    };
    future::or(exchange, async {
        glommio::timer::sleep(timeout).await;
        Err(DnsError::Timeout)
    })
    .await
}

//! A TCP connection driven wholly through the shard's epoll readiness: accepted from a
//! listener or connected upstream, read and written with non-blocking calls, waiting only on
//! the shard's poller. A glommio stream arms an io_uring poll of its own when it is made, and
//! waits for an accept or a connect with another; each completes on the CPU that delivered
//! the packet and interrupts the shard (see `readiness`). Clients and upstreams are both
//! `Conn`s, so a connection's whole life costs no io_uring completion at all.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite};
use socket2::{SockAddr, Socket};

use crate::readiness::Readiness;
use crate::sockopt::{Pipe, send_now, splice_in, splice_out};

#[derive(Debug)]
pub struct Conn {
    socket: Socket,
    readiness: Rc<Readiness>,
    /// epoll reports room to write (only while a writer waited for it; see `Epoll::watch`).
    output: bool,
}

impl Conn {
    /// A connection taken from a listener (non-blocking already: `accept4` made it so).
    pub fn accepted(socket: Socket, readiness: &Rc<Readiness>) -> io::Result<Conn> {
        let conn = Conn {
            socket,
            readiness: readiness.clone(),
            output: false,
        };
        readiness.watch(&conn, false)?;
        Ok(conn)
    }

    /// Connects a prepared (non-blocking) socket to `dst` within `timeout`.
    pub async fn connect(
        socket: Socket,
        dst: SocketAddr,
        timeout: Duration,
        readiness: &Rc<Readiness>,
    ) -> io::Result<Conn> {
        match socket.connect(&SockAddr::from(dst)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let mut conn = Conn {
            socket,
            readiness: readiness.clone(),
            output: true,
        };
        readiness.watch(&conn, true)?;
        // Writable once the handshake is over, either way: SO_ERROR tells a failure, a peer
        // address success; neither yet means a wake-up meant for someone else.
        let deadline = Instant::now() + timeout;
        let mut first = true;
        let waited = futures_lite::future::or(
            std::future::poll_fn(|cx| {
                if !std::mem::take(&mut first) {
                    match conn.socket.take_error() {
                        Ok(Some(e)) | Err(e) => return Poll::Ready(Err(e)),
                        Ok(None) => {}
                    }
                    match conn.socket.peer_addr() {
                        Ok(_) => return Poll::Ready(Ok(())),
                        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {}
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                }
                readiness
                    .wait_writable(&conn, cx)
                    .map(|()| Err(io::ErrorKind::InvalidInput.into()))
            }),
            async {
                glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
                Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
            },
        )
        .await;
        waited?;
        // Connected: from now on only reads are reported, until a write has to wait.
        readiness.set_output(&conn, false)?;
        conn.output = false;
        Ok(conn)
    }

    /// The local address: for an upstream, the egress address and port actually used.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
    }
}

impl Conn {
    /// Moves what the socket holds into the empty `pipe`, or registers `cx`'s waker to be
    /// woken when it has more. `Ok(0)`: the peer closed.
    pub fn poll_splice_in(&self, cx: &mut Context<'_>, pipe: &Pipe) -> Poll<io::Result<usize>> {
        // A short splice does not tell that the socket is empty (the pipe can run out of
        // slots before bytes), so only a splice that found nothing clears the mark (want 0).
        self.readiness.poll_take(&self.socket, cx, 0, || {
            splice_in(&self.socket, pipe, pipe.capacity)
        })
    }

    /// Moves up to `len` bytes from `pipe` into the socket, waiting for room like a write.
    pub fn poll_splice_out(
        &mut self,
        cx: &mut Context<'_>,
        pipe: &Pipe,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        self.poll_give(cx, |socket| splice_out(pipe, socket, len))
    }

    /// Gives bytes to the socket with `give` (non-blocking: `None` when its buffer is full),
    /// or registers `cx`'s waker to be woken when it has room.
    fn poll_give(
        &mut self,
        cx: &mut Context<'_>,
        mut give: impl FnMut(&Socket) -> Option<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if let Some(r) = give(&self.socket) {
            return Poll::Ready(r);
        }
        if !self.output {
            // Full: have room reported from now on (adding the interest reports the current
            // state, so room that came meanwhile is not missed), and try once more.
            if let Err(e) = self.readiness.set_output(&self.socket, true) {
                return Poll::Ready(Err(e));
            }
            self.output = true;
            if let Some(r) = give(&self.socket) {
                return Poll::Ready(r);
            }
        }
        let _ = self.readiness.wait_writable(&self.socket, cx);
        // Room that comes after the failed attempt raises an edge the poller delivers to this
        // writer, registered before the poller can run again.
        Poll::Pending
    }
}

impl AsRawFd for Conn {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.readiness.forget(&self.socket);
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.readiness.poll_read(&this.socket, cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_give(cx, |socket| send_now(socket, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.socket.shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::{AsyncReadExt, AsyncWriteExt};

    use crate::testutil::on_test_shard as on_shard;

    fn prepared() -> Socket {
        let s = Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        s
    }

    #[test]
    fn a_refused_connect_is_an_error() {
        on_shard(|r| async move {
            // A port nobody listens on: bind one, note it, close it.
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            let err = Conn::connect(prepared(), port, Duration::from_secs(5), &r)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        });
    }

    #[test]
    fn bytes_go_both_ways_through_a_full_buffer() {
        on_shard(|r| async move {
            let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let mut conn = Conn::connect(prepared(), addr, Duration::from_secs(5), &r)
                .await
                .unwrap();
            assert_eq!(conn.local_addr().unwrap().ip(), addr.ip());
            let mut peer = listener.accept().await.unwrap();
            // 8 MiB is far more than the socket buffers hold: the writer has to wait for room
            // while the peer reads.
            let data: Vec<u8> = (0..8 << 20).map(|i| (i % 251) as u8).collect();
            let expected = data.clone();
            let reader = glommio::spawn_local(async move {
                let mut got = Vec::with_capacity(8 << 20);
                let mut buf = vec![0u8; 64 * 1024];
                while got.len() < 8 << 20 {
                    let n = peer.read(&mut buf).await.unwrap();
                    assert!(n > 0);
                    got.extend_from_slice(&buf[..n]);
                }
                peer.write_all(b"done").await.unwrap();
                got
            });
            conn.write_all(&data).await.unwrap();
            let got = reader.await;
            assert!(got == expected, "the bytes arrived in order");
            let mut answer = [0u8; 4];
            conn.read_exact(&mut answer).await.unwrap();
            assert_eq!(&answer, b"done");
            conn.close().await.unwrap();
        });
    }
}

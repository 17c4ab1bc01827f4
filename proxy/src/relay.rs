//! Relaying a tunnel: both directions at once, half-close passed through, an idle timeout,
//! and byte counts.
//!
//! An idle tunnel holds no buffer. The shard's socket reads are readiness-based (see
//! `readiness`) and do not keep the caller's buffer while waiting, so each direction borrows a buffer from the shard's
//! pool only for the poll that reads, and gives it back when the read would block. A buffer
//! stays with a direction only while its bytes are waiting to be written.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncWrite};

/// Size of one relay buffer.
pub const BUF_SIZE: usize = 128 * 1024;
/// Buffers a shard keeps for reuse.
const POOL_KEEP: usize = 64;

/// Per-shard free list of relay buffers.
#[derive(Debug, Default)]
pub struct BufPool {
    free: RefCell<Vec<Vec<u8>>>,
}

impl BufPool {
    fn get(&self) -> Vec<u8> {
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| vec![0; BUF_SIZE])
    }

    fn put(&self, buf: Vec<u8>) {
        let mut free = self.free.borrow_mut();
        if free.len() < POOL_KEEP {
            free.push(buf);
        }
    }
}

/// One direction of a tunnel.
struct Direction {
    buf: Option<Vec<u8>>,
    start: usize,
    end: usize,
    eof: bool,
    done: bool,
    bytes: u64,
}

impl Direction {
    fn new(initial: Vec<u8>) -> Self {
        let end = initial.len();
        Direction {
            buf: (end > 0).then_some(initial),
            start: 0,
            end,
            eof: false,
            done: false,
            bytes: 0,
        }
    }

    fn poll<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        from: &RefCell<R>,
        to: &RefCell<W>,
        pool: &BufPool,
        active: &Cell<Instant>,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            if let Some(buf) = &self.buf
                && self.start < self.end
            {
                let n = match Pin::new(&mut *to.borrow_mut())
                    .poll_write(cx, &buf[self.start..self.end])
                {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    Poll::Ready(Ok(n)) => n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                };
                self.start += n;
                self.bytes += n as u64;
                active.set(Instant::now());
                continue;
            }
            if self.eof {
                // Pass the half-close on: the peer sees EOF, the other direction goes on.
                match Pin::new(&mut *to.borrow_mut()).poll_close(cx) {
                    Poll::Ready(r) => {
                        self.done = true;
                        if let Some(b) = self.buf.take() {
                            pool.put(b);
                        }
                        // A peer that already left makes shutdown fail; that is not an error.
                        if let Err(e) = r
                            && e.kind() != io::ErrorKind::NotConnected
                        {
                            return Poll::Ready(Err(e));
                        }
                        return Poll::Ready(Ok(()));
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
            let mut buf = self.buf.take().unwrap_or_else(|| pool.get());
            if buf.len() < BUF_SIZE {
                buf.resize(BUF_SIZE, 0);
            }
            match Pin::new(&mut *from.borrow_mut()).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(0)) => {
                    pool.put(buf);
                    self.eof = true;
                }
                Poll::Ready(Ok(n)) => {
                    self.start = 0;
                    self.end = n;
                    self.buf = Some(buf);
                    active.set(Instant::now());
                }
                Poll::Ready(Err(e)) => {
                    pool.put(buf);
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => {
                    pool.put(buf);
                    return Poll::Pending;
                }
            }
        }
    }
}

/// How a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// Both sides closed their halves.
    Closed,
    /// Nothing moved for the idle timeout.
    Idle,
    /// A read or write failed (reset, broken pipe).
    Error,
}

#[derive(Debug, Clone, Copy)]
pub struct RelayStats {
    /// Bytes from the client to the upstream (including `initial`).
    pub up: u64,
    pub down: u64,
    pub end: RelayEnd,
}

struct Relay<'a, C, U> {
    client: &'a RefCell<C>,
    upstream: &'a RefCell<U>,
    up: Direction,
    down: Direction,
    pool: &'a BufPool,
    active: &'a Cell<Instant>,
}

impl<C, U> Future for Relay<'_, C, U>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let up = this
            .up
            .poll(cx, this.client, this.upstream, this.pool, this.active)?;
        let down = this
            .down
            .poll(cx, this.upstream, this.client, this.pool, this.active)?;
        if up.is_ready() && down.is_ready() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

/// Relays until both directions have closed, one fails, or nothing moves for `idle`.
/// `initial` holds client bytes that arrived with the handshake.
pub async fn relay<C, U>(
    client: C,
    upstream: U,
    initial: Vec<u8>,
    idle: Duration,
    pool: &BufPool,
) -> RelayStats
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let client = RefCell::new(client);
    let upstream = RefCell::new(upstream);
    let active = Cell::new(Instant::now());
    let mut relay = Relay {
        client: &client,
        upstream: &upstream,
        up: Direction::new(initial),
        down: Direction::new(Vec::new()),
        pool,
        active: &active,
    };
    let watchdog = async {
        loop {
            let quiet = active.get().elapsed();
            if quiet >= idle {
                return RelayEnd::Idle;
            }
            glommio::timer::sleep(idle - quiet).await;
        }
    };
    let end = futures_lite::future::or(
        async {
            match (&mut relay).await {
                Ok(()) => RelayEnd::Closed,
                Err(_) => RelayEnd::Error,
            }
        },
        watchdog,
    )
    .await;
    let (up, down) = (relay.up.bytes, relay.down.bytes);
    for d in [&mut relay.up, &mut relay.down] {
        if let Some(b) = d.buf.take() {
            pool.put(b);
        }
    }
    RelayStats { up, down, end }
}

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

use crate::conn::Conn;
use crate::sockopt::Pipe;

/// Size of one relay buffer.
pub const BUF_SIZE: usize = 128 * 1024;
/// Buffers a shard keeps for reuse.
const POOL_KEEP: usize = 64;
/// What a splice pipe is asked to hold.
const PIPE_SIZE: usize = 256 * 1024;
/// Pipes a shard keeps for reuse, and lends at most (two descriptors each; beyond it, bulk
/// tunnels copy).
const PIPES_KEEP: usize = 16;
const PIPES_MAX: usize = 512;

/// Per-shard free lists of relay buffers and splice pipes.
#[derive(Debug, Default)]
pub struct BufPool {
    free: RefCell<Vec<Vec<u8>>>,
    pipes: RefCell<Vec<Pipe>>,
    pipes_lent: Cell<usize>,
}

impl BufPool {
    /// A pipe for a bulk direction, unless the shard lends too many already (or has no
    /// descriptors left).
    fn get_pipe(&self) -> Option<Pipe> {
        if self.pipes_lent.get() >= PIPES_MAX {
            return None;
        }
        let pipe = match self.pipes.borrow_mut().pop() {
            Some(p) => p,
            None => Pipe::new(PIPE_SIZE).ok()?,
        };
        self.pipes_lent.set(self.pipes_lent.get() + 1);
        Some(pipe)
    }

    /// Takes a pipe back: kept when empty, closed (with what it holds) otherwise.
    fn put_pipe(&self, pipe: Pipe, empty: bool) {
        self.pipes_lent.set(self.pipes_lent.get().saturating_sub(1));
        let mut pipes = self.pipes.borrow_mut();
        if empty && pipes.len() < PIPES_KEEP {
            pipes.push(pipe);
        }
    }

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

/// A side of a tunnel that splice(2) can move bytes to and from: a plain TCP connection (not
/// TLS, whose bytes must pass through user space).
pub trait Splice {
    fn spliceable(&mut self) -> Option<&mut Conn> {
        None
    }
}

impl Splice for Conn {
    fn spliceable(&mut self) -> Option<&mut Conn> {
        Some(self)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Splice for futures_rustls::server::TlsStream<S> {}

/// One direction of a tunnel. It copies through a buffer; with `[proxy] splice`, once a read
/// fills the whole buffer (bulk data) and both sides are plain TCP, it moves bytes with
/// splice(2) through a pipe from the shard's pool: no copy to user space, and one system call
/// in and one out per pipe full, as HAProxy does. Small exchanges never take a pipe.
struct Direction {
    buf: Option<Vec<u8>>,
    start: usize,
    end: usize,
    eof: bool,
    done: bool,
    bytes: u64,
    /// A read filled the buffer: move to a pipe once the buffer is written.
    bulk: bool,
    /// Bulk may move to a pipe (`[proxy] splice`).
    splice: bool,
    pipe: Option<Pipe>,
    /// Bytes in the pipe, not yet written.
    in_pipe: usize,
    /// The failure that ended the direction was the writing side's (else the reading one's).
    write_failed: bool,
}

impl Direction {
    fn new(initial: Vec<u8>, splice: bool) -> Self {
        let end = initial.len();
        Direction {
            buf: (end > 0).then_some(initial),
            start: 0,
            end,
            eof: false,
            done: false,
            bytes: 0,
            bulk: false,
            splice,
            pipe: None,
            in_pipe: 0,
            write_failed: false,
        }
    }

    /// Gives the pipe back (with its bytes, if the tunnel ended before they were written).
    fn release_pipe(&mut self, pool: &BufPool) {
        if let Some(p) = self.pipe.take() {
            pool.put_pipe(p, self.in_pipe == 0);
            self.in_pipe = 0;
        }
    }

    /// The spliced direction: pipe to writer, then reader to pipe.
    fn poll_spliced<R: Splice, W: AsyncWrite + Splice + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        from: &RefCell<R>,
        to: &RefCell<W>,
        pool: &BufPool,
        active: &Cell<Instant>,
    ) -> Poll<io::Result<()>> {
        loop {
            let Some(pipe) = &self.pipe else {
                return Poll::Ready(Err(io::ErrorKind::InvalidInput.into()));
            };
            if self.in_pipe > 0 {
                let mut to = to.borrow_mut();
                let Some(out) = to.spliceable() else {
                    return Poll::Ready(Err(io::ErrorKind::InvalidInput.into()));
                };
                match out.poll_splice_out(cx, pipe, self.in_pipe) {
                    Poll::Ready(Ok(0)) => {
                        self.write_failed = true;
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    Poll::Ready(Ok(n)) => {
                        self.in_pipe -= n;
                        self.bytes += n as u64;
                        active.set(Instant::now());
                        continue;
                    }
                    Poll::Ready(Err(e)) => {
                        self.write_failed = true;
                        return Poll::Ready(Err(e));
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
            if self.eof {
                self.release_pipe(pool);
                return Poll::Ready(Ok(()));
            }
            let mut from = from.borrow_mut();
            let Some(input) = from.spliceable() else {
                return Poll::Ready(Err(io::ErrorKind::InvalidInput.into()));
            };
            match input.poll_splice_in(cx, pipe) {
                Poll::Ready(Ok(0)) => self.eof = true,
                Poll::Ready(Ok(n)) => {
                    self.in_pipe = n;
                    active.set(Instant::now());
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn poll<R: AsyncRead + Splice + Unpin, W: AsyncWrite + Splice + Unpin>(
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
            if self.pipe.is_some() {
                match self.poll_spliced(cx, from, to, pool, active) {
                    // The end of the input, with the pipe emptied: pass the half-close on.
                    Poll::Ready(Ok(())) => {}
                    other => return other,
                }
            }
            if let Some(buf) = &self.buf
                && self.start < self.end
            {
                let n = match Pin::new(&mut *to.borrow_mut())
                    .poll_write(cx, &buf[self.start..self.end])
                {
                    Poll::Ready(Ok(0)) => {
                        self.write_failed = true;
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    Poll::Ready(Ok(n)) => n,
                    Poll::Ready(Err(e)) => {
                        self.write_failed = true;
                        return Poll::Ready(Err(e));
                    }
                    Poll::Pending => return Poll::Pending,
                };
                self.start += n;
                self.bytes += n as u64;
                active.set(Instant::now());
                if self.start == self.end
                    && std::mem::take(&mut self.bulk)
                    && self.splice
                    && !self.eof
                    && from.borrow_mut().spliceable().is_some()
                    && to.borrow_mut().spliceable().is_some()
                {
                    self.pipe = pool.get_pipe();
                    if let Some(b) = self.buf.take() {
                        pool.put(b);
                    }
                }
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
                            self.write_failed = true;
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
                    self.bulk = n == buf.len();
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
    /// Reading from or writing to the client failed (reset, broken pipe).
    ClientFailed,
    /// Reading from or writing to the upstream failed.
    UpstreamFailed,
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
    C: AsyncRead + AsyncWrite + Splice + Unpin,
    U: AsyncRead + AsyncWrite + Splice + Unpin,
{
    /// `Err` names the side that failed.
    type Output = Result<(), RelayEnd>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), RelayEnd>> {
        let this = &mut *self;
        // Up reads the client and writes the upstream; down the other way round.
        let blame = |d: &Direction, writer_is_client: bool| {
            if d.write_failed == writer_is_client {
                RelayEnd::ClientFailed
            } else {
                RelayEnd::UpstreamFailed
            }
        };
        let up = match this
            .up
            .poll(cx, this.client, this.upstream, this.pool, this.active)
        {
            Poll::Ready(Err(_)) => return Poll::Ready(Err(blame(&this.up, false))),
            other => other,
        };
        let down = match this
            .down
            .poll(cx, this.upstream, this.client, this.pool, this.active)
        {
            Poll::Ready(Err(_)) => return Poll::Ready(Err(blame(&this.down, true))),
            other => other,
        };
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
    splice: bool,
) -> RelayStats
where
    C: AsyncRead + AsyncWrite + Splice + Unpin,
    U: AsyncRead + AsyncWrite + Splice + Unpin,
{
    let client = RefCell::new(client);
    let upstream = RefCell::new(upstream);
    let active = Cell::new(Instant::now());
    let mut relay = Relay {
        client: &client,
        upstream: &upstream,
        up: Direction::new(initial, splice),
        down: Direction::new(Vec::new(), splice),
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
                Err(failed) => failed,
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
        d.release_pipe(pool);
    }
    RelayStats { up, down, end }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use futures_lite::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::readiness::Readiness;
    use crate::testutil::{on_test_shard as on_shard, test_pair as pair};

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 253) as u8 ^ seed).collect()
    }

    async fn read_to_end(c: &mut Conn) -> Vec<u8> {
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.unwrap();
        got
    }

    /// A small exchange, then 24 MiB each way (far more than socket buffers and pipes hold),
    /// with a half-close in between, through `relay`; checks every byte and returns the pool.
    async fn small_then_bulk(r: Rc<Readiness>, splice: bool) -> Rc<BufPool> {
        let pool = Rc::new(BufPool::default());
        let (mut app, client) = pair(&r).await;
        let (upstream, mut server) = pair(&r).await;
        let relayed = glommio::spawn_local({
            let pool = pool.clone();
            async move {
                let idle = Duration::from_secs(30);
                relay(client, upstream, b"hi".to_vec(), idle, &pool, splice).await
            }
        });
        // A small exchange first: copied, no pipe taken.
        app.write_all(b" there").await.unwrap();
        let mut small = [0u8; 8];
        server.read_exact(&mut small).await.unwrap();
        assert_eq!(&small, b"hi there");
        assert_eq!(pool.pipes_lent.get(), 0, "a small message takes no pipe");
        let up = pattern(24 << 20, 0x5a);
        let down = pattern(24 << 20, 0xa5);
        let server_side = glommio::spawn_local({
            let down = down.clone();
            async move {
                let got = read_to_end(&mut server).await;
                server.write_all(&down).await.unwrap();
                server.close().await.unwrap();
                got
            }
        });
        let sender = glommio::spawn_local({
            let up = up.clone();
            async move {
                app.write_all(&up).await.unwrap();
                // Half-close: the server sees the end and answers after it.
                app.close().await.unwrap();
                read_to_end(&mut app).await
            }
        });
        let got_up = server_side.await;
        let got_down = sender.await;
        assert!(
            got_up == up,
            "upload arrived intact ({} bytes)",
            got_up.len()
        );
        assert!(
            got_down == down,
            "download arrived intact ({} bytes)",
            got_down.len()
        );
        let stats = relayed.await;
        assert_eq!(stats.end, RelayEnd::Closed);
        assert_eq!(stats.up, 8 + (24 << 20));
        assert_eq!(stats.down, 24 << 20);
        assert_eq!(pool.pipes_lent.get(), 0, "every pipe came back");
        pool
    }

    #[test]
    fn with_splice_bulk_moves_through_pipes_intact() {
        on_shard(|r| async move {
            let pool = small_then_bulk(r, true).await;
            assert!(
                !pool.pipes.borrow().is_empty(),
                "bulk directions moved to pipes, which came back empty"
            );
        });
    }

    #[test]
    fn without_splice_bulk_is_copied() {
        on_shard(|r| async move {
            let pool = small_then_bulk(r, false).await;
            assert!(pool.pipes.borrow().is_empty(), "no pipe was ever made");
        });
    }
}

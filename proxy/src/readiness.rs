//! Readiness of a shard's sockets (listeners, clients, upstreams) from one edge-triggered
//! epoll instance, the way an epoll event loop learns it.
//!
//! glommio 0.9 waits for a socket with an io_uring poll of its own, and its rings are made
//! without COOP_TASKRUN: every poll that completes because the peer, on another CPU, sent
//! data reaches the shard as task work with an interrupt, even when the shard is busy and
//! would have come back to the socket anyway. With epoll, data arriving while the shard is
//! busy only puts the socket on the ready list. So every socket is watched here: a reader
//! that finds nothing leaves its waker under the socket's descriptor; the shard's poller task
//! asks epoll what is ready (never waiting) between turns and wakes those readers. Only when
//! nothing is ready does the poller let glommio wait, with one poll on the epoll descriptor
//! itself: one interrupt per idle period instead of one per message.
//!
//! Each watched descriptor also has a "maybe ready" mark: set when it is first watched and
//! whenever epoll reports it, cleared when a read comes back short (it took all there was) or
//! finds nothing, so a reader whose socket is not marked waits at once instead of trying a
//! `recv` that would fail. A listener is watched the same way: its mark says a connection may
//! be queued, and an `accept4` that finds none clears it. A short read does not clear it once the peer has hung up or the
//! socket has failed: the end or the error is still to be read, and no new edge will come.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures_lite::AsyncRead;

use crate::sockopt::{Epoll, recv_now};

/// Events after which a socket never blocks a read again.
const END_EVENTS: u32 = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
/// Events that concern a reader, and a writer.
const READ_EVENTS: u32 = libc::EPOLLIN as u32 | END_EVENTS;
const WRITE_EVENTS: u32 = (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32;

#[derive(Debug)]
pub struct Readiness {
    epoll: Epoll,
    /// Per descriptor: the reader waiting, and whether it may have something to read.
    slots: RefCell<Vec<Slot>>,
}

#[derive(Debug, Default, Clone)]
struct Slot {
    waker: Option<Waker>,
    /// A writer waiting for room in the socket's buffer (or for a connect to finish).
    writer: Option<Waker>,
    maybe_ready: bool,
    /// epoll reported a hang-up or an error: reads never wait again.
    ended: bool,
}

impl Readiness {
    pub fn new() -> io::Result<Rc<Readiness>> {
        Ok(Rc::new(Readiness {
            epoll: Epoll::new()?,
            slots: RefCell::new(Vec::new()),
        }))
    }

    /// Reads what `stream` (watched) holds, or registers `cx`'s waker to be woken when it has
    /// more.
    pub fn poll_read(
        &self,
        stream: &impl AsRawFd,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let want = buf.len();
        self.poll_take(stream, cx, want, || recv_now(stream, buf))
    }

    /// Takes what `stream` (watched) holds with `take` (a non-blocking read of at most `want`
    /// bytes: `None` when there was nothing), or registers `cx`'s waker to be woken when it has
    /// more.
    pub fn poll_take(
        &self,
        stream: &impl AsRawFd,
        cx: &mut Context<'_>,
        want: usize,
        take: impl FnOnce() -> Option<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        let mut slots = self.slots.borrow_mut();
        let Some(slot) = slot_mut(&mut slots, stream) else {
            return Poll::Ready(Err(io::ErrorKind::InvalidInput.into()));
        };
        if slot.maybe_ready {
            match take() {
                Some(Ok(n)) => {
                    // A short read took everything there was; an edge will say when more comes.
                    if n < want && !slot.ended {
                        slot.maybe_ready = false;
                    }
                    return Poll::Ready(Ok(n));
                }
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => slot.maybe_ready = false,
            }
        }
        match &mut slot.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            other => *other = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Takes a queued connection from `listener` (watched, non-blocking), or registers `cx`'s
    /// waker to be woken when one may have come.
    pub fn poll_accept(
        &self,
        listener: &socket2::Socket,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(socket2::Socket, socket2::SockAddr)>> {
        let mut slots = self.slots.borrow_mut();
        let Some(slot) = slot_mut(&mut slots, listener) else {
            return Poll::Ready(Err(io::ErrorKind::InvalidInput.into()));
        };
        if slot.maybe_ready {
            match crate::sockopt::accept_nonblocking(listener) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => slot.maybe_ready = false,
                other => return Poll::Ready(other),
            }
        }
        match &mut slot.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            other => *other = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Forgets a reader and writer that stopped waiting (their socket is about to close).
    pub fn forget(&self, stream: &impl AsRawFd) {
        if let Ok(index) = usize::try_from(stream.as_raw_fd())
            && let Some(slot) = self.slots.borrow_mut().get_mut(index)
        {
            slot.waker = None;
            slot.writer = None;
        }
    }

    /// Puts a new socket in the epoll set, reporting room to write too with `output` (a
    /// connect in progress). A descriptor number seen before may have belonged to another
    /// socket: nothing is known about this one yet.
    pub fn watch(&self, stream: &impl AsRawFd, output: bool) -> io::Result<()> {
        self.epoll.watch(stream.as_raw_fd(), output)?;
        let mut slots = self.slots.borrow_mut();
        let slot = slot_mut(&mut slots, stream).ok_or(io::ErrorKind::InvalidInput)?;
        *slot = Slot {
            maybe_ready: true,
            ..Slot::default()
        };
        Ok(())
    }

    /// Stops or starts reporting room to write for a watched socket.
    pub fn set_output(&self, stream: &impl AsRawFd, output: bool) -> io::Result<()> {
        self.epoll.set_output(stream.as_raw_fd(), output)
    }

    /// Registers `cx`'s waker to be woken when the socket (watched with output) has room to
    /// write, or its connect finished; always `Pending`.
    pub fn wait_writable(&self, stream: &impl AsRawFd, cx: &mut Context<'_>) -> Poll<()> {
        let mut slots = self.slots.borrow_mut();
        let Some(slot) = slot_mut(&mut slots, stream) else {
            return Poll::Ready(());
        };
        match &mut slot.writer {
            Some(w) if w.will_wake(cx.waker()) => {}
            other => *other = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The shard's poller: wakes the readers of ready sockets between turns; when none is
    /// ready, waits through glommio for the epoll descriptor. Runs until the shard stops.
    pub async fn run(self: Rc<Self>) {
        let mut ready = Vec::with_capacity(256);
        let mut wakers = Vec::with_capacity(256);
        loop {
            ready.clear();
            if let Err(e) = self.epoll.ready_now(&mut ready) {
                tracing::error!(error = %e, "epoll_wait failed; tunnels fall back to timeouts");
                return;
            }
            if !ready.is_empty() {
                self.wake(&ready, &mut wakers);
                futures_lite::future::yield_now().await;
                continue;
            }
            let mut waiter = match self.epoll.glommio_waiter() {
                Ok(w) => w,
                Err(e) => {
                    tracing::error!(error = %e, "cannot wait for epoll");
                    return;
                }
            };
            // Pending until the epoll descriptor is readable; the read that follows fails
            // (it is no socket), which only means "look again".
            let mut byte = [0u8; 1];
            let _ = std::future::poll_fn(|cx| Pin::new(&mut waiter).poll_read(cx, &mut byte)).await;
        }
    }

    /// Marks the ready descriptors and wakes their waiters (collected in `wakers` first, so
    /// no borrow is held while a waker runs).
    fn wake(&self, ready: &[(RawFd, u32)], wakers: &mut Vec<Waker>) {
        let mut slots = self.slots.borrow_mut();
        for &(fd, events) in ready {
            if let Some(slot) = usize::try_from(fd).ok().and_then(|i| slots.get_mut(i)) {
                if events & READ_EVENTS != 0 {
                    slot.maybe_ready = true;
                    slot.ended |= events & END_EVENTS != 0;
                    wakers.extend(slot.waker.take());
                }
                if events & WRITE_EVENTS != 0 {
                    wakers.extend(slot.writer.take());
                }
            }
        }
        drop(slots);
        for w in wakers.drain(..) {
            w.wake();
        }
    }
}

/// The slot of `stream`'s descriptor, made on first use.
fn slot_mut<'a>(slots: &'a mut Vec<Slot>, stream: &impl AsRawFd) -> Option<&'a mut Slot> {
    let index = usize::try_from(stream.as_raw_fd()).ok()?;
    if slots.len() <= index {
        slots.resize(index + 1, Slot::default());
    }
    slots.get_mut(index)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::conn::Conn;
    use crate::session::WaitLimited;
    use futures_lite::{AsyncReadExt, AsyncWriteExt};

    use crate::testutil::{on_test_shard as on_shard, test_pair as pair};

    /// One read; a wake-up that never comes fails the test (after 5 s) instead of hanging it.
    async fn read(s: &mut Conn, buf: &mut [u8]) -> usize {
        WaitLimited::new(s, Duration::from_secs(5))
            .read(buf)
            .await
            .unwrap()
    }

    #[test]
    fn a_waiting_reader_is_woken_by_data_and_by_the_end() {
        on_shard(|r| async move {
            let (mut a, mut b) = pair(&r).await;
            let mut buf = [0u8; 64];
            // Nothing there yet: the read waits (the writer only runs once it does) until the
            // other side writes.
            let writer = glommio::spawn_local(async move {
                a.write_all(b"hello").await.unwrap();
                a
            });
            assert_eq!(read(&mut b, &mut buf).await, 5);
            let mut a = writer.await;
            // Data and the end arrive together (loopback delivers them before `close` returns);
            // the short read takes the data, and the end is still seen although no new edge
            // comes after it.
            a.write_all(b"bye").await.unwrap();
            a.close().await.unwrap();
            assert_eq!(read(&mut b, &mut buf).await, 3);
            assert_eq!(read(&mut b, &mut buf).await, 0);
        });
    }

    #[test]
    fn a_wait_has_its_limit() {
        on_shard(|r| async move {
            let (_a, mut b) = pair(&r).await;
            let mut buf = [0u8; 8];
            let err = WaitLimited::new(&mut b, Duration::from_millis(30))
                .read(&mut buf)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        });
    }

    #[test]
    fn many_sockets_each_get_their_own_messages() {
        on_shard(|r| async move {
            let mut tasks = Vec::new();
            for i in 0..20u8 {
                let (mut a, mut b) = pair(&r).await;
                tasks.push(glommio::spawn_local(async move {
                    for round in 0..50u8 {
                        a.write_all(&[i, round]).await.unwrap();
                        let mut got = [0u8; 2];
                        let mut have = 0;
                        while have < 2 {
                            have += read(&mut b, &mut got[have..]).await;
                        }
                        assert_eq!(got, [i, round]);
                    }
                }));
            }
            for t in tasks {
                t.await;
            }
        });
    }

    #[test]
    fn a_descriptor_number_reused_by_a_new_socket_starts_afresh() {
        on_shard(|r| async move {
            // A connection is closed with its reader's state in the slot; the next socket gets
            // the same descriptor number and must not inherit a stale mark or waker.
            let (a, b) = pair(&r).await;
            drop((a, b));
            let (mut c, mut d) = pair(&r).await;
            let mut buf = [0u8; 4];
            let reader = glommio::spawn_local(async move {
                let n = read(&mut d, &mut buf).await;
                (n, buf)
            });
            futures_lite::future::yield_now().await;
            c.write_all(b"ping").await.unwrap();
            assert_eq!(reader.await, (4, *b"ping"));
        });
    }
}

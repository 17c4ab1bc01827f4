//! Readiness of a shard's tunnel sockets from one edge-triggered epoll instance, the way an
//! epoll event loop learns it.
//!
//! glommio 0.9 waits for a socket with an io_uring poll of its own, and its rings are made
//! without COOP_TASKRUN: every poll that completes because the peer, on another CPU, sent
//! data reaches the shard as task work with an interrupt, even when the shard is busy and
//! would have come back to the socket anyway. With epoll, data arriving while the shard is
//! busy only puts the socket on the ready list. So tunnel sockets are watched here: a reader
//! that finds nothing leaves its waker under the socket's descriptor; the shard's poller task
//! asks epoll what is ready (never waiting) between turns and wakes those readers. Only when
//! nothing is ready does the poller let glommio wait, with one poll on the epoll descriptor
//! itself: one interrupt per idle period instead of one per message.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_lite::AsyncRead;

use crate::relay::RelayRead;
use crate::sockopt::{Epoll, recv_now};

#[derive(Debug)]
pub struct Readiness {
    epoll: Epoll,
    /// Readers waiting, by descriptor.
    waiting: RefCell<Vec<Option<Waker>>>,
}

impl Readiness {
    pub fn new() -> io::Result<Rc<Readiness>> {
        Ok(Rc::new(Readiness {
            epoll: Epoll::new()?,
            waiting: RefCell::new(Vec::new()),
        }))
    }

    /// Reads what `stream` holds, or registers `cx`'s waker to be woken when it has more.
    /// `watched` is the caller's record that the socket is in the epoll set already.
    pub fn poll_read(
        &self,
        stream: &impl AsRawFd,
        watched: &mut bool,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(read) = recv_now(stream, buf) {
            return Poll::Ready(read);
        }
        let fd = stream.as_raw_fd();
        if !*watched {
            if let Err(e) = self.epoll.watch(fd) {
                return Poll::Ready(Err(e));
            }
            *watched = true;
            // Data that came between the read and the watch raised no edge: look again.
            if let Some(read) = recv_now(stream, buf) {
                return Poll::Ready(read);
            }
        }
        let Ok(slot) = usize::try_from(fd) else {
            return Poll::Ready(Err(io::ErrorKind::InvalidInput.into()));
        };
        let mut waiting = self.waiting.borrow_mut();
        if waiting.len() <= slot {
            waiting.resize(slot + 1, None);
        }
        match &mut waiting[slot] {
            Some(w) if w.will_wake(cx.waker()) => {}
            other => *other = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Forgets a reader that stopped waiting (its socket is about to close).
    pub fn forget(&self, stream: &impl AsRawFd) {
        if let Ok(slot) = usize::try_from(stream.as_raw_fd())
            && let Some(w) = self.waiting.borrow_mut().get_mut(slot)
        {
            *w = None;
        }
    }

    /// The shard's poller: wakes the readers of ready sockets between turns; when none is
    /// ready, waits through glommio for the epoll descriptor. Runs until the shard stops.
    pub async fn run(self: Rc<Self>) {
        let mut ready = Vec::with_capacity(256);
        loop {
            ready.clear();
            if let Err(e) = self.epoll.ready_now(&mut ready) {
                tracing::error!(error = %e, "epoll_wait failed; tunnels fall back to timeouts");
                return;
            }
            if !ready.is_empty() {
                self.wake(&ready);
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

    fn wake(&self, ready: &[RawFd]) {
        let mut waiting = self.waiting.borrow_mut();
        let wakers: Vec<Waker> = ready
            .iter()
            .filter_map(|&fd| usize::try_from(fd).ok())
            .filter_map(|slot| waiting.get_mut(slot).and_then(Option::take))
            .collect();
        drop(waiting);
        for w in wakers {
            w.wake();
        }
    }
}

/// A stream read through the shard's readiness by code written against `AsyncRead` (the HTTP
/// session), with an optional limit on each wait, as glommio's read timeout had.
pub struct ReadyReader<'a, S> {
    stream: &'a mut S,
    readiness: &'a Readiness,
    watched: &'a mut bool,
    timeout: Option<Duration>,
    timer: Option<glommio::timer::Timer>,
}

impl<'a, S: RelayRead> ReadyReader<'a, S> {
    pub fn new(
        stream: &'a mut S,
        readiness: &'a Readiness,
        watched: &'a mut bool,
        timeout: Option<Duration>,
    ) -> Self {
        ReadyReader {
            stream,
            readiness,
            watched,
            timeout,
            timer: None,
        }
    }
}

impl<S: RelayRead> AsyncRead for ReadyReader<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this
            .stream
            .poll_relay_read(cx, buf, this.readiness, this.watched)
        {
            Poll::Ready(r) => {
                this.timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if let Some(limit) = this.timeout {
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
                }
                Poll::Pending
            }
        }
    }
}

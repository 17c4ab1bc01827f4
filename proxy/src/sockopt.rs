//! The one room for `unsafe`: socket options socket2 has no setter for, handing the epoll
//! descriptor to glommio to wait on (its only way in is `FromRawFd`), a non-blocking `recv` into an initialised
//! buffer (socket2's takes `MaybeUninit`), and epoll. Each call passes a valid descriptor
//! borrowed from, or owned by, a live object and a correctly sized value or buffer.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

/// An epoll instance (edge-triggered readiness for many sockets, see `readiness`).
#[derive(Debug)]
pub struct Epoll(OwnedFd);

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new descriptor
        // that nothing else owns.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Watches `fd` for input, hang-up and errors (and room to write, with `output`: each
    /// ACK that frees send-buffer room is then an event, so only while a writer waits),
    /// edge-triggered, reporting `fd` itself. Closing the socket removes it (nothing else
    /// holds its file description).
    pub fn watch(&self, fd: RawFd, output: bool) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_ADD, fd, output)
    }

    /// Changes whether `fd`, watched already, reports room to write.
    pub fn set_output(&self, fd: RawFd, output: bool) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_MOD, fd, output)
    }

    fn control(&self, op: libc::c_int, fd: RawFd, output: bool) -> io::Result<()> {
        let mut events = libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET;
        if output {
            events |= libc::EPOLLOUT;
        }
        let mut event = libc::epoll_event {
            events: events as u32,
            u64: fd as u64,
        };
        // SAFETY: both descriptors are live (the caller's socket is borrowed for the call);
        // `event` is a valid epoll_event the kernel only reads.
        let rc = unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &raw mut event) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EEXIST) {
            Ok(())
        } else {
            Err(e)
        }
    }

    /// The descriptors ready now and their events (never waits), into `ready`.
    pub fn ready_now(&self, ready: &mut Vec<(RawFd, u32)>) -> io::Result<()> {
        const BATCH: usize = 256;
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; BATCH];
        // SAFETY: `events` is a writable array of BATCH epoll_events; timeout 0 never blocks.
        let n = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                events.as_mut_ptr(),
                BATCH as libc::c_int,
                0,
            )
        };
        let Ok(n) = usize::try_from(n) else {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        };
        ready.extend(events[..n].iter().map(|e| (e.u64 as RawFd, e.events)));
        Ok(())
    }

    /// A glommio stream over a duplicate of the epoll descriptor. glommio arms one poll for a
    /// new stream, so waiting to read from it is waiting until some watched socket is ready;
    /// after that one wait it is dropped (a read would fail: it is no socket).
    pub fn glommio_waiter(&self) -> io::Result<glommio::net::TcpStream> {
        let fd = self.0.try_clone()?.into_raw_fd();
        // SAFETY: `fd` was just released by its only owner; the stream becomes its sole owner
        // and closes it once.
        Ok(unsafe { glommio::net::TcpStream::from_raw_fd(fd) })
    }
}

/// Reads what the socket holds now, without waiting: `None` when nothing is there.
pub fn recv_now(socket: &impl AsRawFd, buf: &mut [u8]) -> Option<io::Result<usize>> {
    // SAFETY: the descriptor comes from a live socket borrowed for the duration of the call;
    // the kernel writes at most `buf.len()` bytes into `buf`, which is valid and writable.
    let rc = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    match usize::try_from(rc) {
        Ok(n) => Some(Ok(n)),
        Err(_) => {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => None,
                io::ErrorKind::Interrupted => None,
                _ => Some(Err(e)),
            }
        }
    }
}

/// Sends what the socket takes now, without waiting (and without SIGPIPE): `None` when its
/// buffer is full.
pub fn send_now(socket: &impl AsRawFd, buf: &[u8]) -> Option<io::Result<usize>> {
    // SAFETY: the descriptor comes from a live socket borrowed for the duration of the call;
    // the kernel reads at most `buf.len()` bytes from `buf`, which is valid.
    let rc = unsafe {
        libc::send(
            socket.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    match usize::try_from(rc) {
        Ok(n) => Some(Ok(n)),
        Err(_) => {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => None,
                _ => Some(Err(e)),
            }
        }
    }
}

/// IP_BIND_ADDRESS_NO_PORT: bind the source address now but pick the port at connect time,
/// so pre-bound sockets do not each reserve one of the address's ephemeral ports.
pub fn set_bind_address_no_port(socket: &impl AsRawFd, on: bool) -> io::Result<()> {
    let value: libc::c_int = i32::from(on);
    // SAFETY: the descriptor comes from a live socket borrowed for the duration of the call;
    // the option value points at a c_int whose size is passed alongside it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_reads_back() {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        set_bind_address_no_port(&s, true).unwrap();
        let mut value: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: as above; `len` tells the kernel the size of `value`.
        let rc = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&raw mut value).cast(),
                &raw mut len,
            )
        };
        assert_eq!((rc, value), (0, 1));
    }
}

//! The one room for `unsafe`: socket options socket2 has no setter for, handing the epoll
//! descriptor to glommio to wait on (its only way in is `FromRawFd`), a non-blocking `recv`
//! into an initialised buffer (socket2's takes `MaybeUninit`), epoll, pipes and splice(2), and
//! the io_uring probe made before shards start. Each call passes a valid descriptor
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
    now(rc)
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
    now(rc)
}

/// Takes a queued connection from a non-blocking listener as a non-blocking socket (one
/// `accept4`, which also gives the peer's address). A blocking socket would block the shard in
/// a splice(2) from it, which follows the socket's own flag.
pub fn accept_nonblocking(
    listener: &impl AsRawFd,
) -> io::Result<(socket2::Socket, socket2::SockAddr)> {
    // SAFETY: `init` hands accept4 a zeroed sockaddr_storage and its length, which the kernel
    // fills and updates; the descriptor is the live listener's.
    let (fd, peer) = unsafe {
        socket2::SockAddr::init(|storage, len| {
            let fd = libc::accept4(
                listener.as_raw_fd(),
                storage.cast(),
                len,
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            );
            if fd < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(fd)
            }
        })
    }?;
    // SAFETY: accept4 succeeded, so `fd` is a new descriptor owned by no one else.
    Ok((unsafe { socket2::Socket::from_raw_fd(fd) }, peer))
}

/// A non-blocking pipe, the kernel-side buffer of a spliced tunnel direction.
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// What it holds at most.
    pub capacity: usize,
}

impl Pipe {
    /// A new pipe holding up to `size` bytes (rounded by the kernel; its default when the
    /// request is refused).
    pub fn new(size: usize) -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid array of two c_ints for the kernel to fill.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by no one else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
        // SAFETY: F_SETPIPE_SZ takes an int argument; the descriptor is the live pipe's. A
        // refusal (above /proc/sys/fs/pipe-max-size) leaves the default size.
        let _ = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, size) };
        // SAFETY: F_GETPIPE_SZ takes no argument; the descriptor is the live pipe's.
        let capacity = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) };
        let capacity = usize::try_from(capacity).map_err(|_| io::Error::last_os_error())?;
        Ok(Pipe {
            read,
            write,
            capacity,
        })
    }
}

/// Moves up to `len` bytes from `socket` into `pipe` without copying them to user space, and
/// without waiting: `None` when the socket has nothing (or the pipe no room). `Some(Ok(0))`:
/// the peer closed.
pub fn splice_in(socket: &impl AsRawFd, pipe: &Pipe, len: usize) -> Option<io::Result<usize>> {
    splice(socket.as_raw_fd(), pipe.write.as_raw_fd(), len)
}

/// Moves up to `len` bytes from `pipe` into `socket`, without waiting: `None` when the socket's
/// buffer is full.
pub fn splice_out(pipe: &Pipe, socket: &impl AsRawFd, len: usize) -> Option<io::Result<usize>> {
    splice(pipe.read.as_raw_fd(), socket.as_raw_fd(), len)
}

fn splice(from: RawFd, to: RawFd, len: usize) -> Option<io::Result<usize>> {
    // SAFETY: both descriptors belong to live objects borrowed for the duration of the call;
    // null offsets mean "the descriptors' own positions", as sockets and pipes require.
    let rc = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    now(rc)
}

/// The result of a non-blocking transfer call: `None` when it would have had to wait (or was
/// interrupted: the caller tries again when woken).
fn now(rc: isize) -> Option<io::Result<usize>> {
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

/// Sets up a two-entry io_uring and closes it again: whether this process may create rings
/// at all (a seccomp profile or `kernel.io_uring_disabled` can forbid it), asked before any
/// shard starts, because glommio panics with a misleading message when it cannot.
pub fn io_uring_probe() -> io::Result<()> {
    // struct io_uring_params is 120 bytes on every architecture; all zero means no flags.
    let mut params = [0u32; 30];
    // SAFETY: `params` is a writable, zeroed io_uring_params: without setup flags the kernel
    // reads no descriptor or address from it, and only writes the ring offsets back into it.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 2u32, params.as_mut_ptr()) };
    let Ok(fd) = RawFd::try_from(fd) else {
        return Err(io::Error::other(
            "io_uring_setup returned an impossible descriptor",
        ));
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created by io_uring_setup and is owned by nothing else; dropping
    // it closes the ring.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_sockets_are_non_blocking_and_know_their_peer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (socket, peer) = accept_nonblocking(&listener).unwrap();
        assert_eq!(peer.as_socket(), Some(client.local_addr().unwrap()));
        // SAFETY: F_GETFL takes no argument; the descriptor is the live socket's.
        let flags = unsafe { libc::fcntl(socket.as_raw_fd(), libc::F_GETFL) };
        assert!(
            flags & libc::O_NONBLOCK != 0,
            "a splice from it must not block"
        );
        listener.set_nonblocking(true).unwrap();
        let none = accept_nonblocking(&listener).unwrap_err();
        assert_eq!(none.kind(), io::ErrorKind::WouldBlock);
    }

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

    #[test]
    fn io_uring_can_be_set_up_here() {
        // The tests run glommio executors, so this host allows io_uring.
        io_uring_probe().unwrap();
    }
}

//! The one room for `unsafe`: socket options socket2 has no setter for, and handing a
//! listening socket to glommio (whose only way in is `FromRawFd`). Each call passes a valid
//! descriptor borrowed from, or owned by, a live socket and a correctly sized option value.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};

/// Gives a bound, listening socket to glommio. glommio's own `TcpListener::bind` offers no
/// way to set options first, nor to reach the descriptor afterwards.
pub fn glommio_listener(socket: socket2::Socket) -> glommio::net::TcpListener {
    let fd = socket.into_raw_fd();
    // SAFETY: `fd` was just released by its only owner, so the listener becomes its sole
    // owner and closes it once; the caller bound it and made it listen.
    unsafe { glommio::net::TcpListener::from_raw_fd(fd) }
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

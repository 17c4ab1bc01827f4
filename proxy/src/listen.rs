//! A shard's listening socket.
//!
//! Options are set once on the listener and inherited by every accepted connection
//! (TCP_NODELAY), and connections waiting in the queue are taken with one `accept4` each,
//! which also yields the client's address. glommio's accept costs three `fcntl` calls around
//! every `accept`, and `getpeername` and `setsockopt(TCP_NODELAY)` came after; now glommio is
//! asked only to wait when the queue is empty.

use std::io;
use std::net::SocketAddr;

use glommio::net::TcpStream;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::sockopt;

/// Pending connections the kernel may queue (capped by net.core.somaxconn).
const BACKLOG: i32 = 4096;

pub struct Listener {
    /// The listening socket, non-blocking, for taking queued connections directly.
    socket: Socket,
    /// The same socket (a duplicate descriptor) in glommio's hands, to wait on.
    waiter: glommio::net::TcpListener,
}

/// An accepted connection.
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: Option<SocketAddr>,
}

impl Listener {
    /// Binds with SO_REUSEPORT (every shard listens on the same address) and TCP_NODELAY.
    pub fn bind(addr: SocketAddr) -> io::Result<Listener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_port(true)?;
        socket.set_reuse_address(true)?;
        socket.set_nodelay(true)?;
        socket.bind(&SockAddr::from(addr))?;
        socket.listen(BACKLOG)?;
        socket.set_nonblocking(true)?;
        let waiter = sockopt::glommio_listener(socket.try_clone()?);
        Ok(Listener { socket, waiter })
    }

    /// The next connection: straight from the queue when one is waiting, otherwise once
    /// glommio reports one.
    pub async fn accept(&self) -> io::Result<Accepted> {
        match self.socket.accept() {
            Ok((socket, peer)) => Ok(Accepted {
                stream: TcpStream::from(socket),
                peer: peer.as_socket(),
            }),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let stream = self.waiter.accept().await.map_err(io::Error::from)?;
                Ok(Accepted {
                    peer: stream.peer_addr().ok(),
                    stream,
                })
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_executor<F: Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
        glommio::LocalExecutorBuilder::default()
            .io_memory(64 << 10)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn accepted_connections_inherit_nodelay_and_know_the_peer() {
        on_executor(|| async {
            let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.socket.local_addr().unwrap().as_socket().unwrap();
            // Queued before accepting: taken by accept4.
            let queued = std::net::TcpStream::connect(addr).unwrap();
            let a = listener.accept().await.unwrap();
            assert_eq!(a.peer, Some(queued.local_addr().unwrap()));
            assert!(
                a.stream.nodelay().unwrap(),
                "TCP_NODELAY is inherited from the listener"
            );

            // Nothing queued: glommio waits, then the same guarantees hold.
            let listener = std::rc::Rc::new(listener);
            let waiting = glommio::spawn_local({
                let listener = listener.clone();
                async move { listener.accept().await.unwrap() }
            });
            futures_lite::future::yield_now().await;
            let late = std::net::TcpStream::connect(addr).unwrap();
            let b = waiting.await;
            assert_eq!(b.peer, Some(late.local_addr().unwrap()));
            assert!(b.stream.nodelay().unwrap());
        });
    }
}

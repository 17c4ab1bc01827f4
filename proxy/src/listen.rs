//! A shard's listening socket.
//!
//! Options are set once on the listener and inherited by every accepted connection
//! (TCP_NODELAY). The listener is watched by the shard's epoll readiness like every other
//! socket, and connections are taken with one `accept4` each, which also yields the client's
//! address; when none is queued the accept waits for the poller's word. (glommio's accept cost
//! three `fcntl` calls and a failed `accept` around every connection, one io_uring poll whose
//! completion interrupts the shard, and a `getpeername`.)

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::conn::Conn;
use crate::readiness::Readiness;

/// A listener as bound at start (listener changes need a restart), as its sessions see it.
#[derive(Debug, Clone)]
pub struct ListenerSpec {
    /// Position in the configuration's `[[listener]]` list (for per-listener counters).
    pub index: usize,
    pub name: Rc<str>,
    /// The bound address when it names one address (what clients reached); for an
    /// unspecified address each connection asks the kernel.
    pub local: Option<SocketAddr>,
    pub protocols: Vec<egressd_policy::model::ListenerProtocol>,
    pub auth: egressd_policy::model::Auth,
}

/// Pending connections the kernel may queue (capped by net.core.somaxconn).
const BACKLOG: i32 = 4096;

pub struct Listener {
    /// The listening socket, non-blocking, in the shard's epoll set.
    socket: Socket,
    readiness: Rc<Readiness>,
}

/// An accepted connection.
pub struct Accepted {
    pub stream: Conn,
    pub peer: Option<SocketAddr>,
}

impl Listener {
    /// Binds with SO_REUSEPORT (every shard listens on the same address) and TCP_NODELAY, and
    /// has `readiness` watch it.
    pub fn bind(addr: SocketAddr, readiness: &Rc<Readiness>) -> io::Result<Listener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_port(true)?;
        socket.set_reuse_address(true)?;
        socket.set_nodelay(true)?;
        socket.bind(&SockAddr::from(addr))?;
        socket.listen(BACKLOG)?;
        socket.set_nonblocking(true)?;
        readiness.watch(&socket, false)?;
        Ok(Listener {
            socket,
            readiness: readiness.clone(),
        })
    }

    /// The address the listener is bound to.
    #[cfg(test)]
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
    }

    /// The next connection: straight from the queue when one is waiting, otherwise once the
    /// shard's poller says one may have come.
    pub async fn accept(&self) -> io::Result<Accepted> {
        let (socket, peer) =
            std::future::poll_fn(|cx| self.readiness.poll_accept(&self.socket, cx)).await?;
        Ok(Accepted {
            stream: Conn::accepted(socket, &self.readiness)?,
            peer: peer.as_socket(),
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.readiness.forget(&self.socket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::on_test_shard as on_shard;

    #[test]
    fn accepted_connections_inherit_nodelay_and_know_the_peer() {
        on_shard(|r| async move {
            let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), &r).unwrap();
            let addr = listener.local_addr().unwrap();
            // Queued before accepting: taken at once.
            let queued = std::net::TcpStream::connect(addr).unwrap();
            let a = listener.accept().await.unwrap();
            assert_eq!(a.peer, Some(queued.local_addr().unwrap()));
            assert!(
                socket2::SockRef::from(&a.stream).nodelay().unwrap(),
                "TCP_NODELAY is inherited from the listener"
            );

            // Nothing queued: the accept waits for the poller, then the same guarantees hold.
            let listener = Rc::new(listener);
            let waiting = glommio::spawn_local({
                let listener = listener.clone();
                async move { listener.accept().await.unwrap() }
            });
            futures_lite::future::yield_now().await;
            let late = std::net::TcpStream::connect(addr).unwrap();
            let b = waiting.await;
            assert_eq!(b.peer, Some(late.local_addr().unwrap()));
            assert!(socket2::SockRef::from(&b.stream).nodelay().unwrap());
        });
    }

    #[test]
    fn a_burst_of_connections_is_taken_whole() {
        on_shard(|r| async move {
            let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), &r).unwrap();
            let addr = listener.local_addr().unwrap();
            // One edge for many queued connections: each accept still finds its own.
            let clients: Vec<_> = (0..50)
                .map(|_| std::net::TcpStream::connect(addr).unwrap())
                .collect();
            let mut peers = Vec::new();
            for _ in 0..50 {
                peers.push(listener.accept().await.unwrap().peer.unwrap());
            }
            let mut want: Vec<_> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
            want.sort();
            peers.sort();
            assert_eq!(peers, want);
        });
    }
}

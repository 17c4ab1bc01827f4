//! Test support shared by the unit tests: a one-off shard to run async tests on, connected
//! pairs of sockets driven by its readiness.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::rc::Rc;

use crate::readiness::Readiness;

/// Test support: runs `f` on a one-off glommio executor with a readiness poller of its own.
pub fn on_test_shard<F, Fut>(f: F)
where
    F: FnOnce(Rc<Readiness>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .io_memory(64 * 1024)
        .spawn(move || async move {
            let readiness = Readiness::new().unwrap();
            glommio::spawn_local(readiness.clone().run()).detach();
            f(readiness).await;
        })
        .unwrap()
        .join()
        .unwrap();
}

/// Test support: the two ends of one loopback connection, both driven by `r`.
pub async fn test_pair(r: &Rc<Readiness>) -> (crate::conn::Conn, crate::conn::Conn) {
    let listener = crate::listen::Listener::bind("127.0.0.1:0".parse().unwrap(), r).unwrap();
    let addr = listener.local_addr().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_nonblocking(true).unwrap();
    let (a, b) = futures_lite::future::zip(
        crate::conn::Conn::connect(socket, addr, std::time::Duration::from_secs(5), r),
        listener.accept(),
    )
    .await;
    (a.unwrap(), b.unwrap().stream)
}

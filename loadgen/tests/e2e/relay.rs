//! Byte relay for the test proxies: one thread per direction, half-closing as each side ends.

use std::io;
use std::net::{Shutdown, TcpStream};
use std::thread;

pub fn relay(client: TcpStream, upstream: TcpStream) {
    let (Ok(client_w), Ok(upstream_w)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let up = thread::spawn(move || pump(client, upstream_w));
    pump(upstream, client_w);
    let _ = up.join();
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

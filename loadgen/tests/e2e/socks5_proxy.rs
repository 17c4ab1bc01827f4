//! A tiny SOCKS5 proxy (RFC 1928 CONNECT, RFC 1929 auth) for driving the loadgen's client.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::thread;

use super::relay::relay;

#[derive(Clone, Default)]
pub struct Socks5Config {
    /// Required user and password; `None` accepts only no-auth.
    pub auth: Option<(String, String)>,
    /// Reply code for every CONNECT: 0 relays, anything else refuses.
    pub reply: u8,
}

/// Starts the proxy on 127.0.0.1:0 and returns its address (it is listening on return).
pub fn start(config: Socks5Config) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let config = Arc::new(config);
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let config = Arc::clone(&config);
            thread::spawn(move || {
                let _ = session(client, &config);
            });
        }
    });
    addr
}

fn read_u8(stream: &mut TcpStream) -> io::Result<u8> {
    let mut b = [0];
    stream.read_exact(&mut b)?;
    Ok(b[0])
}

fn read_vec(stream: &mut TcpStream, len: usize) -> io::Result<Vec<u8>> {
    let mut v = vec![0; len];
    stream.read_exact(&mut v)?;
    Ok(v)
}

fn session(mut client: TcpStream, config: &Socks5Config) -> io::Result<()> {
    client.set_nodelay(true)?;
    assert_eq!(read_u8(&mut client)?, 5, "SOCKS version");
    let count = read_u8(&mut client)?;
    let methods = read_vec(&mut client, usize::from(count))?;
    match &config.auth {
        None if methods.contains(&0) => client.write_all(&[5, 0])?,
        Some((user, password)) if methods.contains(&2) => {
            client.write_all(&[5, 2])?;
            assert_eq!(read_u8(&mut client)?, 1, "RFC 1929 version");
            let len = read_u8(&mut client)?;
            let got_user = read_vec(&mut client, usize::from(len))?;
            let len = read_u8(&mut client)?;
            let got_password = read_vec(&mut client, usize::from(len))?;
            if got_user != user.as_bytes() || got_password != password.as_bytes() {
                return client.write_all(&[1, 1]);
            }
            client.write_all(&[1, 0])?;
        }
        _ => return client.write_all(&[5, 0xff]),
    }
    let head = read_vec(&mut client, 4)?;
    assert_eq!(&head[..3], &[5, 1, 0], "CONNECT request");
    let host: Vec<SocketAddr> = match head[3] {
        1 => {
            let octets: [u8; 4] = read_vec(&mut client, 4)?.try_into().unwrap();
            vec![SocketAddr::new(IpAddr::from(octets), 0)]
        }
        4 => {
            let octets: [u8; 16] = read_vec(&mut client, 16)?.try_into().unwrap();
            vec![SocketAddr::new(IpAddr::from(octets), 0)]
        }
        3 => {
            let len = read_u8(&mut client)?;
            let name = String::from_utf8(read_vec(&mut client, usize::from(len))?).unwrap();
            (name.as_str(), 0).to_socket_addrs()?.collect()
        }
        other => panic!("unknown ATYP {other}"),
    };
    let port = u16::from_be_bytes(read_vec(&mut client, 2)?.try_into().unwrap());
    if config.reply != 0 {
        return client.write_all(&[5, config.reply, 0, 1, 0, 0, 0, 0, 0, 0]);
    }
    let upstream = host
        .into_iter()
        .find_map(|addr| TcpStream::connect(SocketAddr::new(addr.ip(), port)).ok());
    let Some(upstream) = upstream else {
        return client.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]);
    };
    upstream.set_nodelay(true)?;
    let local = upstream.local_addr()?;
    let mut reply = vec![5, 0, 0];
    match local.ip() {
        IpAddr::V4(ip) => {
            reply.push(1);
            reply.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            reply.push(4);
            reply.extend_from_slice(&ip.octets());
        }
    }
    reply.extend_from_slice(&local.port().to_be_bytes());
    client.write_all(&reply)?;
    relay(client, upstream);
    Ok(())
}

//! A SOCKS5 client for the tests that need the bytes themselves (a reply's BND.ADDR, a refusal
//! code, a handshake split around a reload); everything else uses curl. Each step is separate
//! so a test can stop after any of them; `connect` does the whole handshake.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// RFC 1928 method: no authentication.
pub const NO_AUTH: u8 = 0;
/// RFC 1928 method: username/password (RFC 1929).
pub const USER_PASS: u8 = 2;

/// A client connection to a SOCKS5 listener.
#[derive(Debug)]
pub struct Socks5 {
    pub stream: TcpStream,
}

impl Socks5 {
    /// Connects to `proxy`; reads give up after 30 s, so a proxy that never answers fails the
    /// test instead of hanging it.
    pub fn open(proxy: SocketAddr) -> io::Result<Socks5> {
        Self::over(TcpStream::connect(proxy)?)
    }

    /// Speaks SOCKS5 over a connection made elsewhere (from a chosen source address, or
    /// accepted before a reload).
    pub fn over(stream: TcpStream) -> io::Result<Socks5> {
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Socks5 { stream })
    }

    /// Offers the one `method`; returns the method-selection reply (`[5, method]` if accepted,
    /// `[5, 0xff]` if not).
    pub fn greet(&mut self, method: u8) -> io::Result<[u8; 2]> {
        self.stream.write_all(&[5, 1, method])?;
        let mut choice = [0u8; 2];
        self.stream.read_exact(&mut choice)?;
        Ok(choice)
    }

    /// The RFC 1929 sub-negotiation; returns its reply (`[1, 0]` is success).
    pub fn login(&mut self, user: &str, password: &str) -> io::Result<[u8; 2]> {
        let mut msg = vec![1, user.len() as u8];
        msg.extend_from_slice(user.as_bytes());
        msg.push(password.len() as u8);
        msg.extend_from_slice(password.as_bytes());
        self.stream.write_all(&msg)?;
        let mut status = [0u8; 2];
        self.stream.read_exact(&mut status)?;
        Ok(status)
    }

    /// CONNECT to an IPv4 `target`; returns the reply (IPv4 BND.ADDR, so 10 bytes).
    pub fn request(&mut self, target: SocketAddr) -> io::Result<[u8; 10]> {
        let SocketAddr::V4(v4) = target else {
            panic!("the test client connects to IPv4 targets only: {target}")
        };
        let mut req = vec![5, 1, 0, 1];
        req.extend_from_slice(&v4.ip().octets());
        req.extend_from_slice(&v4.port().to_be_bytes());
        self.stream.write_all(&req)?;
        let mut reply = [0u8; 10];
        self.stream.read_exact(&mut reply)?;
        Ok(reply)
    }

    /// The whole handshake: greeting (panics unless the offered method is accepted), login if
    /// `creds` are given, and CONNECT to `target`.
    pub fn handshake(
        &mut self,
        creds: Option<(&str, &str)>,
        target: SocketAddr,
    ) -> io::Result<Handshake> {
        let method = if creds.is_some() { USER_PASS } else { NO_AUTH };
        let choice = self.greet(method)?;
        assert_eq!(choice, [5, method], "the proxy refused the offered method");
        if let Some((user, password)) = creds {
            let status = self.login(user, password)?;
            if status != [1, 0] {
                return Ok(Handshake::LoginRefused(status));
            }
        }
        Ok(Handshake::Replied(self.request(target)?))
    }
}

/// How far a handshake got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handshake {
    /// The login's reply was not success: the status bytes.
    LoginRefused([u8; 2]),
    /// The reply to CONNECT (success or not: see its second byte).
    Replied([u8; 10]),
}

impl Handshake {
    /// The CONNECT reply; panics if the login was refused.
    pub fn reply(self) -> [u8; 10] {
        match self {
            Handshake::Replied(reply) => reply,
            Handshake::LoginRefused(status) => panic!("login refused: {status:?}"),
        }
    }

    /// BND.ADDR:BND.PORT of a CONNECT reply.
    pub fn bound(self) -> SocketAddr {
        let r = self.reply();
        SocketAddr::from(([r[4], r[5], r[6], r[7]], u16::from_be_bytes([r[8], r[9]])))
    }
}

/// A tunnel through `proxy` to `target`, opened with `creds` if given; panics unless the
/// proxy answered success. Returns the stream and the reply.
pub fn tunnel(
    proxy: SocketAddr,
    creds: Option<(&str, &str)>,
    target: SocketAddr,
) -> (TcpStream, Handshake) {
    let mut client = Socks5::open(proxy).expect("connect to the proxy");
    let done = client.handshake(creds, target).expect("SOCKS5 handshake");
    assert_eq!(done.reply()[1], 0, "CONNECT refused: {done:?}");
    (client.stream, done)
}

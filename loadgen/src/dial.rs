//! Opening a tunnel to the target: TCP connect to the first hop, then the proxy handshake.
//!
//! The handshake bytes are encoded once per executor; a dial only writes and parses.

use std::net::SocketAddr;

use crate::cli::Proto;
use crate::conn::Conn;
use crate::failure::Failure;
use crate::plan::Plan;
use crate::wire::socks5::{self, Bound, Method};
use crate::wire::{ReplyError, http};

#[derive(Debug)]
enum Handshake {
    /// `direct`, and `http-forward` whose requests are the handshake.
    None,
    Socks5 {
        greeting: [u8; 3],
        auth: Option<Vec<u8>>,
        connect: Vec<u8>,
    },
    HttpConnect {
        request: Vec<u8>,
    },
}

#[derive(Debug)]
pub struct Dialer {
    first_hop: SocketAddr,
    handshake: Handshake,
}

/// An established tunnel (or, for http-forward, a connection to the proxy).
#[derive(Debug)]
pub struct Tunnel {
    pub conn: Conn,
    /// The SOCKS5 reply's BND.ADDR: egressd reports the egress address it used there.
    pub bound: Option<Bound>,
}

impl Dialer {
    pub fn new(plan: &Plan) -> Result<Dialer, String> {
        let credentials = plan.credentials.as_ref();
        let handshake = match plan.proto {
            Proto::Direct | Proto::HttpForward => Handshake::None,
            Proto::Socks5 => Handshake::Socks5 {
                greeting: socks5::greeting(credentials.is_some()),
                auth: credentials
                    .map(|c| socks5::auth_request(c.user(), c.password()))
                    .transpose()?,
                connect: socks5::connect_request(&plan.target)?,
            },
            Proto::HttpConnect => Handshake::HttpConnect {
                request: http::connect_request(&plan.target, credentials),
            },
        };
        Ok(Dialer {
            first_hop: plan.first_hop,
            handshake,
        })
    }

    pub async fn open(&self) -> Result<Tunnel, Failure> {
        let mut conn = Conn::connect(self.first_hop).await?;
        let bound = self
            .handshake(&mut conn)
            .await
            .map_err(Failure::in_handshake)?;
        Ok(Tunnel { conn, bound })
    }

    async fn handshake(&self, conn: &mut Conn) -> Result<Option<Bound>, Failure> {
        match &self.handshake {
            Handshake::None => Ok(None),
            Handshake::Socks5 {
                greeting,
                auth,
                connect,
            } => {
                conn.write_all(greeting).await?;
                let method = conn.read_reply(socks5::parse_method).await?;
                match (method, auth) {
                    (Method::UserPass, Some(auth)) => {
                        conn.write_all(auth).await?;
                        conn.read_reply(socks5::parse_auth_reply).await?;
                    }
                    (Method::NoAuth, None) => {}
                    _ => {
                        return Err(ReplyError::Malformed(
                            "proxy chose a method that was not offered",
                        )
                        .into());
                    }
                }
                conn.write_all(connect).await?;
                let bound = conn.read_reply(socks5::parse_connect_reply).await?;
                Ok(Some(bound))
            }
            Handshake::HttpConnect { request } => {
                conn.write_all(request).await?;
                let head = conn.read_reply(http::parse_response_head).await?;
                http::require_ok(&head)?;
                Ok(None)
            }
        }
    }
}

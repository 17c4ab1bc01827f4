//! One request/response on an open connection: raw bytes through a tunnel, or an HTTP
//! forward request through the proxy.

use crate::cli::Proto;
use crate::conn::Conn;
use crate::failure::Failure;
use crate::plan::Plan;
use crate::wire::http;

#[derive(Debug)]
enum Kind {
    /// Write `request`, read `response_size` bytes back (an echo or fixed sink answers).
    Raw {
        request: Vec<u8>,
        response_size: u64,
    },
    /// `GET http://target/`, keep-alive or close variant, answered by an http sink.
    Forward { keep_alive: Vec<u8>, close: Vec<u8> },
}

#[derive(Debug)]
pub struct Exchange {
    kind: Kind,
}

/// What a round trip moved, and whether the connection may carry another one.
#[derive(Clone, Copy, Debug)]
pub struct Done {
    pub bytes: u64,
    pub reusable: bool,
}

impl Exchange {
    pub fn new(plan: &Plan) -> Exchange {
        let kind = match plan.proto {
            Proto::HttpForward => {
                let creds = plan.credentials.as_ref();
                Kind::Forward {
                    keep_alive: http::forward_request(&plan.target, creds, true),
                    close: http::forward_request(&plan.target, creds, false),
                }
            }
            _ => Kind::Raw {
                request: vec![b'x'; plan.request_size],
                response_size: plan.response_size as u64,
            },
        };
        Exchange { kind }
    }

    pub async fn round_trip(&self, conn: &mut Conn, keep_alive: bool) -> Result<Done, Failure> {
        match &self.kind {
            Kind::Raw {
                request,
                response_size,
            } => {
                if !request.is_empty() {
                    conn.write_all(request).await?;
                }
                conn.read_discard(*response_size).await?;
                Ok(Done {
                    bytes: request.len() as u64 + response_size,
                    reusable: true,
                })
            }
            Kind::Forward {
                keep_alive: reuse_request,
                close: close_request,
            } => {
                let request = if keep_alive {
                    reuse_request
                } else {
                    close_request
                };
                conn.write_all(request).await?;
                let head = conn
                    .read_reply(http::parse_response_head)
                    .await
                    .map_err(Failure::in_handshake)?;
                http::require_ok(&head)?;
                let body = match head.content_length {
                    Some(len) => {
                        conn.read_discard(len).await?;
                        len
                    }
                    None if head.close => conn.read_to_end().await?,
                    None => {
                        return Err(Failure::Handshake(
                            "keep-alive response without Content-Length".into(),
                        ));
                    }
                };
                Ok(Done {
                    bytes: request.len() as u64 + body,
                    reusable: keep_alive && !head.close,
                })
            }
        }
    }
}

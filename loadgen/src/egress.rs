//! `--expect-egress`: proof that traffic leaves from the configured address.
//!
//! One tunnel is opened to a `peer` sink, which answers with the address it saw (`IP:PORT\n`);
//! for `http-forward` the `http` sink reports it in `X-Peer-Addr`. The run stops if the IP
//! differs, so a benchmark can never compare a proxy that ignored its egress setting.

use std::net::{IpAddr, SocketAddr};

use crate::cli::Proto;
use crate::dial::Dialer;
use crate::plan::Plan;
use crate::wire::socks5::Bound;
use crate::wire::{Parsed, ReplyError, http};

/// Longest peer line accepted: `[ipv6%scope]:port\n` fits comfortably.
const MAX_PEER_LINE: usize = 128;

/// What the sink saw, and what the proxy claimed (SOCKS5 BND.ADDR).
#[derive(Debug)]
pub struct Observed {
    pub peer: SocketAddr,
    pub bound: Option<Bound>,
}

pub async fn observe(plan: &Plan) -> Result<Observed, String> {
    let dialer = Dialer::new(plan)?;
    let mut tunnel = dialer
        .open()
        .await
        .map_err(|f| format!("egress check: {f}"))?;
    let conn = &mut tunnel.conn;
    let peer = if plan.proto == Proto::HttpForward {
        let request = http::forward_request(&plan.target, plan.credentials.as_ref(), false);
        conn.write_all(&request)
            .await
            .map_err(|f| format!("egress check: {f}"))?;
        let head = conn
            .read_reply(http::parse_response_head)
            .await
            .map_err(|f| format!("egress check: {f}"))?;
        http::require_ok(&head).map_err(|e| format!("egress check: {e:?}"))?;
        head.peer
            .ok_or(
                "egress check: no X-Peer-Addr in the response (is the target `sink --mode http`?)",
            )?
            .parse()
            .map_err(|_| "egress check: unreadable X-Peer-Addr".to_owned())?
    } else {
        conn.read_reply(parse_peer_line)
            .await
            .map_err(|f| format!("egress check (is the target `sink --mode peer`?): {f}"))?
    };
    Ok(Observed {
        peer,
        bound: tunnel.bound,
    })
}

/// The `peer` sink's first line.
pub fn parse_peer_line(buf: &[u8]) -> Parsed<SocketAddr> {
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > MAX_PEER_LINE {
            Err(ReplyError::Malformed("peer line too long"))
        } else {
            Ok(None)
        };
    };
    let addr = std::str::from_utf8(&buf[..end])
        .ok()
        .and_then(|text| text.trim_end_matches('\r').parse().ok())
        .ok_or(ReplyError::Malformed("not an IP:PORT peer line"))?;
    Ok(Some((addr, end + 1)))
}

/// Compares addresses the way a human would: `::ffff:1.2.3.4` is `1.2.3.4`.
pub fn same_ip(expected: IpAddr, seen: IpAddr) -> bool {
    expected.to_canonical() == seen.to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_peer_lines() {
        assert_eq!(parse_peer_line(b"127.0.0.1:5"), Ok(None));
        assert_eq!(
            parse_peer_line(b"127.0.0.1:5\nrest"),
            Ok(Some(("127.0.0.1:5".parse().unwrap(), 12)))
        );
        assert_eq!(
            parse_peer_line(b"[2001:db8::1]:443\n"),
            Ok(Some(("[2001:db8::1]:443".parse().unwrap(), 18)))
        );
        assert!(parse_peer_line(b"hello\n").is_err());
        assert!(parse_peer_line(&[b'1'; 200]).is_err());
    }

    #[test]
    fn mapped_addresses_match_their_ipv4() {
        let v4: IpAddr = "198.51.100.10".parse().unwrap();
        let mapped: IpAddr = "::ffff:198.51.100.10".parse().unwrap();
        assert!(same_ip(v4, mapped));
        assert!(!same_ip(v4, "198.51.100.11".parse().unwrap()));
    }
}

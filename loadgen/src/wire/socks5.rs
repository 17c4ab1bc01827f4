//! SOCKS5 client messages (RFC 1928) and username/password authentication (RFC 1929).
//!
//! The client offers exactly one method: no-auth, or username/password when credentials are
//! configured (offering both would let a proxy with optional auth silently drop the identity).

use std::net::{IpAddr, SocketAddr};

use super::{Parsed, ReplyError};
use crate::target::{Host, Target};

const VERSION: u8 = 0x05;
const AUTH_VERSION: u8 = 0x01;
const METHOD_NO_AUTH: u8 = 0x00;
const METHOD_USER_PASS: u8 = 0x02;
const METHOD_NONE_ACCEPTABLE: u8 = 0xff;
const CMD_CONNECT: u8 = 0x01;
const ATYP_IPV4: u8 = 0x01;
const ATYP_DOMAIN: u8 = 0x03;
const ATYP_IPV6: u8 = 0x04;

/// The method the proxy picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    NoAuth,
    UserPass,
}

/// BND.ADDR/BND.PORT of a CONNECT reply: for egressd, the egress address actually used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bound {
    Ip(SocketAddr),
    Name(String, u16),
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::Ip(addr) => write!(f, "{addr}"),
            Bound::Name(name, port) => write!(f, "{name}:{port}"),
        }
    }
}

/// The method-selection greeting.
pub fn greeting(with_password: bool) -> [u8; 3] {
    let method = if with_password {
        METHOD_USER_PASS
    } else {
        METHOD_NO_AUTH
    };
    [VERSION, 1, method]
}

pub fn parse_method(buf: &[u8]) -> Parsed<Method> {
    let [version, method, ..] = *buf else {
        return Ok(None);
    };
    if version != VERSION {
        return Err(ReplyError::Malformed("not a SOCKS5 method reply"));
    }
    let method = match method {
        METHOD_NO_AUTH => Method::NoAuth,
        METHOD_USER_PASS => Method::UserPass,
        METHOD_NONE_ACCEPTABLE => return Err(ReplyError::Refused("socks5-method:0xff".into())),
        _ => {
            return Err(ReplyError::Malformed(
                "proxy chose a method that was not offered",
            ));
        }
    };
    Ok(Some((method, 2)))
}

/// The RFC 1929 sub-negotiation request; each field is at most 255 bytes.
pub fn auth_request(user: &str, password: &str) -> Result<Vec<u8>, String> {
    let user_len = u8::try_from(user.len())
        .map_err(|_| "SOCKS5 user names are at most 255 bytes".to_owned())?;
    let pass_len = u8::try_from(password.len())
        .map_err(|_| "SOCKS5 passwords are at most 255 bytes".to_owned())?;
    let mut out = Vec::with_capacity(3 + user.len() + password.len());
    out.push(AUTH_VERSION);
    out.push(user_len);
    out.extend_from_slice(user.as_bytes());
    out.push(pass_len);
    out.extend_from_slice(password.as_bytes());
    Ok(out)
}

pub fn parse_auth_reply(buf: &[u8]) -> Parsed<()> {
    let [version, status, ..] = *buf else {
        return Ok(None);
    };
    if version != AUTH_VERSION {
        return Err(ReplyError::Malformed("not an RFC 1929 auth reply"));
    }
    if status != 0 {
        return Err(ReplyError::Refused(format!("socks5-auth:0x{status:02x}")));
    }
    Ok(Some(((), 2)))
}

/// CONNECT with ATYP IPv4/IPv6 for IP targets and DOMAIN for host names.
pub fn connect_request(target: &Target) -> Result<Vec<u8>, String> {
    let mut out = vec![VERSION, CMD_CONNECT, 0x00];
    match &target.host {
        Host::Ip(IpAddr::V4(ip)) => {
            out.push(ATYP_IPV4);
            out.extend_from_slice(&ip.octets());
        }
        Host::Ip(IpAddr::V6(ip)) => {
            out.push(ATYP_IPV6);
            out.extend_from_slice(&ip.octets());
        }
        Host::Name(name) => {
            let len = u8::try_from(name.len())
                .map_err(|_| "SOCKS5 host names are at most 255 bytes".to_owned())?;
            out.push(ATYP_DOMAIN);
            out.push(len);
            out.extend_from_slice(name.as_bytes());
        }
    }
    out.extend_from_slice(&target.port.to_be_bytes());
    Ok(out)
}

/// Parses the CONNECT reply. A non-zero REP is reported as soon as it is seen.
pub fn parse_connect_reply(buf: &[u8]) -> Parsed<Bound> {
    let [version, reply, _reserved, atyp, ..] = *buf else {
        return Ok(None);
    };
    if version != VERSION {
        return Err(ReplyError::Malformed("not a SOCKS5 reply"));
    }
    if reply != 0 {
        return Err(ReplyError::Refused(format!("socks5:0x{reply:02x}")));
    }
    let rest = &buf[4..];
    let (host, addr_len): (Option<IpAddr>, usize) = match atyp {
        ATYP_IPV4 => match rest.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
            Some(octets) => (Some(IpAddr::from(octets)), 4),
            None => return Ok(None),
        },
        ATYP_IPV6 => match rest.get(..16).and_then(|b| <[u8; 16]>::try_from(b).ok()) {
            Some(octets) => (Some(IpAddr::from(octets)), 16),
            None => return Ok(None),
        },
        ATYP_DOMAIN => match rest.first() {
            Some(&len) => (None, 1 + usize::from(len)),
            None => return Ok(None),
        },
        _ => return Err(ReplyError::Malformed("unknown address type in reply")),
    };
    let total = 4 + addr_len + 2;
    let Some(port_bytes) = buf.get(total - 2..total) else {
        return Ok(None);
    };
    let port = u16::from_be_bytes([port_bytes[0], port_bytes[1]]);
    let bound = match host {
        Some(ip) => Bound::Ip(SocketAddr::new(ip, port)),
        None => Bound::Name(
            String::from_utf8_lossy(&rest[1..addr_len]).into_owned(),
            port,
        ),
    };
    Ok(Some((bound, total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(text: &str) -> Target {
        text.parse().unwrap()
    }

    #[test]
    fn greetings_offer_one_method() {
        assert_eq!(greeting(false), [5, 1, 0]);
        assert_eq!(greeting(true), [5, 1, 2]);
    }

    #[test]
    fn method_replies() {
        assert_eq!(parse_method(&[5]), Ok(None));
        assert_eq!(parse_method(&[5, 0]), Ok(Some((Method::NoAuth, 2))));
        assert_eq!(parse_method(&[5, 2, 9]), Ok(Some((Method::UserPass, 2))));
        assert_eq!(
            parse_method(&[5, 0xff]),
            Err(ReplyError::Refused("socks5-method:0xff".into()))
        );
        assert!(matches!(
            parse_method(&[4, 0]),
            Err(ReplyError::Malformed(_))
        ));
        assert!(matches!(
            parse_method(&[5, 1]),
            Err(ReplyError::Malformed(_))
        ));
    }

    #[test]
    fn auth_request_is_byte_exact() {
        assert_eq!(
            auth_request("bob", "pw").unwrap(),
            [1, 3, b'b', b'o', b'b', 2, b'p', b'w']
        );
        assert!(auth_request(&"u".repeat(256), "p").is_err());
        assert!(auth_request("u", &"p".repeat(256)).is_err());
        assert_eq!(parse_auth_reply(&[1]), Ok(None));
        assert_eq!(parse_auth_reply(&[1, 0]), Ok(Some(((), 2))));
        assert_eq!(
            parse_auth_reply(&[1, 1]),
            Err(ReplyError::Refused("socks5-auth:0x01".into()))
        );
    }

    #[test]
    fn connect_requests_are_byte_exact() {
        assert_eq!(
            connect_request(&target("10.1.2.3:443")).unwrap(),
            [5, 1, 0, 1, 10, 1, 2, 3, 0x01, 0xbb]
        );
        let v6 = connect_request(&target("[2001:db8::1]:80")).unwrap();
        assert_eq!(&v6[..4], &[5, 1, 0, 4]);
        assert_eq!(
            &v6[4..20],
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        assert_eq!(&v6[20..], &[0, 80]);
        assert_eq!(
            connect_request(&target("ab.c:8080")).unwrap(),
            [5, 1, 0, 3, 4, b'a', b'b', b'.', b'c', 0x1f, 0x90]
        );
    }

    #[test]
    fn connect_replies() {
        let v4 = [5, 0, 0, 1, 198, 51, 100, 10, 0x1f, 0x90, 0xaa];
        for cut in 0..10 {
            assert_eq!(parse_connect_reply(&v4[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(
            parse_connect_reply(&v4),
            Ok(Some((Bound::Ip("198.51.100.10:8080".parse().unwrap()), 10)))
        );
        let mut v6 = vec![5, 0, 0, 4];
        v6.extend_from_slice(&[0; 15]);
        v6.extend_from_slice(&[1, 0, 80]);
        assert_eq!(
            parse_connect_reply(&v6),
            Ok(Some((Bound::Ip("[::1]:80".parse().unwrap()), 22)))
        );
        let name = [5, 0, 0, 3, 2, b'h', b'x', 0, 1];
        assert_eq!(
            parse_connect_reply(&name),
            Ok(Some((Bound::Name("hx".into(), 1), 9)))
        );
    }

    #[test]
    fn connect_failures_carry_the_code() {
        for code in 1..=8u8 {
            assert_eq!(
                parse_connect_reply(&[5, code, 0, 1]),
                Err(ReplyError::Refused(format!("socks5:0x{code:02x}")))
            );
        }
        assert!(matches!(
            parse_connect_reply(&[4, 0, 0, 1]),
            Err(ReplyError::Malformed(_))
        ));
        assert!(matches!(
            parse_connect_reply(&[5, 0, 0, 9, 0, 0]),
            Err(ReplyError::Malformed(_))
        ));
    }
}

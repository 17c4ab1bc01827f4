//! SOCKS5 (RFC 1928) and its username/password sub-negotiation (RFC 1929) as sans-I/O codecs.
//!
//! Each parser takes whatever bytes the session has buffered so far and answers `NeedMore`,
//! `Done` with the number of bytes the message used (anything after it belongs to the next
//! message), or `Invalid` with the reply code the session should send before closing. Every
//! length in this protocol is one byte, so a parser never needs more than a few hundred bytes and
//! never allocates more than that, whatever the peer sends. The encoders append to a caller-owned
//! buffer so a session can batch a reply with other output.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The protocol version byte that opens every SOCKS5 message except the RFC 1929 exchange.
pub const VERSION: u8 = 0x05;
/// RFC 1929's own version byte: the sub-negotiation is versioned separately from SOCKS5.
pub const USERPASS_VERSION: u8 = 0x01;

pub const METHOD_NO_AUTH: u8 = 0x00;
pub const METHOD_USERPASS: u8 = 0x02;
pub const METHOD_NO_ACCEPTABLE: u8 = 0xFF;

const ATYP_IPV4: u8 = 0x01;
const ATYP_DOMAIN: u8 = 0x03;
const ATYP_IPV6: u8 = 0x04;

/// DNS limits: a name of more than 253 characters or a label of more than 63 cannot resolve, so
/// accepting one would only spend a resolver round trip on a guaranteed failure.
const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// The outcome of feeding a buffer to a sans-I/O parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T, E> {
    /// A whole message; it used the first `consumed` bytes of the buffer.
    Done { value: T, consumed: usize },
    /// The buffer holds a valid prefix; read more and call again with the longer buffer.
    NeedMore,
    /// The bytes can never become a valid message.
    Invalid(E),
}

/// SOCKS5 reply codes (RFC 1928 section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Reply {
    Succeeded = 0x00,
    GeneralFailure = 0x01,
    NotAllowed = 0x02,
    NetworkUnreachable = 0x03,
    HostUnreachable = 0x04,
    ConnectionRefused = 0x05,
    TtlExpired = 0x06,
    CommandNotSupported = 0x07,
    AddressTypeNotSupported = 0x08,
}

impl Reply {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The reply that tells the client most precisely why dialling the target failed.
    ///
    /// By the error's kind, which the standard library derives from the errno (ECONNREFUSED,
    /// ENETUNREACH, ENETDOWN, EHOSTUNREACH, ETIMEDOUT, EADDRNOTAVAIL) and which errors built
    /// without one carry too. A timeout is reported as host unreachable: 0x06 means an IP TTL
    /// ran out, which is not what happened.
    pub fn from_io_error(err: &io::Error) -> Reply {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => Reply::ConnectionRefused,
            io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::NetworkDown
            | io::ErrorKind::AddrNotAvailable => Reply::NetworkUnreachable,
            io::ErrorKind::HostUnreachable | io::ErrorKind::TimedOut => Reply::HostUnreachable,
            _ => Reply::GeneralFailure,
        }
    }
}

/// Why a SOCKS5 message was rejected.
///
/// The message is a fixed text so that nothing the client sent (a password, say) can end up in a
/// log through an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Socks5Error {
    /// The reply to send before closing; `None` when the peer is not speaking SOCKS5 (or the
    /// failing message has no reply, like a UDP datagram) and the session should just close.
    pub reply: Option<Reply>,
    pub message: &'static str,
}

impl Socks5Error {
    pub const fn new(reply: Reply, message: &'static str) -> Self {
        Socks5Error {
            reply: Some(reply),
            message,
        }
    }

    /// An error after which the session closes without a reply.
    pub const fn close(message: &'static str) -> Self {
        Socks5Error {
            reply: None,
            message,
        }
    }
}

impl fmt::Display for Socks5Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reply {
            Some(reply) => write!(f, "socks5: {} (reply {:#04x})", self.message, reply.code()),
            None => write!(f, "socks5: {}", self.message),
        }
    }
}

impl std::error::Error for Socks5Error {}

/// The client's method selection message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub methods: Vec<u8>,
}

impl Greeting {
    pub fn offers(&self, method: u8) -> bool {
        self.methods.contains(&method)
    }
}

/// VER NMETHODS METHODS.
///
/// A wrong version byte is rejected as soon as it arrives, so a client speaking something else is
/// not kept waiting for bytes that will never make sense.
pub fn parse_greeting(buf: &[u8]) -> Parsed<Greeting, Socks5Error> {
    match buf {
        [] => Parsed::NeedMore,
        [version, ..] if *version != VERSION => {
            Parsed::Invalid(Socks5Error::close("greeting version is not 5"))
        }
        [_] => Parsed::NeedMore,
        [_, 0, ..] => Parsed::Invalid(Socks5Error::close("greeting offers no methods")),
        [_, count, rest @ ..] => match rest.get(..usize::from(*count)) {
            Some(methods) => Parsed::Done {
                value: Greeting {
                    methods: methods.to_vec(),
                },
                consumed: 2 + methods.len(),
            },
            None => Parsed::NeedMore,
        },
    }
}

/// The server's method selection; `METHOD_NO_ACCEPTABLE` tells the client to close.
pub fn encode_method(method: u8) -> [u8; 2] {
    [VERSION, method]
}

/// RFC 1929 credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct UserPass {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for UserPass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserPass")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// VER(1) ULEN UNAME PLEN PASSWD.
///
/// Empty names and passwords are accepted even though RFC 1929 says 1 to 255: some clients send an
/// empty password, and whether empty credentials are good enough is the authenticator's call, not
/// the wire format's.
pub fn parse_userpass(buf: &[u8]) -> Parsed<UserPass, Socks5Error> {
    let (version, rest) = match buf {
        [] => return Parsed::NeedMore,
        [version, rest @ ..] => (*version, rest),
    };
    if version != USERPASS_VERSION {
        return Parsed::Invalid(Socks5Error::close("username/password version is not 1"));
    }
    let Some((username, rest)) = length_prefixed(rest) else {
        return Parsed::NeedMore;
    };
    let Some((password, _)) = length_prefixed(rest) else {
        return Parsed::NeedMore;
    };
    let consumed = 3 + username.len() + password.len();
    // Both fields are checked only once complete, so the session has read the whole message and
    // can send its failure status before closing.
    match (std::str::from_utf8(username), std::str::from_utf8(password)) {
        (Ok(username), Ok(password)) => Parsed::Done {
            value: UserPass {
                username: username.to_owned(),
                password: password.to_owned(),
            },
            consumed,
        },
        _ => Parsed::Invalid(Socks5Error::close("username or password is not UTF-8")),
    }
}

/// A one-byte length and that many bytes; `None` until all of them are there.
fn length_prefixed(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = buf.split_first()?;
    let len = usize::from(*len);
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// VER(1) STATUS: RFC 1929 says any status other than zero is a failure.
pub fn encode_userpass_status(ok: bool) -> [u8; 2] {
    [USERPASS_VERSION, if ok { 0x00 } else { 0x01 }]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Connect,
    Bind,
    UdpAssociate,
}

impl Command {
    pub fn code(self) -> u8 {
        match self {
            Command::Connect => 0x01,
            Command::Bind => 0x02,
            Command::UdpAssociate => 0x03,
        }
    }

    fn from_code(code: u8) -> Option<Command> {
        match code {
            0x01 => Some(Command::Connect),
            0x02 => Some(Command::Bind),
            0x03 => Some(Command::UdpAssociate),
            _ => None,
        }
    }
}

/// Where the client wants to go.
///
/// A domain target that is really an IP literal (`socks5h` clients send those) arrives as `Ip`, so
/// policy sees an empty host name and the literal is never sent to a resolver. Domain names are
/// lower-cased and lose a trailing dot, so `Example.COM.` and `example.com` match the same rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Ip(SocketAddr),
    Domain { host: String, port: u16 },
}

impl Target {
    pub fn port(&self) -> u16 {
        match self {
            Target::Ip(addr) => addr.port(),
            Target::Domain { port, .. } => *port,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Ip(addr) => addr.fmt(f),
            Target::Domain { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub command: Command,
    pub target: Target,
}

/// VER CMD RSV ATYP DST.ADDR DST.PORT.
///
/// Errors that have a reply are reported only once the whole request has arrived, so the session
/// has read everything the client sent before it answers and closes (closing a socket with unread
/// input makes the kernel send a reset, which can destroy the reply in flight). The exception is
/// an unknown address type: its length is unknowable, so it is reported at once. RSV is ignored:
/// RFC 1928 gives no reply for a non-zero value, and it carries no meaning.
///
/// A domain name that cannot be a host name (not UTF-8, characters outside letters, digits, `-`,
/// `_`, `.`, an empty or over-long label) is answered with host unreachable: it names no host we
/// could reach, and general failure would suggest a fault on our side.
pub fn parse_request(buf: &[u8]) -> Parsed<Request, Socks5Error> {
    let (command, address) = match buf {
        [] => return Parsed::NeedMore,
        [version, ..] if *version != VERSION => {
            return Parsed::Invalid(Socks5Error::close("request version is not 5"));
        }
        [_, command, _reserved, address @ ..] => (*command, address),
        _ => return Parsed::NeedMore,
    };
    match parse_address(address) {
        Address::NeedMore => Parsed::NeedMore,
        Address::UnknownType => Parsed::Invalid(Socks5Error::new(
            Reply::AddressTypeNotSupported,
            "unknown address type",
        )),
        Address::UnusableName => Parsed::Invalid(match Command::from_code(command) {
            None => Socks5Error::new(Reply::CommandNotSupported, "unknown command"),
            Some(_) => Socks5Error::new(Reply::HostUnreachable, "destination is not a host name"),
        }),
        Address::Complete(target, len) => match Command::from_code(command) {
            Some(command) => Parsed::Done {
                value: Request { command, target },
                consumed: 3 + len,
            },
            None => Parsed::Invalid(Socks5Error::new(
                Reply::CommandNotSupported,
                "unknown command",
            )),
        },
    }
}

/// ATYP DST.ADDR DST.PORT, shared by requests and UDP datagrams.
enum Address {
    /// The target and the bytes it took, ATYP and port included.
    Complete(Target, usize),
    /// A complete but unusable domain name.
    UnusableName,
    NeedMore,
    UnknownType,
}

fn parse_address(buf: &[u8]) -> Address {
    let Some((&atyp, rest)) = buf.split_first() else {
        return Address::NeedMore;
    };
    match atyp {
        ATYP_IPV4 => match rest {
            [a, b, c, d, p0, p1, ..] => {
                let ip = Ipv4Addr::new(*a, *b, *c, *d);
                let port = u16::from_be_bytes([*p0, *p1]);
                Address::Complete(Target::Ip(SocketAddr::new(ip.into(), port)), 7)
            }
            _ => Address::NeedMore,
        },
        ATYP_IPV6 => match (rest.get(..16), rest.get(16..18)) {
            (Some(octets), Some(&[p0, p1])) => {
                let mut ip = [0u8; 16];
                ip.copy_from_slice(octets);
                let port = u16::from_be_bytes([p0, p1]);
                Address::Complete(
                    Target::Ip(SocketAddr::new(Ipv6Addr::from(ip).into(), port)),
                    19,
                )
            }
            _ => Address::NeedMore,
        },
        ATYP_DOMAIN => {
            let Some((name, rest)) = length_prefixed(rest) else {
                return Address::NeedMore;
            };
            let &[p0, p1, ..] = rest else {
                return Address::NeedMore;
            };
            let len = 4 + name.len();
            let port = u16::from_be_bytes([p0, p1]);
            match domain_target(name, port) {
                Some(target) => Address::Complete(target, len),
                None => Address::UnusableName,
            }
        }
        _ => Address::UnknownType,
    }
}

fn domain_target(name: &[u8], port: u16) -> Option<Target> {
    let name = std::str::from_utf8(name).ok()?;
    let literal = name
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(name);
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Some(Target::Ip(SocketAddr::new(ip, port)));
    }
    let host = normalize_host_name(name)?;
    Some(Target::Domain { host, port })
}

/// Checks that `name` is a plausible DNS host name and returns its canonical form (lower case, no
/// trailing dot), or `None`.
///
/// A name whose last label is a number must be a strict dotted-quad IPv4 literal: resolvers that
/// still accept `inet_aton` forms would read `0x7f.1` or `2130706433` as 127.0.0.1, and such a
/// name must not slip past address-based policy disguised as a host name.
pub(crate) fn normalize_host_name(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return None;
    }
    let mut last_label = "";
    for label in name.split('.') {
        let valid_chars = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if label.is_empty() || label.len() > MAX_LABEL_LEN || !valid_chars {
            return None;
        }
        last_label = label;
    }
    if is_numeric_label(last_label) && name.parse::<Ipv4Addr>().is_err() {
        return None;
    }
    Some(name.to_ascii_lowercase())
}

/// A label that `inet_aton` would read as a number: decimal digits, or `0x` and hex digits.
fn is_numeric_label(label: &str) -> bool {
    match label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"))
    {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => label.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// VER REP RSV ATYP BND.ADDR BND.PORT.
///
/// An IPv4-mapped IPv6 address (what a dual-stack socket reports for an IPv4 peer) is written as
/// IPv4, which is what the client will see on the wire.
pub fn encode_reply(reply: Reply, bound: SocketAddr, out: &mut Vec<u8>) {
    out.extend_from_slice(&[VERSION, reply.code(), 0x00]);
    write_socket_addr(bound, out);
}

fn write_socket_addr(addr: SocketAddr, out: &mut Vec<u8>) {
    match addr.ip().to_canonical() {
        IpAddr::V4(ip) => {
            out.push(ATYP_IPV4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(ATYP_IPV6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// RSV(2) FRAG ATYP DST.ADDR DST.PORT DATA (RFC 1928 section 7), returning the target, the payload
/// and FRAG.
///
/// A datagram arrives whole or not at all, so a short one is an error rather than `NeedMore`, and
/// no error carries a reply: a bad datagram is dropped. FRAG is returned for the session to drop
/// fragments (non-zero), since reassembly is optional and not implemented.
pub fn parse_udp_datagram(buf: &[u8]) -> Result<(Target, &[u8], u8), Socks5Error> {
    let [_, _, frag, address @ ..] = buf else {
        return Err(Socks5Error::close("datagram shorter than its header"));
    };
    match parse_address(address) {
        Address::Complete(target, len) => {
            let payload = address.get(len..).unwrap_or_default();
            Ok((target, payload, *frag))
        }
        Address::NeedMore => Err(Socks5Error::close("datagram shorter than its header")),
        Address::UnknownType => Err(Socks5Error::close("datagram has an unknown address type")),
        Address::UnusableName => Err(Socks5Error::close("datagram names no valid host")),
    }
}

/// The header for a datagram relayed back to the client; the payload follows it.
///
/// A domain longer than 255 bytes cannot come from this module's parsers; if a caller builds one
/// anyway it is cut to 255 bytes so the header stays well-formed instead of the length byte
/// wrapping around.
pub fn encode_udp_header(target: &Target, out: &mut Vec<u8>) {
    out.extend_from_slice(&[0x00, 0x00, 0x00]);
    match target {
        Target::Ip(addr) => write_socket_addr(*addr, out),
        Target::Domain { host, port } => {
            let name = host.as_bytes();
            let name = name.get(..255).unwrap_or(name);
            out.push(ATYP_DOMAIN);
            // `name` is at most 255 bytes, so the length always fits.
            out.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(name);
            out.extend_from_slice(&port.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{SocketAddrV4, SocketAddrV6};

    /// Feeds every strict prefix of `msg` (expecting `NeedMore`), then `msg` followed by trailing
    /// bytes (expecting `Done` that excludes them), and returns the parsed value.
    fn parse_all_prefixes<T: fmt::Debug, E: fmt::Debug>(
        msg: &[u8],
        parse: impl Fn(&[u8]) -> Parsed<T, E>,
    ) -> T {
        for end in 0..msg.len() {
            match parse(&msg[..end]) {
                Parsed::NeedMore => {}
                other => panic!("prefix of {end} bytes: expected NeedMore, got {other:?}"),
            }
        }
        let mut pipelined = msg.to_vec();
        pipelined.extend_from_slice(b"\x05\x01\x00next");
        match parse(&pipelined) {
            Parsed::Done { value, consumed } => {
                assert_eq!(consumed, msg.len());
                value
            }
            other => panic!("expected Done, got {other:?}"),
        }
    }

    fn invalid<T: fmt::Debug>(parsed: Parsed<T, Socks5Error>) -> Socks5Error {
        match parsed {
            Parsed::Invalid(err) => err,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn request_bytes(cmd: u8, address: &[u8]) -> Vec<u8> {
        let mut msg = vec![VERSION, cmd, 0x00];
        msg.extend_from_slice(address);
        msg
    }

    fn domain_address(name: &[u8], port: u16) -> Vec<u8> {
        let mut address = vec![ATYP_DOMAIN, u8::try_from(name.len()).unwrap()];
        address.extend_from_slice(name);
        address.extend_from_slice(&port.to_be_bytes());
        address
    }

    #[test]
    fn greeting_parses_methods_and_excludes_pipelined_bytes() {
        let greeting = parse_all_prefixes(&[5, 2, METHOD_NO_AUTH, METHOD_USERPASS], parse_greeting);
        assert_eq!(greeting.methods, vec![0x00, 0x02]);
        assert!(greeting.offers(METHOD_NO_AUTH));
        assert!(greeting.offers(METHOD_USERPASS));
        assert!(!greeting.offers(0x01));
    }

    #[test]
    fn greeting_with_all_255_methods() {
        let mut msg = vec![5, 255];
        msg.extend(0..=254u8);
        let greeting = parse_all_prefixes(&msg, parse_greeting);
        assert_eq!(greeting.methods.len(), 255);
    }

    #[test]
    fn greeting_rejects_wrong_version_at_first_byte_without_reply() {
        let err = invalid(parse_greeting(&[4]));
        assert_eq!(err.reply, None);
        let err = invalid(parse_greeting(b"GET / HTTP/1.1\r\n"));
        assert_eq!(err.reply, None);
    }

    #[test]
    fn greeting_rejects_zero_methods() {
        let err = invalid(parse_greeting(&[5, 0]));
        assert_eq!(err.reply, None);
        assert_eq!(err.message, "greeting offers no methods");
    }

    #[test]
    fn method_selection_encoding() {
        assert_eq!(encode_method(METHOD_NO_AUTH), [0x05, 0x00]);
        assert_eq!(encode_method(METHOD_USERPASS), [0x05, 0x02]);
        assert_eq!(encode_method(METHOD_NO_ACCEPTABLE), [0x05, 0xFF]);
    }

    #[test]
    fn userpass_parses_and_excludes_pipelined_bytes() {
        let msg = b"\x01\x05alice\x07s3:cr\xc3\xa9";
        let creds = parse_all_prefixes(msg, parse_userpass);
        assert_eq!(creds.username, "alice");
        assert_eq!(creds.password, "s3:cré");
    }

    #[test]
    fn userpass_accepts_empty_fields() {
        let creds = parse_all_prefixes(b"\x01\x00\x00", parse_userpass);
        assert_eq!(creds.username, "");
        assert_eq!(creds.password, "");
    }

    #[test]
    fn userpass_rejects_wrong_version_and_invalid_utf8() {
        assert_eq!(invalid(parse_userpass(&[5])).reply, None);
        let err = invalid(parse_userpass(b"\x01\x02\xff\xfe\x01x"));
        assert_eq!(err.message, "username or password is not UTF-8");
        let err = invalid(parse_userpass(b"\x01\x01u\x02\xc3\x28"));
        assert_eq!(err.reply, None);
    }

    #[test]
    fn userpass_debug_hides_the_password() {
        let creds = UserPass {
            username: "alice".into(),
            password: "hunter2".into(),
        };
        let shown = format!("{creds:?}");
        assert!(shown.contains("alice"));
        assert!(shown.contains("***"));
        assert!(!shown.contains("hunter2"));
    }

    #[test]
    fn userpass_status_encoding() {
        assert_eq!(encode_userpass_status(true), [0x01, 0x00]);
        assert_eq!(encode_userpass_status(false), [0x01, 0x01]);
    }

    #[test]
    fn request_connect_ipv4() {
        let msg = request_bytes(1, &[ATYP_IPV4, 203, 0, 113, 10, 0x01, 0xBB]);
        let request = parse_all_prefixes(&msg, parse_request);
        assert_eq!(request.command, Command::Connect);
        assert_eq!(
            request.target,
            Target::Ip(SocketAddr::from(([203, 0, 113, 10], 443)))
        );
    }

    #[test]
    fn request_ipv6_bind_and_udp_associate() {
        let ip: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut address = vec![ATYP_IPV6];
        address.extend_from_slice(&ip.octets());
        address.extend_from_slice(&8080u16.to_be_bytes());
        let request = parse_all_prefixes(&request_bytes(2, &address), parse_request);
        assert_eq!(request.command, Command::Bind);
        assert_eq!(
            request.target,
            Target::Ip(SocketAddr::V6(SocketAddrV6::new(ip, 8080, 0, 0)))
        );
        let request = parse_all_prefixes(&request_bytes(3, &address), parse_request);
        assert_eq!(request.command, Command::UdpAssociate);
    }

    #[test]
    fn request_domain_is_normalized() {
        let msg = request_bytes(1, &domain_address(b"WWW.Example.COM.", 80));
        let request = parse_all_prefixes(&msg, parse_request);
        assert_eq!(
            request.target,
            Target::Domain {
                host: "www.example.com".into(),
                port: 80
            }
        );
        assert_eq!(request.target.port(), 80);
        assert_eq!(request.target.to_string(), "www.example.com:80");
    }

    #[test]
    fn request_domain_with_underscore_and_255_bytes() {
        let label = "a".repeat(63);
        let long = format!("{label}.{label}.{label}.{}", "b".repeat(61));
        assert_eq!(long.len(), 253);
        let msg = request_bytes(1, &domain_address(long.as_bytes(), 1));
        assert!(matches!(
            parse_all_prefixes(&msg, parse_request).target,
            Target::Domain { .. }
        ));
        let msg = request_bytes(1, &domain_address(b"_srv.host-1.example", 1));
        assert!(matches!(
            parse_all_prefixes(&msg, parse_request).target,
            Target::Domain { .. }
        ));
        // 255 bytes can be framed but not resolved: the reply is host unreachable.
        let msg = request_bytes(1, &domain_address(&[b'a'; 255], 1));
        assert_eq!(
            invalid(parse_request(&msg)).reply,
            Some(Reply::HostUnreachable)
        );
    }

    #[test]
    fn request_domain_ip_literals_become_ip_targets() {
        let msg = request_bytes(1, &domain_address(b"192.0.2.1", 22));
        assert_eq!(
            parse_all_prefixes(&msg, parse_request).target,
            Target::Ip(SocketAddr::from(([192, 0, 2, 1], 22)))
        );
        for literal in [&b"2001:db8::2"[..], b"[2001:db8::2]"] {
            let msg = request_bytes(1, &domain_address(literal, 22));
            assert_eq!(
                parse_all_prefixes(&msg, parse_request).target,
                Target::Ip("[2001:db8::2]:22".parse().unwrap())
            );
        }
    }

    #[test]
    fn request_unusable_domain_names_get_host_unreachable_after_the_full_request() {
        for name in [
            &b""[..],
            b"exa mple.com",
            b"example..com",
            b".example.com",
            b"example.com..",
            b"ex\xffample.com",
            b"caf\xc3\xa9.example",
            b"0x7f.1",
            b"2130706433",
            b"1.2.3.256",
            &[b'a'; 64],
        ] {
            let msg = request_bytes(1, &domain_address(name, 80));
            for end in 0..msg.len() {
                assert_eq!(parse_request(&msg[..end]), Parsed::NeedMore, "{name:?}");
            }
            let err = invalid(parse_request(&msg));
            assert_eq!(err.reply, Some(Reply::HostUnreachable), "{name:?}");
        }
    }

    #[test]
    fn request_unknown_command_waits_for_the_full_request() {
        let msg = request_bytes(0x09, &[ATYP_IPV4, 10, 0, 0, 1, 0, 80]);
        for end in 0..msg.len() {
            assert_eq!(parse_request(&msg[..end]), Parsed::NeedMore);
        }
        let err = invalid(parse_request(&msg));
        assert_eq!(err.reply, Some(Reply::CommandNotSupported));
        assert_eq!(err.reply.map(Reply::code), Some(0x07));
        // An unknown command with an unusable name still reports the command.
        let msg = request_bytes(0x00, &domain_address(b"bad name", 80));
        assert_eq!(
            invalid(parse_request(&msg)).reply,
            Some(Reply::CommandNotSupported)
        );
    }

    #[test]
    fn request_unknown_address_type_is_reported_at_once() {
        let err = invalid(parse_request(&[5, 1, 0, 0x02]));
        assert_eq!(err.reply, Some(Reply::AddressTypeNotSupported));
        assert_eq!(err.reply.map(Reply::code), Some(0x08));
    }

    #[test]
    fn request_wrong_version_closes_without_reply() {
        assert_eq!(invalid(parse_request(&[4])).reply, None);
        assert_eq!(parse_request(&[5, 1]), Parsed::NeedMore);
    }

    #[test]
    fn request_ignores_reserved_byte() {
        let msg = [5, 1, 0xAA, ATYP_IPV4, 10, 0, 0, 1, 0, 80];
        assert!(matches!(
            parse_request(&msg),
            Parsed::Done { consumed: 10, .. }
        ));
    }

    #[test]
    fn reply_codes() {
        let all = [
            (Reply::Succeeded, 0),
            (Reply::GeneralFailure, 1),
            (Reply::NotAllowed, 2),
            (Reply::NetworkUnreachable, 3),
            (Reply::HostUnreachable, 4),
            (Reply::ConnectionRefused, 5),
            (Reply::TtlExpired, 6),
            (Reply::CommandNotSupported, 7),
            (Reply::AddressTypeNotSupported, 8),
        ];
        for (reply, code) in all {
            assert_eq!(reply.code(), code);
        }
    }

    #[test]
    fn reply_from_io_error_by_errno() {
        let cases = [
            (libc::ECONNREFUSED, Reply::ConnectionRefused),
            (libc::ENETUNREACH, Reply::NetworkUnreachable),
            (libc::ENETDOWN, Reply::NetworkUnreachable),
            (libc::EHOSTUNREACH, Reply::HostUnreachable),
            (libc::ETIMEDOUT, Reply::HostUnreachable),
            (libc::EADDRNOTAVAIL, Reply::NetworkUnreachable),
            (libc::EACCES, Reply::GeneralFailure),
            (libc::EMFILE, Reply::GeneralFailure),
        ];
        for (errno, reply) in cases {
            let err = io::Error::from_raw_os_error(errno);
            assert_eq!(Reply::from_io_error(&err), reply, "errno {errno}");
        }
    }

    #[test]
    fn reply_from_io_error_by_kind() {
        let cases = [
            (io::ErrorKind::ConnectionRefused, Reply::ConnectionRefused),
            (io::ErrorKind::NetworkUnreachable, Reply::NetworkUnreachable),
            (io::ErrorKind::AddrNotAvailable, Reply::NetworkUnreachable),
            (io::ErrorKind::HostUnreachable, Reply::HostUnreachable),
            (io::ErrorKind::TimedOut, Reply::HostUnreachable),
            (io::ErrorKind::PermissionDenied, Reply::GeneralFailure),
            (io::ErrorKind::Other, Reply::GeneralFailure),
        ];
        for (kind, reply) in cases {
            assert_eq!(Reply::from_io_error(&io::Error::from(kind)), reply);
        }
    }

    #[test]
    fn reply_encoding_ipv4_ipv6_and_mapped() {
        let mut out = Vec::new();
        encode_reply(
            Reply::Succeeded,
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 10), 40000)),
            &mut out,
        );
        assert_eq!(out, [5, 0, 0, 1, 198, 51, 100, 10, 0x9C, 0x40]);

        out.clear();
        let ip: Ipv6Addr = "2001:db8:10::7".parse().unwrap();
        encode_reply(
            Reply::HostUnreachable,
            SocketAddr::new(ip.into(), 1),
            &mut out,
        );
        let mut expected = vec![5, 4, 0, 4];
        expected.extend_from_slice(&ip.octets());
        expected.extend_from_slice(&[0, 1]);
        assert_eq!(out, expected);

        out.clear();
        encode_reply(
            Reply::ConnectionRefused,
            "[::ffff:192.0.2.9]:80".parse().unwrap(),
            &mut out,
        );
        assert_eq!(out, [5, 5, 0, 1, 192, 0, 2, 9, 0, 80]);
    }

    #[test]
    fn reply_encoding_appends() {
        let mut out = vec![0xEE];
        encode_reply(
            Reply::GeneralFailure,
            SocketAddr::from(([0, 0, 0, 0], 0)),
            &mut out,
        );
        assert_eq!(out, [0xEE, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn error_display_names_the_reply() {
        let err = Socks5Error::new(Reply::CommandNotSupported, "unknown command");
        assert_eq!(err.to_string(), "socks5: unknown command (reply 0x07)");
        assert_eq!(
            Socks5Error::close("greeting version is not 5").to_string(),
            "socks5: greeting version is not 5"
        );
    }

    #[test]
    fn udp_datagram_round_trip_ipv4_ipv6_domain() {
        let targets = [
            Target::Ip(SocketAddr::from(([192, 0, 2, 1], 53))),
            Target::Ip("[2001:db8::53]:5353".parse().unwrap()),
            Target::Domain {
                host: "dns.example".into(),
                port: 53,
            },
        ];
        for target in targets {
            let mut datagram = Vec::new();
            encode_udp_header(&target, &mut datagram);
            datagram.extend_from_slice(b"payload");
            let (parsed, payload, frag) = parse_udp_datagram(&datagram).unwrap();
            assert_eq!(parsed, target);
            assert_eq!(payload, b"payload");
            assert_eq!(frag, 0);
        }
    }

    #[test]
    fn udp_header_bytes() {
        let mut out = Vec::new();
        encode_udp_header(
            &Target::Ip(SocketAddr::from(([10, 1, 2, 3], 0x1234))),
            &mut out,
        );
        assert_eq!(out, [0, 0, 0, 1, 10, 1, 2, 3, 0x12, 0x34]);
        out.clear();
        encode_udp_header(
            &Target::Domain {
                host: "a.b".into(),
                port: 1,
            },
            &mut out,
        );
        assert_eq!(out, [0, 0, 0, 3, 3, b'a', b'.', b'b', 0, 1]);
    }

    #[test]
    fn udp_header_truncates_overlong_names() {
        let mut out = Vec::new();
        let target = Target::Domain {
            host: "x".repeat(300),
            port: 7,
        };
        encode_udp_header(&target, &mut out);
        assert_eq!(out.len(), 3 + 1 + 1 + 255 + 2);
        assert_eq!(out[4], 255);
    }

    #[test]
    fn udp_datagram_reports_frag_and_empty_payload() {
        let datagram = [0, 0, 3, ATYP_IPV4, 1, 2, 3, 4, 0, 9];
        let (target, payload, frag) = parse_udp_datagram(&datagram).unwrap();
        assert_eq!(target, Target::Ip(SocketAddr::from(([1, 2, 3, 4], 9))));
        assert!(payload.is_empty());
        assert_eq!(frag, 3);
    }

    #[test]
    fn udp_datagram_errors_carry_no_reply() {
        let bad = [
            &[0u8, 0][..],
            &[0, 0, 0, ATYP_IPV4, 1, 2, 3],
            &[0, 0, 0, 0x07, 1, 2, 3, 4, 0, 1],
            &[0, 0, 0, ATYP_DOMAIN, 3, b'a', b' ', b'b', 0, 1],
        ];
        for datagram in bad {
            let err = parse_udp_datagram(datagram).unwrap_err();
            assert_eq!(err.reply, None, "{datagram:?}");
        }
    }

    #[test]
    fn host_name_normalization() {
        assert_eq!(
            normalize_host_name("A-b_C.Example."),
            Some("a-b_c.example".into())
        );
        assert_eq!(normalize_host_name("10.0.0.1"), Some("10.0.0.1".into()));
        assert_eq!(normalize_host_name("localhost"), Some("localhost".into()));
        assert_eq!(
            normalize_host_name("host1.example"),
            Some("host1.example".into())
        );
        for bad in [
            "",
            ".",
            "a..b",
            "a/b",
            "a:80",
            "010.0.0.1",
            "1.2.3",
            "0x10",
            "é.example",
        ] {
            assert_eq!(normalize_host_name(bad), None, "{bad}");
        }
    }

    fn valid_messages() -> Vec<(u8, Vec<u8>)> {
        vec![
            (0, vec![5, 2, 0, 2]),
            (1, b"\x01\x05alice\x06secret".to_vec()),
            (2, request_bytes(1, &[ATYP_IPV4, 10, 0, 0, 1, 0, 80])),
            (2, request_bytes(3, &domain_address(b"example.com", 443))),
            (3, {
                let mut d = vec![0, 0, 0];
                d.extend_from_slice(&domain_address(b"example.com", 53));
                d.extend_from_slice(b"data");
                d
            }),
        ]
    }

    fn check_parsed<T, E>(parsed: Parsed<T, E>, len: usize) -> Result<(), TestCaseError> {
        if let Parsed::Done { consumed, .. } = parsed {
            prop_assert!(consumed <= len);
            prop_assert!(consumed > 0);
        }
        Ok(())
    }

    fn run_all_parsers(bytes: &[u8]) -> Result<(), TestCaseError> {
        check_parsed(parse_greeting(bytes), bytes.len())?;
        check_parsed(parse_userpass(bytes), bytes.len())?;
        check_parsed(parse_request(bytes), bytes.len())?;
        if let Ok((_, payload, _)) = parse_udp_datagram(bytes) {
            prop_assert!(payload.len() <= bytes.len());
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            run_all_parsers(&bytes)?;
        }

        #[test]
        fn parsers_never_panic_on_mangled_valid_messages(
            which in 0usize..5,
            cut in any::<prop::sample::Index>(),
            tail in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let messages = valid_messages();
            let (_, msg) = &messages[which];
            let mut bytes = msg[..cut.index(msg.len() + 1)].to_vec();
            bytes.extend_from_slice(&tail);
            run_all_parsers(&bytes)?;
        }

        #[test]
        fn valid_prefix_with_random_tail_parses_to_the_same_length(
            which in 0usize..5,
            tail in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let messages = valid_messages();
            let (kind, msg) = &messages[which];
            let mut bytes = msg.clone();
            bytes.extend_from_slice(&tail);
            let consumed = match kind {
                0 => match parse_greeting(&bytes) { Parsed::Done { consumed, .. } => Some(consumed), _ => None },
                1 => match parse_userpass(&bytes) { Parsed::Done { consumed, .. } => Some(consumed), _ => None },
                2 => match parse_request(&bytes) { Parsed::Done { consumed, .. } => Some(consumed), _ => None },
                _ => parse_udp_datagram(&bytes).ok().map(|(_, payload, _)| bytes.len() - payload.len() + 4),
            };
            prop_assert_eq!(consumed, Some(msg.len()));
        }
    }
}

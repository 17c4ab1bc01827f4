//! Header fields: lookup, Connection tokens, hop-by-hop removal, framing fields, redaction,
//! and the writers the head encoders share.

use std::fmt;

use super::*;

pub(super) fn version_token(version: u8) -> &'static [u8] {
    if version == 0 {
        b" HTTP/1.0"
    } else {
        b" HTTP/1.1"
    }
}

pub(super) fn write_authority(host: &str, port: Option<u16>, out: &mut Vec<u8>) {
    let bracket = host.contains(':');
    if bracket {
        out.push(b'[');
    }
    out.extend_from_slice(host.as_bytes());
    if bracket {
        out.push(b']');
    }
    if let Some(port) = port {
        out.push(b':');
        push_decimal(u64::from(port), out);
    }
}

pub(super) fn write_field(name: &str, value: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

pub(super) fn push_decimal(mut n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        // `n % 10` is a single digit, so the cast cannot truncate.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

pub(super) fn find_header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// The non-empty, trimmed elements of every `name` field's comma-separated list, in order
/// (RFC 9110 section 5.6.1: repeated fields are one list, empty elements are ignored).
pub(super) fn list_elements<'a>(
    headers: &'a [(String, Vec<u8>)],
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|element| !element.is_empty())
}

pub(super) fn has_token(headers: &[(String, Vec<u8>)], name: &str, token: &str) -> bool {
    list_elements(headers, name).any(|e| e.eq_ignore_ascii_case(token.as_bytes()))
}

pub(super) fn connection_tokens(headers: &[(String, Vec<u8>)]) -> Vec<&[u8]> {
    list_elements(headers, "connection").collect()
}

/// Whether a field crosses the proxy: not hop-by-hop, and not named by `Connection` unless it is
/// one that must never be removed.
pub(super) fn is_end_to_end(name: &str, connection_listed: &[&[u8]]) -> bool {
    let is = |list: &[&str]| list.iter().any(|h| name.eq_ignore_ascii_case(h));
    if is(&HOP_BY_HOP) {
        return false;
    }
    is(&NOT_REMOVABLE)
        || !connection_listed
            .iter()
            .any(|token| token.eq_ignore_ascii_case(name.as_bytes()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ContentLength {
    Absent,
    Valid(u64),
    /// Malformed, empty, or several values that differ.
    Invalid,
}

/// Repeated identical values (`Content-Length: 5, 5`, or two fields) are one length, as RFC 9110
/// section 8.6 allows; any difference is refused.
pub(super) fn content_length(headers: &[(String, Vec<u8>)]) -> ContentLength {
    if find_header(headers, "content-length").is_none() {
        return ContentLength::Absent;
    }
    let mut length = None;
    for element in list_elements(headers, "content-length") {
        let Some(value) = parse_decimal(element) else {
            return ContentLength::Invalid;
        };
        match length {
            Some(previous) if previous != value => return ContentLength::Invalid,
            _ => length = Some(value),
        }
    }
    length.map_or(ContentLength::Invalid, ContentLength::Valid)
}

pub(super) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TransferCoding {
    Absent,
    /// `chunked` is the last coding and appears once.
    ChunkedFinal,
    /// Present, but the body length cannot be found from it; `unknown` if it names a coding
    /// outside the registry.
    NotChunkedFinal {
        unknown: bool,
    },
}

pub(super) fn transfer_coding(headers: &[(String, Vec<u8>)]) -> TransferCoding {
    if find_header(headers, "transfer-encoding").is_none() {
        return TransferCoding::Absent;
    }
    let mut chunked_count = 0usize;
    let mut last_is_chunked = false;
    let mut unknown = false;
    for element in list_elements(headers, "transfer-encoding") {
        // Parameters (`;q=...`) follow the coding name and do not change the framing.
        let name = element
            .split(|&b| b == b';')
            .next()
            .unwrap_or(element)
            .trim_ascii();
        last_is_chunked = name.eq_ignore_ascii_case(b"chunked");
        if last_is_chunked {
            chunked_count += 1;
        }
        unknown |= !KNOWN_CODINGS
            .iter()
            .any(|known| name.eq_ignore_ascii_case(known.as_bytes()));
    }
    if last_is_chunked && chunked_count == 1 {
        TransferCoding::ChunkedFinal
    } else {
        TransferCoding::NotChunkedFinal { unknown }
    }
}

/// Headers for `Debug`, with credential values replaced by `***`.
pub(super) struct RedactedHeaders<'a>(pub(super) &'a [(String, Vec<u8>)]);

impl fmt::Debug for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for (name, value) in self.0 {
            let sensitive = SENSITIVE.iter().any(|s| name.eq_ignore_ascii_case(s));
            let shown = if sensitive {
                "***".into()
            } else {
                String::from_utf8_lossy(value)
            };
            list.entry(&(name, shown));
        }
        list.finish()
    }
}

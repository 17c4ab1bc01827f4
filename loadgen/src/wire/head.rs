//! HTTP/1.x message heads: finding the end, splitting the start line and header fields.
//!
//! Shared by the client's response parser and the sink's request parser. Only what a load
//! generator needs: no obs-fold, no trailers, a fixed size limit so a peer cannot grow memory.

/// Largest head accepted, either side.
pub const MAX_HEAD: usize = 16 * 1024;

/// A parsed head borrowing from the receive buffer.
#[derive(Debug)]
pub struct Head<'a> {
    pub start_line: &'a str,
    fields: Vec<(&'a str, &'a str)>,
}

/// Why a head could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    TooLarge,
    Malformed(&'static str),
}

/// Finds a complete head at the start of `buf`: `Ok(None)` when more bytes are needed.
pub fn scan(buf: &[u8]) -> Result<Option<(Head<'_>, usize)>, HeadError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err(HeadError::TooLarge)
        } else {
            Ok(None)
        };
    };
    if end + 4 > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let text =
        std::str::from_utf8(&buf[..end]).map_err(|_| HeadError::Malformed("head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let start_line = lines.next().unwrap_or_default();
    let mut fields = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or(HeadError::Malformed("header line without a colon"))?;
        if name.is_empty() || name.contains(|c: char| c.is_ascii_whitespace()) {
            return Err(HeadError::Malformed("bad header name"));
        }
        fields.push((name, value.trim()));
    }
    Ok(Some((Head { start_line, fields }, end + 4)))
}

impl Head<'_> {
    /// The first value of header `name` (case-insensitive).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// Whether any `name` header lists `token` (case-insensitive), as in `Connection: close`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// `Content-Length`, refusing conflicting duplicates (a classic smuggling vector).
    pub fn content_length(&self) -> Result<Option<u64>, HeadError> {
        let mut found = None;
        for (_, value) in self
            .fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        {
            let n: u64 = value
                .parse()
                .map_err(|_| HeadError::Malformed("bad Content-Length"))?;
            if found.is_some_and(|f| f != n) {
                return Err(HeadError::Malformed("conflicting Content-Length"));
            }
            found = Some(n);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_the_blank_line() {
        assert!(scan(b"HTTP/1.1 200 OK\r\nA: b\r\n").unwrap().is_none());
        let (head, used) = scan(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(used, 25);
        assert_eq!(head.start_line, "HTTP/1.1 200 OK");
        assert_eq!(head.field("a"), Some("b"));
    }

    #[test]
    fn tokens_and_lengths() {
        let raw = b"GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\nContent-Length: 5\r\n\r\n";
        let (head, _) = scan(raw).unwrap().unwrap();
        assert!(head.has_token("connection", "close"));
        assert!(!head.has_token("connection", "upgrade"));
        assert_eq!(head.content_length(), Ok(Some(5)));
        let raw = b"GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
        let (head, _) = scan(raw).unwrap().unwrap();
        assert!(head.content_length().is_err());
    }

    #[test]
    fn limits_size_and_rejects_garbage() {
        assert_eq!(
            scan(&vec![b'a'; MAX_HEAD + 1]).unwrap_err(),
            HeadError::TooLarge
        );
        assert!(scan(b"GET / HTTP/1.1\r\nno colon\r\n\r\n").is_err());
        assert!(scan(b"GET / HTTP/1.1\r\n\xff: x\r\n\r\n").is_err());
    }
}

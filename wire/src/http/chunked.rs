//! Finding where a chunked body ends while its bytes stream past unchanged.

use super::*;

/// Finds where a chunked body ends while its bytes stream past unchanged.
///
/// It holds no body bytes, only a few counters, so memory stays constant however the body is
/// split. Line endings must be CRLF and chunk sizes plain hex: lenient chunk parsing is how
/// smuggling attacks make two hops disagree about where a body ends.
#[derive(Debug, Clone, Default)]
pub struct ChunkedScanner {
    state: ChunkState,
    /// Bytes of the current chunk-size line, bounded by `MAX_CHUNK_LINE`.
    line_len: usize,
    /// Bytes of the trailer section so far, bounded by `MAX_HEAD`.
    trailer_len: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum ChunkState {
    /// The first hex digit of a chunk size.
    #[default]
    SizeStart,
    Size(u64),
    /// Whitespace after the size, which may only lead to an extension.
    SizeSpace(u64),
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk: a trailer field line or the final empty line.
    TrailerLineStart,
    TrailerLine,
    TrailerLf,
    FinalLf,
    Done,
}

impl ChunkedScanner {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Advances over `data`. Returns `Some(n)` once the body ends within it: the first `n` bytes
    /// belong to the body and the rest to whatever follows. After the end every call returns
    /// `Some(0)`.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<usize>, HttpError> {
        let mut at = 0;
        while at < data.len() {
            match self.state {
                ChunkState::Done => return Ok(Some(at)),
                ChunkState::Data(remaining) => {
                    let available = data.len() - at;
                    // Skip the whole run of chunk data at once, without looking at it.
                    let step = usize::try_from(remaining).map_or(available, |r| r.min(available));
                    at += step;
                    let left = remaining - step as u64;
                    self.state = if left == 0 {
                        ChunkState::DataCr
                    } else {
                        ChunkState::Data(left)
                    };
                }
                _ => {
                    self.step(data[at])?;
                    at += 1;
                }
            }
        }
        Ok(self.is_done().then_some(at))
    }

    fn step(&mut self, byte: u8) -> Result<(), HttpError> {
        const BAD_CHUNK: HttpError = HttpError::new(400, "malformed chunked body");
        use ChunkState as S;
        match self.state {
            S::SizeStart | S::Size(_) | S::SizeSpace(_) | S::Extension(_) => {
                self.line_len += 1;
                if self.line_len > MAX_CHUNK_LINE {
                    return Err(HttpError::new(400, "chunk-size line too long"));
                }
            }
            S::TrailerLineStart | S::TrailerLine | S::TrailerLf | S::FinalLf => {
                self.trailer_len += 1;
                if self.trailer_len > MAX_HEAD {
                    return Err(HttpError::new(431, "chunked trailer section too large"));
                }
            }
            _ => {}
        }
        self.state = match (self.state, byte) {
            (S::SizeStart, b) => S::Size(u64::from(hex_value(b).ok_or(BAD_CHUNK)?)),
            (S::Size(size), b) if b.is_ascii_hexdigit() => {
                let digit = u64::from(hex_value(b).ok_or(BAD_CHUNK)?);
                let size = size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(digit))
                    .ok_or(HttpError::new(400, "chunk size overflows"))?;
                S::Size(size)
            }
            (S::Size(size) | S::SizeSpace(size), b' ' | b'\t') => S::SizeSpace(size),
            (S::Size(size) | S::SizeSpace(size), b';') => S::Extension(size),
            (S::Size(size) | S::Extension(size), b'\r') => S::SizeLf(size),
            (S::Extension(size), b) if b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80 => {
                S::Extension(size)
            }
            (S::SizeLf(0), b'\n') => S::TrailerLineStart,
            (S::SizeLf(size), b'\n') => S::Data(size),
            (S::DataCr, b'\r') => S::DataLf,
            (S::DataLf, b'\n') => {
                self.line_len = 0;
                S::SizeStart
            }
            (S::TrailerLineStart, b'\r') => S::FinalLf,
            (S::TrailerLineStart | S::TrailerLine, b) if b != b'\r' && b != b'\n' => S::TrailerLine,
            (S::TrailerLine, b'\r') => S::TrailerLf,
            (S::TrailerLf, b'\n') => S::TrailerLineStart,
            (S::FinalLf, b'\n') => S::Done,
            _ => return Err(BAD_CHUNK),
        };
        Ok(())
    }
}

pub(super) fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::*;

    #[test]
    fn chunked_end_found_at_every_split_point() {
        let mut stream = CHUNKED.to_vec();
        stream.extend_from_slice(b"GET /next HTTP/1.1\r\n");
        for split in 0..=stream.len() {
            let (a, b) = stream.split_at(split);
            assert_eq!(scan(&[a, b]), Ok(Some(CHUNKED.len())), "split {split}");
        }
        for first in 0..CHUNKED.len() {
            for second in first..CHUNKED.len() {
                let pieces = [
                    &CHUNKED[..first],
                    &CHUNKED[first..second],
                    &CHUNKED[second..],
                ];
                assert_eq!(scan(&pieces), Ok(Some(CHUNKED.len())));
            }
        }
    }

    #[test]
    fn chunked_byte_by_byte_and_after_end() {
        let mut scanner = ChunkedScanner::new();
        for (i, byte) in CHUNKED.iter().enumerate() {
            let result = scanner.feed(std::slice::from_ref(byte)).unwrap();
            if i + 1 < CHUNKED.len() {
                assert_eq!(result, None, "byte {i}");
                assert!(!scanner.is_done());
            } else {
                assert_eq!(result, Some(1));
            }
        }
        assert!(scanner.is_done());
        assert_eq!(scanner.feed(b"more"), Ok(Some(0)));
        assert_eq!(scanner.feed(b""), Ok(Some(0)));
    }

    #[test]
    fn chunked_minimal_and_empty_feed() {
        let mut scanner = ChunkedScanner::new();
        assert_eq!(scanner.feed(b""), Ok(None));
        assert_eq!(scanner.feed(b"0\r\n\r\nrest"), Ok(Some(5)));
        assert_eq!(scan(&[b"00000\r\n\r\n"]), Ok(Some(9)));
        assert_eq!(
            scan(&[b"A;x\r\n0123456789\r\n0 ; y=z\r\n\r\n"]),
            Ok(Some(28))
        );
    }

    #[test]
    fn chunked_large_sizes_are_skipped_not_buffered() {
        let mut scanner = ChunkedScanner::new();
        assert_eq!(scanner.feed(b"FFFFFFFFFFFFFFFF\r\n"), Ok(None));
        assert_eq!(scanner.feed(&[0u8; 4096]), Ok(None));
        assert_eq!(scan(&[b"10000000000000000\r\n"]).unwrap_err().status, 400);
    }

    #[test]
    fn chunked_malformed_input() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"-1\r\n",
            b"5\nhello\r\n",
            b"5 \r\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5;\x01\r\n",
            b"5\r\r\n",
            b"0\r\nX-Sum: 1\n\r\n",
            b"0\r\n\n",
            b"0\r\n\rX",
            b"0x5\r\n",
            b"+5\r\n",
        ] {
            let status = scan(&[bad]).map_err(|e| e.status);
            assert_eq!(status, Err(400), "{bad:?}");
        }
    }

    #[test]
    fn chunked_limits() {
        let mut line = b"1;".to_vec();
        line.resize(MAX_CHUNK_LINE, b'a');
        assert_eq!(scan(&[&line]), Ok(None));
        line.push(b'a');
        assert_eq!(scan(&[&line]).unwrap_err().status, 400);

        let mut trailers = b"0\r\n".to_vec();
        while trailers.len() < MAX_HEAD {
            trailers.extend_from_slice(b"X-Trailer: 0123456789abcdef\r\n");
        }
        trailers.extend_from_slice(b"\r\n");
        assert_eq!(scan(&[&trailers]).unwrap_err().status, 431);
    }
}

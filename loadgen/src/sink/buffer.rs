//! A per-connection read buffer that starts small and grows only for connections that move
//! data, so ten thousand idle tunnels cost tens of megabytes, not hundreds.

const INITIAL: usize = 4 * 1024;
const MAX: usize = 64 * 1024;

#[derive(Debug)]
pub struct ReadBuf {
    buf: Vec<u8>,
}

impl ReadBuf {
    pub fn new() -> ReadBuf {
        ReadBuf {
            buf: vec![0; INITIAL],
        }
    }

    pub fn space(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    pub fn filled(&self, len: usize) -> &[u8] {
        &self.buf[..len]
    }

    /// Called after a read of `len` bytes: a full buffer means the peer is streaming.
    pub fn grow_if_full(&mut self, len: usize) {
        if len == self.buf.len() && self.buf.len() < MAX {
            self.buf.resize(self.buf.len() * 2, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_only_when_filled_up_to_the_cap() {
        let mut buf = ReadBuf::new();
        buf.grow_if_full(10);
        assert_eq!(buf.space().len(), INITIAL);
        for _ in 0..10 {
            let len = buf.space().len();
            buf.grow_if_full(len);
        }
        assert_eq!(buf.space().len(), MAX);
    }
}

//! A client TCP connection on glommio with deadlines on every operation and a small receive
//! buffer that feeds the sans-I/O reply parsers.
//!
//! Bytes a parser did not consume (a sink that speaks first, right behind a CONNECT reply) stay
//! buffered and are handed to the payload reads, so nothing is lost between handshake and data.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::failure::Failure;
use crate::wire::Parsed;

/// Deadline for a connect, and for each read or write: a stuck proxy cannot hang a run.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest payload read issued at once.
pub const CHUNK: usize = 64 * 1024;

/// How much a reply parse reads per attempt; replies are small.
const REPLY_READ: usize = 2048;

#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    inbuf: Vec<u8>,
    start: usize,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Result<Conn, Failure> {
        let stream = TcpStream::connect_timeout(addr, IO_TIMEOUT)
            .await
            .map_err(|e| Failure::connect(io::Error::from(e)))?;
        let set_up = || -> glommio::Result<(), ()> {
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(IO_TIMEOUT))?;
            stream.set_write_timeout(Some(IO_TIMEOUT))?;
            Ok(())
        };
        set_up().map_err(|e| Failure::connect(io::Error::from(e)))?;
        Ok(Conn {
            stream,
            inbuf: Vec::new(),
            start: 0,
        })
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.stream.write_all(bytes).await.map_err(Failure::io)
    }

    /// Reads until `parse` recognises a whole reply; what follows it stays buffered.
    pub async fn read_reply<T>(
        &mut self,
        parse: impl Fn(&[u8]) -> Parsed<T>,
    ) -> Result<T, Failure> {
        loop {
            if let Some((value, used)) = parse(&self.inbuf[self.start..])? {
                self.consume(used);
                return Ok(value);
            }
            self.fill().await?;
        }
    }

    /// Reads and drops exactly `len` payload bytes.
    pub async fn read_discard(&mut self, len: u64) -> Result<(), Failure> {
        let mut left = len - self.take_buffered(len);
        if left == 0 {
            return Ok(());
        }
        let mut scratch = vec![0; usize::try_from(left).unwrap_or(CHUNK).min(CHUNK)];
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(CHUNK).min(scratch.len());
            let got = self.read_some(&mut scratch[..want]).await?;
            left -= got as u64;
        }
        Ok(())
    }

    /// Reads and drops whatever arrives until the peer closes (a body delimited by close).
    pub async fn read_to_end(&mut self) -> Result<u64, Failure> {
        let mut total = self.take_buffered(u64::MAX);
        let mut scratch = vec![0; CHUNK];
        loop {
            match self.stream.read(&mut scratch).await.map_err(Failure::io)? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    }

    /// Reads at most `scratch.len()` payload bytes; the peer closing is an error.
    pub async fn read_some(&mut self, scratch: &mut [u8]) -> Result<usize, Failure> {
        let buffered = self.take_buffered(scratch.len() as u64);
        if buffered > 0 {
            return Ok(buffered as usize);
        }
        match self.stream.read(scratch).await.map_err(Failure::io)? {
            0 => Err(Failure::Io(io::ErrorKind::UnexpectedEof.into())),
            n => Ok(n),
        }
    }

    /// Drops up to `max` buffered bytes, returning how many were dropped.
    fn take_buffered(&mut self, max: u64) -> u64 {
        let available = self.inbuf.len() - self.start;
        let taken = usize::try_from(max).unwrap_or(usize::MAX).min(available);
        self.consume(taken);
        taken as u64
    }

    fn consume(&mut self, used: usize) {
        self.start += used;
        if self.start >= self.inbuf.len() {
            self.inbuf.clear();
            self.start = 0;
        }
    }

    async fn fill(&mut self) -> Result<(), Failure> {
        if self.start > 0 {
            self.inbuf.drain(..self.start);
            self.start = 0;
        }
        let old = self.inbuf.len();
        self.inbuf.resize(old + REPLY_READ, 0);
        let result = self.stream.read(&mut self.inbuf[old..]).await;
        let got = *result.as_ref().unwrap_or(&0);
        self.inbuf.truncate(old + got);
        match result {
            Ok(0) => Err(Failure::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "peer closed before a complete reply",
            ))),
            Ok(_) => Ok(()),
            Err(e) => Err(Failure::io(e)),
        }
    }
}

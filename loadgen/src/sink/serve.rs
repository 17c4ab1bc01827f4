//! What a sink connection does, by mode. Errors just end the connection: a sink has nobody to
//! report them to, and the client side counts them.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use super::buffer::ReadBuf;
use super::{SinkConfig, http};
use crate::cli::SinkMode;

pub async fn connection(mut stream: TcpStream, config: SinkConfig, response: Rc<[u8]>) {
    // Small answers must leave now, not after a delayed ACK.
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let _ = match config.mode {
        SinkMode::Echo => echo(&mut stream).await,
        SinkMode::Discard => discard(&mut stream).await,
        SinkMode::Fixed if config.request_size == 0 => stream_out(&mut stream, &response).await,
        SinkMode::Fixed => fixed(&mut stream, config.request_size, &response).await,
        SinkMode::Http => http::serve(&mut stream, &response, peer).await,
        SinkMode::Peer => announce_peer(&mut stream, peer).await,
    };
}

async fn echo(stream: &mut TcpStream) -> io::Result<()> {
    let mut buf = ReadBuf::new();
    loop {
        let n = stream.read(buf.space()).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(buf.filled(n)).await?;
        buf.grow_if_full(n);
    }
}

async fn discard(stream: &mut TcpStream) -> io::Result<()> {
    let mut buf = ReadBuf::new();
    loop {
        let n = stream.read(buf.space()).await?;
        if n == 0 {
            return Ok(());
        }
        buf.grow_if_full(n);
    }
}

/// One response per `request_size` bytes received, however the bytes are split or batched.
async fn fixed(stream: &mut TcpStream, request_size: usize, response: &[u8]) -> io::Result<()> {
    let mut buf = ReadBuf::new();
    let mut pending = 0;
    loop {
        let n = stream.read(buf.space()).await?;
        if n == 0 {
            return Ok(());
        }
        buf.grow_if_full(n);
        pending += n;
        while pending >= request_size {
            pending -= request_size;
            if !response.is_empty() {
                stream.write_all(response).await?;
            }
        }
    }
}

/// Bulk download: the response, over and over, until the peer goes away.
async fn stream_out(stream: &mut TcpStream, response: &[u8]) -> io::Result<()> {
    if response.is_empty() {
        return discard(stream).await;
    }
    loop {
        stream.write_all(response).await?;
    }
}

async fn announce_peer(stream: &mut TcpStream, peer: Option<SocketAddr>) -> io::Result<()> {
    let peer = peer.ok_or_else(|| io::Error::other("peer address unknown"))?;
    stream.write_all(format!("{peer}\n").as_bytes()).await?;
    echo(stream).await
}

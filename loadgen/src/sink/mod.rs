//! The `sink` command: the upstream every benchmark connects to, sharded over glommio
//! executors that each own a SO_REUSEPORT listener on one shared port.
//!
//! The first executor binds the requested address (port 0 allowed) and reports the port; the
//! others bind that exact port. `listening ADDR` is printed only when all of them listen, so a
//! driver that waits for the line never races the sink.

mod buffer;
mod http;
mod serve;

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::mpsc::{self, Sender};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use glommio::net::TcpListener;
use glommio::{spawn_local, timer};

use crate::cli::{SinkArgs, SinkMode};
use crate::runtime;

/// What every connection of a sink does.
#[derive(Clone, Copy, Debug)]
pub struct SinkConfig {
    pub mode: SinkMode,
    pub request_size: usize,
    pub response_size: usize,
}

/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

pub fn serve(args: SinkArgs) -> anyhow::Result<()> {
    let addr = args
        .listen
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", args.listen))?
        .next()
        .ok_or_else(|| anyhow!("{} has no address", args.listen))?;
    let threads = args
        .threads
        .or(args.cpus.as_ref().map(|c| c.len()))
        .unwrap_or(1);
    if threads == 0 {
        bail!("--threads must be at least 1");
    }
    let cpus = args.cpus.unwrap_or_default();
    let config = SinkConfig {
        mode: args.mode,
        request_size: args.request_size,
        response_size: args.response_size,
    };

    let (ready_tx, ready_rx) = mpsc::channel();
    let mut executors = Vec::with_capacity(threads);
    let mut bound = addr;
    for index in 0..threads {
        let ready = ready_tx.clone();
        let cpu = cpus.for_executor(index);
        executors.push(runtime::spawn(&format!("sink-{index}"), cpu, move || {
            shard(bound, config, ready)
        })?);
        if index == 0 {
            // Later executors must bind the port the kernel picked for the first.
            bound = match ready_rx.recv() {
                Ok(result) => result.map_err(|e| anyhow!(e))?,
                Err(_) => return Err(executor_died(executors)),
            };
        }
    }
    drop(ready_tx);
    for _ in 1..threads {
        match ready_rx.recv() {
            Ok(result) => {
                result.map_err(|e| anyhow!(e))?;
            }
            Err(_) => return Err(executor_died(executors)),
        }
    }
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening {bound}")?;
    stdout.flush()?;
    drop(stdout);

    for executor in executors {
        runtime::join(executor)?;
    }
    Ok(())
}

/// An executor ended before reporting: join them to surface its error.
fn executor_died(executors: Vec<glommio::ExecutorJoinHandle<()>>) -> anyhow::Error {
    for executor in executors {
        if let Err(e) = runtime::join(executor) {
            return e;
        }
    }
    anyhow!("a sink executor stopped before listening")
}

async fn shard(addr: SocketAddr, config: SinkConfig, ready: Sender<Result<SocketAddr, String>>) {
    let listener = match TcpListener::bind(addr).and_then(|l| Ok((l.local_addr()?, l))) {
        Ok((local, listener)) => {
            let _ = ready.send(Ok(local));
            listener
        }
        Err(e) => {
            let _ = ready.send(Err(format!("cannot listen on {addr}: {e}")));
            return;
        }
    };
    drop(ready);
    let response: Rc<[u8]> = vec![b'y'; config.response_size].into();
    loop {
        match listener.accept().await {
            Ok(stream) => {
                spawn_local(serve::connection(stream, config, Rc::clone(&response))).detach();
            }
            Err(e) => {
                eprintln!("egressd-loadgen sink: accept failed: {e}");
                timer::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

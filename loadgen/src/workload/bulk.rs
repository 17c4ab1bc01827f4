//! `bulk`: each stream pushes (or pulls) 64 KiB chunks for the whole duration; the result is
//! throughput. Uploads go to a `discard` sink; with `--request-size 0` the stream downloads
//! from `sink --mode fixed --request-size 0` instead.

use std::rc::Rc;
use std::time::Instant;

use glommio::spawn_local;

use super::ShardCtx;
use crate::conn::CHUNK;

pub async fn run(ctx: &Rc<ShardCtx>) {
    ctx.recorder.start_window();
    let streams = ctx.plan.share(ctx.plan.streams, ctx.index);
    let tasks: Vec<_> = (0..streams)
        .map(|_| spawn_local(stream(Rc::clone(ctx))))
        .collect();
    for task in tasks {
        task.await;
    }
}

async fn stream(ctx: Rc<ShardCtx>) {
    let window = ctx.recorder.window();
    let upload = ctx.plan.request_size > 0;
    let mut chunk = vec![b'x'; CHUNK];
    while Instant::now() < window.end {
        let dialled = Instant::now();
        let mut tunnel = match ctx.dialer.open().await {
            Ok(tunnel) => tunnel,
            Err(failure) => {
                ctx.recorder.record(dialled, Err(failure));
                continue;
            }
        };
        if window.measures(dialled) {
            ctx.recorder.with(|stats| stats.connections += 1);
        }
        loop {
            let started = Instant::now();
            if started >= window.end {
                break;
            }
            let moved = if upload {
                tunnel.conn.write_all(&chunk).await.map(|()| CHUNK)
            } else {
                tunnel.conn.read_some(&mut chunk).await
            };
            match moved {
                Ok(bytes) if window.measures(started) => ctx.recorder.with(|stats| {
                    stats.completed += 1;
                    stats.bytes += bytes as u64;
                }),
                Ok(_) => {}
                Err(failure) => {
                    ctx.recorder.record(started, Err(failure));
                    break;
                }
            }
        }
    }
}

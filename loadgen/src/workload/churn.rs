//! `churn`: connect, handshake, one request/response, close. Latency is the whole iteration,
//! which is what a client of a proxy feels for a short-lived connection; the handshake
//! (connect to the proxy's answer) and the exchange are also recorded apart. `serial` is the
//! same in a closed loop only.

use std::rc::Rc;
use std::time::Instant;

use super::ShardCtx;
use super::drive::{self, Outcome};
use super::recorder::Sample;
use crate::failure::Failure;

pub async fn run(ctx: &Rc<ShardCtx>) {
    ctx.recorder.start_window();
    let workers = vec![(); ctx.connections()];
    match ctx.schedule() {
        Some(schedule) => drive::open_loop(ctx, schedule, workers, iteration).await,
        None => drive::closed_loop(ctx, workers, iteration).await,
    }
}

async fn iteration(ctx: Rc<ShardCtx>, worker: ()) -> Outcome<()> {
    (worker, once(&ctx).await)
}

async fn once(ctx: &ShardCtx) -> Result<Sample, Failure> {
    let started = Instant::now();
    let mut tunnel = ctx.dialer.open().await?;
    let handshake = started.elapsed();
    let done = ctx.exchange.round_trip(&mut tunnel.conn, false).await?;
    Ok(Sample {
        bytes: done.bytes,
        connections: 1,
        handshake: Some(handshake),
    })
}

//! `churn`: connect, handshake, one request/response, close. Latency is the whole iteration,
//! which is what a client of a proxy feels for a short-lived connection.

use std::rc::Rc;

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
    let mut tunnel = ctx.dialer.open().await?;
    let done = ctx.exchange.round_trip(&mut tunnel.conn, false).await?;
    Ok(Sample {
        bytes: done.bytes,
        connections: 1,
    })
}

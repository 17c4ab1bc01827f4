//! `idle`: how many quiet tunnels a proxy holds. Open them (each proven with a one-byte echo),
//! announce the count, hold them for the duration, then prove each again: a tunnel the proxy
//! dropped while idle shows up as an error.

use std::rc::Rc;
use std::sync::mpsc::Sender;
use std::time::Instant;

use glommio::{spawn_local, timer};

use super::ShardCtx;
use super::open::open_many;
use crate::cli::Proto;
use crate::conn::Conn;
use crate::failure::Failure;

pub async fn run(ctx: &Rc<ShardCtx>, report: &Sender<u64>) {
    let began = Instant::now();
    let opened = open_many(ctx.connections(), || open_proven(Rc::clone(ctx))).await;
    let tunnels: Vec<Conn> = opened.into_iter().flatten().collect();
    let count = tunnels.len() as u64;
    ctx.recorder.with(|stats| {
        stats.open_tunnels = count;
        stats.connections = count;
        stats.setup = began.elapsed();
    });
    // The receiver only goes away if the run is being torn down; nothing to tell it then.
    let _ = report.send(count);

    timer::sleep(ctx.plan.duration).await;

    let checks: Vec<_> = tunnels
        .into_iter()
        .map(|mut conn| {
            let ctx = Rc::clone(ctx);
            spawn_local(async move { prove(&ctx, &mut conn).await })
        })
        .collect();
    for check in checks {
        let result = check.await;
        ctx.recorder.with(|stats| match result {
            Ok(()) => stats.completed += 1,
            Err(failure) => stats.errors.add(&failure),
        });
    }
}

/// Opens one tunnel and proves it carries data; the latency of both is recorded.
async fn open_proven(ctx: Rc<ShardCtx>) -> Option<Conn> {
    let started = Instant::now();
    let result = async {
        let mut tunnel = ctx.dialer.open().await?;
        prove(&ctx, &mut tunnel.conn).await?;
        Ok::<_, Failure>(tunnel.conn)
    }
    .await;
    ctx.recorder.with(|stats| match result {
        Ok(conn) => {
            stats.record_latency(started.elapsed());
            Some(conn)
        }
        Err(failure) => {
            stats.errors.add(&failure);
            None
        }
    })
}

/// A one-byte echo through a tunnel, or one keep-alive request for http-forward.
async fn prove(ctx: &ShardCtx, conn: &mut Conn) -> Result<(), Failure> {
    if ctx.plan.proto == Proto::HttpForward {
        ctx.exchange.round_trip(conn, true).await.map(|_| ())
    } else {
        conn.write_all(b"i").await?;
        conn.read_discard(1).await
    }
}

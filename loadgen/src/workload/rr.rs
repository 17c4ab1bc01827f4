//! `rr`: request/response round trips on tunnels opened once, before the clock starts.
//!
//! A tunnel that fails is dropped and re-opened by the next request that gets its slot; that
//! request's latency then includes the new handshake, as a real client's would.

use std::rc::Rc;

use super::ShardCtx;
use super::drive::{self, Outcome};
use super::open::open_many;
use super::recorder::Sample;
use crate::conn::Conn;

pub async fn run(ctx: &Rc<ShardCtx>) {
    let sessions = open_many(ctx.connections(), || open_session(Rc::clone(ctx))).await;
    ctx.recorder.start_window();
    match ctx.schedule() {
        Some(schedule) => drive::open_loop(ctx, schedule, sessions, iteration).await,
        None => drive::closed_loop(ctx, sessions, iteration).await,
    }
}

/// Set-up failures are counted whatever the window: they are the proxy's failures too.
async fn open_session(ctx: Rc<ShardCtx>) -> Option<Conn> {
    match ctx.dialer.open().await {
        Ok(tunnel) => Some(tunnel.conn),
        Err(failure) => {
            ctx.recorder.with(|stats| stats.errors.add(&failure));
            None
        }
    }
}

async fn iteration(ctx: Rc<ShardCtx>, session: Option<Conn>) -> Outcome<Option<Conn>> {
    let (mut conn, connections) = match session {
        Some(conn) => (conn, 0),
        None => match ctx.dialer.open().await {
            Ok(tunnel) => (tunnel.conn, 1),
            Err(failure) => return (None, Err(failure)),
        },
    };
    match ctx.exchange.round_trip(&mut conn, true).await {
        Ok(done) => (
            done.reusable.then_some(conn),
            Ok(Sample {
                bytes: done.bytes,
                connections,
                handshake: None,
            }),
        ),
        Err(failure) => (None, Err(failure)),
    }
}

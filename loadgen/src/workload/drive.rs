//! The two ways requests are issued.
//!
//! Closed loop: each worker sends its next request when the previous one finished, so a slow
//! proxy lowers the offered load (and hides its own latency). Open loop: requests are due at
//! fixed times whatever happens; one that must wait for a free slot is still timed from when
//! it was due, which is what keeps the latency honest under overload.

use std::future::Future;
use std::rc::Rc;
use std::time::Instant;

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::{spawn_local, timer};

use super::ShardCtx;
use super::recorder::Sample;
use crate::failure::Failure;
use crate::schedule::Schedule;

/// An operation hands its worker state back with its result.
pub type Outcome<S> = (S, Result<Sample, Failure>);

pub async fn closed_loop<S, F, Fut>(ctx: &Rc<ShardCtx>, states: Vec<S>, op: F)
where
    S: 'static,
    F: Fn(Rc<ShardCtx>, S) -> Fut + Clone + 'static,
    Fut: Future<Output = Outcome<S>> + 'static,
{
    let workers: Vec<_> = states
        .into_iter()
        .map(|state| {
            let ctx = Rc::clone(ctx);
            let op = op.clone();
            spawn_local(async move {
                let mut state = state;
                loop {
                    let started = Instant::now();
                    if started >= ctx.recorder.window().end {
                        break;
                    }
                    let (next, result) = op(Rc::clone(&ctx), state).await;
                    state = next;
                    ctx.recorder.record(started, result);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await;
    }
}

pub async fn open_loop<S, F, Fut>(ctx: &Rc<ShardCtx>, schedule: Schedule, states: Vec<S>, op: F)
where
    S: 'static,
    F: Fn(Rc<ShardCtx>, S) -> Fut + Clone + 'static,
    Fut: Future<Output = Outcome<S>> + 'static,
{
    let slots = Rc::new(Slots::new(states));
    let window = ctx.recorder.window();
    for k in 0.. {
        let due = window.start + schedule.send_time(k);
        if due >= window.end {
            break;
        }
        let now = Instant::now();
        if due > now {
            timer::sleep(due - now).await;
        }
        let Some(state) = slots.take().await else {
            break;
        };
        let ctx = Rc::clone(ctx);
        let slots = Rc::clone(&slots);
        let op = op.clone();
        spawn_local(async move {
            let (state, result) = op(Rc::clone(&ctx), state).await;
            ctx.recorder.record(due, result);
            slots.put(state);
        })
        .detach();
    }
    slots.drain().await;
}

/// The in-flight slots of an open loop: a request takes a worker state and returns it when done.
#[derive(Debug)]
struct Slots<S> {
    tx: LocalSender<S>,
    rx: LocalReceiver<S>,
    count: usize,
}

impl<S> Slots<S> {
    fn new(states: Vec<S>) -> Slots<S> {
        let (tx, rx) = local_channel::new_unbounded();
        let count = states
            .into_iter()
            .map(|state| tx.try_send(state).is_ok())
            .filter(|sent| *sent)
            .count();
        Slots { tx, rx, count }
    }

    async fn take(&self) -> Option<S> {
        self.rx.recv().await
    }

    fn put(&self, state: S) {
        // Both ends live as long as `self`, so an unbounded send cannot fail.
        let _ = self.tx.try_send(state);
    }

    /// Waits until every slot is back, i.e. nothing is in flight.
    async fn drain(&self) {
        for _ in 0..self.count {
            if self.rx.recv().await.is_none() {
                break;
            }
        }
    }
}

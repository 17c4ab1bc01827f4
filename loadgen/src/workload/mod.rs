//! One executor's share of a run: the per-executor context and the dispatch to a workload.

mod bulk;
mod churn;
mod drive;
mod idle;
mod open;
mod recorder;
mod rr;

use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc::Sender;

use crate::cli::Workload;
use crate::dial::Dialer;
use crate::exchange::Exchange;
use crate::plan::Plan;
use crate::schedule::Schedule;
use crate::stats::ThreadStats;
use recorder::Recorder;
pub use recorder::Window;

/// Everything an executor's tasks share; only ever touched from that executor's thread.
#[derive(Debug)]
pub struct ShardCtx {
    plan: Arc<Plan>,
    index: usize,
    dialer: Dialer,
    exchange: Exchange,
    recorder: Recorder,
}

impl ShardCtx {
    /// This executor's workers, in-flight slots or tunnels.
    fn connections(&self) -> usize {
        self.plan.share(self.plan.connections, self.index)
    }

    fn schedule(&self) -> Option<Schedule> {
        self.plan
            .rate
            .and_then(|rate| Schedule::for_executor(rate, self.plan.threads, self.index))
    }
}

/// Runs executor `index`'s part of `plan` and returns what it measured. An idle run reports
/// its open tunnel count on `idle_report` before holding them; every run reports its
/// measurement window on `window_started` when it begins.
pub async fn run_shard(
    plan: Arc<Plan>,
    index: usize,
    idle_report: Sender<u64>,
    window_started: Sender<Window>,
) -> Result<ThreadStats, String> {
    let ctx = Rc::new(ShardCtx {
        dialer: Dialer::new(&plan)?,
        exchange: Exchange::new(&plan),
        recorder: Recorder::new(plan.warmup, plan.duration, window_started)?,
        plan,
        index,
    });
    match ctx.plan.workload {
        Workload::Churn | Workload::Serial => churn::run(&ctx).await,
        Workload::Rr => rr::run(&ctx).await,
        Workload::Bulk => bulk::run(&ctx).await,
        Workload::Idle => idle::run(&ctx, &idle_report).await,
    }
    Ok(ctx.recorder.snapshot())
}

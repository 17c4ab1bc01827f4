//! The `run` command: validate, check the path once, start the executors, merge, report.
//!
//! Anything that stops the run before measuring (bad arguments, an unreachable proxy, the
//! wrong egress address) is an error with a non-zero exit; failures during the measurement are
//! only counted.

use std::fs;
use std::io::{self, Write};
use std::sync::{Arc, mpsc};

use anyhow::{Context, anyhow, bail};

use crate::cli::{RunArgs, Workload};
use crate::conn::Conn;
use crate::dial::Dialer;
use crate::egress::{self, Observed};
use crate::plan::{Plan, PlanError};
use crate::report::Report;
use crate::runtime;
use crate::stats::ThreadStats;
use crate::workload;

/// Why a run did not produce results.
#[derive(Debug)]
pub enum RunError {
    /// The command line contradicts itself (exit 2, like clap's own errors).
    Usage(String),
    /// The environment cannot run it (exit 1).
    Setup(anyhow::Error),
}

impl From<anyhow::Error> for RunError {
    fn from(error: anyhow::Error) -> Self {
        RunError::Setup(error)
    }
}

pub fn execute(args: RunArgs) -> Result<(), RunError> {
    let plan = Plan::from_args(args).map_err(|e| match e {
        PlanError::Usage(msg) => RunError::Usage(msg),
        PlanError::Setup(msg) => RunError::Setup(anyhow!(msg)),
    })?;
    Dialer::new(&plan).map_err(RunError::Usage)?;
    let plan = Arc::new(plan);

    let observed = preflight(Arc::clone(&plan))?;
    let egress = match (plan.expect_egress, observed) {
        (Some(expected), Some(seen)) => {
            let bound = seen
                .bound
                .map(|b| format!(" (proxy reported {b})"))
                .unwrap_or_default();
            let ok = egress::same_ip(expected, seen.peer.ip());
            let verdict = if ok { "ok" } else { "MISMATCH" };
            println!(
                "egress: {} expected {expected}{bound} {verdict}",
                seen.peer.ip()
            );
            if !ok {
                return Err(anyhow!(
                    "egress mismatch: the target saw {}, expected {expected}",
                    seen.peer.ip()
                )
                .into());
            }
            Some(seen.peer.ip().to_string())
        }
        _ => None,
    };

    let stats = measure(&plan)?;
    let report = Report::new(&plan, &stats, egress);
    print!("{}", report.table());
    let _ = io::stdout().flush();
    if let Some(path) = &plan.json {
        let json = serde_json::to_string_pretty(&report).context("cannot encode the report")?;
        fs::write(path, json + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Proves the first hop is reachable at all, and runs the egress check if one was asked for.
fn preflight(plan: Arc<Plan>) -> anyhow::Result<Option<Observed>> {
    runtime::block_on("loadgen-preflight", move || async move {
        if let Err(failure) = Conn::connect(plan.first_hop).await {
            let what = if plan.proxy_in_path() {
                "proxy"
            } else {
                "target"
            };
            bail!("cannot reach the {what} at {}: {failure}", plan.first_hop);
        }
        match plan.expect_egress {
            Some(_) => Ok(Some(egress::observe(&plan).await.map_err(|e| anyhow!(e))?)),
            None => Ok(None),
        }
    })?
}

fn measure(plan: &Arc<Plan>) -> anyhow::Result<ThreadStats> {
    let (idle_tx, idle_rx) = mpsc::channel();
    let mut executors = Vec::with_capacity(plan.threads);
    for index in 0..plan.threads {
        let plan = Arc::clone(plan);
        let idle_tx = idle_tx.clone();
        let cpu = plan.cpus.for_executor(index);
        executors.push(runtime::spawn(
            &format!("loadgen-{index}"),
            cpu,
            move || workload::run_shard(plan, index, idle_tx),
        )?);
    }
    drop(idle_tx);

    if plan.workload == Workload::Idle {
        // Every executor reports once; a dead one closes its sender instead.
        let open: u64 = idle_rx.iter().take(plan.threads).sum();
        println!("idle: {open} tunnels open");
        let _ = io::stdout().flush();
    }

    let mut merged = ThreadStats::new().map_err(|e| anyhow!(e))?;
    for executor in executors {
        let stats = runtime::join(executor)?.map_err(|e| anyhow!(e))?;
        merged.merge(&stats).map_err(|e| anyhow!(e))?;
    }
    Ok(merged)
}

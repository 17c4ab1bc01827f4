//! The `run` command: validate, check the path once, start the executors, merge, report.
//!
//! Anything that stops the run before measuring (bad arguments, an unreachable proxy, the
//! wrong egress address) is an error with a non-zero exit; failures during the measurement are
//! only counted.

use std::fs;
use std::io::{self, Write};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use crate::cli::{RunArgs, Workload};
use crate::conn::Conn;
use crate::dial::Dialer;
use crate::egress::{self, Observed};
use crate::plan::{Plan, PlanError};
use crate::proccpu;
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

    let (stats, proxy_cpu) = measure(&plan)?;
    let mut report = Report::new(&plan, &stats, egress);
    report.set_proxy_cpu(proxy_cpu);
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

/// Runs the executors and merges what they measured; with `--proxy-pid`, also the CPU time
/// the proxy used over the first executor's measurement window.
fn measure(plan: &Arc<Plan>) -> anyhow::Result<(ThreadStats, Option<Duration>)> {
    let (idle_tx, idle_rx) = mpsc::channel();
    let (window_tx, window_rx) = mpsc::channel();
    let mut executors = Vec::with_capacity(plan.threads);
    for index in 0..plan.threads {
        let plan = Arc::clone(plan);
        let (idle_tx, window_tx) = (idle_tx.clone(), window_tx.clone());
        let cpu = plan.cpus.for_executor(index);
        executors.push(runtime::spawn(
            &format!("loadgen-{index}"),
            cpu,
            move || workload::run_shard(plan, index, idle_tx, window_tx),
        )?);
    }
    drop((idle_tx, window_tx));
    let cpu_meter = plan.proxy_pid.map(|pid| {
        std::thread::spawn(move || -> anyhow::Result<Option<Duration>> {
            // The first window to start stands for all (they start within set-up time).
            let Ok(window) = window_rx.recv() else {
                return Ok(None);
            };
            sleep_until(window.warmup_end);
            let before = proccpu::cpu_time(pid).map_err(|e| anyhow!(e))?;
            sleep_until(window.end);
            let after = proccpu::cpu_time(pid).map_err(|e| anyhow!(e))?;
            Ok(Some(after.saturating_sub(before)))
        })
    });

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
    let proxy_cpu = match cpu_meter {
        Some(meter) => meter
            .join()
            .map_err(|_| anyhow!("the CPU meter thread panicked"))??,
        None => None,
    };
    Ok((merged, proxy_cpu))
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

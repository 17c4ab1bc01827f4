//! The results of a run: a table for people and a JSON object for the benchmark driver.
//!
//! JSON keys are a contract with the driver: proto, workload, threads, connections,
//! duration_s, connections_per_s, requests_per_s, gbit_per_s, latency_us {p50, p90, p99,
//! p999, max, mean}, errors {class: count}, completed; the other keys are extra detail.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::cli::Workload;
use crate::failure::ErrorClass;
use crate::plan::Plan;
use crate::stats::ThreadStats;

#[derive(Debug, Serialize)]
pub struct Report {
    pub proto: &'static str,
    pub workload: &'static str,
    pub threads: usize,
    pub connections: usize,
    /// Open-loop rate asked for; `null` for a closed loop.
    pub rate: Option<f64>,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub connections_per_s: f64,
    pub requests_per_s: f64,
    pub gbit_per_s: f64,
    pub latency_us: Latency,
    /// Churn and serial: the handshake (connect to the proxy's answer) and the exchange after
    /// it, apart.
    pub handshake_us: Option<Latency>,
    pub exchange_us: Option<Latency>,
    /// `--proxy-pid`: CPU time the proxy used while measuring, and per completed request
    /// (per connection for churn and serial).
    pub proxy_cpu_s: Option<f64>,
    pub proxy_cpu_us_per_request: Option<f64>,
    pub errors: Errors,
    /// Refusals by code (`socks5:0x02`, `http:403`), a breakdown of `errors.proxy-refused`.
    pub refused_codes: BTreeMap<String, u64>,
    pub completed: u64,
    pub bytes: u64,
    pub request_size: usize,
    pub response_size: usize,
    pub streams: usize,
    /// Idle only: tunnels open when the hold began.
    pub open_tunnels: Option<u64>,
    /// `--expect-egress`: the source address the sink saw.
    pub egress: Option<String>,
    #[serde(skip)]
    kind: Workload,
}

#[derive(Debug, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

#[derive(Debug, Serialize)]
pub struct Errors {
    pub connect: u64,
    #[serde(rename = "proxy-refused")]
    pub proxy_refused: u64,
    pub handshake: u64,
    pub io: u64,
    pub timeout: u64,
}

impl Report {
    pub fn new(plan: &Plan, stats: &ThreadStats, egress: Option<String>) -> Report {
        let seconds = plan.duration.as_secs_f64();
        let per_second = |n: u64| n as f64 / seconds;
        let idle = plan.workload == Workload::Idle;
        let connections_per_s = if idle {
            let setup = stats.setup.as_secs_f64();
            if setup > 0.0 {
                stats.open_tunnels as f64 / setup
            } else {
                0.0
            }
        } else {
            per_second(stats.connections)
        };
        let errors = &stats.errors;
        Report {
            proto: plan.proto.name(),
            workload: plan.workload.name(),
            threads: plan.threads,
            connections: plan.connections,
            rate: plan.rate,
            duration_s: seconds,
            warmup_s: plan.warmup.as_secs_f64(),
            connections_per_s,
            requests_per_s: if idle {
                0.0
            } else {
                per_second(stats.completed)
            },
            gbit_per_s: stats.bytes as f64 * 8.0 / seconds / 1e9,
            latency_us: latency(&stats.latency),
            handshake_us: (!stats.handshake.is_empty()).then(|| latency(&stats.handshake)),
            exchange_us: (!stats.exchange.is_empty()).then(|| latency(&stats.exchange)),
            proxy_cpu_s: None,
            proxy_cpu_us_per_request: None,
            errors: Errors {
                connect: errors.count(ErrorClass::Connect),
                proxy_refused: errors.count(ErrorClass::ProxyRefused),
                handshake: errors.count(ErrorClass::Handshake),
                io: errors.count(ErrorClass::Io),
                timeout: errors.count(ErrorClass::Timeout),
            },
            refused_codes: errors.refused_codes().clone(),
            completed: stats.completed,
            bytes: stats.bytes,
            request_size: plan.request_size,
            response_size: plan.response_size,
            streams: plan.streams,
            open_tunnels: idle.then_some(stats.open_tunnels),
            egress,
            kind: plan.workload,
        }
    }

    /// Adds the proxy's CPU time over the measurement (`--proxy-pid`).
    pub fn set_proxy_cpu(&mut self, cpu: Option<Duration>) {
        self.proxy_cpu_s = cpu.map(|c| c.as_secs_f64());
        self.proxy_cpu_us_per_request = cpu
            .filter(|_| self.completed > 0)
            .map(|c| c.as_secs_f64() * 1e6 / self.completed as f64);
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let shape = match (self.kind, self.rate) {
            (Workload::Bulk, _) => format!("{} streams", self.streams),
            (Workload::Idle, _) => format!("{} tunnels", self.connections),
            (_, Some(rate)) => format!("open loop {rate}/s, up to {} in flight", self.connections),
            (_, None) => format!("closed loop, {} connections", self.connections),
        };
        let timing = match self.kind {
            Workload::Idle => format!("held {:.2} s", self.duration_s),
            _ => format!(
                "{:.2} s measured after {:.2} s warm-up",
                self.duration_s, self.warmup_s
            ),
        };
        let _ = writeln!(
            out,
            "{} {}: {} threads, {shape}, {timing}",
            self.proto, self.workload, self.threads
        );
        if let Some(egress) = &self.egress {
            let _ = writeln!(out, "  egress          {egress}");
        }
        if let Some(open) = self.open_tunnels {
            let _ = writeln!(out, "  open tunnels    {open}");
        }
        let _ = writeln!(out, "  completed       {}", self.completed);
        let _ = writeln!(out, "  connections/s   {:.1}", self.connections_per_s);
        let _ = writeln!(out, "  requests/s      {:.1}", self.requests_per_s);
        let _ = writeln!(out, "  throughput      {:.3} Gbit/s", self.gbit_per_s);
        let _ = writeln!(
            out,
            "  latency (us)    {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "p50", "p90", "p99", "p99.9", "max", "mean"
        );
        let rows = [
            ("", Some(&self.latency_us)),
            ("  handshake", self.handshake_us.as_ref()),
            ("  exchange", self.exchange_us.as_ref()),
        ];
        for (name, l) in rows {
            if let Some(l) = l {
                let _ = writeln!(
                    out,
                    "  {name:<14}  {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                    l.p50, l.p90, l.p99, l.p999, l.max, l.mean
                );
            }
        }
        if let (Some(total), Some(per)) = (self.proxy_cpu_s, self.proxy_cpu_us_per_request) {
            let _ = writeln!(
                out,
                "  proxy CPU       {total:.3} s, {per:.1} us per request"
            );
        }
        let e = &self.errors;
        let _ = writeln!(
            out,
            "  errors          connect {}  proxy-refused {}  handshake {}  io {}  timeout {}",
            e.connect, e.proxy_refused, e.handshake, e.io, e.timeout
        );
        for (code, count) in &self.refused_codes {
            let _ = writeln!(out, "    refused {code}: {count}");
        }
        out
    }
}

fn latency(h: &hdrhistogram::Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    let us = |ns: u64| ns as f64 / 1000.0;
    Latency {
        p50: us(h.value_at_quantile(0.50)),
        p90: us(h.value_at_quantile(0.90)),
        p99: us(h.value_at_quantile(0.99)),
        p999: us(h.value_at_quantile(0.999)),
        max: us(h.max()),
        mean: h.mean() / 1000.0,
    }
}

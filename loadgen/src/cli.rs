//! The command line: `sink` (the upstream) and `run` (the client).
//!
//! The benchmark driver depends on these exact flags; change them only together with it.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cpus::{self, CpuList};
use crate::duration;

#[derive(Debug, Parser)]
#[command(
    name = "egressd-loadgen",
    version,
    about = "Load generator and upstream sink for benchmarking egressd against other proxies"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve as the upstream: echo, discard, fixed-size answers, HTTP, or report the peer.
    ///
    /// Prints `listening ADDR` once every thread listens, then serves until killed.
    Sink(SinkArgs),
    /// Drive load directly or through a proxy and report rates, latency and errors.
    Run(Box<RunArgs>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SinkMode {
    /// Write back whatever arrives.
    Echo,
    /// Read and drop.
    Discard,
    /// Answer --response-size bytes per --request-size bytes received; with request size 0,
    /// stream --response-size-byte writes until the peer closes (bulk download).
    Fixed,
    /// HTTP/1.1 keep-alive server: 200 with a --response-size body (and X-Peer-Addr).
    Http,
    /// Write the peer address seen (`IP:PORT\n`), then echo.
    Peer,
}

#[derive(Debug, Args)]
pub struct SinkArgs {
    /// Address to listen on; port 0 picks a free port (shared by all threads).
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    #[arg(long, value_enum, default_value_t = SinkMode::Echo)]
    pub mode: SinkMode,
    /// Bytes per answer (fixed, http).
    #[arg(long, value_name = "BYTES", default_value_t = 100)]
    pub response_size: usize,
    /// Bytes per request (fixed).
    #[arg(long, value_name = "BYTES", default_value_t = 100)]
    pub request_size: usize,
    /// Executor threads, each with its own SO_REUSEPORT listener [default: 1, or one per --cpus entry].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Pin executor i to the i-th CPU of this list (e.g. `1` or `0,1`).
    #[arg(long, value_name = "LIST", value_parser = cpus::parse)]
    pub cpus: Option<CpuList>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Proto {
    /// SOCKS5 CONNECT (RFC 1928; RFC 1929 auth with --user).
    Socks5,
    /// HTTP CONNECT tunnel.
    HttpConnect,
    /// Absolute-form `GET http://target/` through the proxy (needs `sink --mode http`).
    HttpForward,
    /// Straight to the target: the baseline.
    Direct,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Socks5 => "socks5",
            Proto::HttpConnect => "http-connect",
            Proto::HttpForward => "http-forward",
            Proto::Direct => "direct",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Connect, handshake, one request/response, close; latency is the whole iteration, with
    /// the handshake (connect to the proxy's answer) and the exchange also reported apart.
    Churn,
    /// Churn in a closed loop only: each worker opens one connection at a time, so the
    /// handshake percentiles are those of an unloaded, serial client.
    Serial,
    /// Request/response round trips on tunnels opened once.
    Rr,
    /// Stream 64 KiB chunks for the duration: upload to a discard sink, or download from
    /// `sink --mode fixed --request-size 0` when --request-size is 0.
    Bulk,
    /// Open --connections tunnels, print `idle: N tunnels open`, hold them for --duration.
    Idle,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Churn => "churn",
            Workload::Serial => "serial",
            Workload::Rr => "rr",
            Workload::Bulk => "bulk",
            Workload::Idle => "idle",
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Upstream HOST:PORT (the sink).
    #[arg(long, value_name = "ADDR")]
    pub target: String,
    /// Proxy HOST:PORT (required unless --proto direct).
    #[arg(long, value_name = "ADDR")]
    pub proxy: Option<String>,
    #[arg(long, value_enum)]
    pub proto: Proto,
    /// Proxy user (SOCKS5 username/password, HTTP Basic).
    #[arg(long, value_name = "U", requires = "password")]
    pub user: Option<String>,
    /// Proxy password.
    #[arg(long, value_name = "P", requires = "user")]
    pub password: Option<String>,
    #[arg(long, value_enum)]
    pub workload: Workload,
    /// Concurrent workers (closed loop), in-flight cap (open loop), or tunnels (rr, idle)
    /// [default: 1 closed loop, 1000 open loop].
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,
    /// Open loop: total requests per second, scheduled at fixed intervals.
    #[arg(long, value_name = "PER_SEC")]
    pub rate: Option<f64>,
    /// Measurement time (500ms, 10s, 1m).
    #[arg(long, value_parser = duration::parse, default_value = "10s")]
    pub duration: Duration,
    /// Run the workload this long first and discard its measurements.
    #[arg(long, value_parser = duration::parse, default_value = "1s")]
    pub warmup: Duration,
    /// Executor threads [default: 1, or one per --cpus entry].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Pin executor i to the i-th CPU of this list (e.g. `1` or `0,1`).
    #[arg(long, value_name = "LIST", value_parser = cpus::parse)]
    pub cpus: Option<CpuList>,
    /// Bytes sent per request.
    #[arg(long, value_name = "BYTES", default_value_t = 100)]
    pub request_size: usize,
    /// Bytes expected back per request.
    #[arg(long, value_name = "BYTES", default_value_t = 100)]
    pub response_size: usize,
    /// Parallel streams for bulk.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub streams: usize,
    /// Also write the results as a JSON object to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Check first that the target (a `peer` or `http` sink) sees this source IP; exit 1 if not.
    #[arg(long, value_name = "IP")]
    pub expect_egress: Option<IpAddr>,
    /// Also report the CPU time this process (the proxy under test, all its threads) used
    /// during the measurement, in total and per request (from /proc/PID/stat).
    #[arg(long, value_name = "PID")]
    pub proxy_pid: Option<u32>,
}

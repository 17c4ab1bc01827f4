//! A validated `run`: the command line checked for contradictions and resolved once, so the
//! executors never re-validate or unwrap anything.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{Proto, RunArgs, Workload};
use crate::cpus::CpuList;
use crate::credentials::Credentials;
use crate::target::Target;

/// In-flight cap of an open-loop run when `--connections` is not given.
const OPEN_LOOP_DEFAULT_CONNECTIONS: usize = 1000;

#[derive(Clone, Debug)]
pub struct Plan {
    pub proto: Proto,
    pub workload: Workload,
    pub target: Target,
    /// Where the TCP connection goes: the proxy, or the resolved target for `direct`.
    pub first_hop: SocketAddr,
    pub credentials: Option<Credentials>,
    pub connections: usize,
    pub rate: Option<f64>,
    pub duration: Duration,
    pub warmup: Duration,
    pub threads: usize,
    pub cpus: CpuList,
    pub request_size: usize,
    pub response_size: usize,
    pub streams: usize,
    pub json: Option<PathBuf>,
    pub expect_egress: Option<IpAddr>,
    /// The proxy's process, whose CPU time is reported per request.
    pub proxy_pid: Option<u32>,
}

/// Bad arguments (exit 2) versus an environment that cannot run the plan (exit 1).
#[derive(Debug)]
pub enum PlanError {
    Usage(String),
    Setup(String),
}

impl Plan {
    pub fn from_args(args: RunArgs) -> Result<Plan, PlanError> {
        let usage = |msg: &str| Err(PlanError::Usage(msg.to_owned()));
        let target: Target = args.target.parse().map_err(PlanError::Usage)?;
        let credentials = match (args.user, args.password) {
            (Some(user), Some(password)) => Some(Credentials::new(user, password)),
            (None, None) => None,
            _ => return usage("--user and --password go together"),
        };
        let first_hop = match (args.proto, &args.proxy) {
            (Proto::Direct, Some(_)) => return usage("--proto direct takes no --proxy"),
            (Proto::Direct, None) => {
                if credentials.is_some() {
                    return usage("--user/--password need a proxy");
                }
                target
                    .resolve()
                    .map_err(|e| PlanError::Setup(format!("cannot resolve {target}: {e}")))?
            }
            (_, None) => return usage("--proxy is required unless --proto direct"),
            (_, Some(proxy)) => resolve(proxy)?,
        };
        if args.proto == Proto::HttpForward && args.workload == Workload::Bulk {
            return usage("bulk needs a tunnel: use socks5, http-connect or direct");
        }
        if args.rate.is_some() && matches!(args.workload, Workload::Bulk | Workload::Idle) {
            return usage("--rate applies to churn and rr only");
        }
        if args.rate.is_some() && args.workload == Workload::Serial {
            return usage("serial is a closed loop: use churn with --rate for an open loop");
        }
        if let Some(rate) = args.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return usage("--rate must be a positive number");
        }
        let threads = args
            .threads
            .or(args.cpus.as_ref().map(CpuList::len))
            .unwrap_or(1);
        if threads == 0 {
            return usage("--threads must be at least 1");
        }
        let connections = match (args.connections, args.rate) {
            (Some(n), _) => n,
            (None, Some(_)) => OPEN_LOOP_DEFAULT_CONNECTIONS,
            (None, None) => 1,
        };
        if connections == 0 || args.streams == 0 {
            return usage("--connections and --streams must be at least 1");
        }
        if args.rate.is_some() && connections < threads {
            return usage("open loop needs --connections >= --threads (each thread needs a slot)");
        }
        if args.duration.is_zero() {
            return usage("--duration must be positive");
        }
        Ok(Plan {
            proto: args.proto,
            workload: args.workload,
            target,
            first_hop,
            credentials,
            connections,
            rate: args.rate,
            duration: args.duration,
            warmup: args.warmup,
            threads,
            cpus: args.cpus.unwrap_or_default(),
            request_size: args.request_size,
            response_size: args.response_size,
            streams: args.streams,
            json: args.json,
            expect_egress: args.expect_egress,
            proxy_pid: args.proxy_pid,
        })
    }

    /// Whether the connection goes to a proxy rather than straight to the target.
    pub fn proxy_in_path(&self) -> bool {
        self.proto != Proto::Direct
    }

    /// Executor `index`'s share of `total` (connections or streams), spread as evenly as possible.
    pub fn share(&self, total: usize, index: usize) -> usize {
        share(total, self.threads, index)
    }
}

fn share(total: usize, parts: usize, index: usize) -> usize {
    total / parts + usize::from(index < total % parts)
}

fn resolve(addr: &str) -> Result<SocketAddr, PlanError> {
    addr.to_socket_addrs()
        .map_err(|e| PlanError::Setup(format!("cannot resolve proxy {addr}: {e}")))?
        .next()
        .ok_or_else(|| PlanError::Setup(format!("proxy {addr} has no address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        for total in 0..20 {
            for parts in 1..5 {
                let sum: usize = (0..parts).map(|i| share(total, parts, i)).sum();
                assert_eq!(sum, total);
                let max = (0..parts).map(|i| share(total, parts, i)).max();
                let min = (0..parts).map(|i| share(total, parts, i)).min();
                assert!(max.zip(min).is_some_and(|(a, b)| a - b <= 1));
            }
        }
    }
}

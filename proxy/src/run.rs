//! `egressd run`: the control thread. It loads and validates the configuration, starts one
//! shard per allowed CPU, then waits for signals: SIGHUP reloads (compile here, publish with
//! one atomic swap, keep the old generation on any error), SIGTERM and SIGINT drain and exit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use egressd_policy::model::Listener;
use glommio::{LocalExecutorBuilder, Placement};
use rand_core::RngCore;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::accesslog::LogWriter;
use crate::admin;
use crate::control::{self, BuiltinSource, Control, FileSource, PolicySource};
use crate::dns::ResolverConfig;
use crate::metrics;
use crate::preflight;
use crate::shard::{self, ShardConfig};
use crate::state::{Generation, Shared};
pub use crate::summary::LogFormat;
use crate::summary::Summary;

/// Exit status for an invalid configuration at start-up (sysexits EX_CONFIG).
const EX_CONFIG: u8 = 78;
/// Exit status when the operating system refuses what the proxy needs (sysexits EX_OSERR).
const EX_OSERR: u8 = 71;
/// io_uring memory glommio registers per shard; the proxy does no file DMA, so keep it small.
const IO_MEMORY: usize = 64 * 1024;

pub use crate::control::DEFAULT_CONFIG;

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EGRESSD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder
            .compact()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}

/// CPUs this process may run on: the calling thread's affinity mask (called from the main
/// thread before any shard starts, so the mask the process was started with).
pub fn allowed_cpus() -> Vec<usize> {
    let cpus: Vec<usize> = match rustix::thread::sched_getaffinity(None) {
        Ok(mask) => (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&cpu| mask.is_set(cpu))
            .collect(),
        Err(_) => Vec::new(),
    };
    if cpus.is_empty() { vec![0] } else { cpus }
}

/// Binds (without listening) a socket on each listener address with SO_REUSEPORT, turning
/// port 0 into a real port that every shard then shares. Kept until the shards listen.
///
/// SO_REUSEPORT would also let a second process (of the same user) bind the same port and
/// take part of its traffic with a policy of its own, so each address is first bound without
/// it: that fails while anything listens there, egressd included, and the start is refused.
fn reserve(listeners: &[Listener]) -> Result<Vec<(Socket, SocketAddr)>, shard::StartError> {
    listeners
        .iter()
        .map(|l| {
            let fail = |error: std::io::Error| shard::StartError::Bind {
                listener: l.name.clone(),
                addr: l.bind,
                error,
            };
            let socket = || {
                Socket::new(
                    Domain::for_address(l.bind),
                    Type::STREAM,
                    Some(Protocol::TCP),
                )
            };
            let probe = socket().map_err(fail)?;
            probe.set_reuse_address(true).map_err(fail)?;
            probe.bind(&SockAddr::from(l.bind)).map_err(fail)?;
            let bind = probe
                .local_addr()
                .map_err(fail)?
                .as_socket()
                .ok_or_else(|| fail(std::io::ErrorKind::InvalidData.into()))?;
            drop(probe);
            let s = socket().map_err(fail)?;
            s.set_reuse_port(true).map_err(fail)?;
            s.set_reuse_address(true).map_err(fail)?;
            s.bind(&SockAddr::from(bind)).map_err(fail)?;
            let addr = s
                .local_addr()
                .map_err(fail)?
                .as_socket()
                .ok_or_else(|| fail(std::io::ErrorKind::InvalidData.into()))?;
            Ok((s, addr))
        })
        .collect()
}

/// Runs the proxy with the configuration at `config` (the built-in default when `None`),
/// logging in `format` (`None`: `LogFormat::from_env`).
pub fn run(config: Option<PathBuf>, format: Option<LogFormat>) -> ExitCode {
    let format = format.unwrap_or_else(LogFormat::from_env);
    init_logging(format);
    // Panics become one JSON log line like everything else (a connection task's panic is
    // then caught, counted and logged again by its shard).
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        tracing::error!(thread = thread.name().unwrap_or("?"), panic = %info, "panic");
    }));
    if let Err(e) = preflight::host() {
        tracing::error!("{e}");
        return ExitCode::from(EX_OSERR);
    }
    let source: Arc<dyn PolicySource> = match config {
        Some(path) => Arc::new(FileSource(path)),
        None => Arc::new(BuiltinSource),
    };
    let policy = match source.load() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "invalid configuration; not starting");
            return ExitCode::from(EX_CONFIG);
        }
    };
    if !preflight::startup(&policy) {
        tracing::error!("a file the configuration names cannot be used; not starting");
        return ExitCode::from(EX_CONFIG);
    }
    let startup_listeners = policy.listeners.clone();
    let reserved = match reserve(&startup_listeners) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen");
            return ExitCode::from(EX_OSERR);
        }
    };
    let resolver = match ResolverConfig::load_system() {
        Ok(r) => Arc::new(r),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read resolver configuration; using defaults");
            Arc::new(ResolverConfig::from_texts("", ""))
        }
    };
    let cpus = allowed_cpus();
    let shards = match policy.settings.shards {
        0 => cpus.len(),
        n => n as usize,
    };
    let first = match Generation::load(1, policy) {
        Ok(g) => Arc::new(g),
        Err(e) => {
            tracing::error!(error = %e, "cannot load the configuration's files; not starting");
            return ExitCode::from(EX_CONFIG);
        }
    };
    if let Some(geo) = &first.geo {
        tracing::info!(generation = 1, database = %geo.describe(), "geolocation loaded");
    }
    tracing::info!(generation = 1, hash = %first.hash, rules = first.policy().rules.len(), "policy loaded");
    let shared: Shared = Arc::new(ArcSwap::new(first));
    let stop = Arc::new(AtomicBool::new(false));
    let (events_tx, events) = std::sync::mpsc::channel();
    let (signals, signal_thread) = match control::signal_source(events_tx) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            return ExitCode::from(EX_OSERR);
        }
    };
    let (log_writer, log_sink) = match LogWriter::start(Box::new(std::io::stdout())) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the access-log writer");
            return ExitCode::from(EX_OSERR);
        }
    };
    let mut metrics = metrics::Reader::default();
    let mut salt = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut salt);
    let listeners: Vec<_> = startup_listeners
        .iter()
        .zip(&reserved)
        .map(|(l, (_, addr))| (l.name.clone(), *addr, l.protocols.clone(), l.auth))
        .collect();

    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut handles = Vec::new();
    for id in 0..shards {
        // glommio ignores the affinity mask; pin to the allowed CPUs ourselves.
        let placement = if shards <= cpus.len() {
            Placement::Fixed(cpus[id])
        } else {
            Placement::Unbound
        };
        let cfg = ShardConfig {
            id,
            shards,
            listeners: listeners.clone(),
            shared: shared.clone(),
            resolver: resolver.clone(),
            stop: stop.clone(),
            salt,
            log: log_sink.clone(),
            requests: metrics.add_shard(),
        };
        let tx = ready_tx.clone();
        let spawned = LocalExecutorBuilder::new(placement)
            .name(&format!("egressd-shard{id}"))
            .io_memory(IO_MEMORY)
            .spawn(move || shard::run(cfg, tx));
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                tracing::error!(shard = id, error = %e, "cannot start shard (io_uring unavailable or RLIMIT_MEMLOCK too low?)");
                stop.store(true, Ordering::Relaxed);
                return ExitCode::from(EX_OSERR);
            }
        }
    }
    drop(ready_tx);
    for _ in 0..shards {
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "shard failed to start");
                stop.store(true, Ordering::Relaxed);
                return ExitCode::from(EX_OSERR);
            }
            Err(_) => {
                tracing::error!("shards did not start");
                stop.store(true, Ordering::Relaxed);
                return ExitCode::from(EX_OSERR);
            }
        }
    }
    drop(reserved);
    if format == LogFormat::Json {
        for (name, addr, ..) in &listeners {
            tracing::info!(listener = %name, addr = %addr, shards, generation = 1, "listening");
        }
    }
    let bound: Vec<_> = listeners
        .iter()
        .map(|(name, addr, ..)| (name.clone(), *addr))
        .collect();
    let first = shared.load();
    Summary::new(first.policy(), &bound).log(format, first.id, first.policy().rules.len());
    let admin_addr = first.policy().settings.admin;
    drop(first);
    let draining = Arc::new(AtomicBool::new(false));
    if let Some(addr) = admin_addr {
        let state = admin::Proxy {
            shared: shared.clone(),
            metrics: metrics.clone(),
            shards,
            draining: draining.clone(),
        };
        match admin::start(addr, None, Arc::new(state)) {
            Ok(server) => {
                tracing::info!(addr = %server.addr, "admin endpoint listening (/livez, /readyz, /healthz, /metrics)")
            }
            Err(e) => {
                tracing::error!(addr = %addr, error = %e, "cannot listen on the admin address");
                stop.store(true, Ordering::Relaxed);
                return ExitCode::from(EX_OSERR);
            }
        }
    }

    let control = Control {
        shared,
        startup_listeners,
        source,
    };
    let why = control.run(&events);
    // Balancers asking /readyz learn at once that this node stops taking connections.
    draining.store(true, Ordering::Relaxed);
    tracing::info!(
        signal = why,
        "stopping: no new connections, draining open tunnels"
    );
    stop.store(true, Ordering::Relaxed);
    signals.close();
    let _ = signal_thread.join();
    let mut total = metrics::Snapshot::default();
    for h in handles {
        if let Ok(snapshot) = h.join() {
            total.add(&snapshot);
        }
    }
    drop(metrics);
    drop(log_sink);
    // Lines still queued are written, unless standard output stays stalled.
    log_writer.join(Duration::from_secs(2));
    tracing::info!(
        accepted = total.accepted(),
        finished = ?total.finished_by_name(),
        rejected_limit = total.rejected_limit,
        rejected_per_client = total.rejected_per_client,
        panics = total.panics,
        access_log_dropped = total.log_dropped,
        "stopped"
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use egressd_policy::check_str;
    use egressd_policy::model::{Action, Auth, ListenerProtocol};

    #[test]
    fn the_built_in_default_is_valid_and_as_documented() {
        let checked = check_str("<built-in default>", DEFAULT_CONFIG);
        assert!(checked.diags.items.is_empty(), "{}", checked.render());
        let p = checked.policy.unwrap();
        assert_eq!(p.listeners.len(), 1);
        assert_eq!(p.listeners[0].bind, "127.0.0.1:1080".parse().unwrap());
        assert_eq!(
            p.listeners[0].protocols,
            [ListenerProtocol::Socks5, ListenerProtocol::Http]
        );
        assert_eq!(p.listeners[0].auth, Auth::None);
        assert_eq!(p.rules.len(), 1);
        assert!(p.rules[0].is_catch_all() && p.rules[0].action == Action::Default);
    }

    #[test]
    fn allowed_cpus_are_read_from_the_affinity_mask() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        assert!(cpus.len() <= std::thread::available_parallelism().map_or(usize::MAX, |n| n.get()));
        // A thread narrowed to one CPU (the last allowed) sees exactly that one.
        let last = *cpus.last().unwrap();
        let narrowed = std::thread::spawn(move || {
            let mut one = rustix::thread::CpuSet::new();
            one.set(last);
            rustix::thread::sched_setaffinity(None, &one).unwrap();
            allowed_cpus()
        })
        .join()
        .unwrap();
        assert_eq!(narrowed, [last]);
    }
}

//! Checks made before anything starts, so that what would fail later fails now and says its
//! true cause.
//!
//! - The host (`memlock`, `io_uring`): whether glommio can make its io_uring rings at all. A
//!   locked-memory limit too low that cannot be raised, or io_uring forbidden by a sysctl or
//!   a seccomp profile, makes `run` refuse with one line naming the cause (EX_OSERR) instead
//!   of shards that panic or fail to start; `check` mentions it.
//! - What a configuration names (`named_files`, `pool_addresses`): every TLS file and the
//!   geolocation database, read as a generation reads them, with all their problems reported
//!   at the keys that named them (`check` prints them, `run` logs them and refuses); and pool
//!   addresses this host does not have (a warning for both).

pub mod io_uring;
pub mod memlock;
pub mod named_files;
pub mod pool_addresses;

use std::fmt;

use egressd_policy::diag::Loc;
use egressd_policy::named::Named;
use egressd_policy::{Policy, Severity};

/// One problem with something the configuration names, at the key that names it when the
/// configuration's text is known (a compiled artifact keeps no locations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub loc: Option<Loc>,
    pub message: String,
}

impl Finding {
    pub fn error(loc: Option<Loc>, message: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Error,
            loc,
            message: message.into(),
        }
    }

    pub fn warning(loc: Option<Loc>, message: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Warning,
            loc,
            message: message.into(),
        }
    }
}

/// Why glommio cannot run on this host.
#[derive(Debug)]
pub enum HostError {
    Memlock(memlock::MemlockTooLow),
    IoUring(io_uring::Blocked),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Memlock(e) => e.fmt(f),
            HostError::IoUring(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for HostError {}

/// Whether glommio's rings can be made here: the locked-memory limit (raised when it is too
/// low and can be, which is logged), then a probe ring.
pub fn host() -> Result<(), HostError> {
    if let Some(raised) = memlock::ensure().map_err(HostError::Memlock)? {
        tracing::info!(
            from_kib = raised.from / 1024,
            to_kib = raised.to.map(|b| b / 1024),
            "RLIMIT_MEMLOCK was below the 512 KiB glommio requires; raised"
        );
    }
    io_uring::probe().map_err(HostError::IoUring)
}

/// Everything `check` reports about what a configuration names: every file's problems
/// (errors, whether or not the configuration is otherwise valid) and, for a valid one
/// (`policy`), the pool addresses this host lacks (warnings). Also hands back the geolocation
/// database when it loaded.
pub fn configuration(
    named: &Named,
    policy: Option<&Policy>,
) -> (Vec<Finding>, Option<crate::geo::GeoDb>) {
    let files = named_files::check(named, policy);
    let mut findings = files.findings;
    if policy.is_some() {
        findings.extend(
            pool_addresses::unassigned(named)
                .into_iter()
                .map(|u| Finding::warning(u.loc, u.message())),
        );
    }
    (findings, files.geo)
}

/// Logs a warning for each pool address of `policy` this host does not have (`run`, at
/// start-up and after a reload).
pub fn warn_unassigned(policy: &Policy, generation: u64) {
    for u in pool_addresses::unassigned(&Named::from_policy(policy)) {
        tracing::warn!(generation, pool = %u.pool, address = %u.addr, "{}", u.message());
    }
}

/// What `run` checks of a valid policy before it builds its first generation: logs every
/// problem of every file it names (as errors; then `run` refuses, where building the
/// generation would stop at the first) and the pool addresses this host lacks (warnings).
/// Returns whether the files are usable.
pub fn startup(policy: &Policy) -> bool {
    warn_unassigned(policy, 1);
    let report = named_files::check(&Named::from_policy(policy), Some(policy));
    for f in &report.findings {
        tracing::error!(generation = 1, "{}", f.message);
    }
    report.findings.is_empty()
}

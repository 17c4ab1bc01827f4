//! Checks made before anything starts, so that what would fail later fails now and says its
//! true cause.
//!
//! - The host (`memlock`, `io_uring`): whether glommio can make its io_uring rings at all. A
//!   locked-memory limit too low that cannot be raised, or io_uring forbidden by a sysctl or
//!   a seccomp profile, makes `run` refuse with one line naming the cause (EX_OSERR) instead
//!   of shards that panic or fail to start; `check` mentions it.

pub mod io_uring;
pub mod memlock;

use std::fmt;

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

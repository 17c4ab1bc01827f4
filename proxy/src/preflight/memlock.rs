//! RLIMIT_MEMLOCK. glommio 0.9 refuses to make its io_uring rings when the soft limit is below
//! 512 KiB (`Reactor::new` checks it before anything else), whatever the kernel would allow:
//! CAP_IPC_LOCK exempts a process from the kernel's accounting, not from glommio's check. So a
//! limit that is too low is raised here when it can be, as any process may raise its soft
//! limit up to the hard one, and the hard one too with CAP_SYS_RESOURCE (root outside a
//! container); when it cannot, `run` refuses with one line that names the limit and how to
//! raise it, instead of shards that fail to start.

use std::fmt;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// RLIMIT_MEMLOCK glommio requires (its own `MIN_MEMLOCK_LIMIT`).
pub const MIN_MEMLOCK: u64 = 512 * 1024;

/// The locked-memory limit is below what glommio requires and cannot be raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemlockTooLow {
    /// The soft limit, in bytes.
    pub soft: u64,
    /// The hard limit, in bytes.
    pub hard: u64,
    /// Whether the process holds CAP_IPC_LOCK (which does not help: said so in the message).
    pub ipc_lock: bool,
}

impl fmt::Display for MemlockTooLow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RLIMIT_MEMLOCK is {} KiB (hard limit {} KiB), below the {} KiB glommio requires \
             for its io_uring rings, and raising the hard limit needs CAP_SYS_RESOURCE: raise \
             it (`ulimit -l 1024`, systemd LimitMEMLOCK=1M, docker run --ulimit memlock=-1)",
            self.soft / 1024,
            self.hard / 1024,
            MIN_MEMLOCK / 1024
        )?;
        if self.ipc_lock {
            f.write_str(
                "; CAP_IPC_LOCK, which this process holds, lifts the kernel's limit but not \
                 glommio's check",
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for MemlockTooLow {}

/// A soft limit raised by [`ensure`]: from, to (bytes; `None` = unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    pub from: u64,
    pub to: Option<u64>,
}

/// Makes sure the soft limit is at least [`MIN_MEMLOCK`]: raised to the hard limit when that
/// is enough, else both raised to the minimum (which only CAP_SYS_RESOURCE allows). Returns
/// what was raised, if anything.
pub fn ensure() -> Result<Option<Raised>, MemlockTooLow> {
    let limits = getrlimit(Resource::Memlock);
    let Some(soft) = limits.current.filter(|&soft| soft < MIN_MEMLOCK) else {
        return Ok(None);
    };
    let hard_is_enough = limits.maximum.is_none_or(|hard| hard >= MIN_MEMLOCK);
    let wanted = if hard_is_enough {
        Rlimit {
            current: limits.maximum,
            maximum: limits.maximum,
        }
    } else {
        Rlimit {
            current: Some(MIN_MEMLOCK),
            maximum: Some(MIN_MEMLOCK),
        }
    };
    let to = wanted.current;
    match setrlimit(Resource::Memlock, wanted) {
        Ok(()) => Ok(Some(Raised { from: soft, to })),
        Err(_) => Err(MemlockTooLow {
            soft,
            hard: limits.maximum.unwrap_or(u64::MAX),
            ipc_lock: has_ipc_lock(),
        }),
    }
}

/// Whether the calling thread's effective capabilities include CAP_IPC_LOCK (bit 14 of
/// `CapEff`; false when they cannot be read).
pub fn has_ipc_lock() -> bool {
    rustix::thread::capabilities(None).is_ok_and(|sets| {
        sets.effective
            .contains(rustix::thread::CapabilitySet::IPC_LOCK)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capability_is_bit_14_of_cap_eff() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let cap_eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .unwrap();
        let bits = u64::from_str_radix(cap_eff.trim(), 16).unwrap();
        assert_eq!(has_ipc_lock(), bits & (1 << 14) != 0, "CapEff: {cap_eff}");
    }

    #[test]
    fn the_message_names_the_limit_and_how_to_raise_it() {
        let low = MemlockTooLow {
            soft: 64 * 1024,
            hard: 64 * 1024,
            ipc_lock: false,
        };
        let m = low.to_string();
        assert!(
            m.starts_with("RLIMIT_MEMLOCK is 64 KiB (hard limit 64 KiB), below the 512 KiB"),
            "{m}"
        );
        assert!(
            m.contains("--ulimit memlock=-1") && m.contains("LimitMEMLOCK"),
            "{m}"
        );
        assert!(!m.contains("CAP_IPC_LOCK"), "{m}");
        let m = MemlockTooLow {
            ipc_lock: true,
            ..low
        }
        .to_string();
        assert!(
            m.ends_with("lifts the kernel's limit but not glommio's check"),
            "{m}"
        );
    }

    #[test]
    fn a_limit_that_is_high_enough_is_left_alone() {
        // The tests' own limit lets glommio run (they run executors).
        let before = getrlimit(Resource::Memlock);
        assert_eq!(ensure(), Ok(None));
        let after = getrlimit(Resource::Memlock);
        assert_eq!(
            (before.current, before.maximum),
            (after.current, after.maximum)
        );
    }
}

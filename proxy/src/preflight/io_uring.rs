//! Whether this process may create io_uring rings, asked once before any shard starts. When
//! it may not, glommio panics in every shard with a message that blames an old kernel; the
//! usual causes are elsewhere: the `kernel.io_uring_disabled` sysctl (Linux 6.6+), or a
//! seccomp profile (Docker's default since 25.0 refuses io_uring_setup). The probe's error and
//! what this process can read about both are turned into one sentence naming the cause and
//! how to lift it.

use std::fmt;
use std::io;

use crate::sockopt;

/// What io_uring_setup answered and what the host says about io_uring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// The errno io_uring_setup failed with.
    pub errno: i32,
    /// `/proc/sys/kernel/io_uring_disabled` (0 allowed, 1 only for CAP_SYS_ADMIN or the
    /// group `kernel.io_uring_group`, 2 for nobody); `None` before Linux 6.6.
    pub disabled: Option<u32>,
    /// `/proc/sys/kernel/io_uring_group` (-1: no group).
    pub group: Option<i64>,
    /// `Seccomp:` of /proc/self/status (0 none, 1 strict, 2 a filter is installed).
    pub seccomp: Option<u32>,
}

/// Sets up a small ring and closes it; on failure, reads what may have caused it.
pub fn probe() -> Result<(), Blocked> {
    match sockopt::io_uring_probe() {
        Ok(()) => Ok(()),
        Err(e) => Err(Blocked {
            errno: e.raw_os_error().unwrap_or(0),
            disabled: read_number("/proc/sys/kernel/io_uring_disabled"),
            group: read_number("/proc/sys/kernel/io_uring_group"),
            seccomp: std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("Seccomp:"))
                        .and_then(|v| v.trim().parse().ok())
                }),
        }),
    }
}

fn read_number<T: std::str::FromStr>(path: &str) -> Option<T> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

const SECCOMP: &str = "a seccomp profile blocks io_uring (Docker's default profile since 25.0 \
    does): run with a profile that allows io_uring_setup, io_uring_enter and \
    io_uring_register, e.g. docker run --security-opt seccomp=<profile>";

const KERNEL: &str = "egressd needs Linux 5.8 or newer built with io_uring (CONFIG_IO_URING)";

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let error = io::Error::from_raw_os_error(self.errno);
        write!(
            f,
            "io_uring is not available to egressd: io_uring_setup failed ({error}): "
        )?;
        let filtered = self.seccomp == Some(2);
        match (self.errno, self.disabled) {
            (libc::EPERM, Some(2)) => f.write_str(
                "kernel.io_uring_disabled = 2 disables io_uring for every process on this \
                 host; allow it with `sysctl kernel.io_uring_disabled=0`",
            )?,
            (libc::EPERM, Some(1)) => {
                let group = match self.group {
                    Some(g) if g >= 0 => format!("group {g}"),
                    _ => "no group set".to_owned(),
                };
                write!(
                    f,
                    "kernel.io_uring_disabled = 1 allows io_uring only to processes with \
                     CAP_SYS_ADMIN or in the group kernel.io_uring_group ({group}); run \
                     egressd in that group (`sysctl kernel.io_uring_group=GID` names it) or \
                     allow every process with `sysctl kernel.io_uring_disabled=0`"
                )?;
                if filtered {
                    write!(f, "; also, {SECCOMP}")?;
                }
            }
            (libc::EPERM, _) if filtered => f.write_str(SECCOMP)?,
            (libc::EPERM, _) => f.write_str(
                "neither kernel.io_uring_disabled nor a seccomp filter forbids it here, so a \
                 security module (SELinux, AppArmor) probably does",
            )?,
            (libc::ENOSYS, _) if filtered => write!(
                f,
                "the system call is hidden: either {SECCOMP}, or the kernel lacks io_uring \
                 ({KERNEL})"
            )?,
            (libc::ENOSYS, _) => write!(f, "this kernel has no io_uring: {KERNEL}")?,
            (libc::ENOMEM, _) => f.write_str(
                "not enough locked memory for a ring: raise RLIMIT_MEMLOCK (docker run \
                 --ulimit memlock=-1, systemd LimitMEMLOCK=infinity)",
            )?,
            _ => f.write_str("the cause is not one egressd knows")?,
        }
        Ok(())
    }
}

impl std::error::Error for Blocked {}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(errno: i32, disabled: Option<u32>, seccomp: u32) -> String {
        Blocked {
            errno,
            disabled,
            group: Some(-1),
            seccomp: Some(seccomp),
        }
        .to_string()
    }

    #[test]
    fn this_host_allows_io_uring() {
        // The tests themselves run glommio executors.
        assert_eq!(probe(), Ok(()));
    }

    #[test]
    fn sysctl_2_says_how_to_allow_io_uring() {
        let m = blocked(libc::EPERM, Some(2), 0);
        assert!(
            m.starts_with("io_uring is not available to egressd: io_uring_setup failed (Operation not permitted (os error 1)): kernel.io_uring_disabled = 2 disables"),
            "{m}"
        );
        assert!(m.contains("`sysctl kernel.io_uring_disabled=0`"), "{m}");
        assert!(!m.contains("seccomp"), "{m}");
    }

    #[test]
    fn sysctl_1_names_the_group() {
        let m = blocked(libc::EPERM, Some(1), 0);
        assert!(
            m.contains("kernel.io_uring_disabled = 1 allows io_uring only to processes with CAP_SYS_ADMIN or in the group kernel.io_uring_group (no group set)"),
            "{m}"
        );
        assert!(m.contains("`sysctl kernel.io_uring_disabled=0`"), "{m}");
        let with_group = Blocked {
            errno: libc::EPERM,
            disabled: Some(1),
            group: Some(1234),
            seccomp: None,
        };
        assert!(with_group.to_string().contains("(group 1234)"));
    }

    #[test]
    fn a_seccomp_filter_is_named_with_the_system_calls_to_allow() {
        for disabled in [None, Some(0)] {
            let m = blocked(libc::EPERM, disabled, 2);
            assert!(
                m.ends_with(
                    "a seccomp profile blocks io_uring (Docker's default profile since 25.0 does): run with a profile that allows io_uring_setup, io_uring_enter and io_uring_register, e.g. docker run --security-opt seccomp=<profile>"
                ),
                "{m}"
            );
            assert!(!m.contains("io_uring_disabled"), "{m}");
        }
    }

    #[test]
    fn enosys_means_a_kernel_without_io_uring() {
        let m = blocked(libc::ENOSYS, None, 0);
        assert!(
            m.ends_with(
                "this kernel has no io_uring: egressd needs Linux 5.8 or newer built with io_uring (CONFIG_IO_URING)"
            ),
            "{m}"
        );
        // Under a filter, ENOSYS may be the filter's answer.
        let m = blocked(libc::ENOSYS, None, 2);
        assert!(
            m.contains("a seccomp profile blocks io_uring") && m.contains("Linux 5.8"),
            "{m}"
        );
    }

    #[test]
    fn other_causes_still_make_one_line() {
        for errno in [libc::EPERM, libc::ENOMEM, libc::EINVAL] {
            let m = blocked(errno, Some(0), 0);
            assert!(!m.contains('\n'), "{m}");
        }
        assert!(blocked(libc::ENOMEM, Some(0), 0).contains("RLIMIT_MEMLOCK"));
    }
}

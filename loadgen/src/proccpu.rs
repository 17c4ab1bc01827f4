//! The CPU time a process (all its threads) has used, read from `/proc/PID/task/*/schedstat`
//! (nanoseconds on a CPU), so a run can report the proxy's CPU per request.

use std::fs;
use std::time::Duration;

/// CPU time used so far by every live thread of `pid`.
pub fn cpu_time(pid: u32) -> Result<Duration, String> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task"))
        .map_err(|e| format!("cannot read the threads of process {pid}: {e}"))?;
    let mut ns: u64 = 0;
    for task in tasks.flatten() {
        // A thread that ended since the listing has no file any more: it is not counted.
        if let Ok(text) = fs::read_to_string(task.path().join("schedstat")) {
            ns += parse_schedstat(&text)
                .ok_or_else(|| format!("unexpected schedstat for process {pid}: {text:?}"))?;
        }
    }
    Ok(Duration::from_nanos(ns))
}

/// The first field of a schedstat line: nanoseconds spent on a CPU.
fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_first_field() {
        assert_eq!(parse_schedstat("141085 3253071 2\n"), Some(141_085));
        assert_eq!(parse_schedstat(""), None);
        assert_eq!(parse_schedstat("x 1 2"), None);
    }

    #[test]
    fn this_process_uses_cpu() {
        let before = cpu_time(std::process::id()).unwrap();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = cpu_time(std::process::id()).unwrap();
        assert!(after > before, "{before:?} -> {after:?}");
        assert!(cpu_time(u32::MAX).is_err());
    }
}

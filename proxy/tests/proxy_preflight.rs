//! What egressd checks before it starts, through the real binary: `run` names the true cause
//! when the host cannot run glommio (a locked-memory limit it cannot raise, io_uring blocked
//! by a seccomp filter).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use support::{Config, tempdir};

/// Starts `egressd run -c config` (after `prefix`, a command that runs it) and reads its log
/// until it listens or exits; returns the lines and, if it exited, its exit code.
fn run_until_listening(config: &str, prefix: &[&str]) -> (Vec<String>, Option<i32>) {
    let bin = env!("CARGO_BIN_EXE_egressd");
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let mut child = cmd
        .args(["run", "-c", config])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start egressd");
    let mut lines = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let listening = line.contains("\"listening\"");
        lines.push(line);
        if listening {
            let _ = child.kill();
            let _ = child.wait();
            return (lines, None);
        }
    }
    (lines, child.wait().unwrap().code())
}

fn plain_config(dir: &Path) -> String {
    let path = dir.join("egressd.toml");
    std::fs::write(
        &path,
        Config::new().proxy("shards", "1").catch_all().to_string(),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

/// The lines of `lines` logged at level ERROR.
fn errors(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .collect()
}

#[test]
fn a_low_memlock_soft_limit_is_raised_to_the_hard_one() {
    let dir = tempdir("preflight-memlock");
    let cfg = plain_config(dir.path());
    // Soft 64 KiB, hard 1 MiB, no CAP_IPC_LOCK: any process may raise its soft limit.
    let (lines, exit) = run_until_listening(
        &cfg,
        &[
            "prlimit",
            "--memlock=65536:1048576",
            "setpriv",
            "--bounding-set=-ipc_lock",
        ],
    );
    assert_eq!(exit, None, "{lines:#?}");
    let raised = lines.iter().find(|l| l.contains("RLIMIT_MEMLOCK")).unwrap();
    assert!(
        raised.contains("\"from_kib\":64") && raised.contains("\"to_kib\":1024"),
        "{raised}"
    );
}

#[test]
fn a_memlock_limit_that_cannot_be_raised_is_refused_with_one_line_naming_it() {
    let dir = tempdir("preflight-memlock");
    let cfg = plain_config(dir.path());
    // Hard limit 64 KiB and no CAP_SYS_RESOURCE to raise it. CAP_IPC_LOCK (root has it)
    // would exempt the process from the kernel's accounting, but glommio 0.9 checks the limit
    // itself: the message says so.
    for (caps, ipc_lock) in [("-sys_resource", true), ("-sys_resource,-ipc_lock", false)] {
        let bounding = format!("--bounding-set={caps}");
        let (lines, exit) = run_until_listening(
            &cfg,
            &["prlimit", "--memlock=65536:65536", "setpriv", &bounding],
        );
        assert_eq!(exit, Some(71), "{lines:#?}");
        let errors = errors(&lines);
        assert_eq!(errors.len(), 1, "{lines:#?}");
        let v: serde_json::Value = serde_json::from_str(errors[0]).unwrap();
        let message = v["message"].as_str().unwrap();
        assert!(
            message.starts_with(
                "RLIMIT_MEMLOCK is 64 KiB (hard limit 64 KiB), below the 512 KiB glommio requires"
            ) && message.contains("--ulimit memlock=-1"),
            "{message}"
        );
        assert_eq!(
            message.ends_with("lifts the kernel's limit but not glommio's check"),
            ipc_lock,
            "{message}"
        );
    }
}

const WITHOUT_IO_URING: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/without_io_uring.py"
);

#[test]
fn io_uring_blocked_by_seccomp_is_named_in_one_line() {
    let dir = tempdir("preflight-seccomp");
    let cfg = plain_config(dir.path());
    for (errno, cause) in [
        (
            "EPERM",
            "a seccomp profile blocks io_uring (Docker's default profile since 25.0 does): run with a profile that allows io_uring_setup, io_uring_enter and io_uring_register",
        ),
        (
            "ENOSYS",
            "the system call is hidden: either a seccomp profile blocks io_uring",
        ),
    ] {
        let (lines, exit) = run_until_listening(&cfg, &["python3", WITHOUT_IO_URING, errno]);
        assert_eq!(exit, Some(71), "{lines:#?}");
        let errors = errors(&lines);
        assert_eq!(errors.len(), 1, "{lines:#?}");
        assert!(errors[0].contains(cause), "{}", errors[0]);
        assert!(!errors[0].contains("too old"), "{}", errors[0]);
    }
}

//! Exit codes: bad arguments (2) and set-up failures (1) stop a run before it measures.

use std::process::Command;

use super::support::{BIN, Sink, closed_port, run};

#[test]
fn unreachable_proxy_is_a_setup_failure() {
    let sink = Sink::start(&["--mode", "echo"]);
    let proxy = closed_port();
    let result = run(&[
        "--proto",
        "socks5",
        "--proxy",
        &proxy,
        "--target",
        &sink.addr,
        "--workload",
        "churn",
        "--duration",
        "100ms",
    ]);
    assert_eq!(result.status.code(), Some(1), "{}", result.stderr);
    assert!(
        result.stderr.contains("cannot reach the proxy"),
        "{}",
        result.stderr
    );
    assert!(result.json.is_none());
}

#[test]
fn contradictory_arguments_exit_2() {
    let cases: [&[&str]; 6] = [
        &[
            "--proto",
            "socks5",
            "--target",
            "127.0.0.1:1",
            "--workload",
            "rr",
        ],
        &[
            "--proto",
            "direct",
            "--proxy",
            "127.0.0.1:1",
            "--target",
            "127.0.0.1:1",
            "--workload",
            "rr",
        ],
        &[
            "--proto",
            "direct",
            "--target",
            "127.0.0.1:1",
            "--workload",
            "rr",
            "--user",
            "u",
        ],
        &[
            "--proto",
            "direct",
            "--target",
            "127.0.0.1:1",
            "--workload",
            "bulk",
            "--rate",
            "10",
        ],
        &[
            "--proto",
            "direct",
            "--target",
            "127.0.0.1:1",
            "--workload",
            "rr",
            "--duration",
            "10 parsecs",
        ],
        &[
            "--proto",
            "direct",
            "--target",
            "127.0.0.1:1",
            "--workload",
            "serial",
            "--rate",
            "10",
        ],
    ];
    for case in cases {
        let result = run(case);
        assert_eq!(result.status.code(), Some(2), "{case:?}: {}", result.stderr);
    }
}

#[test]
fn help_lists_both_commands() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("sink") && help.contains("run"), "{help}");
}

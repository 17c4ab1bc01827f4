//! Starting sinks and runs of the real binary, and reading their results.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_egressd-loadgen");

/// Short enough for a test suite, long enough to complete many operations.
pub const SHORT: [&str; 4] = ["--duration", "300ms", "--warmup", "100ms"];

/// A running `egressd-loadgen sink`, killed when dropped.
pub struct Sink {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    pub addr: String,
}

impl Sink {
    pub fn start(args: &[&str]) -> Sink {
        let mut child = Command::new(BIN)
            .args(["sink", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sink");
        let mut stdout = BufReader::new(child.stdout.take().expect("sink stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read listening line");
        let addr = line
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("sink said {line:?}, not `listening ADDR`"))
            .trim()
            .to_owned();
        Sink {
            child,
            _stdout: stdout,
            addr,
        }
    }
}

impl Sink {
    /// The sink's process id (for `--proxy-pid`: any process's CPU time can be measured).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a `run` printed and wrote.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub json: Option<Value>,
}

pub fn run(args: &[&str]) -> Run {
    // Removed with the report when dropped, also when the test panics.
    let dir = tempfile::tempdir().expect("temporary directory for the report");
    let path = dir.path().join("report.json");
    let output = Command::new(BIN)
        .arg("run")
        .args(args)
        .arg("--json")
        .arg(&path)
        .output()
        .expect("spawn run");
    let json = std::fs::read_to_string(&path)
        .ok()
        .map(|text| serde_json::from_str(&text).expect("valid JSON report"));
    Run {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        json,
    }
}

impl Run {
    pub fn report(&self) -> &Value {
        assert!(
            self.status.success(),
            "run failed: {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self.json.as_ref().expect("a JSON report")
    }

    /// A successful run with work done, no errors and sane numbers.
    pub fn clean(&self) -> &Value {
        let json = self.report();
        let context = || format!("{json:#}\nstdout:\n{}", self.stdout);
        assert!(json["completed"].as_u64().unwrap() > 0, "{}", context());
        for (class, count) in json["errors"].as_object().unwrap() {
            assert_eq!(count.as_u64(), Some(0), "{class} errors: {}", context());
        }
        let latency = &json["latency_us"];
        for key in ["p50", "p90", "p99", "p999", "max", "mean"] {
            assert!(
                latency[key].as_f64().unwrap() >= 0.0,
                "{key}: {}",
                context()
            );
        }
        assert!(
            latency["p50"].as_f64() <= latency["max"].as_f64(),
            "{}",
            context()
        );
        json
    }
}

pub fn num(json: &Value, key: &str) -> f64 {
    json[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {json:#}"))
}

pub fn errors(json: &Value, class: &str) -> u64 {
    json["errors"][class].as_u64().unwrap()
}

pub fn refused(json: &Value, code: &str) -> u64 {
    json["refused_codes"][code].as_u64().unwrap_or(0)
}

/// A local port nobody listens on (bound, read, released).
pub fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

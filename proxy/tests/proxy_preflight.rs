//! What egressd checks before it starts, through the real binary: `egressd check` reports
//! everything `run` would refuse (every TLS file that cannot be used, the geolocation
//! database, includes, `admin`) at the key that names it, and warns about pool addresses this
//! host does not have; `run` names the true cause when the host cannot run glommio (a
//! locked-memory limit it cannot raise, io_uring blocked by a seccomp filter).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use support::{Config, egressd, tempdir};

/// `line:col` (1-based, columns in characters) where `needle` first appears in `text`.
fn at(text: &str, needle: &str) -> String {
    let offset = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in:\n{text}"));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    format!("{line}:{col}")
}

/// Writes `config` as `egressd.toml` in `dir` and runs `egressd check` on it.
fn check(dir: &Path, config: &str) -> (i32, String, String, String) {
    let path = dir.join("egressd.toml");
    std::fs::write(&path, config).unwrap();
    let path = path.to_str().unwrap().to_owned();
    let (code, out, err) = egressd(&["check", "-c", &path]);
    (code, out, err, path)
}

/// A self-signed certificate and its key, made with the openssl CLI.
fn certificate(dir: &Path, name: &str) {
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=egressd test", "-keyout"])
        .arg(format!("{name}.key"))
        .arg("-out")
        .arg(format!("{name}.pem"))
        .current_dir(dir)
        .output()
        .expect("openssl")
        .status
        .success();
    assert!(ok, "openssl could not make {name}.pem");
}

#[test]
fn check_reports_every_tls_file_that_cannot_be_used_on_every_listener() {
    let dir = tempdir("preflight-tls");
    let d = dir.path();
    certificate(d, "good");
    certificate(d, "other");
    std::fs::create_dir(d.join("a-directory")).unwrap();
    let config = Config::new()
        .listener_line(r#"protocols = ["https"]"#)
        .listener_line(r#"tls = { cert = "missing-cert.pem", key = "missing-key.pem" }"#)
        .toml(
            r#"[[listener]]
name = "partners"
bind = "127.0.0.3:0"
protocols = ["https"]
tls = { cert = "good.pem", key = "a-directory", client_ca = "missing-ca.pem" }

[[listener]]
name = "mismatched"
bind = "127.0.0.2:0"
protocols = ["https"]
tls = { cert = "good.pem", key = "other.key" }"#,
        )
        .catch_all()
        .to_string();
    let (code, out, err, cfg) = check(d, &config);
    assert_eq!(code, 1, "{out}{err}");
    let d = d.display();
    let missing = "No such file or directory (os error 2)";
    for want in [
        format!(
            "{cfg}:{}: error: listener \"office\": tls.cert: {d}/missing-cert.pem: {missing}",
            at(&config, "\"missing-cert.pem\"")
        ),
        format!(
            "{cfg}:{}: error: listener \"office\": tls.key: {d}/missing-key.pem: {missing}",
            at(&config, "\"missing-key.pem\"")
        ),
        format!(
            "{cfg}:{}: error: listener \"partners\": tls.key: {d}/a-directory: Is a directory (os error 21)",
            at(&config, "\"a-directory\"")
        ),
        format!(
            "{cfg}:{}: error: listener \"partners\": tls.client_ca: {d}/missing-ca.pem: {missing}",
            at(&config, "\"missing-ca.pem\"")
        ),
        // Files that each read but do not belong together.
        format!(
            "{cfg}:{}: error: listener \"mismatched\": {d}/other.key: not the key of the certificate {d}/good.pem\n",
            at(&config, "\"other.key\"")
        ),
    ] {
        assert!(out.contains(&want), "missing {want:?} in:\n{out}");
    }
    assert_eq!(out.matches(": error: ").count(), 5, "{out}");
    assert!(out.contains(", 5 errors, 0 warnings"), "{out}");
    // `run` refuses the same configuration and names every file, not only the first.
    let (code, _, err) = egressd(&["run", "-c", &cfg]);
    assert_eq!(code, 78, "{err}");
    for file in [
        "missing-cert.pem",
        "missing-key.pem",
        "a-directory",
        "missing-ca.pem",
        "other.key",
    ] {
        assert!(
            err.contains(&format!("{d}/{file}")),
            "{file} not in:\n{err}"
        );
    }
}

#[test]
fn check_reports_a_missing_or_invalid_geoip_database() {
    let dir = tempdir("preflight-geo");
    let d = dir.path();
    let with_db = |db: &str| {
        Config::new()
            .toml(&format!("[geoip]\ndatabase = \"{db}\""))
            .catch_all()
            .to_string()
    };
    let config = with_db("missing.mmdb");
    let (code, out, err, cfg) = check(d, &config);
    assert_eq!(code, 1, "{out}{err}");
    let want = format!(
        "{cfg}:{}: error: geoip database {}/missing.mmdb does not exist\n",
        at(&config, "\"missing.mmdb\""),
        d.display()
    );
    assert!(out.starts_with(&want), "{out}");

    std::fs::write(d.join("broken.mmdb"), b"not a database").unwrap();
    let config = with_db("broken.mmdb");
    let (code, out, err, cfg) = check(d, &config);
    assert_eq!(code, 1, "{out}{err}");
    let want = format!(
        "{cfg}:{}: error: {}/broken.mmdb is not a valid MaxMind DB: ",
        at(&config, "\"broken.mmdb\""),
        d.display()
    );
    assert!(out.starts_with(&want), "{out}");
}

#[test]
fn check_reports_includes_that_are_missing_or_broken() {
    let dir = tempdir("preflight-include");
    let d = dir.path();
    std::fs::write(
        d.join("broken.toml"),
        "[[rule]]\nname = \"x\"\nacton = \"block\"\n",
    )
    .unwrap();
    let config = format!(
        "include = [\"missing.toml\", \"broken.toml\"]\n\n{}",
        Config::new().catch_all()
    );
    let (code, out, err, cfg) = check(d, &config);
    assert_eq!(code, 1, "{out}{err}");
    let d = d.display();
    for want in [
        format!(
            "{cfg}:1:12: error: cannot read included file {d}/missing.toml: No such file or directory (os error 2)"
        ),
        format!("{d}/broken.toml:3:1: error: unknown key `acton` in [[rule]]"),
    ] {
        assert!(out.contains(&want), "missing {want:?} in:\n{out}");
    }
}

#[test]
fn an_unassigned_pool_address_is_a_warning_at_check_and_at_run() {
    let dir = tempdir("preflight-pool");
    // 127.0.0.2 is this host's (all of 127.0.0.0/8 is); 203.0.113.77 is nobody's.
    let config = Config::new()
        .proxy("shards", "1")
        .pool("p", &["127.0.0.2", "203.0.113.77"], &[])
        .egress("all via p", "", "p")
        .to_string();
    let (code, out, err, cfg) = check(dir.path(), &config);
    assert_eq!(code, 0, "{out}{err}");
    let want = format!(
        "{cfg}:{}: warning: pool \"p\": 203.0.113.77 is not an address of this host: connections through it will fail over to the pool's next address or its fallback (assign it, or remove it)\n",
        at(&config, "\"203.0.113.77\"")
    );
    assert!(out.starts_with(&want), "{out}");
    assert!(!out.contains("127.0.0.2 is not"), "{out}");
    assert!(out.contains("0 errors, 1 warning,"), "{out}");

    // `run` says the same at start-up, and starts.
    let (lines, exit) = run_until_listening(&cfg, &[]);
    assert_eq!(exit, None, "{lines:#?}");
    let warning = lines
        .iter()
        .find(|l| l.contains("is not an address of this host"))
        .unwrap_or_else(|| panic!("no warning in {lines:#?}"));
    let v: serde_json::Value = serde_json::from_str(warning).unwrap();
    assert_eq!(
        (&v["level"], &v["pool"], &v["address"]),
        (
            &serde_json::json!("WARN"),
            &serde_json::json!("p"),
            &serde_json::json!("203.0.113.77")
        )
    );
}

#[test]
fn a_non_loopback_admin_address_is_refused() {
    let dir = tempdir("preflight-admin");
    let config = Config::new()
        .proxy("admin", "\"0.0.0.0:9090\"")
        .catch_all()
        .to_string();
    let (code, out, err, cfg) = check(dir.path(), &config);
    assert_eq!(code, 1, "{out}{err}");
    let want = format!(
        "{cfg}:{}: error: `admin` must be a loopback address (127.0.0.1 or ::1): the endpoint has no authentication yet\n",
        at(&config, "\"0.0.0.0:9090\"")
    );
    assert!(out.starts_with(&want), "{out}");
    let (code, _, err) = egressd(&["run", "-c", &cfg]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("must be a loopback address"), "{err}");
}

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
    // `check` still checks the configuration there, and notes that `run` would not start.
    let out = Command::new("python3")
        .args([WITHOUT_IO_URING, "EPERM", env!("CARGO_BIN_EXE_egressd")])
        .args(["check", "-c", &cfg])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("note: `egressd run` would not start on this host: io_uring is not available"),
        "{err}"
    );
}

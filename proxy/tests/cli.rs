//! The command line itself: every option is described in `--help`, exit codes are those
//! documented, `egressd` and `egressd run` without -c serve the built-in default (each in a
//! network namespace of its own, where 127.0.0.1:1080 is certainly free), `default-config`
//! prints a configuration that checks clean and whose comments hold, and `hash-password`
//! on a terminal asks twice without echoing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use egressd::run::DEFAULT_CONFIG;
use egressd_policy::check_str;
use egressd_policy::model::ProxySettings;
use support::{egressd, require_root, tempdir};

/// Entries of a help text's `Options:` and `Commands:` sections with no description, as
/// "section: entry". Handles both of clap's layouts: description on the entry's line, or on
/// the lines below it (used when some entry has a long description).
fn undescribed(help: &str) -> (Vec<String>, usize) {
    let lines: Vec<&str> = help.lines().collect();
    let mut section = "";
    let mut missing = Vec::new();
    let mut entries = 0;
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with(' ') && line.ends_with(':') {
            section = line.trim_end_matches(':');
            continue;
        }
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let entry = match section {
            "Options" => trimmed.starts_with('-'),
            "Commands" => indent == 2 && !trimmed.is_empty(),
            _ => false,
        };
        if !entry {
            continue;
        }
        entries += 1;
        let same_line = trimmed
            .split_once("  ")
            .map(|(_, rest)| rest.trim())
            .unwrap_or("");
        let next_line = lines.get(i + 1).map_or("", |next| {
            let t = next.trim_start();
            let deeper = next.len() - t.len() > indent;
            if deeper && !t.starts_with('-') { t } else { "" }
        });
        if same_line.is_empty() && next_line.is_empty() {
            missing.push(format!("{section}: {trimmed}"));
        }
    }
    (missing, entries)
}

/// The subcommands `egressd --help` lists (without `help`).
fn subcommands() -> Vec<String> {
    let (code, out, _) = egressd(&["--help"]);
    assert_eq!(code, 0);
    let mut in_commands = false;
    let mut names = Vec::new();
    for line in out.lines() {
        if !line.starts_with(' ') {
            in_commands = line == "Commands:";
            continue;
        }
        if in_commands && line.len() - line.trim_start().len() == 2 {
            let name = line.split_whitespace().next().unwrap();
            if name != "help" {
                names.push(name.to_string());
            }
        }
    }
    names
}

#[test]
fn every_option_of_every_command_is_described() {
    let commands = subcommands();
    for want in [
        "run",
        "check",
        "explain",
        "compile",
        "hash-password",
        "default-config",
    ] {
        assert!(commands.iter().any(|c| c == want), "{want} in {commands:?}");
    }
    let mut helps = vec![(String::from("egressd"), egressd(&["--help"]))];
    for c in &commands {
        helps.push((format!("egressd {c}"), egressd(&[c.as_str(), "--help"])));
        helps.push((format!("egressd {c} (-h)"), egressd(&[c.as_str(), "-h"])));
    }
    let mut total = 0;
    for (what, (code, out, err)) in &helps {
        assert_eq!(*code, 0, "{what} --help: {err}");
        let (missing, entries) = undescribed(out);
        assert!(
            missing.is_empty(),
            "{what}: no description for {missing:?}\n{out}"
        );
        total += entries;
        for line in out
            .lines()
            .filter(|l| l.trim_start().starts_with("-c, --config"))
        {
            assert!(
                line.contains("TOML file") && line.contains("compiled artifact"),
                "{what}: -c does not say what it takes: {line}"
            );
        }
    }
    // The parser found the entries (it is not passing for want of any).
    assert!(total > 40, "only {total} entries found");

    let (_, explain, _) = egressd(&["explain", "--help"]);
    assert!(
        explain.contains("[possible values: tcp, udp]"),
        "--protocol lists its values:\n{explain}"
    );
    let (_, top, _) = egressd(&["--help"]);
    for code in ["  0 ", "  1 ", "  2 ", "  71 ", "  78 "] {
        assert!(
            top.contains(code),
            "exit code{code}missing from --help:\n{top}"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(egressd(&["no-such-command"]).0, 2);
    assert_eq!(egressd(&["check"]).0, 2, "check without -c");
    assert_eq!(egressd(&["run", "--no-such-option"]).0, 2);
    let (code, _, err) = egressd(&[
        "explain",
        "-c",
        "configs/examples/portugal.toml",
        "--dst",
        "192.0.2.1:443",
        "--protocol",
        "sctp",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("[possible values: tcp, udp]"), "{err}");
}

#[test]
fn default_config_prints_the_built_in_default_which_checks_clean() {
    let (code, printed, err) = egressd(&["default-config"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(printed, DEFAULT_CONFIG);
    let dir = tempdir("default-config");
    let path = dir.path().join("egressd.toml");
    std::fs::write(&path, &printed).unwrap();
    let (code, out, err) = egressd(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 errors, 0 warnings"), "{out}");

    // Its comments hold: without [proxy] the default deny list applies, and the commented-out
    // lines, once uncommented, are that list without loopback.
    let checked = check_str("default.toml", &printed);
    let deny = checked.policy.unwrap().settings.deny_destinations;
    assert_eq!(deny, ProxySettings::default_deny());
    for net in &deny {
        assert!(
            printed.contains(&format!("{net}")),
            "{net} not in the comment"
        );
    }
    let uncommented = printed
        .replace("# [proxy]\n", "[proxy]\n")
        .replace("# deny_destinations =", "deny_destinations =");
    assert_ne!(
        uncommented, printed,
        "the commented-out [proxy] lines are gone"
    );
    let checked = check_str("uncommented.toml", &uncommented);
    assert!(checked.diags.items.is_empty(), "{}", checked.render());
    let allowed = checked.policy.unwrap().settings.deny_destinations;
    let loopback: Vec<ipnet::IpNet> =
        vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
    let without_loopback: Vec<_> = deny.into_iter().filter(|n| !loopback.contains(n)).collect();
    assert_eq!(allowed, without_loopback);
}

/// Sends each line `from` gives to the returned channel, from a thread of its own.
fn forward_lines(from: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// egressd started with `args` in a network namespace of its own (loopback up), so the
/// built-in default's fixed 127.0.0.1:1080 cannot be taken by anything else.
struct Isolated {
    child: Child,
    /// Standard error (operational log).
    lines: Receiver<String>,
    /// Standard output (access log).
    records: Receiver<String>,
}

impl Isolated {
    fn start(args: &[&str]) -> Isolated {
        let mut child = Command::new("unshare")
            .args([
                "--net",
                "--",
                "sh",
                "-c",
                "ip link set lo up && exec \"$0\" \"$@\"",
            ])
            .arg(env!("CARGO_BIN_EXE_egressd"))
            .args(args)
            .env("EGRESSD_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("unshare (util-linux)");
        let lines = forward_lines(child.stderr.take().unwrap());
        let records = forward_lines(child.stdout.take().unwrap());
        Isolated {
            child,
            lines,
            records,
        }
    }

    /// The next access-log record (egressd writes them within 50 ms).
    fn next_record(&mut self) -> serde_json::Value {
        let line = self
            .records
            .recv_timeout(Duration::from_secs(60))
            .expect("no access-log record");
        serde_json::from_str(&line).unwrap()
    }

    fn next_line(&mut self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "no line with {needle:?} (exit status {:?})",
                    self.child.try_wait()
                ),
            }
        }
    }

    /// curl run inside egressd's network namespace.
    fn curl(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new("nsenter")
            .arg(format!("--net=/proc/{}/ns/net", self.child.id()))
            .args(["curl", "-sS", "--max-time", "20"])
            .args(args)
            .output()
            .expect("nsenter (util-linux)");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn no_arguments_and_run_without_config_both_serve_the_built_in_default() {
    require_root("a network namespace of its own (unshare --net)");
    for args in [&[][..], &["run"][..]] {
        let mut proxy = Isolated::start(args);
        let line = proxy.next_line("listening");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (v["listener"].as_str(), v["addr"].as_str()),
            (Some("default"), Some("127.0.0.1:1080")),
            "egressd {args:?}: {line}"
        );
        // It speaks HTTP and SOCKS5 on that port without credentials, and the default
        // deny list refuses loopback destinations (HTTP 403, SOCKS5 reply 0x02).
        let (code, status, err) = proxy.curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-x",
            "http://127.0.0.1:1080",
            "http://127.0.0.1:9/",
        ]);
        assert_eq!(
            (code, status.as_str()),
            (0, "403"),
            "egressd {args:?}: {err}"
        );
        let (code, _, err) = proxy.curl(&["--socks5", "127.0.0.1:1080", "http://127.0.0.1:9/"]);
        assert_ne!(code, 0, "egressd {args:?}: SOCKS5 was not refused: {err}");
        // Each shard writes its own records: in either order.
        let mut records = [proxy.next_record(), proxy.next_record()];
        records.sort_by_key(|r| r["protocol"].as_str().map(str::to_string));
        for (rec, protocol) in records.iter().zip(["http", "socks5"]) {
            assert_eq!(
                (
                    rec["protocol"].as_str(),
                    rec["rule"].as_str(),
                    rec["outcome"].as_str()
                ),
                (
                    Some(protocol),
                    Some("catch-all"),
                    Some("denied_destination")
                ),
                "egressd {args:?}: {rec}"
            );
        }
        support::signal(proxy.child.id(), "TERM");
        let status = proxy.child.wait().unwrap();
        assert!(status.success(), "egressd {args:?} exited with {status}");
    }
}

/// A pseudo-terminal: the test holds the master, the child gets the slave as its standard
/// input, output and error.
fn pty() -> (std::fs::File, OwnedFd) {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap();
    (std::fs::File::from(master), OwnedFd::from(slave))
}

/// Runs `egressd hash-password` on a terminal, answering each prompt in turn once it shows;
/// returns everything the terminal displayed and the exit status.
fn hash_password_on_a_terminal(answers: &[&str]) -> (String, std::process::ExitStatus) {
    let (mut master, slave) = pty();
    let mut child = Command::new(env!("CARGO_BIN_EXE_egressd"))
        .arg("hash-password")
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    // The Command holds no copy of the slave after spawning: once egressd exits, reads of the
    // master end (EIO).
    let (tx, rx) = channel::<Vec<u8>>();
    let mut reader = master.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    let mut shown = String::new();
    let wait_for = |shown: &mut String, text: &str| {
        while !shown.contains(text) {
            let chunk = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no {text:?} on the terminal, only {shown:?}"));
            shown.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    let prompts = ["Password: ", "Retype password: "];
    for (answer, prompt) in answers.iter().zip(prompts) {
        wait_for(&mut shown, prompt);
        master.write_all(format!("{answer}\n").as_bytes()).unwrap();
    }
    let status = child.wait().unwrap();
    while let Ok(chunk) = rx.recv_timeout(Duration::from_secs(10)) {
        shown.push_str(&String::from_utf8_lossy(&chunk));
    }
    (shown, status)
}

#[test]
fn hash_password_on_a_terminal_asks_twice_without_echo() {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let (shown, status) = hash_password_on_a_terminal(&["tty-secret-1", "tty-secret-1"]);
    assert!(status.success(), "{shown}");
    assert!(
        !shown.contains("tty-secret"),
        "the password was echoed: {shown:?}"
    );
    let phc = shown
        .split_whitespace()
        .find(|w| w.starts_with("$argon2id$"))
        .unwrap_or_else(|| panic!("no hash in {shown:?}"));
    let parsed = PasswordHash::new(phc).unwrap();
    assert!(
        argon2::Argon2::default()
            .verify_password(b"tty-secret-1", &parsed)
            .is_ok()
    );

    let (shown, status) = hash_password_on_a_terminal(&["tty-secret-1", "tty-secret-2"]);
    assert_eq!(status.code(), Some(1), "{shown}");
    assert!(shown.contains("the passwords differ"), "{shown:?}");
    assert!(!shown.contains("$argon2id$"), "{shown:?}");
}

//! A network namespace of the test's own (needs root and iproute2), with the loopback up.
//! Programs run in it through `ip netns exec`, which also bind-mounts the namespace's own
//! `/etc/netns/NAME/{resolv.conf,hosts}` over `/etc`: so egressd, which reads only
//! /etc/resolv.conf, asks a DNS server the test runs inside the namespace, and nothing else.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::eventually;

pub struct Netns {
    pub name: String,
    /// `/etc/netns/NAME`, when the namespace has files of its own.
    etc: Option<PathBuf>,
}

impl Netns {
    /// A namespace named after this process and `tag`, with `lo` up.
    pub fn create(tag: &str) -> Netns {
        let name = format!("egressd-{tag}{}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = Netns { name, etc: None };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// As `create`, with a resolv.conf naming only 127.0.0.1 (inside the namespace) and a
    /// hosts file knowing only localhost.
    pub fn with_resolver(tag: &str) -> Netns {
        let mut ns = Netns::create(tag);
        let etc = PathBuf::from("/etc/netns").join(&ns.name);
        std::fs::create_dir_all(&etc).expect("create /etc/netns/NAME");
        ns.etc = Some(etc.clone());
        std::fs::write(etc.join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
        std::fs::write(etc.join("hosts"), "127.0.0.1 localhost\n").unwrap();
        ns
    }

    /// `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// The prefix that runs a program in the namespace.
    pub fn exec(&self) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.name.clone(),
        ]
    }

    /// A command running `program` in the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs curl in the namespace; returns (exit code, stdout, stderr).
    pub fn curl(&self, args: &[&str]) -> (i32, String, String) {
        let out = self
            .command("curl")
            .args(["-sS", "--max-time", "20"])
            .args(args)
            .output()
            .expect("curl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        if let Some(etc) = &self.etc {
            let _ = std::fs::remove_dir_all(etc);
            // Only when no other namespace has files there.
            let _ = std::fs::remove_dir("/etc/netns");
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("iproute2");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A child process whose standard output lines are collected as they come; killed when
/// dropped.
pub struct Program {
    child: Child,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Program {
    /// Starts `python3 -c script` in `ns` and waits for its first line (its readiness).
    pub fn python(ns: &Netns, script: &str) -> (Program, String) {
        let mut child = ns
            .command("python3")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        let sink = lines.clone();
        thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        (Program { child, lines }, first.trim().to_string())
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A DNS server on 127.0.0.1:53 in the namespace (UDP): every A question gets 127.0.0.1,
/// anything else an empty answer; each question is logged as "name type", in the order they
/// came.
pub struct CountingDns(Program);

const DNS_SERVER: &str = r#"
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
print("ready", flush=True)
while True:
    q, peer = s.recvfrom(4096)
    if len(q) < 17:
        continue
    i, labels = 12, []
    while i < len(q) and q[i] != 0:
        labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace"))
        i += 1 + q[i]
    qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
    print(".".join(labels).lower(), qtype, flush=True)
    answer = b""
    if qtype == 1:
        answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([127, 0, 0, 1])
    head = q[:2] + struct.pack(">HHHHH", 0x8180, 1, 1 if answer else 0, 0, 0)
    s.sendto(head + q[12:i + 5] + answer, peer)
"#;

impl CountingDns {
    pub fn start(ns: &Netns) -> CountingDns {
        let (program, ready) = Program::python(ns, DNS_SERVER);
        assert_eq!(ready, "ready");
        CountingDns(program)
    }

    /// Every question so far, as "name type".
    pub fn questions(&self) -> Vec<String> {
        self.0.lines.lock().unwrap().clone()
    }

    /// How many questions named `name`.
    pub fn asked(&self, name: &str) -> usize {
        self.questions()
            .iter()
            .filter(|q| q.split(' ').next() == Some(name))
            .count()
    }

    /// Waits until a question for `name` has been logged (the server logs each question
    /// before answering it, and handles them one at a time, so every question that came
    /// before is logged by then too).
    pub fn wait_for(&self, name: &str) {
        eventually(
            Duration::from_secs(20),
            &format!("no question for {name}"),
            || (self.asked(name) > 0).then_some(()),
        );
    }
}

/// An HTTP server on 127.0.0.1 in the namespace answering "ok" to any request (one per
/// connection); returns it with its port.
pub fn http_upstream(ns: &Netns) -> (Program, u16) {
    let script = r#"
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(64)
print(s.getsockname()[1], flush=True)
while True:
    c, a = s.accept()
    c.recv(65536)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    c.close()
"#;
    let (program, port) = Program::python(ns, script);
    (program, port.parse().expect("a port"))
}

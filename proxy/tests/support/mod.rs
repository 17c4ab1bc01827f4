//! Test support shared by every file under `proxy/tests/`: the configuration every test starts
//! from (`config`), real upstreams that report the peer address they saw, the real egressd
//! binary started on port 0 with a config file, curl and a SOCKS5 client (`socks5`) as clients,
//! and network namespaces with a DNS server of the test's own (`netns`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod config;
pub mod netns;
pub mod socks5;

// Not every test file builds a config.
#[allow(unused_imports)]
pub use config::Config;

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// An HTTP/1.1 server whose response body is the peer address it saw (IP only), with
/// keep-alive. `GET /port` answers the peer's port as well.
pub struct Upstream {
    pub addr: SocketAddr,
    /// Peer addresses of every accepted connection.
    pub peers: Arc<Mutex<Vec<SocketAddr>>>,
}

impl Upstream {
    pub fn start(bind: &str) -> Upstream {
        let listener = TcpListener::bind(bind).expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let peers = Arc::new(Mutex::new(Vec::new()));
        let seen = peers.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let peer = conn.peer_addr().unwrap();
                seen.lock().unwrap().push(peer);
                thread::spawn(move || serve_http(conn, peer));
            }
        });
        Upstream { addr, peers }
    }

    pub fn url(&self, path: &str) -> String {
        match self.addr {
            SocketAddr::V4(a) => format!("http://{a}{path}"),
            SocketAddr::V6(a) => format!("http://[{}]:{}{path}", a.ip(), a.port()),
        }
    }

    pub fn connections(&self) -> usize {
        self.peers.lock().unwrap().len()
    }
}

fn serve_http(conn: TcpStream, peer: SocketAddr) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut content_length = 0usize;
        let mut close = false;
        let mut chunked = false;
        let mut names = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("connection:") && lower.contains("close") {
                close = true;
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            names.push(line.split(':').next().unwrap_or("").to_string());
        }
        let body = if chunked {
            match read_chunked(&mut reader) {
                Some(b) => b,
                None => return,
            }
        } else {
            let mut body = vec![0; content_length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            body
        };
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_string();
        let answer = if path.starts_with("/port") {
            peer.to_string()
        } else if path.starts_with("/echo") {
            String::from_utf8_lossy(&body).into_owned()
        } else {
            peer.ip().to_string()
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nX-Request-Line: {}\r\nX-Request-Headers: {}\r\n{}\r\n",
            answer.len(),
            request_line.trim(),
            names.join(","),
            if close { "Connection: close\r\n" } else { "" }
        );
        if out
            .write_all(head.as_bytes())
            .and_then(|()| out.write_all(answer.as_bytes()))
            .is_err()
            || close
        {
            return;
        }
    }
}

/// Decodes a chunked body (trailers ignored); `None` if the stream ends or is malformed.
fn read_chunked(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line).ok()?;
        let size = usize::from_str_radix(size_line.trim().split(';').next()?, 16).ok()?;
        if size == 0 {
            loop {
                let mut trailer = String::new();
                reader.read_line(&mut trailer).ok()?;
                if trailer == "\r\n" || trailer.is_empty() {
                    return Some(body);
                }
            }
        }
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk).ok()?;
        body.extend_from_slice(&chunk[..size]);
    }
}

/// A raw TCP server that first writes the peer address and a newline, then echoes.
pub struct EchoUpstream {
    pub addr: SocketAddr,
}

impl EchoUpstream {
    pub fn start(bind: &str) -> EchoUpstream {
        let listener = TcpListener::bind(bind).expect("bind echo");
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                thread::spawn(move || {
                    let peer = conn.peer_addr().unwrap();
                    let _ = conn.write_all(format!("{peer}\n").as_bytes());
                    let mut buf = [0u8; 16384];
                    loop {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => {
                                // Half-close seen: say so, then close our side.
                                let _ = conn.write_all(b"<eof>");
                                return;
                            }
                            Ok(n) => {
                                if conn.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        EchoUpstream { addr }
    }
}

/// A running egressd.
pub struct Proxy {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every listener's address by name.
    pub listeners: Vec<(String, SocketAddr)>,
    pub config: PathBuf,
    /// Holds the config file; removed when the proxy is dropped, after the process is killed.
    pub dir: TempDir,
    lines: Receiver<String>,
    pub log: Arc<Mutex<Vec<String>>>,
    /// Standard output when the proxy was started with `start_unread`: nobody reads it.
    pub unread_stdout: Option<std::process::ChildStdout>,
}

/// A fresh directory under the system temp directory, removed with everything in it when
/// dropped (also when the test panics).
pub fn tempdir(tag: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("egressd-{tag}-"))
        .tempdir()
        .expect("create a temporary directory")
}

impl Proxy {
    /// Writes `config` (a `Config` or TOML text) to a file and starts `egressd run -c` on it.
    pub fn start(config: impl fmt::Display) -> Proxy {
        Self::start_with(config, &[])
    }

    /// As `start`, with a command prefix (e.g. `ip netns exec NAME`).
    pub fn start_with(config: impl fmt::Display, prefix: &[&str]) -> Proxy {
        let config = config.to_string();
        let dir = tempdir("proxy");
        let path = dir.path().join("egressd.toml");
        std::fs::write(&path, &config).unwrap();
        let expected = config.matches("[[listener]]").count().max(1);
        Self::launch(path, dir, prefix, expected)
    }

    /// As `start`, but nothing reads the access log (standard output) until the test takes
    /// `unread_stdout` and reads it: a reader that stopped reading.
    pub fn start_unread(config: impl fmt::Display) -> Proxy {
        let config = config.to_string();
        let dir = tempdir("proxy");
        let path = dir.path().join("egressd.toml");
        std::fs::write(&path, &config).unwrap();
        let expected = config.matches("[[listener]]").count().max(1);
        Self::launch_with(path, dir, &[], expected, false)
    }

    /// Starts `egressd run -c PATH` on an existing file (TOML or compiled artifact).
    pub fn launch(path: PathBuf, dir: TempDir, prefix: &[&str], expected: usize) -> Proxy {
        Self::launch_with(path, dir, prefix, expected, true)
    }

    fn launch_with(
        path: PathBuf,
        dir: TempDir,
        prefix: &[&str],
        expected: usize,
        read_stdout: bool,
    ) -> Proxy {
        let bin = env!("CARGO_BIN_EXE_egressd");
        let mut cmd = if prefix.is_empty() {
            Command::new(bin)
        } else {
            let mut c = Command::new(prefix[0]);
            c.args(&prefix[1..]).arg(bin);
            c
        };
        let mut child = cmd
            .args(["run", "-c"])
            .arg(&path)
            .env("EGRESSD_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start egressd");
        let log = Arc::new(Mutex::new(Vec::new()));
        // Access log lines (stdout).
        let stdout = child.stdout.take().unwrap();
        let mut unread_stdout = None;
        if read_stdout {
            let access = log.clone();
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    access.lock().unwrap().push(line);
                }
            });
        } else {
            unread_stdout = Some(stdout);
        }
        let (tx, rx) = channel();
        let stderr = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut proxy = Proxy {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            listeners: Vec::new(),
            config: path,
            dir,
            lines: rx,
            log,
            unread_stdout,
        };
        while proxy.listeners.len() < expected {
            let line = proxy.next_line("listening");
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            let addr: SocketAddr = v["addr"].as_str().unwrap().parse().unwrap();
            proxy
                .listeners
                .push((v["listener"].as_str().unwrap().to_string(), addr));
        }
        proxy.addr = proxy.listeners[0].1;
        proxy
    }

    /// The next stderr line containing `needle` (panics if egressd exits first).
    pub fn next_line(&mut self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => {
                    let status = self.child.try_wait().unwrap();
                    panic!("egressd gave no line with {needle:?} (exit status {status:?})");
                }
            }
        }
    }

    pub fn listener(&self, name: &str) -> SocketAddr {
        self.listeners.iter().find(|(n, _)| n == name).unwrap().1
    }

    /// Rewrites the config file and sends SIGHUP; returns the log line that settled it.
    pub fn reload(&mut self, config: impl fmt::Display) -> String {
        std::fs::write(&self.config, config.to_string()).unwrap();
        signal(self.child.id(), "HUP");
        loop {
            let line = self.next_line("\"message\":\"re");
            if line.contains("\"reloaded\"") || line.contains("reload rejected") {
                return line;
            }
        }
    }

    /// Access-log records seen so far.
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until the access log has a record matching `pred` (egressd flushes its log every
    /// 50 ms), by polling stdout's reader thread; bounded by a deadline.
    pub fn wait_record(&self, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(r) = self.access_log().into_iter().find(|r| pred(r)) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "no matching access-log record in {:?}",
                self.log.lock().unwrap()
            );
            thread::yield_now();
        }
    }

    /// SIGTERM, then wait for exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        signal(self.child.id(), "TERM");
        self.child.wait().unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name} {pid}");
}

/// argon2id hash of a password, as `egressd hash-password` makes.
pub fn hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"egressd-test-salt").unwrap();
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

/// Fails the calling test with a clear message unless it runs as root (`what` says what needs
/// it). CI runs as root; elsewhere such a test fails rather than pass without having run.
pub fn require_root(what: &str) {
    let test = thread::current().name().unwrap_or("this test").to_string();
    assert!(
        rustix::process::getuid().is_root(),
        "{test} needs root for {what}: run the tests as root (CI does), or leave it out with \
         cargo nextest run -E 'not test({test})'"
    );
}

/// Runs the egressd binary with `args` in the workspace root (where `configs/` is) and waits
/// for it; returns (exit code, stdout, stderr).
pub fn egressd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_egressd"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run egressd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Tries `attempt` again and again until it gives a value, failing with `what` after
/// `within`: for a state that comes about with no event to wait on (a slot freed, a listener
/// closed).
pub fn eventually<T>(within: Duration, what: &str, mut attempt: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = attempt() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}");
        thread::yield_now();
    }
}

/// Runs curl; returns (exit code, stdout, stderr).
pub fn curl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new("curl")
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

/// A TCP connection to `dst` from the local address `src` (e.g. "127.0.0.5"): tests that
/// need a client address of its own (per-client limits, failure tracking) bind before connecting.
pub fn connect_from(src: &str, dst: SocketAddr) -> TcpStream {
    use socket2::{Domain, SockAddr, Socket, Type};
    let socket = Socket::new(Domain::for_address(dst), Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{src}:0").parse().unwrap();
    socket.bind(&SockAddr::from(local)).unwrap();
    socket.connect(&SockAddr::from(dst)).unwrap();
    socket.into()
}

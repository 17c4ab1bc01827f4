//! A quick probe of a running SOCKS5 proxy (until the load generator lands): connection churn
//! rate and resident memory per idle tunnel. Starts its own echo upstream on 127.0.0.1.
//!
//! `proxy-probe churn PROXY_ADDR THREADS SECONDS` and `proxy-probe idle PROXY_ADDR PROXY_PID N`

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// SOCKS5 no-auth CONNECT to an IPv4 target.
fn socks_connect(proxy: SocketAddr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(proxy)?;
    s.set_nodelay(true)?;
    let SocketAddr::V4(t) = target else {
        return Err(std::io::ErrorKind::InvalidInput.into());
    };
    let mut msg = vec![5, 1, 0, 5, 1, 0, 1];
    msg.extend_from_slice(&t.ip().octets());
    msg.extend_from_slice(&t.port().to_be_bytes());
    // Greeting and request pipelined, as fast clients do.
    s.write_all(&msg)?;
    let mut reply = [0u8; 12];
    s.read_exact(&mut reply)?;
    if reply[3] != 0 {
        return Err(std::io::Error::other(format!("reply {}", reply[3])));
    }
    Ok(s)
}

fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: proxy-probe churn PROXY THREADS SECONDS | proxy-probe idle PROXY PID N";
    let (Some(mode), Some(proxy)) = (
        args.get(1),
        args.get(2).and_then(|a| a.parse::<SocketAddr>().ok()),
    ) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let echo = echo_server();
    match mode.as_str() {
        "churn" => {
            let threads: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(8);
            let secs: u64 = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(5);
            let done = Arc::new(AtomicU64::new(0));
            let errors = Arc::new(AtomicU64::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let started = Instant::now();
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    let (done, errors, stop) = (done.clone(), errors.clone(), stop.clone());
                    std::thread::spawn(move || {
                        let req = [7u8; 100];
                        let mut resp = [0u8; 100];
                        while !stop.load(Ordering::Relaxed) {
                            let ok = socks_connect(proxy, echo).and_then(|mut s| {
                                s.write_all(&req)?;
                                s.read_exact(&mut resp)
                            });
                            match ok {
                                Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                                Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                            };
                        }
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_secs(secs));
            stop.store(true, Ordering::Relaxed);
            for w in workers {
                let _ = w.join();
            }
            let n = done.load(Ordering::Relaxed);
            let rate = n as f64 / started.elapsed().as_secs_f64();
            println!(
                "churn: {n} connections in {secs} s with {threads} threads: {rate:.0} conn/s, {} errors",
                errors.load(Ordering::Relaxed)
            );
        }
        "idle" => {
            let pid = args.get(3).cloned().unwrap_or_default();
            let n: usize = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(1000);
            // Warm the proxy's pools with a first batch, then measure a second batch.
            let warm: Vec<_> = (0..100)
                .filter_map(|_| socks_connect(proxy, echo).ok())
                .collect();
            let before = rss_kib(&pid);
            let mut tunnels = Vec::with_capacity(n);
            for _ in 0..n {
                match socks_connect(proxy, echo) {
                    Ok(mut s) => {
                        // One round trip so every tunnel has carried data before going idle.
                        let mut b = [0u8; 1];
                        if s.write_all(b"x")
                            .and_then(|()| s.read_exact(&mut b))
                            .is_ok()
                        {
                            tunnels.push(s);
                        }
                    }
                    Err(e) => {
                        eprintln!("connect failed after {} tunnels: {e}", tunnels.len());
                        break;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(500));
            let after = rss_kib(&pid);
            let per = (after.saturating_sub(before)) as f64 * 1024.0 / tunnels.len().max(1) as f64;
            println!(
                "idle: {} tunnels, proxy RSS {before} KiB -> {after} KiB: {per:.0} bytes per idle tunnel",
                tunnels.len()
            );
            drop(warm);
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}

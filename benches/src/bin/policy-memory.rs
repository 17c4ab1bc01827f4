//! Memory and wall time of compiling a large policy, measured from the process's resident set
//! (/proc/self/status): `cargo run --release -p egressd-benches --bin policy-memory -- 100000`.

use std::time::Instant;

use egressd_policy::{CompiledPolicy, check_str, synth};

/// (VmRSS, VmHWM) in KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let text = synth::policy_text(n);
    let (base, _) = rss_kib();
    let t0 = Instant::now();
    let checked = check_str("synthetic.toml", &text);
    let t_check = t0.elapsed();
    let policy = checked.policy.expect("valid");
    drop(checked.sources);
    let t1 = Instant::now();
    let table = CompiledPolicy::new(policy);
    let t_index = t1.elapsed();
    let (rss, peak) = rss_kib();
    println!(
        "rules: {n} (+3 fixed), policy text: {:.1} MiB",
        text.len() as f64 / 1048576.0
    );
    println!(
        "time: parse+validate {:.0} ms, index {:.0} ms, total {:.0} ms",
        t_check.as_secs_f64() * 1e3,
        t_index.as_secs_f64() * 1e3,
        (t_check + t_index).as_secs_f64() * 1e3
    );
    println!(
        "memory: resident growth with the compiled table alive {:.1} MiB (index structures {:.1} MiB); peak resident {:.1} MiB above start",
        mib(rss.saturating_sub(base)),
        table.stats().index_bytes as f64 / 1048576.0,
        mib(peak.saturating_sub(base))
    );
    println!("unindexed rules: {}", table.stats().unindexed);
}

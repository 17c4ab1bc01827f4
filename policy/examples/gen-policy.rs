//! Prints a synthetic policy: `cargo run -p egressd-policy --example gen-policy -- 10000`.

fn main() {
    let n = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    print!("{}", egressd_policy::synth::policy_text(n));
}

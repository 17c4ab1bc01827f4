//! decide() over 10 to 100,000 rules, compiled table against the linear reference, the same
//! for a decision before the destination address is known, and the cost of compiling 100,000
//! rules from text. Run: `cargo bench -p egressd-benches`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use egressd_policy::{
    CompiledPolicy, check_str, decide_reference, decide_reference_without_address, synth,
};

const SIZES: &[usize] = &[10, 100, 1_000, 10_000, 100_000];

/// Benchmarks a compiled call against its reference over policies of every size (the
/// reference only up to 10,000 rules: it is linear).
fn compare<T, R>(
    c: &mut Criterion,
    group: &str,
    compiled: impl Fn(&CompiledPolicy, &egressd_policy::ConnMeta) -> T,
    reference: impl Fn(&egressd_policy::Policy, &egressd_policy::ConnMeta) -> R,
) {
    let mut g = c.benchmark_group(group);
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for &n in SIZES {
        let policy = egressd_benches::policy(n);
        let table = CompiledPolicy::new(policy.clone());
        let conns = synth::connections(1024, n, 42);
        let metas: Vec<_> = conns.iter().map(|c| c.meta()).collect();
        let mut i = 0usize;
        g.bench_with_input(BenchmarkId::new("compiled", n), &n, |b, _| {
            b.iter(|| {
                i = i.wrapping_add(1);
                compiled(&table, black_box(&metas[i & 1023]))
            })
        });
        if n <= 10_000 {
            g.bench_with_input(BenchmarkId::new("reference", n), &n, |b, _| {
                b.iter(|| {
                    i = i.wrapping_add(1);
                    reference(&policy, black_box(&metas[i & 1023]))
                })
            });
        }
    }
    g.finish();
}

fn decide(c: &mut Criterion) {
    compare(c, "decide", |t, m| t.decide(m), decide_reference);
}

fn decide_before_resolving(c: &mut Criterion) {
    compare(
        c,
        "decide_without_address",
        |t, m| t.decide_without_address(m),
        decide_reference_without_address,
    );
}

fn compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    let text = synth::policy_text(100_000);
    g.bench_function("text_to_table/100000", |b| {
        b.iter(|| {
            let checked = check_str("synthetic.toml", black_box(&text));
            CompiledPolicy::new(checked.policy.expect("valid"))
        })
    });
    let policy = egressd_benches::policy(100_000);
    g.bench_function("index_only/100000", |b| {
        b.iter(|| CompiledPolicy::new(black_box(policy.clone())))
    });
    g.finish();
}

criterion_group!(benches, decide, decide_before_resolving, compile);
criterion_main!(benches);

//! Average candidates verified per decision on the synthetic policies (diagnostic tool).
fn main() {
    for n in [100usize, 10_000, 100_000] {
        let table = egressd_benches::compiled(n);
        let conns = egressd_policy::synth::connections(4096, n, 42);
        let (mut checked, mut failed, mut max) = (0usize, 0usize, 0usize);
        let mut by_rule = std::collections::HashMap::<String, usize>::new();
        for c in &conns {
            let mut k = 0;
            table.decide_traced(&c.meta(), |id, hit| {
                k += 1;
                if !hit {
                    failed += 1;
                    let name = &table.policy().rules[id.0 as usize].when_text;
                    let kind: String = name.chars().take(24).collect();
                    *by_rule.entry(kind).or_default() += 1;
                }
            });
            checked += k;
            max = max.max(k);
        }
        let mut top: Vec<_> = by_rule.into_iter().collect();
        top.sort_by_key(|t| std::cmp::Reverse(t.1));
        top.truncate(5);
        println!(
            "{n}: avg checked {:.2}, avg failed {:.2}, max {max}, top failing {top:?}",
            checked as f64 / 4096.0,
            failed as f64 / 4096.0
        );
    }
}

//! The large generated example stays in sync with its generator, and on realistic generated
//! policies the compiled table agrees with the reference evaluator connection by connection,
//! also when deciding before the destination address is known.

#![allow(clippy::unwrap_used)]

use egressd_policy::{
    CompiledPolicy, check_str, decide_reference, decide_reference_without_address, synth,
};

#[test]
fn large_example_is_the_generator_output() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/examples/large-generated.toml"
    );
    let on_disk = std::fs::read_to_string(path).expect("large example");
    assert!(
        on_disk == synth::policy_text(10_000),
        "configs/examples/large-generated.toml is stale: regenerate with \
         `cargo run -p egressd-policy --example gen-policy -- 10000 > configs/examples/large-generated.toml`"
    );
}

#[test]
fn compiled_matches_reference_on_a_generated_policy() {
    let checked = check_str("gen.toml", &synth::policy_text(5_000));
    assert!(!checked.diags.has_errors(), "{}", checked.render());
    let policy = checked.policy.expect("valid");
    let table = CompiledPolicy::new(policy.clone());
    assert_eq!(
        table.stats().unindexed,
        1,
        "only the catch-all should be unindexed"
    );
    let (mut matched_rules, mut decided_early) = (0, 0);
    for c in synth::connections(20_000, 5_000, 7) {
        let m = c.meta();
        let d = table.decide(&m);
        assert_eq!(d, decide_reference(&policy, &m), "{c:?}");
        if d.rule.is_some_and(|r| r.0 + 1 < policy.rules.len() as u32) {
            matched_rules += 1;
        }
        let early = table.decide_without_address(&m);
        assert_eq!(
            early,
            decide_reference_without_address(&policy, &m),
            "{c:?}"
        );
        if let Some(early) = early {
            assert_eq!(early, d, "decided before resolving, then otherwise: {c:?}");
            decided_early += 1;
        }
    }
    // The connections exercise real rules, not only the catch-all.
    assert!(matched_rules > 2_000, "{matched_rules}");
    assert!(decided_early > 0, "{decided_early}");
}

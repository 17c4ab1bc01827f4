//! Shared helpers for egressd's benchmarks: building compiled policies of a given size from
//! the synthetic generator.

use egressd_policy::{CompiledPolicy, Policy, check_str, synth};

/// A validated synthetic policy of `rules` rules (plus the fixed head rules and catch-all).
pub fn policy(rules: usize) -> Policy {
    let checked = check_str("synthetic.toml", &synth::policy_text(rules));
    assert!(!checked.diags.has_errors(), "{}", checked.render());
    checked.policy.expect("synthetic policy is valid")
}

/// The compiled table for [`policy`].
pub fn compiled(rules: usize) -> CompiledPolicy {
    CompiledPolicy::new(policy(rules))
}

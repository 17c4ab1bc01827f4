//! Explaining a decision: which rules the table checked, the value of every condition it
//! evaluated, the pool, the source address it would use and the fallback chain. Also runs a
//! policy's `[[test]]` cases, which are explanations with expectations.

use std::net::IpAddr;

use serde::Serialize;

use crate::compile::{CompiledPolicy, Decision};
use crate::diag::Loc;
use crate::egress::{self, IpFamily};
use crate::expr::eval::eval;
use crate::facts::{Facts, Query};
use crate::geo::Country;
use crate::meta::ConnMeta;
use crate::model::{Action, Fallback, Family, Policy, PolicyTest};

/// Where the client and the destination are, as the decision saw it ("" when unknown).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GeoFacts {
    pub src_country: String,
    pub src_continent: String,
    pub dst_country: String,
    pub dst_continent: String,
}

impl GeoFacts {
    fn of(m: &ConnMeta<'_>) -> Self {
        GeoFacts {
            src_country: m.src_country.to_string(),
            src_continent: m.src_continent.to_string(),
            dst_country: m.dst_country.to_string(),
            dst_continent: m.dst_continent.to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Condition {
    pub text: String,
    pub field: &'static str,
    pub value: String,
    pub result: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleTrace {
    pub index: u32,
    pub rule: String,
    pub matched: bool,
    pub conditions: Vec<Condition>,
}

/// What the connection looked like to the policy.
#[derive(Debug, Clone, Serialize)]
pub struct ConnSummary {
    pub user: String,
    pub groups: Vec<String>,
    pub posture_passed: Vec<String>,
    pub src: Option<String>,
    pub host: String,
    pub dst_ip: Option<IpAddr>,
    pub dst_port: u16,
    pub listener: String,
    pub protocol: String,
    pub geo: GeoFacts,
}

#[derive(Debug, Clone, Serialize)]
pub struct EgressChoice {
    /// "pool", "default", "ingress" or "block".
    pub kind: &'static str,
    pub pool: Option<String>,
    pub pool_country: Option<String>,
    /// Source addresses tried in order (for a pool).
    pub attempts: Vec<IpAddr>,
    /// What happens when every attempt fails.
    pub fallback: Option<Fallback>,
    pub family: Family,
    /// Destination families tried for a host name, in order.
    pub family_order: Vec<IpFamily>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub connection: ConnSummary,
    pub rules_total: usize,
    /// Candidate rules the index selected and the table verified, in rule order.
    pub checked: Vec<RuleTrace>,
    pub matched_rule: Option<String>,
    pub action: Action,
    /// The destination is in `deny_destinations`: refused whatever the rule says.
    pub destination_denied: bool,
    pub egress: EgressChoice,
}

fn trace_rule(policy: &Policy, index: u32, m: &ConnMeta<'_>) -> RuleTrace {
    let rule = &policy.rules[index as usize];
    let mut conditions = Vec::new();
    let matched = eval(&rule.when, m, &policy.lists, &mut |t, result| {
        let field = t.kind.field();
        conditions.push(Condition {
            text: rule
                .when_text
                .get(t.start as usize..t.end as usize)
                .unwrap_or("")
                .trim()
                .to_string(),
            field: field.name(),
            value: m.describe(field),
            result,
        });
    });
    RuleTrace {
        index,
        rule: rule.name.clone(),
        matched,
        conditions,
    }
}

/// Explains the decision for one connection, from facts built by the table's
/// [`Directory`](crate::facts::Directory).
pub fn explain(table: &CompiledPolicy, facts: &Facts<'_>) -> Explanation {
    let policy = table.policy();
    let m = &facts.meta();
    let mut seen = Vec::new();
    let d = table.decide_traced(m, |id, _| seen.push(id.0));
    let checked = seen.into_iter().map(|i| trace_rule(policy, i, m)).collect();
    Explanation {
        connection: ConnSummary {
            user: m.name.to_string(),
            groups: m.groups.to_vec(),
            posture_passed: m.posture_passed.to_vec(),
            src: facts.query().src.map(|s| s.to_string()),
            host: m.host.to_string(),
            dst_ip: m.dst_ip,
            dst_port: m.dst_port,
            listener: m.endpoint.to_string(),
            protocol: m.protocol.to_string(),
            geo: GeoFacts::of(m),
        },
        rules_total: policy.rules.len(),
        checked,
        matched_rule: d.rule.and_then(|r| policy.rule(r)).map(|r| r.name.clone()),
        action: d.action,
        destination_denied: m.dst_ip.is_some_and(|ip| {
            policy
                .settings
                .deny_destinations
                .iter()
                .any(|n| n.contains(&crate::meta::canonical_ip(ip)))
        }),
        egress: egress_choice(policy, &d, m),
    }
}

fn egress_choice(policy: &Policy, d: &Decision, m: &ConnMeta<'_>) -> EgressChoice {
    let pool = d.pool.and_then(|p| policy.pool(p));
    let kind = match d.action {
        Action::Egress => "pool",
        Action::Default => "default",
        Action::Ingress => "ingress",
        Action::Block => "block",
    };
    let key = egress::sticky_key(m.name, m.src_ip);
    let attempts = match (pool, m.dst_ip) {
        (Some(p), Some(ip)) => {
            egress::plan(p, crate::meta::canonical_ip(ip), key, |_| false).attempts
        }
        (Some(p), None) => {
            let mut all = Vec::new();
            for fam in egress::attempt_order(d.family, Some(p)) {
                let probe = match fam {
                    IpFamily::V4 => IpAddr::from([0, 0, 0, 0]),
                    IpFamily::V6 => IpAddr::from([0u16; 8]),
                };
                all.extend(egress::plan(p, probe, key, |_| false).attempts);
            }
            all
        }
        _ => Vec::new(),
    };
    EgressChoice {
        kind,
        pool: pool.map(|p| p.name.clone()),
        pool_country: pool.and_then(|p| p.location.as_ref()?.country.clone()),
        attempts,
        fallback: pool.map(|p| p.fallback),
        family: d.family,
        family_order: egress::attempt_order(d.family, pool).to_vec(),
    }
}

/// The result of one `[[test]]`.
#[derive(Debug, Clone)]
pub struct TestOutcome {
    pub name: String,
    pub loc: Loc,
    /// Empty when the test passed.
    pub failures: Vec<String>,
}

/// Runs every `[[test]]` of the policy against the compiled table.
pub fn run_tests(table: &CompiledPolicy) -> Vec<TestOutcome> {
    let policy = table.policy();
    policy.tests.iter().map(|t| run_test(table, t)).collect()
}

fn run_test(table: &CompiledPolicy, t: &PolicyTest) -> TestOutcome {
    let policy = table.policy();
    let c = &t.conn;
    let query = Query {
        user: c.user.as_deref().unwrap_or(""),
        fingerprint: None,
        listener: &c.listener,
        src: c.src,
        dst_ip: c.dst_ip,
        dst_port: c.dst_port,
        host: &c.host,
        protocol: c.protocol,
    };
    // A test states its posture (`posture`, or the `device` named) and its countries.
    let facts = table
        .directory()
        .facts(&query, None)
        .with_posture(&c.posture, &c.posture_failed)
        .with_countries(
            Country::from_code(&c.src_country),
            Country::from_code(&c.dst_country),
        );
    let ex = explain(table, &facts);
    let mut failures = Vec::new();
    let got_rule = ex
        .matched_rule
        .clone()
        .unwrap_or_else(|| "(no rule: default_action)".into());
    if let Some(want) = t.expect.rule.and_then(|r| policy.rule(r))
        && ex.matched_rule.as_deref() != Some(want.name.as_str())
    {
        failures.push(format!(
            "expected rule \"{}\", got \"{got_rule}\"",
            want.name
        ));
    }
    if let Some(want) = t.expect.action
        && ex.action != want
    {
        failures.push(format!(
            "expected action \"{want}\", got \"{}\" (rule \"{got_rule}\")",
            ex.action
        ));
    }
    if let Some(want) = t.expect.pool.and_then(|p| policy.pool(p))
        && ex.egress.pool.as_deref() != Some(want.name.as_str())
    {
        failures.push(format!(
            "expected pool \"{}\", got {} (rule \"{got_rule}\")",
            want.name,
            ex.egress
                .pool
                .as_deref()
                .map_or("no pool".to_string(), |p| format!("\"{p}\""))
        ));
    }
    if let Some(want) = t.expect.egress {
        let got = ex.egress.attempts.first();
        if got != Some(&want) {
            failures.push(format!(
                "expected egress {want}, got {} (rule \"{got_rule}\")",
                got.map_or(format!("{} egress", ex.egress.kind), |a| a.to_string())
            ));
        }
    }
    if ex.destination_denied && (t.expect.egress.is_some() || t.expect.pool.is_some()) {
        failures.push("the destination is in deny_destinations: the proxy refuses it".into());
    }
    TestOutcome {
        name: t.name.clone(),
        loc: t.loc,
        failures,
    }
}

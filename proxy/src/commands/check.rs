//! `egressd check`: every diagnostic as `file:line:col: severity: message`, then the
//! policy's `[[test]]` cases. Exit 1 on any error or failed test.

use std::path::Path;
use std::process::ExitCode;

use egressd_policy::CompiledPolicy;
use egressd_policy::explain::run_tests;

use super::{EXIT_DIAGNOSTICS, fail};
use crate::files::{Source, load};

pub fn run(path: &Path) -> ExitCode {
    let source = match load(path) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let (policy, sources, errors, warnings) = match source {
        Source::Config(c) => {
            print!("{}", c.render());
            let errors = c.diags.error_count();
            let warnings = c.diags.items.len() - errors;
            (c.policy, Some(c.sources), errors, warnings)
        }
        Source::Artifact(p) => (Some(p), None, 0, 0),
    };
    let mut failed = 0;
    let mut passed = 0;
    if let Some(policy) = policy {
        let geo_warnings = pool_locations(&policy);
        for w in &geo_warnings {
            println!("{}: warning: {w}", path.display());
        }
        let warnings = warnings + geo_warnings.len();
        let table = CompiledPolicy::new(policy);
        for t in run_tests(&table) {
            let at = sources
                .as_ref()
                .map_or_else(|| t.name.clone(), |s| s.position(t.loc));
            if t.failures.is_empty() {
                passed += 1;
            } else {
                failed += 1;
                for f in &t.failures {
                    println!("{at}: test failed: \"{}\": {f}", t.name);
                }
            }
        }
        let s = table.stats();
        println!(
            "{}: {} ({} enabled, {} checked for every connection), {}, {}, tests: {passed} passed, {failed} failed",
            path.display(),
            count(s.rules, "rule"),
            s.enabled,
            s.unindexed,
            count(errors, "error"),
            count(warnings, "warning")
        );
    } else {
        println!(
            "{}: {}, {}",
            path.display(),
            count(errors, "error"),
            count(warnings, "warning")
        );
    }
    if errors > 0 || failed > 0 {
        ExitCode::from(EXIT_DIAGNOSTICS)
    } else {
        ExitCode::SUCCESS
    }
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Pools whose addresses the geolocation database places in another country than the pool's
/// `location` says (a sign the addresses or the location are wrong). Needs the database: when
/// it cannot be read, says so on stderr and checks nothing (`run` refuses to start then).
fn pool_locations(policy: &egressd_policy::Policy) -> Vec<String> {
    let Some(path) = &policy.geoip else {
        return Vec::new();
    };
    let db = match crate::geo::GeoDb::open(path) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("note: pool locations not checked: {e}");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for pool in &policy.pools {
        let Some(want) = pool.location.as_ref().and_then(|l| l.country.as_deref()) else {
            continue;
        };
        let v4 = pool.ipv4.iter().map(|a| std::net::IpAddr::V4(*a));
        let v6 = pool.ipv6.iter().map(|n| std::net::IpAddr::V6(n.network()));
        for addr in v4.chain(v6) {
            match db.lookup(addr) {
                Some(c) if c.code() != want => out.push(format!(
                    "pool \"{}\" says {want} but {addr} geolocates to {}",
                    pool.name,
                    c.code()
                )),
                _ => {}
            }
        }
    }
    out
}

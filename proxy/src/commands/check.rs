//! `egressd check`: every diagnostic as `file:line:col: severity: message`, then the
//! policy's `[[test]]` cases. Exit 1 on any error or failed test.
//!
//! A complete preflight: besides the configuration's own diagnostics, every problem `run`
//! would refuse to start on is reported, among them at the key that names it: each TLS
//! certificate, key and client CA that cannot be used, the geolocation database; and pool
//! addresses this host does not have are warned about (`preflight`). Whether this host lets
//! glommio run at all (locked memory, io_uring) is noted on standard error.

use std::path::Path;
use std::process::ExitCode;

use egressd_policy::explain::run_tests;
use egressd_policy::named::Named;
use egressd_policy::{CompiledPolicy, Diagnostic, Diagnostics, Severity};

use super::{EXIT_DIAGNOSTICS, fail};
use crate::files::{Source, load};
use crate::geo::GeoDb;
use crate::preflight;

pub fn run(path: &Path) -> ExitCode {
    let source = match load(path) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let (policy, sources, diags, named) = match source {
        Source::Config(c) => (c.policy, Some(c.sources), c.diags, c.named),
        Source::Artifact(p) => {
            let named = Named::from_policy(&p);
            (Some(p), None, Diagnostics::default(), named)
        }
    };
    // What the configuration names (files, pool addresses), checked on this host and
    // reported among the configuration's own diagnostics, in file order.
    let (findings, geo) = preflight::configuration(&named, policy.as_ref());
    let mut diags = diags;
    let mut unlocated = Vec::new();
    for f in findings {
        match f.loc {
            Some(loc) if sources.is_some() => diags.items.push(Diagnostic {
                severity: f.severity,
                loc,
                message: f.message,
            }),
            _ => unlocated.push(f),
        }
    }
    diags.sort();
    if let Some(sources) = &sources {
        print!("{}", sources.render_all(&diags));
    }
    for f in &unlocated {
        println!("{}: {}: {}", path.display(), f.severity, f.message);
    }
    let errors = diags.error_count()
        + unlocated
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
    let warnings = diags.items.len() + unlocated.len() - errors;
    if let Err(e) = preflight::host() {
        eprintln!("egressd: note: `egressd run` would not start on this host: {e}");
    }
    let mut failed = 0;
    let mut passed = 0;
    if let Some(policy) = policy {
        let geo_warnings = geo
            .as_ref()
            .map_or_else(Vec::new, |db| pool_locations(&policy, db));
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
/// `location` says (a sign the addresses or the location are wrong).
fn pool_locations(policy: &egressd_policy::Policy, db: &GeoDb) -> Vec<String> {
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

//! `egressd compile`: validate a configuration and write it as a versioned artifact.

use std::path::Path;
use std::process::ExitCode;

use egressd_policy::artifact;

use super::fail;
use crate::files::{Source, load};

pub fn run(config: &Path, output: &Path) -> ExitCode {
    let policy = match load(config) {
        Ok(Source::Config(c)) => {
            eprint!("{}", c.render());
            match c.policy {
                Some(p) => p,
                None => {
                    return fail(format!(
                        "{}: not compiled: fix the errors above",
                        config.display()
                    ));
                }
            }
        }
        Ok(Source::Artifact(p)) => p,
        Err(e) => return fail(e),
    };
    let bytes = match artifact::encode(&policy) {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    // Write beside the target and rename, so a reader never sees half a file.
    let tmp = output.with_extension("tmp");
    if let Err(e) = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, output)) {
        return fail(format!("{}: {e}", output.display()));
    }
    println!(
        "{}: {} rules, {} bytes, format v{}, sha256 {}",
        output.display(),
        policy.rules.len(),
        bytes.len(),
        artifact::FORMAT_VERSION,
        artifact::content_hash(&policy)
    );
    ExitCode::SUCCESS
}

//! egressd policy engine: configuration model, the rule language, validation, the compiled
//! decision table and its reference evaluator, and egress address selection.
//!
//! Pure: no sockets, files, clocks, threads or randomness. Callers pass file contents (through
//! [`config::FileSource`]), time and hash keys in.
#![forbid(unsafe_code)]

pub mod artifact;
pub mod compile;
pub mod config;
pub mod diag;
pub mod egress;
pub mod explain;
pub mod expr;
pub mod facts;
pub mod geo;
pub mod meta;
pub mod model;
pub mod named;
pub mod synth;
pub mod validate;

use std::path::Path;

pub use compile::{CompiledPolicy, Decision, decide_reference, decide_reference_without_address};
pub use config::{FileSource, MemFiles};
pub use diag::{Diagnostic, Diagnostics, Severity, SourceMap};
pub use facts::{Directory, Facts, Query};
pub use meta::ConnMeta;
pub use model::{Policy, PoolId, RuleId};

/// The outcome of reading and validating a configuration.
#[derive(Debug)]
pub struct Checked {
    pub sources: SourceMap,
    pub diags: Diagnostics,
    /// Present when there was no error.
    pub policy: Option<Policy>,
    /// Every file read (the root first), for reloads.
    pub files: Vec<std::path::PathBuf>,
    /// The files and local addresses the configuration names, with their locations, for the
    /// checks only the proxy can make (present even when there are errors).
    pub named: named::Named,
}

impl Checked {
    /// Every diagnostic as `file:line:col: severity: message` lines.
    pub fn render(&self) -> String {
        self.sources.render_all(&self.diags)
    }
}

/// Reads, parses and validates the configuration at `root`. Fails only when the root file
/// cannot be read.
pub fn check_file(root: &Path, fs: &dyn FileSource) -> Result<Checked, String> {
    let mut diags = Diagnostics::default();
    let loaded = config::load(root, fs, &mut diags)?;
    let policy = validate::validate(&loaded, &mut diags);
    let named = named::Named::from_spec(&loaded.spec, &loaded.base_dir);
    Ok(Checked {
        sources: loaded.sources,
        diags,
        policy,
        files: loaded.files,
        named,
    })
}

/// As [`check_file`], for a configuration held in a string.
pub fn check_str(name: &str, text: &str) -> Checked {
    let fs = MemFiles::new().with(name, text);
    check_file(Path::new(name), &fs).unwrap_or_else(|e| Checked {
        sources: SourceMap::default(),
        diags: Diagnostics::default(),
        policy: None,
        files: vec![e.into()],
        named: named::Named::default(),
    })
}

//! Temporary files for the geo tests, removed when dropped (also when a test panics).

use std::path::{Path, PathBuf};

/// A file named `name` in a directory of its own under the system temp directory.
#[derive(Debug)]
pub(super) struct TempFile {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TempFile {
    /// `name` is the file's name, so tests can choose the extension (and see it in errors).
    pub(super) fn with_bytes(name: &str, bytes: &[u8]) -> TempFile {
        let dir = tempfile::Builder::new()
            .prefix("egressd-geo-test-")
            .tempdir()
            .expect("create a temporary test directory");
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write a temporary test file");
        TempFile { path, _dir: dir }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

//! Temporary files for the geo tests, removed when dropped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A file under the system temp directory with a name unique to this process and call.
#[derive(Debug)]
pub(super) struct TempFile {
    path: PathBuf,
}

impl TempFile {
    /// `name` ends the file name, so tests can choose the extension.
    pub(super) fn with_bytes(name: &str, bytes: &[u8]) -> TempFile {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "egressd-geo-test-{}-{n}-{name}",
            std::process::id()
        ));
        std::fs::write(&path, bytes).expect("write a temporary test file");
        TempFile { path }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // Best effort: a leftover file in the temp directory is harmless.
        let _ = std::fs::remove_file(&self.path);
    }
}

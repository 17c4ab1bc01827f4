//! Reading configurations from disk for the control side (never on a shard): the real
//! [`FileSource`], and loading either a TOML configuration or a compiled artifact.

use std::path::{Path, PathBuf};

use egressd_policy::{Checked, FileSource, Policy, artifact, check_file};

/// The local file system.
#[derive(Debug, Clone, Copy)]
pub struct DiskFiles;

impl FileSource for DiskFiles {
    fn read(&self, path: &Path) -> Result<String, String> {
        std::fs::read_to_string(path).map_err(|e| e.to_string())
    }

    fn list_dir(&self, dir: &Path) -> Result<Vec<String>, String> {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        std::fs::read_dir(dir)
            .map_err(|e| e.to_string())?
            .map(|e| {
                e.map(|e| e.file_name().to_string_lossy().into_owned())
                    .map_err(|e| e.to_string())
            })
            .collect()
    }
}

/// A policy from a TOML file (with its diagnostics) or from a compiled artifact.
#[derive(Debug)]
pub enum Source {
    Config(Checked),
    Artifact(Policy),
}

impl Source {
    /// The policy, if it is valid.
    pub fn policy(self) -> Option<Policy> {
        match self {
            Source::Config(c) => c.policy,
            Source::Artifact(p) => Some(p),
        }
    }
}

/// Why a configuration or artifact file could not be loaded at all (as opposed to loading
/// with diagnostics).
#[derive(Debug)]
pub enum FileError {
    Read(PathBuf, std::io::Error),
    /// Its magic says artifact, but it cannot be decoded.
    Artifact(PathBuf, artifact::ArtifactError),
    /// The configuration reader gave up (the file vanished between two reads, say).
    Config(String),
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileError::Read(p, e) => write!(f, "{}: {e}", p.display()),
            FileError::Artifact(p, e) => write!(f, "{}: {e}", p.display()),
            FileError::Config(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for FileError {}

/// Loads `path`, telling a compiled artifact from TOML by its magic bytes.
pub fn load(path: &Path) -> Result<Source, FileError> {
    let bytes = std::fs::read(path).map_err(|e| FileError::Read(path.to_owned(), e))?;
    if artifact::is_artifact(&bytes) {
        return artifact::decode(&bytes)
            .map(Source::Artifact)
            .map_err(|e| FileError::Artifact(path.to_owned(), e));
    }
    check_file(path, &DiskFiles)
        .map(Source::Config)
        .map_err(FileError::Config)
}

//! Why a geolocation database could not be loaded.
//!
//! Every variant is a problem with the configured file (the operator's side, never a client's)
//! and names the path. Retrying does not help until the file changes: at start-up the error is
//! fatal, on reload the old database keeps serving.

use std::error::Error;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A geolocation database that could not be loaded.
#[derive(Debug)]
pub enum GeoError {
    /// The file does not exist.
    NotFound { path: PathBuf },
    /// The file exists but could not be read (permissions, a directory, an I/O error).
    Unreadable { path: PathBuf, source: io::Error },
    /// The file is (or claims by its name to be) a MaxMind DB but is not a usable one.
    InvalidMmdb { path: PathBuf, reason: String },
    /// Neither a MaxMind DB nor text.
    NotText { path: PathBuf, reason: String },
    /// A line of a text ranges file is wrong.
    Ranges {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A text ranges file without a single range.
    Empty { path: PathBuf },
}

impl GeoError {
    pub(super) fn from_io(path: &Path, error: io::Error) -> GeoError {
        if error.kind() == io::ErrorKind::NotFound {
            GeoError::NotFound { path: path.into() }
        } else {
            GeoError::Unreadable {
                path: path.into(),
                source: error,
            }
        }
    }

    /// The database file the error is about.
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        match self {
            GeoError::NotFound { path }
            | GeoError::Unreadable { path, .. }
            | GeoError::InvalidMmdb { path, .. }
            | GeoError::NotText { path, .. }
            | GeoError::Ranges { path, .. }
            | GeoError::Empty { path } => path,
        }
    }
}

impl fmt::Display for GeoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GeoError::NotFound { path } => {
                write!(f, "geoip database {} does not exist", path.display())
            }
            GeoError::Unreadable { path, source } => {
                write!(f, "cannot read geoip database {}: {source}", path.display())
            }
            GeoError::InvalidMmdb { path, reason } => {
                write!(f, "{} is not a valid MaxMind DB: {reason}", path.display())
            }
            GeoError::NotText { path, reason } => write!(
                f,
                "{} is not a valid MaxMind DB (no metadata section) and not a text ranges \
                 file ({reason})",
                path.display()
            ),
            GeoError::Ranges {
                path,
                line,
                message,
            } => write!(f, "{}:{line}: {message}", path.display()),
            GeoError::Empty { path } => write!(
                f,
                "{}: the geoip ranges file has no ranges (only comments or blank lines)",
                path.display()
            ),
        }
    }
}

impl Error for GeoError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            GeoError::Unreadable { source, .. } => Some(source),
            _ => None,
        }
    }
}

//! Diagnostics: every problem found in a configuration, located at `file:line:col`.
//!
//! Positions are byte spans into a file registered in a [`SourceMap`]; rendering turns them into
//! 1-based line and column (columns count characters, as editors do).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Index of a file in the [`SourceMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileId(pub u16);

/// A byte range in one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Loc {
    pub file: FileId,
    pub start: u32,
    pub end: u32,
}

impl Loc {
    pub fn new(file: FileId, span: std::ops::Range<usize>) -> Self {
        Loc {
            file,
            start: clamp_u32(span.start),
            end: clamp_u32(span.end),
        }
    }

    /// A sub-range starting `offset` bytes into this one.
    pub fn sub(self, offset: usize, len: usize) -> Self {
        let start = self.start.saturating_add(clamp_u32(offset));
        Loc {
            file: self.file,
            start,
            end: start.saturating_add(clamp_u32(len)),
        }
    }
}

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A value together with where it was written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Located<T> {
    pub value: T,
    pub loc: Loc,
}

impl<T> Located<T> {
    pub fn new(value: T, loc: Loc) -> Self {
        Located { value, loc }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub loc: Loc,
    pub message: String,
}

impl Diagnostic {
    pub fn error(loc: Loc, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            loc,
            message: message.into(),
        }
    }

    pub fn warning(loc: Loc, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            loc,
            message: message.into(),
        }
    }
}

/// The collected diagnostics of one load or compile.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn error(&mut self, loc: Loc, message: impl Into<String>) {
        self.items.push(Diagnostic::error(loc, message));
    }

    pub fn warning(&mut self, loc: Loc, message: impl Into<String>) {
        self.items.push(Diagnostic::warning(loc, message));
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn error_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    /// Orders diagnostics by file and position (errors before warnings at the same place) and
    /// drops exact repeats, so output is stable whatever order the checks ran in.
    pub fn sort(&mut self) {
        self.items
            .sort_by(|a, b| (a.loc, a.severity, &a.message).cmp(&(b.loc, b.severity, &b.message)));
        self.items.dedup();
    }
}

/// One loaded file: its display name and text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    fn new(name: String, text: String) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceFile {
            name,
            text,
            line_starts,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, col + 1)
    }
}

/// Every file a configuration was read from, so locations can be rendered.
#[derive(Debug, Default, Clone)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> FileId {
        let id = FileId(u16::try_from(self.files.len()).unwrap_or(u16::MAX));
        self.files.push(SourceFile::new(name.into(), text.into()));
        id
    }

    pub fn file(&self, id: FileId) -> Option<&SourceFile> {
        self.files.get(usize::from(id.0))
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// `file:line:col` of a location.
    pub fn position(&self, loc: Loc) -> String {
        match self.file(loc.file) {
            Some(f) => {
                let (line, col) = f.line_col(loc.start as usize);
                format!("{}:{line}:{col}", f.name)
            }
            None => "<unknown>:0:0".to_string(),
        }
    }

    /// The source text a location covers.
    pub fn snippet(&self, loc: Loc) -> &str {
        self.file(loc.file)
            .and_then(|f| f.text.get(loc.start as usize..loc.end as usize))
            .unwrap_or("")
    }

    pub fn render(&self, d: &Diagnostic) -> String {
        let kind = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        format!("{}: {kind}: {}", self.position(d.loc), d.message)
    }

    pub fn render_all(&self, diags: &Diagnostics) -> String {
        diags.items.iter().map(|d| self.render(d) + "\n").collect()
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_from_one() {
        let mut map = SourceMap::default();
        let id = map.add("a.toml", "ab\nçd = 1\n");
        assert_eq!(map.position(Loc::new(id, 0..1)), "a.toml:1:1");
        assert_eq!(map.position(Loc::new(id, 3..4)), "a.toml:2:1");
        // 'ç' is two bytes: 'd' starts at byte 5, column 2.
        assert_eq!(map.position(Loc::new(id, 5..6)), "a.toml:2:2");
    }
}

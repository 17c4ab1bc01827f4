//! Loading a configuration: files and their `include`s, parsed into [`spec::ConfigSpec`]
//! with every syntax and type problem collected as a located diagnostic.
//!
//! File access goes through [`FileSource`] so this crate stays free of I/O: the binary reads
//! the real file system, tests use [`MemFiles`].

pub(crate) mod reader;
pub mod spec;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use toml::de::DeTable;

use crate::diag::{Diagnostics, Loc, Located, SourceMap};
use reader::Reader;
use spec::ConfigSpec;

/// Read access to configuration files.
pub trait FileSource {
    /// The whole text of a file.
    fn read(&self, path: &Path) -> Result<String, String>;
    /// The names of the entries of a directory.
    fn list_dir(&self, dir: &Path) -> Result<Vec<String>, String>;
}

/// Files held in memory, for tests and for configs embedded in the binary.
#[derive(Debug, Default, Clone)]
pub struct MemFiles {
    files: BTreeMap<PathBuf, String>,
}

impl MemFiles {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        self.files.insert(normalize(&path.into()), text.into());
        self
    }
}

impl FileSource for MemFiles {
    fn read(&self, path: &Path) -> Result<String, String> {
        self.files
            .get(&normalize(path))
            .cloned()
            .ok_or_else(|| "No such file or directory".to_string())
    }

    fn list_dir(&self, dir: &Path) -> Result<Vec<String>, String> {
        let dir = normalize(dir);
        Ok(self
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir.as_path()))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect())
    }
}

/// Removes `.` and resolves `..` lexically, so include cycles are found without touching disk.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// A configuration read from its files.
#[derive(Debug)]
pub struct Loaded {
    pub sources: SourceMap,
    pub spec: ConfigSpec,
    /// Directory of the root file: relative paths in the config (certificates, databases) are
    /// taken from here.
    pub base_dir: PathBuf,
    /// Every file read, in order, for reload and hashing.
    pub files: Vec<PathBuf>,
}

/// Reads `root` and everything it includes. Fails only if the root file itself cannot be read;
/// every other problem is a diagnostic.
pub fn load(root: &Path, fs: &dyn FileSource, diags: &mut Diagnostics) -> Result<Loaded, String> {
    let text = fs
        .read(root)
        .map_err(|e| format!("{}: {e}", root.display()))?;
    let mut loaded = Loaded {
        sources: SourceMap::default(),
        spec: ConfigSpec::default(),
        base_dir: root.parent().map(Path::to_path_buf).unwrap_or_default(),
        files: Vec::new(),
    };
    let mut stack = Vec::new();
    load_file(root, text, fs, diags, &mut loaded, &mut stack);
    Ok(loaded)
}

fn load_file(
    path: &Path,
    text: String,
    fs: &dyn FileSource,
    diags: &mut Diagnostics,
    loaded: &mut Loaded,
    stack: &mut Vec<PathBuf>,
) {
    let file = loaded.sources.add(path.display().to_string(), text.clone());
    loaded.files.push(path.to_path_buf());
    stack.push(normalize(path));
    let (doc, errors) = DeTable::parse_recoverable(&text);
    for e in errors {
        let span = e.span().unwrap_or(0..0);
        diags.error(Loc::new(file, span), e.message().trim_end().to_string());
    }
    let mut r = Reader {
        file,
        text: &text,
        diags,
    };
    let (spec, includes) = spec::read_file(&doc, &mut r);
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    for inc in includes {
        for target in expand_include(&dir, &inc, fs, diags) {
            if stack.contains(&normalize(&target)) {
                diags.error(
                    inc.loc,
                    format!("include cycle: {} includes itself", target.display()),
                );
                continue;
            }
            match fs.read(&target) {
                Ok(t) => load_file(&target, t, fs, diags, loaded, stack),
                Err(e) => diags.error(
                    inc.loc,
                    format!("cannot read included file {}: {e}", target.display()),
                ),
            }
        }
    }
    merge(&mut loaded.spec, spec, &loaded.sources, diags);
    stack.pop();
}

/// Paths an include pattern names, relative to the including file. `*` and `?` may appear in
/// the last component; matches are taken in name order.
fn expand_include(
    dir: &Path,
    pattern: &Located<String>,
    fs: &dyn FileSource,
    diags: &mut Diagnostics,
) -> Vec<PathBuf> {
    let full = dir.join(&pattern.value);
    let Some(name) = full.file_name().and_then(|n| n.to_str()) else {
        diags.error(pattern.loc, "include must name a file");
        return Vec::new();
    };
    let parent = full.parent().map(Path::to_path_buf).unwrap_or_default();
    if parent.to_string_lossy().contains(['*', '?']) {
        diags.error(
            pattern.loc,
            "wildcards are only allowed in the last path component of an include",
        );
        return Vec::new();
    }
    if !name.contains(['*', '?']) {
        return vec![full];
    }
    match fs.list_dir(&parent) {
        Ok(mut names) => {
            names.sort();
            names
                .into_iter()
                .filter(|n| wildcard_match(name, n))
                .map(|n| parent.join(n))
                .collect()
        }
        Err(e) => {
            diags.error(
                pattern.loc,
                format!("cannot list directory {}: {e}", parent.display()),
            );
            Vec::new()
        }
    }
}

/// Shell-style matching of `*` (any run) and `?` (one character).
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn merge_single<T>(
    into: &mut Option<Located<T>>,
    from: Option<Located<T>>,
    what: &str,
    sources: &SourceMap,
    diags: &mut Diagnostics,
) {
    if let Some(new) = from {
        match into {
            Some(old) => diags.error(
                new.loc,
                format!(
                    "{what} is defined twice; first at {}",
                    sources.position(old.loc)
                ),
            ),
            None => *into = Some(new),
        }
    }
}

/// Appends one file's spec; an included file's entries come before the including file's, as
/// if its text stood where the `include` key is (at the top of the file).
fn merge(into: &mut ConfigSpec, from: ConfigSpec, sources: &SourceMap, diags: &mut Diagnostics) {
    merge_single(&mut into.proxy, from.proxy, "[proxy]", sources, diags);
    merge_single(&mut into.policy, from.policy, "[policy]", sources, diags);
    merge_single(&mut into.geoip, from.geoip, "[geoip]", sources, diags);
    into.listeners.extend(from.listeners);
    into.users.extend(from.users);
    into.devices.extend(from.devices);
    into.pools.extend(from.pools);
    into.lists.extend(from.lists);
    into.rules.extend(from.rules);
    into.tests.extend(from.tests);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.toml", "a.toml"));
        assert!(wildcard_match("r?.toml", "r1.toml"));
        assert!(!wildcard_match("*.toml", "a.toml.bak"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*b*c", "aXXbYc"));
    }

    #[test]
    fn includes_come_first_and_cycles_are_errors() {
        let fs = MemFiles::new()
            .with("/etc/e/main.toml", "include = [\"rules/*.toml\", \"main.toml\"]\n[[rule]]\nname = \"last\"\naction = \"default\"\n")
            .with("/etc/e/rules/b.toml", "[[rule]]\nname = \"b\"\naction = \"block\"\n")
            .with("/etc/e/rules/a.toml", "[[rule]]\nname = \"a\"\naction = \"block\"\n");
        let mut diags = Diagnostics::default();
        let loaded = load(Path::new("/etc/e/main.toml"), &fs, &mut diags).unwrap();
        let names: Vec<_> = loaded
            .spec
            .rules
            .iter()
            .map(|r| r.name.as_ref().unwrap().value.as_str())
            .collect();
        assert_eq!(names, ["a", "b", "last"]);
        let rendered = loaded.sources.render_all(&diags);
        assert_eq!(
            rendered,
            "/etc/e/main.toml:1:28: error: include cycle: /etc/e/main.toml includes itself\n"
        );
    }
}

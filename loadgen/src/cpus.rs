//! CPU lists for `--cpus`: `1`, `0,1`, `0-3`, `0,2-3`.
//!
//! Executor `i` is pinned to the `i`-th listed CPU (wrapping), so `--threads 2 --cpus 1` puts
//! both executors on CPU 1 and leaves CPU 0 to the proxy under test.

use std::fmt;

/// An ordered list of CPU numbers, without duplicates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuList(Vec<usize>);

impl CpuList {
    /// The CPU executor `index` runs on, or `None` when no list was given (unpinned).
    pub fn for_executor(&self, index: usize) -> Option<usize> {
        if self.0.is_empty() {
            None
        } else {
            self.0.get(index % self.0.len()).copied()
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(usize::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// Parses a comma-separated list of CPUs and inclusive ranges.
pub fn parse(text: &str) -> Result<CpuList, String> {
    let mut cpus = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (number(a, text)?, number(b, text)?),
            None => {
                let n = number(part, text)?;
                (n, n)
            }
        };
        if first > last {
            return Err(format!("range `{part}` in `{text}` runs backwards"));
        }
        for cpu in first..=last {
            if cpus.contains(&cpu) {
                return Err(format!("CPU {cpu} appears twice in `{text}`"));
            }
            cpus.push(cpu);
        }
    }
    Ok(CpuList(cpus))
}

fn number(part: &str, whole: &str) -> Result<usize, String> {
    part.trim()
        .parse()
        .map_err(|_| format!("`{whole}` is not a CPU list (try 1, 0,1 or 0-3)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_singles_lists_and_ranges() {
        assert_eq!(parse("1").unwrap(), CpuList(vec![1]));
        assert_eq!(parse("0,1").unwrap(), CpuList(vec![0, 1]));
        assert_eq!(parse("0,2-4").unwrap(), CpuList(vec![0, 2, 3, 4]));
        assert_eq!(parse("0,2-4").unwrap().to_string(), "0,2,3,4");
    }

    #[test]
    fn rejects_bad_lists() {
        assert!(parse("").is_err());
        assert!(parse("a").is_err());
        assert!(parse("3-1").is_err());
        assert!(parse("1,1").is_err());
        assert!(parse("1,").is_err());
    }

    #[test]
    fn executors_wrap_around_the_list() {
        let list = parse("1").unwrap();
        assert_eq!(list.for_executor(0), Some(1));
        assert_eq!(list.for_executor(3), Some(1));
        assert_eq!(CpuList::default().for_executor(0), None);
    }
}

//! Turning the host a client asked for into the fully qualified names to query, in order.
//!
//! glibc's `res_search` rules: a trailing dot makes the name absolute (asked as-is only); a name
//! with at least `ndots` dots is asked as-is first and then with each search suffix; a name with
//! fewer dots tries the suffixes first and itself last. Host names are checked here too, so
//! nothing that is not a DNS name (spaces, slashes, empty labels, over-long labels) is ever put
//! on the wire.

use hickory_proto::rr::Name;

use super::DnsError;

/// RFC 1035: 63 octets per label, 253 characters of dotted text (255 on the wire).
const MAX_LABEL: usize = 63;
const MAX_NAME: usize = 253;

/// The absolute names to try for `host`, most likely first.
pub(crate) fn query_names(host: &str, search: &[String], ndots: u8) -> Result<Vec<Name>, DnsError> {
    let (relative, absolute) = match host.strip_suffix('.') {
        Some(stripped) => (stripped, true),
        None => (host, false),
    };
    if !is_valid_name(relative) {
        return Err(DnsError::InvalidName);
    }
    let as_is = fqdn(relative).ok_or(DnsError::InvalidName)?;
    if absolute {
        return Ok(vec![as_is]);
    }
    let dots = relative.bytes().filter(|&b| b == b'.').count();
    let enough_dots = dots >= usize::from(ndots);
    let mut names = Vec::with_capacity(search.len() + 1);
    if enough_dots {
        names.push(as_is.clone());
    }
    for suffix in search {
        // A suffix that makes the name too long is skipped, as glibc does.
        if let Some(name) = fqdn(&format!("{relative}.{suffix}"))
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    if !enough_dots && !names.contains(&as_is) {
        names.push(as_is);
    }
    Ok(names)
}

/// True for a dotted host name (no trailing dot) made of letters, digits, `-` and `_` in labels
/// of 1 to 63 characters. Underscores are accepted because real service names use them.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn fqdn(relative: &str) -> Option<Name> {
    if !is_valid_name(relative) {
        return None;
    }
    Name::from_ascii(format!("{relative}.")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(host: &str, search: &[&str], ndots: u8) -> Vec<String> {
        let search: Vec<String> = search.iter().map(|s| s.to_string()).collect();
        query_names(host, &search, ndots)
            .unwrap()
            .iter()
            .map(|n| n.to_ascii())
            .collect()
    }

    #[test]
    fn short_name_tries_suffixes_first() {
        assert_eq!(
            names("db", &["corp.example", "example.net"], 1),
            vec!["db.corp.example.", "db.example.net.", "db."]
        );
    }

    #[test]
    fn enough_dots_tries_as_is_first() {
        assert_eq!(
            names("www.example.com", &["corp.example"], 1),
            vec!["www.example.com.", "www.example.com.corp.example."]
        );
        // Kubernetes-style ndots:5 makes a three-dot name relative.
        assert_eq!(
            names("a.b.c.d", &["svc.local"], 5),
            vec!["a.b.c.d.svc.local.", "a.b.c.d."]
        );
        // ndots:0 asks even a single label as-is first.
        assert_eq!(names("db", &["x.example"], 0), vec!["db.", "db.x.example."]);
    }

    #[test]
    fn trailing_dot_is_absolute() {
        assert_eq!(names("db.", &["corp.example"], 1), vec!["db."]);
        assert_eq!(names("Example.COM.", &[], 1), vec!["Example.COM."]);
    }

    #[test]
    fn no_search_list() {
        assert_eq!(names("localhost", &[], 1), vec!["localhost."]);
    }

    #[test]
    fn too_long_suffix_is_skipped() {
        let label = "a".repeat(63);
        let long_suffix = format!("{label}.{label}.{label}");
        let host = format!("{label}.b");
        assert_eq!(
            names(&host, &[&long_suffix, "ok.example"], 1),
            vec![format!("{host}."), format!("{host}.ok.example.")]
        );
    }

    #[test]
    fn invalid_names_are_refused() {
        let long_label = "a".repeat(64);
        let long_name = ["abcdefghi"; 30].join(".");
        for host in [
            "",
            ".",
            "..",
            "a..b",
            ".a",
            "a b",
            "a/b",
            "a\\.b",
            "exa\u{e9}mple.com",
            "a*.example",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(
                matches!(query_names(host, &[], 1), Err(DnsError::InvalidName)),
                "{host:?}"
            );
        }
        assert!(is_valid_name("_sip._tcp.example.com"));
        assert!(is_valid_name("xn--bcher-kva.example"));
    }
}

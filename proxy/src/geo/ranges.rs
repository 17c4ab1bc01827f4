//! Country lookups in a text file of address ranges, for operators who keep their own
//! geolocation (a few office networks, a corrected block) or use a CSV export.
//!
//! One range per line, either `CIDR,CC` (`127.0.0.2/32,PT`; a bare address is one host) or
//! `START,END,CC` with inclusive IPv4 or IPv6 ends (the layout of ip-location-db's
//! `dbip-country-ipv4.csv`). `#` starts a comment; blank lines are ignored; fields may be padded
//! with spaces; the country code is any two ASCII letters, upper-cased (vendors use XK and ZZ
//! beside ISO 3166-1).
//!
//! Overlapping ranges are rejected, naming both lines: a file where two lines claim the same
//! address has no one right answer, and picking one silently (first, last or most specific)
//! would hide a mistake in a file that decides where traffic leaves from. Adjacent ranges of
//! the same country are merged. The table is two sorted vectors (IPv4 and IPv6) searched by
//! binary search; IPv4-mapped IPv6 ranges (`::ffff:0:0/96`) are stored as IPv4, matching how
//! lookups canonicalise addresses.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use egressd_policy::geo::Country;

/// A parse error, at a 1-based line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RangeError {
    pub(super) line: usize,
    pub(super) message: String,
}

/// An inclusive range of addresses (as integers) and its country.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span<A> {
    first: A,
    last: A,
    country: [u8; 2],
}

/// Both families' ranges, each sorted and non-overlapping.
pub(super) struct RangeTable {
    v4: Vec<Span<u32>>,
    v6: Vec<Span<u128>>,
    /// Lines that held a range, before merging.
    entries: usize,
}

impl fmt::Debug for RangeTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RangeTable")
            .field("v4", &self.v4.len())
            .field("v6", &self.v6.len())
            .field("entries", &self.entries)
            .finish()
    }
}

/// What one line said, before sorting.
struct Parsed<A> {
    span: Span<A>,
    line: usize,
}

impl RangeTable {
    /// Parses the file's text. `Ok(None)` when it holds no range at all (only comments and
    /// blank lines), which the caller reports with the path.
    pub(super) fn parse(text: &str) -> Result<Option<RangeTable>, RangeError> {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.split_once('#').map_or(raw, |(before, _)| before).trim();
            if content.is_empty() {
                continue;
            }
            let (first, last, country) =
                parse_line(content).map_err(|message| RangeError { line, message })?;
            match (first, last) {
                (IpAddr::V4(first), IpAddr::V4(last)) => v4.push(Parsed {
                    span: Span {
                        first: u32::from(first),
                        last: u32::from(last),
                        country,
                    },
                    line,
                }),
                (IpAddr::V6(first), IpAddr::V6(last)) => v6.push(Parsed {
                    span: Span {
                        first: u128::from(first),
                        last: u128::from(last),
                        country,
                    },
                    line,
                }),
                // parse_line only returns ends of one family.
                _ => {
                    return Err(RangeError {
                        line,
                        message: "start and end are of different address families".to_owned(),
                    });
                }
            }
        }
        let entries = v4.len() + v6.len();
        if entries == 0 {
            return Ok(None);
        }
        Ok(Some(RangeTable {
            v4: build(v4, |a| IpAddr::V4(Ipv4Addr::from(a)))?,
            v6: build(v6, |a| IpAddr::V6(Ipv6Addr::from(a)))?,
            entries,
        }))
    }

    /// The country of `ip` (already canonical: IPv4-mapped addresses are plain IPv4).
    pub(super) fn lookup(&self, ip: IpAddr) -> Option<Country> {
        let country = match ip {
            IpAddr::V4(v4) => find(&self.v4, u32::from(v4)),
            IpAddr::V6(v6) => find(&self.v6, u128::from(v6)),
        }?;
        Country::from_ascii(country)
    }

    pub(super) fn describe(&self) -> String {
        let mut countries: Vec<[u8; 2]> = self
            .v4
            .iter()
            .map(|s| s.country)
            .chain(self.v6.iter().map(|s| s.country))
            .collect();
        countries.sort_unstable();
        countries.dedup();
        format!(
            "{} entries, {} IPv4 and {} IPv6 ranges after merging, {} countries",
            self.entries,
            self.v4.len(),
            self.v6.len(),
            countries.len()
        )
    }
}

fn find<A: Ord + Copy>(spans: &[Span<A>], address: A) -> Option<[u8; 2]> {
    // The last span starting at or before the address is the only one that can hold it.
    let after = spans.partition_point(|s| s.first <= address);
    let span = spans.get(after.checked_sub(1)?)?;
    (address <= span.last).then_some(span.country)
}

/// Sorts one family's ranges, rejects overlaps and merges neighbours of the same country.
fn build<A>(
    mut parsed: Vec<Parsed<A>>,
    show: impl Fn(A) -> IpAddr,
) -> Result<Vec<Span<A>>, RangeError>
where
    A: Ord + Copy + Successor,
{
    // Ties on the start are broken by line so that the error names the later line.
    parsed.sort_unstable_by_key(|p| (p.span.first, p.line));
    let mut spans: Vec<Span<A>> = Vec::with_capacity(parsed.len());
    let mut previous: Option<&Parsed<A>> = None;
    for current in &parsed {
        if let Some(prev) = previous
            && current.span.first <= prev.span.last
        {
            let (earlier, later) = if prev.line < current.line {
                (prev, current)
            } else {
                (current, prev)
            };
            return Err(RangeError {
                line: later.line,
                message: format!(
                    "range {}-{} overlaps the range {}-{} on line {}",
                    show(later.span.first),
                    show(later.span.last),
                    show(earlier.span.first),
                    show(earlier.span.last),
                    earlier.line
                ),
            });
        }
        match spans.last_mut() {
            Some(last)
                if last.country == current.span.country
                    && last.last.successor() == Some(current.span.first) =>
            {
                last.last = current.span.last;
            }
            _ => spans.push(current.span),
        }
        previous = Some(current);
    }
    spans.shrink_to_fit();
    Ok(spans)
}

/// The next address, for merging touching ranges.
trait Successor: Sized {
    fn successor(self) -> Option<Self>;
}

impl Successor for u32 {
    fn successor(self) -> Option<u32> {
        self.checked_add(1)
    }
}

impl Successor for u128 {
    fn successor(self) -> Option<u128> {
        self.checked_add(1)
    }
}

/// `CIDR,CC` or `START,END,CC` → inclusive ends of one family and the upper-cased code.
fn parse_line(content: &str) -> Result<(IpAddr, IpAddr, [u8; 2]), String> {
    let fields: Vec<&str> = content.split(',').map(str::trim).collect();
    let (first, last, code) = match fields.as_slice() {
        [cidr, code] => {
            let (first, last) = parse_cidr(cidr)?;
            (first, last, code)
        }
        [start, end, code] => {
            let first = parse_address(start, "start address")?;
            let last = parse_address(end, "end address")?;
            match (first, last) {
                (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {}
                _ => {
                    return Err(format!(
                        "start {first} and end {last} are of different address families"
                    ));
                }
            }
            if first > last {
                return Err(format!("start {first} is after end {last}"));
            }
            (first, last, code)
        }
        _ => {
            return Err(format!(
                "expected CIDR,CC or START,END,CC, found {} comma-separated fields",
                fields.len()
            ));
        }
    };
    let country = parse_country(code)?;
    let (first, last) = canonical_v4(first, last);
    Ok((first, last, country))
}

fn parse_address(text: &str, what: &str) -> Result<IpAddr, String> {
    text.parse()
        .map_err(|_| format!("invalid {what} \"{}\"", text.escape_debug()))
}

/// `a.b.c.d/len`, `x::/len` or a bare address → its first and last address. Host bits below
/// the prefix are an error: `10.0.0.1/8` is more likely a typo than a way to write `10.0.0.0/8`.
fn parse_cidr(text: &str) -> Result<(IpAddr, IpAddr), String> {
    let invalid = |why: &str| format!("invalid CIDR \"{}\": {why}", text.escape_debug());
    let (addr_text, len_text) = text.split_once('/').unwrap_or((text, ""));
    let addr: IpAddr = addr_text
        .parse()
        .map_err(|_| invalid("not an IP address before the '/'"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len: u32 = if len_text.is_empty() && !text.contains('/') {
        max
    } else {
        len_text
            .parse()
            .ok()
            .filter(|&len| len <= max)
            .ok_or_else(|| invalid(&format!("the prefix length must be 0 to {max}")))?
    };
    let (first, last) = match addr {
        IpAddr::V4(a) => {
            let a = u32::from(a);
            let host = u32::MAX.checked_shr(len).unwrap_or(0);
            if a & host != 0 {
                let network = Ipv4Addr::from(a & !host);
                return Err(invalid(&format!(
                    "host bits are set (the network is {network}/{len})"
                )));
            }
            (
                IpAddr::V4(Ipv4Addr::from(a)),
                IpAddr::V4(Ipv4Addr::from(a | host)),
            )
        }
        IpAddr::V6(a) => {
            let a = u128::from(a);
            let host = u128::MAX.checked_shr(len).unwrap_or(0);
            if a & host != 0 {
                let network = Ipv6Addr::from(a & !host);
                return Err(invalid(&format!(
                    "host bits are set (the network is {network}/{len})"
                )));
            }
            (
                IpAddr::V6(Ipv6Addr::from(a)),
                IpAddr::V6(Ipv6Addr::from(a | host)),
            )
        }
    };
    Ok((first, last))
}

fn parse_country(text: &str) -> Result<[u8; 2], String> {
    match text.as_bytes() {
        &[a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            Ok([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
        }
        _ => Err(format!(
            "invalid country code \"{}\": expected two letters (ISO 3166-1 alpha-2)",
            text.escape_debug()
        )),
    }
}

/// An IPv6 range wholly inside `::ffff:0:0/96` becomes the IPv4 range it maps, because
/// lookups turn IPv4-mapped addresses into IPv4 before searching.
fn canonical_v4(first: IpAddr, last: IpAddr) -> (IpAddr, IpAddr) {
    match (first, last) {
        (IpAddr::V6(f), IpAddr::V6(l)) => match (f.to_ipv4_mapped(), l.to_ipv4_mapped()) {
            (Some(f4), Some(l4)) => (IpAddr::V4(f4), IpAddr::V4(l4)),
            _ => (first, last),
        },
        _ => (first, last),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> RangeTable {
        match RangeTable::parse(text) {
            Ok(Some(table)) => table,
            other => panic!("expected a table, got {other:?}"),
        }
    }

    fn error(text: &str) -> RangeError {
        match RangeTable::parse(text) {
            Err(e) => e,
            Ok(other) => panic!("expected an error, got {other:?}"),
        }
    }

    fn code(table: &RangeTable, ip: &str) -> Option<String> {
        let ip: IpAddr = ip.parse().expect("test address");
        table.lookup(ip).map(|c| c.code().to_owned())
    }

    #[test]
    fn cidr_lines() {
        let t = table(
            "# offices\n\
             127.0.0.2/32,PT\n\
             \n\
             127.0.0.3/32,de   # trailing comment\n\
             10.0.0.0/8, ES\n\
             2001:db8:10::/48,PT\n\
             192.0.2.7,FR\n\
             2001:db8::1,IT\n",
        );
        assert_eq!(code(&t, "127.0.0.2").as_deref(), Some("PT"));
        assert_eq!(code(&t, "127.0.0.3").as_deref(), Some("DE"));
        assert_eq!(code(&t, "127.0.0.4"), None);
        assert_eq!(code(&t, "127.0.0.1"), None);
        assert_eq!(code(&t, "10.0.0.0").as_deref(), Some("ES"));
        assert_eq!(code(&t, "10.255.255.255").as_deref(), Some("ES"));
        assert_eq!(code(&t, "11.0.0.0"), None);
        assert_eq!(code(&t, "9.255.255.255"), None);
        assert_eq!(code(&t, "2001:db8:10::").as_deref(), Some("PT"));
        assert_eq!(
            code(&t, "2001:db8:10:ffff:ffff:ffff:ffff:ffff").as_deref(),
            Some("PT")
        );
        assert_eq!(code(&t, "2001:db8:11::"), None);
        assert_eq!(code(&t, "192.0.2.7").as_deref(), Some("FR"));
        assert_eq!(code(&t, "192.0.2.8"), None);
        assert_eq!(code(&t, "2001:db8::1").as_deref(), Some("IT"));
        assert_eq!(code(&t, "2001:db8::2"), None);
        assert_eq!(t.entries, 6);
    }

    #[test]
    fn start_end_lines_ipv4_and_ipv6() {
        let t = table(
            "1.0.0.0,1.0.0.255,AU\n\
             1.0.1.0 , 1.0.3.255 , CN\n\
             2001:200::,2001:200:ffff:ffff:ffff:ffff:ffff:ffff,JP\n\
             ::ffff:5.5.5.0,::ffff:5.5.5.255,NL\n",
        );
        assert_eq!(code(&t, "1.0.0.128").as_deref(), Some("AU"));
        assert_eq!(code(&t, "1.0.2.9").as_deref(), Some("CN"));
        assert_eq!(code(&t, "1.0.4.0"), None);
        assert_eq!(code(&t, "2001:200:1::5").as_deref(), Some("JP"));
        assert_eq!(code(&t, "2001:201::"), None);
        // Stored as IPv4: the lookup side hands over mapped addresses as IPv4.
        assert_eq!(code(&t, "5.5.5.5").as_deref(), Some("NL"));
        assert_eq!(t.v4.len(), 3);
        assert_eq!(t.v6.len(), 1);
    }

    #[test]
    fn whole_address_space_and_edges() {
        let t = table("0.0.0.0/0,ZZ\n::/0,AQ\n");
        assert_eq!(code(&t, "0.0.0.0").as_deref(), Some("ZZ"));
        assert_eq!(code(&t, "255.255.255.255").as_deref(), Some("ZZ"));
        assert_eq!(code(&t, "::").as_deref(), Some("AQ"));
        assert_eq!(
            code(&t, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff").as_deref(),
            Some("AQ")
        );
        let t = table("255.255.255.255/32,PT\n0.0.0.0/32,ES\n");
        assert_eq!(code(&t, "255.255.255.255").as_deref(), Some("PT"));
        assert_eq!(code(&t, "0.0.0.0").as_deref(), Some("ES"));
        assert_eq!(code(&t, "0.0.0.1"), None);
    }

    #[test]
    fn neighbours_of_one_country_merge() {
        let t = table("10.0.0.0/25,PT\n10.0.0.128/25,PT\n10.0.1.0/24,ES\n10.0.2.0/24,PT\n");
        assert_eq!(t.v4.len(), 3);
        assert_eq!(t.entries, 4);
        assert_eq!(code(&t, "10.0.0.200").as_deref(), Some("PT"));
        assert_eq!(code(&t, "10.0.1.200").as_deref(), Some("ES"));
        assert_eq!(code(&t, "10.0.2.200").as_deref(), Some("PT"));
        assert!(
            t.describe().contains("4 entries, 3 IPv4"),
            "{}",
            t.describe()
        );
    }

    #[test]
    fn overlaps_are_rejected_naming_both_lines() {
        let e = error("10.0.0.0/8,PT\n# comment\n10.1.0.0/16,ES\n");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("overlaps"), "{}", e.message);
        assert!(e.message.contains("line 1"), "{}", e.message);
        assert!(e.message.contains("10.1.0.0-10.1.255.255"), "{}", e.message);

        // The later line is reported whichever starts first.
        let e = error("10.1.0.0/16,ES\n10.0.0.0/8,PT\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("line 1"), "{}", e.message);

        // Same start, and a duplicate line.
        assert_eq!(error("2001:db8::/32,PT\n2001:db8::/48,PT\n").line, 2);
        assert_eq!(error("1.2.3.4,PT\n\n1.2.3.4,PT\n").line, 3);

        // Touching is not overlapping.
        assert!(RangeTable::parse("1.0.0.0,1.0.0.9,PT\n1.0.0.10,1.0.0.20,ES\n").is_ok());
        // A mapped IPv6 range overlaps the IPv4 range it maps.
        assert_eq!(error("5.5.5.0/24,NL\n::ffff:5.5.5.0/120,NL\n").line, 2);
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("10.0.0.0/8,PT\n10.0.0.0/33,PT\n", 2, "invalid CIDR"),
            ("# c\n\n300.0.0.0/8,PT\n", 3, "invalid CIDR"),
            (
                "10.0.0.1/8,PT\n",
                1,
                "host bits are set (the network is 10.0.0.0/8)",
            ),
            ("2001:db8::1/32,PT\n", 1, "host bits"),
            ("10.0.0.0/x,PT\n", 1, "prefix length"),
            ("10.0.0.0/,PT\n", 1, "prefix length"),
            ("10.0.0.0/8,PRT\n", 1, "invalid country code \"PRT\""),
            ("10.0.0.0/8,\n", 1, "invalid country code"),
            ("10.0.0.0/8,P1\n", 1, "invalid country code"),
            ("10.0.0.0/8\n", 1, "found 1 comma-separated fields"),
            ("1.1.1.1,2.2.2.2,3.3.3.3,PT\n", 1, "found 4"),
            (
                "1.0.0.9,1.0.0.1,PT\n",
                1,
                "start 1.0.0.9 is after end 1.0.0.1",
            ),
            ("1.0.0.1,::1,PT\n", 1, "different address families"),
            ("x,1.0.0.1,PT\n", 1, "invalid start address \"x\""),
            ("1.0.0.1,y,PT\n", 1, "invalid end address \"y\""),
        ];
        for (text, line, needle) in cases {
            let e = error(text);
            assert_eq!(e.line, line, "{text:?}: {e:?}");
            assert!(e.message.contains(needle), "{text:?}: {}", e.message);
        }
    }

    #[test]
    fn only_comments_is_empty() {
        assert!(matches!(RangeTable::parse(""), Ok(None)));
        assert!(matches!(
            RangeTable::parse("# nothing\n\n   \n#x,y\n"),
            Ok(None)
        ));
    }

    #[test]
    fn windows_line_endings() {
        let t = table("127.0.0.2/32,PT\r\n127.0.0.3/32,DE\r\n");
        assert_eq!(code(&t, "127.0.0.3").as_deref(), Some("DE"));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        const CODES: [[u8; 2]; 4] = [*b"PT", *b"DE", *b"US", *b"ZZ"];

        /// Non-overlapping inclusive IPv4 spans, sorted by start.
        fn spans() -> impl Strategy<Value = Vec<(u32, u32, [u8; 2])>> {
            prop::collection::vec((any::<u32>(), 0u32..1_000, 0usize..CODES.len()), 1..40).prop_map(
                |mut raw| {
                    raw.sort_by_key(|r| r.0);
                    let mut spans = Vec::new();
                    let mut free_from = 0u64;
                    for (first, len, code) in raw {
                        if u64::from(first) < free_from {
                            continue;
                        }
                        let last = first.saturating_add(len);
                        spans.push((first, last, CODES[code]));
                        free_from = u64::from(last) + 1;
                    }
                    spans
                },
            )
        }

        proptest! {
            /// The binary search over merged spans answers exactly like a linear scan of the
            /// lines, whatever order the lines come in.
            #[test]
            fn lookups_match_a_linear_scan(
                spans in spans(),
                probes in prop::collection::vec(any::<u32>(), 0..64),
                rotation in any::<usize>(),
            ) {
                let mut lines: Vec<String> = spans
                    .iter()
                    .map(|&(first, last, code)| {
                        let code = std::str::from_utf8(&code).unwrap_or("??").to_owned();
                        if first == last {
                            format!("{}/32,{code}", Ipv4Addr::from(first))
                        } else {
                            format!("{},{},{code}", Ipv4Addr::from(first), Ipv4Addr::from(last))
                        }
                    })
                    .collect();
                let len = lines.len();
                lines.rotate_left(rotation % len);
                let table = RangeTable::parse(&lines.join("\n"))
                    .map_err(|e| TestCaseError::fail(format!("{e:?}")))?
                    .ok_or_else(|| TestCaseError::fail("no table"))?;
                let edges = spans.iter().flat_map(|&(first, last, _)| {
                    [first.wrapping_sub(1), first, last, last.wrapping_add(1)]
                });
                for probe in probes.into_iter().chain(edges) {
                    let expected = spans
                        .iter()
                        .find(|&&(first, last, _)| first <= probe && probe <= last)
                        .map(|&(_, _, code)| code);
                    prop_assert_eq!(find(&table.v4, probe), expected, "{}", Ipv4Addr::from(probe));
                }
            }

            #[test]
            fn parse_never_panics(text in "\\PC*") {
                let _ = RangeTable::parse(&text);
            }

            #[test]
            fn parse_never_panics_on_near_misses(
                lines in prop::collection::vec("[0-9a-fA-F:./, #]{0,40}", 0..20),
            ) {
                let _ = RangeTable::parse(&lines.join("\n"));
            }
        }
    }
}

//! Country lookups in a MaxMind DB (`.mmdb`) file, through the `maxminddb` crate.
//!
//! Two record layouts are read with one decode: DB-IP's country database as repackaged by
//! ip-location-db (`{country_code: "PT"}`) and MaxMind's GeoIP2/GeoLite2 layout
//! (`{country: {iso_code: "PT"}, registered_country: {iso_code: "PT"}, ...}`). Records decode
//! into a struct of borrowed `&str`, so a lookup allocates nothing.
//!
//! The crate indexes its buffer directly and trusts the file's structure: a truncated or
//! crafted file could make it index out of bounds, underflow a pointer, walk a cyclic tree
//! forever or recurse until the stack overflows. So a file is checked before a shard ever sees
//! it, on the control thread: the metadata is read from a padded copy of the metadata section
//! alone, the search tree must fit in the file, every reachable tree record must point at a
//! node, at "no data" or inside the data section, every distinct data record must pass the
//! bounded check of [`super::mmdb_data`] and then decode. After that, a lookup can only follow
//! records that were checked.
//!
//! Whatever the bytes, loading ends in bounded time and memory with a database or an error;
//! a panic inside the crate during loading (there should be none left) is caught and reported
//! as a corrupted file.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use egressd_policy::geo::Country;
use maxminddb::{Metadata, Reader};
use serde::Deserialize;

use super::mmdb_data::check_value;

/// What precedes the metadata map at the end of every MaxMind DB file.
const METADATA_MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";

/// Zero bytes between the search tree and the data section.
const DATA_SECTION_SEPARATOR: usize = 16;

/// Where the metadata marker starts, if the file has one. Like every MaxMind DB reader this
/// takes the last occurrence, so it agrees with the `maxminddb` crate.
pub(super) fn find_metadata_marker(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(METADATA_MARKER.len())
        .rposition(|window| window == METADATA_MARKER)
}

/// A loaded, checked MaxMind DB.
pub(super) struct MmdbCountries {
    reader: Reader<Vec<u8>>,
    /// Networks (tree leaves) that carry a record.
    networks: usize,
    /// Distinct country codes found in the records.
    countries: usize,
}

/// Both layouts in one struct: fields that are absent decode to `None`, other fields (names,
/// continent, location, ...) are skipped without allocating.
#[derive(Deserialize)]
struct CountryRecord<'a> {
    /// DB-IP / ip-location-db layout.
    #[serde(borrow)]
    country_code: Option<&'a str>,
    /// GeoIP2 layout: where the address is.
    #[serde(borrow)]
    country: Option<IsoCode<'a>>,
    /// GeoIP2 layout: where the network is registered; only used when `country` is missing
    /// (GeoLite2 has such records, e.g. for some anycast and satellite networks).
    #[serde(borrow)]
    registered_country: Option<IsoCode<'a>>,
}

#[derive(Deserialize)]
struct IsoCode<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
}

impl CountryRecord<'_> {
    fn country(&self) -> Option<Country> {
        [
            self.country_code,
            self.country.as_ref().and_then(|c| c.iso_code),
            self.registered_country.as_ref().and_then(|c| c.iso_code),
        ]
        .into_iter()
        .flatten()
        .find_map(Country::from_code)
    }
}

impl MmdbCountries {
    /// Checks and loads a MaxMind DB whose metadata marker is at `marker`. The error is the
    /// reason the file is not a usable MaxMind DB; the caller adds the path.
    pub(super) fn load(bytes: Vec<u8>, marker: usize) -> Result<MmdbCountries, String> {
        // The checks in `load_unguarded` keep the crate away from every input known to make
        // it panic (and from the unbounded recursion that no `catch_unwind` could stop). Should
        // one remain, it is contained here, on the control thread: once every record reachable
        // from the tree has decoded here, a lookup on a shard can only repeat one of those
        // decodes.
        std::panic::catch_unwind(move || MmdbCountries::load_unguarded(bytes, marker))
            .unwrap_or_else(|_| {
                Err("the MaxMind DB reader failed on its contents (corrupted file)".to_owned())
            })
    }

    fn load_unguarded(bytes: Vec<u8>, marker: usize) -> Result<MmdbCountries, String> {
        let metadata_section = bytes.get(marker..).unwrap_or_default();
        let metadata_map = metadata_section
            .get(METADATA_MARKER.len()..)
            .unwrap_or_default();
        check_value(metadata_map, 0).map_err(|e| format!("bad metadata: {e}"))?;
        let metadata = read_metadata(metadata_section)?;
        let layout = Layout::new(&metadata, marker, &bytes)?;
        let walk = walk_tree(&bytes, &layout)?;
        if walk.samples.is_empty() {
            return Err("it contains no records".to_owned());
        }
        let data = bytes
            .get(layout.data_start..layout.data_end)
            .unwrap_or_default();
        for &(offset, ip) in &walk.samples {
            check_value(data, offset).map_err(|e| format!("the record for {ip}: {e}"))?;
        }

        // The structure has been checked, so the crate can take the buffer.
        let reader = Reader::from_source(bytes).map_err(|e| e.to_string())?;
        let mut countries = HashSet::new();
        for (_, ip) in walk.samples {
            let found = reader
                .lookup(ip)
                .map_err(|e| format!("looking up {ip}: {e}"))?;
            let record = found
                .decode::<CountryRecord<'_>>()
                .map_err(|e| format!("the record for {ip} is not a country record: {e}"))?;
            if let Some(country) = record.as_ref().and_then(CountryRecord::country) {
                countries.insert(country);
            }
        }
        if countries.is_empty() {
            return Err(
                "no record has a country code (country_code, country.iso_code or \
                 registered_country.iso_code): is it a country database?"
                    .to_owned(),
            );
        }
        Ok(MmdbCountries {
            reader,
            networks: walk.networks,
            countries: countries.len(),
        })
    }

    /// The country of `ip` (already canonical: IPv4-mapped addresses are plain IPv4). An IPv4
    /// address in an IPv6 database is looked up in its IPv4 subtree (`::/96`) by the crate.
    pub(super) fn lookup(&self, ip: IpAddr) -> Option<Country> {
        // Errors (an IPv6 address in an IPv4-only database) mean "unknown", like a miss.
        let found = self.reader.lookup(ip).ok()?;
        let record = found.decode::<CountryRecord<'_>>().ok()??;
        record.country()
    }

    pub(super) fn describe(&self) -> String {
        let m = &self.reader.metadata;
        format!(
            "type \"{}\", IPv{} tree, {} networks, {} countries, built {} (epoch {})",
            m.database_type.escape_debug(),
            m.ip_version,
            self.networks,
            self.countries,
            utc_date(m.build_epoch),
            m.build_epoch,
        )
    }
}

impl fmt::Debug for MmdbCountries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MmdbCountries")
            .field("database_type", &self.reader.metadata.database_type)
            .field("networks", &self.networks)
            .field("countries", &self.countries)
            .finish_non_exhaustive()
    }
}

/// Decodes the metadata without letting the crate near the (unchecked) search tree: the
/// section is copied behind zero bytes, which read as a one-node tree whose records all point
/// back to node 0, so the crate's search for the IPv4 subtree stays inside the copy.
fn read_metadata(metadata_section: &[u8]) -> Result<Metadata, String> {
    let mut probe = vec![0u8; 16];
    probe.extend_from_slice(metadata_section);
    let reader = Reader::from_source(probe).map_err(|e| format!("bad metadata: {e}"))?;
    Ok(reader.metadata)
}

/// The file's sections, in bytes, with their sizes checked against the file.
#[derive(Debug)]
struct Layout {
    node_count: usize,
    /// 24, 28 or 32.
    record_bits: usize,
    /// 32 for an IPv4 database, 128 for an IPv6 one.
    address_bits: u32,
    /// The data section is `data_start..data_end`.
    data_start: usize,
    data_end: usize,
}

impl Layout {
    fn new(metadata: &Metadata, marker: usize, bytes: &[u8]) -> Result<Layout, String> {
        let address_bits = match metadata.ip_version {
            4 => 32,
            6 => 128,
            other => return Err(format!("unsupported ip_version {other}")),
        };
        let record_bits = usize::from(metadata.record_size);
        if !matches!(record_bits, 24 | 28 | 32) {
            return Err(format!("unsupported record_size {record_bits}"));
        }
        let node_count = usize::try_from(metadata.node_count)
            .map_err(|_| "node_count does not fit in memory".to_owned())?;
        if node_count == 0 {
            return Err("its search tree is empty (node_count 0)".to_owned());
        }
        let tree_bytes = node_count
            .checked_mul(record_bits)
            .map(|bits| bits / 4)
            .ok_or("node_count is impossibly large")?;
        let data_start = tree_bytes
            .checked_add(DATA_SECTION_SEPARATOR)
            .filter(|&start| start <= marker)
            .ok_or_else(|| {
                format!(
                    "its search tree ({node_count} nodes, {tree_bytes} bytes) does not fit before \
                     the metadata at byte {marker} (truncated or corrupted file)"
                )
            })?;
        let separator = bytes.get(tree_bytes..data_start).unwrap_or_default();
        if separator.len() != DATA_SECTION_SEPARATOR || separator.iter().any(|&b| b != 0) {
            return Err(format!(
                "the data section separator at byte {tree_bytes} is not {DATA_SECTION_SEPARATOR} \
                 zero bytes (corrupted file)"
            ));
        }
        Ok(Layout {
            node_count,
            record_bits,
            address_bits,
            data_start,
            data_end: marker,
        })
    }

    /// The record on `side` (0 = bit clear, 1 = bit set) of `node`.
    fn record(&self, bytes: &[u8], node: usize, side: usize) -> Option<usize> {
        let node_bytes = self.record_bits / 4;
        let start = node.checked_mul(node_bytes)?;
        let raw = bytes.get(start..start.checked_add(node_bytes)?)?;
        let be = |b: &[u8]| b.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
        match (self.record_bits, raw, side) {
            (24, _, 0) => raw.get(0..3).map(be),
            (24, _, _) => raw.get(3..6).map(be),
            // 28-bit records share their middle byte: its high nibble belongs to the left record.
            (28, &[a, b, c, middle, ..], 0) => Some(be(&[middle >> 4, a, b, c])),
            (28, &[.., middle, d, e, f], _) => Some(be(&[middle & 0x0f, d, e, f])),
            (32, _, 0) => raw.get(0..4).map(be),
            (32, _, _) => raw.get(4..8).map(be),
            _ => None,
        }
    }
}

/// What a walk over the reachable search tree found.
#[derive(Debug)]
struct Walk {
    networks: usize,
    /// Each distinct data record (its offset in the data section) and an address leading
    /// to it.
    samples: Vec<(usize, IpAddr)>,
}

/// Visits every node a lookup can reach and checks each of its records. A node is revisited
/// only when reached at a shallower depth (so its subtree is checked as deep as any lookup can
/// go), which bounds the walk at `128 × node_count` even for a crafted tree with cycles or
/// shared subtrees; a normal tree is walked once.
fn walk_tree(bytes: &[u8], layout: &Layout) -> Result<Walk, String> {
    const UNSEEN: u8 = u8::MAX;
    let bits = layout.address_bits;
    let data_len = layout.data_end - layout.data_start;
    let mut depth_seen = vec![UNSEEN; layout.node_count];
    let mut offsets_seen = HashSet::new();
    let mut walk = Walk {
        networks: 0,
        samples: Vec::new(),
    };
    let mut stack: Vec<(usize, u32, u128)> = vec![(0, 0, 0)];
    if let Some(root) = depth_seen.first_mut() {
        *root = 0;
    }
    while let Some((node, depth, prefix)) = stack.pop() {
        let first_visit = depth_seen.get(node).is_some_and(|&d| u32::from(d) == depth);
        for side in 0..2usize {
            let value = layout.record(bytes, node, side).ok_or_else(|| {
                format!("search tree node {node} lies outside the file (corrupted file)")
            })?;
            let child_depth = depth + 1;
            let child_prefix = if side == 1 {
                prefix | (1u128 << (bits - child_depth))
            } else {
                prefix
            };
            if value < layout.node_count {
                // A lookup reads at most `bits` records; deeper nodes are unreachable.
                if child_depth >= bits {
                    continue;
                }
                let Some(seen) = depth_seen.get_mut(value) else {
                    continue;
                };
                if *seen == UNSEEN || u32::from(*seen) > child_depth {
                    *seen = u8::try_from(child_depth).unwrap_or(UNSEEN - 1);
                    stack.push((value, child_depth, child_prefix));
                }
            } else if value > layout.node_count {
                let offset = (value - layout.node_count)
                    .checked_sub(DATA_SECTION_SEPARATOR)
                    .filter(|&offset| offset < data_len)
                    .ok_or_else(|| {
                        format!(
                            "search tree node {node} points outside the data section \
                             (corrupted file)"
                        )
                    })?;
                if first_visit {
                    walk.networks += 1;
                }
                if offsets_seen.insert(offset) {
                    walk.samples.push((offset, address(child_prefix, bits)));
                }
            }
            // value == node_count: no data for this network.
        }
    }
    Ok(walk)
}

/// The address whose leading bits are `prefix`, in the database's address family. The crate
/// walks an IPv6 address from the root, so an IPv4 record in an IPv6 tree is reached with its
/// `::a.b.c.d` form, as found here.
fn address(prefix: u128, bits: u32) -> IpAddr {
    if bits == 32 {
        IpAddr::V4(Ipv4Addr::from(u32::try_from(prefix).unwrap_or(0)))
    } else {
        IpAddr::V6(Ipv6Addr::from(prefix))
    }
}

/// `YYYY-MM-DD` for a Unix time, UTC (proleptic Gregorian calendar, days-from-civil inverse).
fn utc_date(epoch: u64) -> String {
    let days = i64::try_from(epoch / 86_400).unwrap_or(0);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_780_272_000), "2026-06-01");
        assert_eq!(utc_date(1_780_271_999), "2026-05-31");
    }

    #[test]
    fn marker_is_the_last_one() {
        let mut bytes = b"xx".to_vec();
        bytes.extend_from_slice(METADATA_MARKER);
        bytes.extend_from_slice(b"yy");
        bytes.extend_from_slice(METADATA_MARKER);
        assert_eq!(find_metadata_marker(&bytes), Some(2 + 14 + 2));
        assert_eq!(find_metadata_marker(b"no marker here"), None);
        assert_eq!(find_metadata_marker(b""), None);
    }

    #[test]
    fn records_of_each_size() {
        let layout = |record_bits| Layout {
            node_count: 2,
            record_bits,
            address_bits: 32,
            data_start: 0,
            data_end: 0,
        };
        let bytes24 = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0, 0, 0, 0, 0, 0x09];
        assert_eq!(layout(24).record(&bytes24, 0, 0), Some(0x010203));
        assert_eq!(layout(24).record(&bytes24, 0, 1), Some(0x040506));
        assert_eq!(layout(24).record(&bytes24, 1, 1), Some(0x000009));
        assert_eq!(layout(24).record(&bytes24, 2, 0), None);
        let bytes28 = [0x01, 0x02, 0x03, 0xab, 0x04, 0x05, 0x06];
        assert_eq!(layout(28).record(&bytes28, 0, 0), Some(0x0a010203));
        assert_eq!(layout(28).record(&bytes28, 0, 1), Some(0x0b040506));
        assert_eq!(layout(28).record(&bytes28, 1, 0), None);
        let bytes32 = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(layout(32).record(&bytes32, 0, 0), Some(0x01020304));
        assert_eq!(layout(32).record(&bytes32, 0, 1), Some(0x05060708));
    }
}

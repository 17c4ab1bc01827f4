//! Countries and continents, for the `net.src.geo.*` and `net.dst.geo.*` rule fields: the
//! [`Country`] a geolocation reports, the [`Geolocate`] seam a database plugs into, and which
//! continent each country is on.
//!
//! Geolocation databases name a country (ISO 3166-1 alpha-2); rules may test the continent, so
//! the continent is derived from the country with this fixed table rather than trusted from
//! each database (the DB-IP country database carries no continent at all). The codes are the
//! seven used by MaxMind GeoIP2 and Cloudflare: AF AN AS EU NA OC SA.
//!
//! The assignments follow GeoNames' country table, which MaxMind's GeoIP2 data is built on.
//! For countries that span two continents, or sit between them, that means: Russia (RU) is EU
//! while Kazakhstan (KZ), Turkey (TR), Georgia (GE), Armenia (AM) and Azerbaijan (AZ) are AS;
//! Cyprus (CY) is EU; Egypt (EG) is AF; Panama (PA) is NA; Timor-Leste (TL) is OC; the
//! Indian-Ocean territories British Indian Ocean Territory (IO), Christmas Island (CX) and the
//! Cocos Islands (CC) are AS; the sub-Antarctic territories Bouvet Island (BV), Heard and
//! McDonald Islands (HM), South Georgia (GS) and the French Southern Territories (TF) are AN;
//! the US Minor Outlying Islands (UM) are OC. Overseas parts of European states with their own
//! code sit where they are (French Guiana GF → SA, Réunion RE → AF, Greenland GL → NA).
//!
//! Besides the 249 officially assigned codes the table has XK (Kosovo → EU): a user-assigned
//! code that MaxMind, DB-IP and GeoNames all use.

use std::fmt;
use std::net::IpAddr;

/// Where addresses are. The proxy's geolocation database implements it; tests use a table.
pub trait Geolocate {
    /// The country of `ip`, or `None` when it is not placed. Callers pass canonical addresses
    /// (an IPv4-mapped IPv6 address arrives as the IPv4 address it carries, see
    /// [`crate::meta::canonical_ip`]).
    fn country(&self, ip: IpAddr) -> Option<Country>;
}

/// A country as geolocation reports it: an upper-case two-letter code (ISO 3166-1 alpha-2, or
/// a vendor code such as XK or ZZ) and its continent, when the code is a known country.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Country {
    code: [u8; 2],
    continent: Option<&'static str>,
}

impl Country {
    /// Two ASCII letters, in any case; anything else is not a country code.
    pub fn from_code(code: &str) -> Option<Country> {
        match code.as_bytes() {
            &[a, b] => Country::from_ascii([a, b]),
            _ => None,
        }
    }

    /// As [`Country::from_code`], for the two bytes a database stores.
    pub fn from_ascii(code: [u8; 2]) -> Option<Country> {
        let code = upper2_bytes(code)?;
        Some(Country {
            code,
            continent: continent_of_upper(code),
        })
    }

    /// The upper-case two-letter code, e.g. "PT".
    pub fn code(&self) -> &str {
        // Always two ASCII letters (checked in `from_ascii`), so always UTF-8.
        std::str::from_utf8(&self.code).unwrap_or_default()
    }

    /// AF AN AS EU NA OC or SA; `None` for a code that is not a known country (e.g. "ZZ").
    pub fn continent(&self) -> Option<&'static str> {
        self.continent
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Country({}, {})",
            self.code(),
            self.continent.unwrap_or("?")
        )
    }
}

/// The continent codes, sorted.
pub const CONTINENTS: [&str; 7] = ["AF", "AN", "AS", "EU", "NA", "OC", "SA"];

/// `(country, continent)`, sorted by country so that lookups are a binary search.
const COUNTRY_CONTINENT: &[(&str, &str)] = &[
    ("AD", "EU"),
    ("AE", "AS"),
    ("AF", "AS"),
    ("AG", "NA"),
    ("AI", "NA"),
    ("AL", "EU"),
    ("AM", "AS"),
    ("AO", "AF"),
    ("AQ", "AN"),
    ("AR", "SA"),
    ("AS", "OC"),
    ("AT", "EU"),
    ("AU", "OC"),
    ("AW", "NA"),
    ("AX", "EU"),
    ("AZ", "AS"),
    ("BA", "EU"),
    ("BB", "NA"),
    ("BD", "AS"),
    ("BE", "EU"),
    ("BF", "AF"),
    ("BG", "EU"),
    ("BH", "AS"),
    ("BI", "AF"),
    ("BJ", "AF"),
    ("BL", "NA"),
    ("BM", "NA"),
    ("BN", "AS"),
    ("BO", "SA"),
    ("BQ", "NA"),
    ("BR", "SA"),
    ("BS", "NA"),
    ("BT", "AS"),
    ("BV", "AN"),
    ("BW", "AF"),
    ("BY", "EU"),
    ("BZ", "NA"),
    ("CA", "NA"),
    ("CC", "AS"),
    ("CD", "AF"),
    ("CF", "AF"),
    ("CG", "AF"),
    ("CH", "EU"),
    ("CI", "AF"),
    ("CK", "OC"),
    ("CL", "SA"),
    ("CM", "AF"),
    ("CN", "AS"),
    ("CO", "SA"),
    ("CR", "NA"),
    ("CU", "NA"),
    ("CV", "AF"),
    ("CW", "NA"),
    ("CX", "AS"),
    ("CY", "EU"),
    ("CZ", "EU"),
    ("DE", "EU"),
    ("DJ", "AF"),
    ("DK", "EU"),
    ("DM", "NA"),
    ("DO", "NA"),
    ("DZ", "AF"),
    ("EC", "SA"),
    ("EE", "EU"),
    ("EG", "AF"),
    ("EH", "AF"),
    ("ER", "AF"),
    ("ES", "EU"),
    ("ET", "AF"),
    ("FI", "EU"),
    ("FJ", "OC"),
    ("FK", "SA"),
    ("FM", "OC"),
    ("FO", "EU"),
    ("FR", "EU"),
    ("GA", "AF"),
    ("GB", "EU"),
    ("GD", "NA"),
    ("GE", "AS"),
    ("GF", "SA"),
    ("GG", "EU"),
    ("GH", "AF"),
    ("GI", "EU"),
    ("GL", "NA"),
    ("GM", "AF"),
    ("GN", "AF"),
    ("GP", "NA"),
    ("GQ", "AF"),
    ("GR", "EU"),
    ("GS", "AN"),
    ("GT", "NA"),
    ("GU", "OC"),
    ("GW", "AF"),
    ("GY", "SA"),
    ("HK", "AS"),
    ("HM", "AN"),
    ("HN", "NA"),
    ("HR", "EU"),
    ("HT", "NA"),
    ("HU", "EU"),
    ("ID", "AS"),
    ("IE", "EU"),
    ("IL", "AS"),
    ("IM", "EU"),
    ("IN", "AS"),
    ("IO", "AS"),
    ("IQ", "AS"),
    ("IR", "AS"),
    ("IS", "EU"),
    ("IT", "EU"),
    ("JE", "EU"),
    ("JM", "NA"),
    ("JO", "AS"),
    ("JP", "AS"),
    ("KE", "AF"),
    ("KG", "AS"),
    ("KH", "AS"),
    ("KI", "OC"),
    ("KM", "AF"),
    ("KN", "NA"),
    ("KP", "AS"),
    ("KR", "AS"),
    ("KW", "AS"),
    ("KY", "NA"),
    ("KZ", "AS"),
    ("LA", "AS"),
    ("LB", "AS"),
    ("LC", "NA"),
    ("LI", "EU"),
    ("LK", "AS"),
    ("LR", "AF"),
    ("LS", "AF"),
    ("LT", "EU"),
    ("LU", "EU"),
    ("LV", "EU"),
    ("LY", "AF"),
    ("MA", "AF"),
    ("MC", "EU"),
    ("MD", "EU"),
    ("ME", "EU"),
    ("MF", "NA"),
    ("MG", "AF"),
    ("MH", "OC"),
    ("MK", "EU"),
    ("ML", "AF"),
    ("MM", "AS"),
    ("MN", "AS"),
    ("MO", "AS"),
    ("MP", "OC"),
    ("MQ", "NA"),
    ("MR", "AF"),
    ("MS", "NA"),
    ("MT", "EU"),
    ("MU", "AF"),
    ("MV", "AS"),
    ("MW", "AF"),
    ("MX", "NA"),
    ("MY", "AS"),
    ("MZ", "AF"),
    ("NA", "AF"),
    ("NC", "OC"),
    ("NE", "AF"),
    ("NF", "OC"),
    ("NG", "AF"),
    ("NI", "NA"),
    ("NL", "EU"),
    ("NO", "EU"),
    ("NP", "AS"),
    ("NR", "OC"),
    ("NU", "OC"),
    ("NZ", "OC"),
    ("OM", "AS"),
    ("PA", "NA"),
    ("PE", "SA"),
    ("PF", "OC"),
    ("PG", "OC"),
    ("PH", "AS"),
    ("PK", "AS"),
    ("PL", "EU"),
    ("PM", "NA"),
    ("PN", "OC"),
    ("PR", "NA"),
    ("PS", "AS"),
    ("PT", "EU"),
    ("PW", "OC"),
    ("PY", "SA"),
    ("QA", "AS"),
    ("RE", "AF"),
    ("RO", "EU"),
    ("RS", "EU"),
    ("RU", "EU"),
    ("RW", "AF"),
    ("SA", "AS"),
    ("SB", "OC"),
    ("SC", "AF"),
    ("SD", "AF"),
    ("SE", "EU"),
    ("SG", "AS"),
    ("SH", "AF"),
    ("SI", "EU"),
    ("SJ", "EU"),
    ("SK", "EU"),
    ("SL", "AF"),
    ("SM", "EU"),
    ("SN", "AF"),
    ("SO", "AF"),
    ("SR", "SA"),
    ("SS", "AF"),
    ("ST", "AF"),
    ("SV", "NA"),
    ("SX", "NA"),
    ("SY", "AS"),
    ("SZ", "AF"),
    ("TC", "NA"),
    ("TD", "AF"),
    ("TF", "AN"),
    ("TG", "AF"),
    ("TH", "AS"),
    ("TJ", "AS"),
    ("TK", "OC"),
    ("TL", "OC"),
    ("TM", "AS"),
    ("TN", "AF"),
    ("TO", "OC"),
    ("TR", "AS"),
    ("TT", "NA"),
    ("TV", "OC"),
    ("TW", "AS"),
    ("TZ", "AF"),
    ("UA", "EU"),
    ("UG", "AF"),
    ("UM", "OC"),
    ("US", "NA"),
    ("UY", "SA"),
    ("UZ", "AS"),
    ("VA", "EU"),
    ("VC", "NA"),
    ("VE", "SA"),
    ("VG", "NA"),
    ("VI", "NA"),
    ("VN", "AS"),
    ("VU", "OC"),
    ("WF", "OC"),
    ("WS", "OC"),
    ("XK", "EU"),
    ("YE", "AS"),
    ("YT", "AF"),
    ("ZA", "AF"),
    ("ZM", "AF"),
    ("ZW", "AF"),
];

/// The continent code of an ISO 3166-1 alpha-2 country code, or `None` for a code that is not
/// a country (a typo, or a vendor's pseudo-code such as "ZZ", "EU" or "AP"). Case-insensitive,
/// so a rule's `"pt"` and a database's `"PT"` agree.
pub fn continent_of(country: &str) -> Option<&'static str> {
    continent_of_upper(upper2(country)?)
}

/// The continent of an upper-case code.
fn continent_of_upper(key: [u8; 2]) -> Option<&'static str> {
    COUNTRY_CONTINENT
        .binary_search_by(|(code, _)| code.as_bytes().cmp(&key[..]))
        .ok()
        .and_then(|i| COUNTRY_CONTINENT.get(i))
        .map(|&(_, continent)| continent)
}

/// Whether `code` is one of the seven continent codes (case-insensitive).
pub fn is_continent(code: &str) -> bool {
    upper2(code).is_some_and(|key| CONTINENTS.iter().any(|c| c.as_bytes() == key))
}

/// Whether `code` is a country code this table knows (case-insensitive).
pub fn is_country(code: &str) -> bool {
    continent_of(code).is_some()
}

/// Every `(country, continent)` pair, sorted by country.
pub fn countries() -> impl Iterator<Item = (&'static str, &'static str)> {
    COUNTRY_CONTINENT.iter().copied()
}

/// Two ASCII letters, upper-cased; anything else is not a code.
fn upper2(code: &str) -> Option<[u8; 2]> {
    match code.as_bytes() {
        &[a, b] => upper2_bytes([a, b]),
        _ => None,
    }
}

fn upper2_bytes([a, b]: [u8; 2]) -> Option<[u8; 2]> {
    (a.is_ascii_alphabetic() && b.is_ascii_alphabetic())
        .then(|| [a.to_ascii_uppercase(), b.to_ascii_uppercase()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_countries() {
        for (country, continent) in [
            ("PT", "EU"),
            ("US", "NA"),
            ("BR", "SA"),
            ("AQ", "AN"),
            ("AU", "OC"),
            ("EG", "AF"),
            ("RU", "EU"),
            ("TR", "AS"),
            ("CY", "EU"),
            ("KZ", "AS"),
            ("PA", "NA"),
            ("GF", "SA"),
            ("XK", "EU"),
            ("JP", "AS"),
            ("ZW", "AF"),
            ("AD", "EU"),
        ] {
            assert_eq!(continent_of(country), Some(continent), "{country}");
        }
    }

    #[test]
    fn case_insensitive_and_rejects_non_codes() {
        assert_eq!(continent_of("pt"), Some("EU"));
        assert_eq!(continent_of("De"), Some("EU"));
        for bad in ["", "P", "PRT", "ZZ", "EU", "AP", "UK", "1A", "P ", "ÄÖ"] {
            assert_eq!(continent_of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn table_is_sorted_unique_upper_case() {
        for (country, continent) in COUNTRY_CONTINENT {
            assert!(
                country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase()),
                "{country}"
            );
            assert!(CONTINENTS.contains(continent), "{country} -> {continent}");
        }
        for pair in COUNTRY_CONTINENT.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} then {}", pair[0].0, pair[1].0);
        }
        for pair in CONTINENTS.windows(2) {
            assert!(pair[0] < pair[1]);
        }
    }

    #[test]
    fn covers_every_assigned_code() {
        // 249 officially assigned ISO 3166-1 alpha-2 codes, plus XK.
        assert_eq!(COUNTRY_CONTINENT.len(), 250);
        assert_eq!(countries().count(), 250);
        // Every continent has at least one country.
        for continent in CONTINENTS {
            assert!(countries().any(|(_, c)| c == continent), "{continent}");
        }
    }

    #[test]
    fn country_codes() {
        let pt = Country::from_code("pt").expect("pt");
        assert_eq!((pt.code(), pt.continent()), ("PT", Some("EU")));
        assert_eq!(pt.to_string(), "PT");
        assert_eq!(format!("{pt:?}"), "Country(PT, EU)");
        assert_eq!(Country::from_ascii(*b"pT"), Some(pt));
        let zz = Country::from_code("ZZ").expect("ZZ");
        assert_eq!((zz.code(), zz.continent()), ("ZZ", None));
        assert_eq!(format!("{zz:?}"), "Country(ZZ, ?)");
        for bad in ["", "P", "PRT", "P1", "  ", "é"] {
            assert_eq!(Country::from_code(bad), None, "{bad:?}");
        }
        assert_eq!(Country::from_ascii([b'P', 0xc3]), None);
    }

    #[test]
    fn continents_and_countries() {
        assert!(is_continent("EU"));
        assert!(is_continent("oc"));
        assert!(!is_continent("EUR"));
        assert!(!is_continent("PT"));
        assert!(is_country("pt"));
        assert!(!is_country("ZZ"));
    }
}

//! Whatever text arrives, the expression parser and the config loader answer with a value or
//! diagnostics, never a panic.

use egressd_policy::check_str;
use egressd_policy::config::spec::ListKind;
use egressd_policy::expr::ast::ListId;
use egressd_policy::expr::parse::{Lists, parse};
use proptest::prelude::*;

struct OneList;
impl Lists for OneList {
    fn resolve(&self, name: &str) -> Option<(ListId, ListKind)> {
        (name == "l").then_some((ListId(0), ListKind::Ip))
    }
}

/// Fragments of the language, so random strings are often nearly valid.
const PIECES: &[&str] = &[
    "net.dst.ip",
    "net.dst.port",
    "net.fqdn.host",
    "identity.groups",
    "any(",
    "all(",
    "[*]",
    ")",
    "(",
    "{",
    "}",
    " ",
    "==",
    "!=",
    "<=",
    "in",
    "matches",
    "contains",
    "and",
    "or",
    "not",
    "!",
    "xor",
    "$l",
    "$x",
    "\"",
    "\\",
    "10.0.0.0/8",
    "::1",
    "80..90",
    "443",
    "\"a.b\"",
    "..",
    "/",
    "é",
    "\u{0}",
    "99999999999999999999",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn expressions_from_fragments(parts in prop::collection::vec(proptest::sample::select(PIECES), 0..16)) {
        let text: String = parts.concat();
        if let Err(e) = parse(&text, &OneList) {
            prop_assert!(e.start <= e.end && e.end <= text.len(), "{e:?} for {text:?}");
            prop_assert!(text.is_char_boundary(e.start) && text.is_char_boundary(e.end));
        }
    }

    #[test]
    fn expressions_from_any_text(text in "\\PC{0,60}") {
        let _ = parse(&text, &OneList);
    }

    #[test]
    fn configs_from_any_text(text in "[\\[\\]a-z_=\"'{}., \n0-9:/$*-]{0,200}") {
        let checked = check_str("fuzz.toml", &text);
        // Every diagnostic renders with a position.
        let _ = checked.render();
    }

    #[test]
    fn rules_with_random_when(when in "[ -~]{0,80}") {
        let text = format!("[[rule]]\nname = \"r\"\nwhen = '''{}'''\naction = \"block\"\n", when.replace('\'', ""));
        let checked = check_str("fuzz.toml", &text);
        let _ = checked.render();
    }
}

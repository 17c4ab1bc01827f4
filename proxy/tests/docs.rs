//! The documentation tells the truth: docs/CONFIG.md names every key the configuration reader
//! accepts (asked of the reader itself, through its "unknown key" diagnostics), every rule
//! field and the default deny list, and its example conditions compile; README's explain
//! sample is what `egressd explain` prints and its TOML snippets are valid; every example
//! config's comment that names passwords names the ones its hashes verify.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use egressd_policy::check_str;
use egressd_policy::expr::ast::FIELDS;
use egressd_policy::model::ProxySettings;
use support::egressd;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `(user, password)` pairs a config's comment names: a comment line with `Passwords:`
/// followed by `name / password` pairs separated by commas (a parenthesis ends the list).
fn commented_passwords(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for line in text.lines().filter_map(|l| l.strip_prefix('#')) {
        let Some((_, list)) = line.split_once("Passwords:") else {
            continue;
        };
        let list = list.split('(').next().unwrap();
        for pair in list.split(',') {
            let (user, password) = pair
                .split_once(" / ")
                .unwrap_or_else(|| panic!("not `user / password`: {pair:?}"));
            pairs.push((user.trim().to_string(), password.trim().to_string()));
        }
    }
    pairs
}

#[test]
fn example_passwords_are_the_ones_their_comments_name() {
    let mut files = 0;
    for entry in std::fs::read_dir(root().join("configs/examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let named = commented_passwords(&text);
        let policy = check_str("example.toml", &text).policy.unwrap();
        let with_password: Vec<_> = policy
            .users
            .iter()
            .filter(|u| u.password.is_some())
            .collect();
        if named.is_empty() {
            assert!(
                with_password.is_empty(),
                "{}: users have passwords but no comment says which",
                path.display()
            );
            continue;
        }
        files += 1;
        // Every user with a password is named, by its name or the part before the '@'.
        for user in with_password {
            let short = user.name.split('@').next().unwrap();
            let (_, password) = named
                .iter()
                .find(|(n, _)| *n == user.name || n == short)
                .unwrap_or_else(|| {
                    panic!(
                        "{}: the comment does not name {}",
                        path.display(),
                        user.name
                    )
                });
            let hash = &user.password.as_ref().unwrap().0;
            let parsed = PasswordHash::new(hash).unwrap();
            assert!(
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok(),
                "{}: {}'s hash is not of \"{password}\", as the comment says",
                path.display(),
                user.name
            );
        }
    }
    assert!(files >= 2, "only {files} example configs name passwords");
}

/// The keys the configuration reader accepts in each table, as its own diagnostics list them
/// ("unknown key `x` in [proxy]; expected one of: ..."), by the CONFIG.md section that must
/// name them.
fn accepted_keys() -> Vec<(&'static str, &'static str, Vec<String>)> {
    // (section heading, table as the reader names it, a config with an unknown key in it)
    let probes: &[(&str, &str, &str)] = &[
        ("Top level", "top-level", "zz_unknown = 1\n"),
        ("`[proxy]`", "[proxy]", "[proxy]\nzz_unknown = 1\n"),
        ("`[policy]`", "[policy]", "[policy]\nzz_unknown = 1\n"),
        (
            "`[geoip]`",
            "[geoip]",
            "[geoip]\ndatabase = \"x\"\nzz_unknown = 1\n",
        ),
        (
            "`[[listener]]`",
            "[[listener]]",
            "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\nzz_unknown = 1\n",
        ),
        (
            "`[[listener]]`",
            "tls",
            "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\nprotocols = [\"https\"]\n\
             tls = { cert = \"c\", key = \"k\", zz_unknown = 1 }\n",
        ),
        (
            "`[[user]]`",
            "[[user]]",
            "[[user]]\nname = \"u\"\nzz_unknown = 1\n",
        ),
        (
            "`[[device]]`",
            "[[device]]",
            "[[device]]\nsource = \"10.0.0.0/8\"\nzz_unknown = 1\n",
        ),
        (
            "`[[pool]]`",
            "[[pool]]",
            "[[pool]]\nname = \"p\"\nipv4 = [\"192.0.2.1\"]\nzz_unknown = 1\n",
        ),
        (
            "`[[pool]]`",
            "location",
            "[[pool]]\nname = \"p\"\nipv4 = [\"192.0.2.1\"]\nlocation = { zz_unknown = 1 }\n",
        ),
        (
            "`[[list]]`",
            "[[list]]",
            "[[list]]\nname = \"l\"\nkind = \"ip\"\nzz_unknown = 1\n",
        ),
        (
            "`[[rule]]`",
            "[[rule]]",
            "[[rule]]\nname = \"r\"\naction = \"default\"\nzz_unknown = 1\n",
        ),
        (
            "`[[test]]`",
            "[[test]]",
            "[[test]]\nname = \"t\"\nconn = { dst = \"192.0.2.1:1\" }\n\
             expect = { action = \"default\" }\nzz_unknown = 1\n",
        ),
        (
            "`[[test]]`",
            "conn",
            "[[test]]\nname = \"t\"\nconn = { dst = \"192.0.2.1:1\", zz_unknown = 1 }\n\
             expect = { action = \"default\" }\n",
        ),
        (
            "`[[test]]`",
            "expect",
            "[[test]]\nname = \"t\"\nconn = { dst = \"192.0.2.1:1\" }\n\
             expect = { action = \"default\", zz_unknown = 1 }\n",
        ),
    ];
    probes
        .iter()
        .map(|(section, table, text)| {
            let checked = check_str("probe.toml", text);
            let message = checked
                .diags
                .items
                .iter()
                .map(|d| d.message.as_str())
                .find(|m| m.contains("zz_unknown"))
                .unwrap_or_else(|| {
                    panic!("no unknown-key error for {table}: {}", checked.render())
                });
            assert!(
                message.contains(&format!(" in {table};")) || *table == "top-level",
                "{table}: {message}"
            );
            let keys = message
                .split_once("expected one of: ")
                .unwrap_or_else(|| panic!("{table}: {message}"))
                .1
                .split(", ")
                .map(str::to_string)
                .collect();
            (*section, *table, keys)
        })
        .collect()
}

/// The text of the `## ` section of `doc` whose heading contains `heading`.
fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let start = doc
        .match_indices("\n## ")
        .map(|(i, _)| i + 1)
        .find(|&i| doc[i..].lines().next().unwrap().contains(heading))
        .unwrap_or_else(|| panic!("docs/CONFIG.md has no section {heading}"));
    let end = doc[start + 3..]
        .find("\n## ")
        .map_or(doc.len(), |i| start + 3 + i);
    &doc[start..end]
}

#[test]
fn the_config_reference_names_every_key_the_reader_accepts() {
    let doc = read("docs/CONFIG.md");
    let probes = accepted_keys();
    assert!(probes.iter().map(|(_, _, k)| k.len()).sum::<usize>() > 60);
    for (heading, table, keys) in probes {
        let text = if table == "top-level" {
            // The tables are named in their own headings, `include` in its section.
            doc.as_str()
        } else {
            section(&doc, heading)
        };
        for key in keys {
            assert!(
                text.contains(&format!("`{key}`")) || text.contains(&format!("[{key}]")),
                "docs/CONFIG.md, section {heading}: `{key}` of {table} is not described"
            );
        }
    }
}

#[test]
fn the_config_reference_names_every_rule_field_and_the_default_deny_list() {
    let doc = read("docs/CONFIG.md");
    let fields = section(&doc, "Rule language");
    for (name, _) in FIELDS {
        assert!(
            fields.contains(&format!("| `{name}` |")),
            "field {name} not in the table"
        );
    }
    let proxy = section(&doc, "`[proxy]`");
    let list: Vec<String> = ProxySettings::default_deny()
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect();
    assert!(
        proxy.contains(&format!("`[{}]`", list.join(", "))),
        "the default deny_destinations in docs/CONFIG.md is not {list:?}"
    );
}

/// The ```toml blocks of a markdown file.
fn toml_blocks(doc: &str) -> Vec<String> {
    doc.split("```toml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap().to_string())
        .collect()
}

#[test]
fn the_config_reference_examples_compile() {
    let doc = read("docs/CONFIG.md");
    let blocks = toml_blocks(&doc);
    assert!(!blocks.is_empty());
    for block in blocks {
        for when in block.lines().filter(|l| l.starts_with("when = ")) {
            let text = format!(
                "[geoip]\ndatabase = \"x.mmdb\"\n\n[[list]]\nname = \"third_party\"\nkind = \"ip\"\n\
                 items = [\"203.0.113.10\"]\n\n[[rule]]\nname = \"r\"\n{when}\naction = \"block\"\n"
            );
            let checked = check_str("example.toml", &text);
            assert!(checked.policy.is_some(), "{when}\n{}", checked.render());
        }
    }
}

#[test]
fn the_readme_explain_sample_is_what_explain_prints() {
    let readme = read("README.md");
    let start = readme
        .find("$ egressd explain ")
        .expect("README has an explain sample");
    let sample = &readme[start..];
    let sample = &sample[..sample.find("```").unwrap()];
    let (command, printed) = sample.split_once('\n').unwrap();
    let args: Vec<&str> = command.split_whitespace().skip(2).collect();
    let (code, out, err) = egressd(&args);
    assert_eq!(code, 0, "{err}");
    assert_eq!(printed, out, "README's sample differs from `{command}`");
}

#[test]
fn the_readme_toml_snippets_are_valid() {
    let readme = read("README.md");
    let blocks = toml_blocks(&readme);
    assert!(blocks.len() >= 3, "{blocks:?}");
    for block in blocks {
        let checked = check_str("readme.toml", &block);
        assert!(checked.policy.is_some(), "{block}\n{}", checked.render());
    }
}

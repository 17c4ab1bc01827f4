//! Every configuration under configs/ is a fixture, checked through the real binary:
//! examples compile cleanly and pass their own [[test]]s (and survive a compile/load round
//! trip), invalid configs print exactly their `.expected` diagnostics and exit 1, and the
//! warnings fixtures print exactly their warnings and exit 0.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{Config, egressd};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Relative paths (as the .expected files name them) of the .toml files in a directory.
fn fixtures(dir: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root().join(dir))
        .expect("fixture dir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.ends_with(".toml").then(|| format!("{dir}/{name}"))
        })
        .collect();
    v.sort();
    v
}

fn check_against_expected(dir: &str, want_code: i32) -> usize {
    let files = fixtures(dir);
    for f in &files {
        let expected_path = root().join(f.replace(".toml", ".expected"));
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        let (code, stdout, stderr) = egressd(&["check", "-c", f]);
        assert_eq!(
            stdout, expected,
            "{f}: diagnostics differ (stderr: {stderr})"
        );
        assert_eq!(code, want_code, "{f}: exit code");
    }
    files.len()
}

#[test]
fn invalid_configs_print_exactly_their_expected_diagnostics() {
    let n = check_against_expected("configs/invalid", 1);
    assert!(n >= 12, "only {n} invalid fixtures");
}

#[test]
fn warning_configs_pass_with_exactly_their_warnings() {
    check_against_expected("configs/warnings", 0);
}

/// The geolocation database the examples name, installed by scripts/install-geoip.sh.
const GEO_DB: &str = "/usr/share/GeoIP/dbip-country.mmdb";

/// `check`'s lines about this host rather than about the example: the examples' pools use
/// documentation addresses that no host has, and without the geolocation database installed
/// `run` would refuse an example that names it, which `check` says.
fn about_this_host(line: &str) -> bool {
    line.contains("is not an address of this host")
        || (line.contains(&format!("geoip database {GEO_DB} does not exist"))
            && !Path::new(GEO_DB).exists())
}

/// Checks an example (or its artifact): clean apart from lines about this host, and its own
/// tests pass. Exit 1 only when the database it names is not installed here.
fn check_example(f: &str) {
    let (code, stdout, stderr) = egressd(&["check", "-c", f]);
    let missing_db = stdout
        .lines()
        .any(|l| l.contains("geoip database") && about_this_host(l));
    assert_eq!(code, i32::from(missing_db), "{f}: {stdout}{stderr}");
    let config_lines: Vec<&str> = stdout.lines().filter(|l| !about_this_host(l)).collect();
    assert!(
        !config_lines
            .iter()
            .any(|l| l.contains("error:") || l.contains("warning:")),
        "{f}: {stdout}"
    );
    assert!(stdout.contains(", 0 failed"), "{f}: {stdout}");
}

#[test]
fn examples_check_clean_and_round_trip_through_artifacts() {
    let files = fixtures("configs/examples");
    assert!(files.len() >= 4, "{files:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    for f in &files {
        check_example(f);

        let out = dir.path().join(
            Path::new(f)
                .with_extension("bin")
                .file_name()
                .expect("name"),
        );
        let out_s = out.to_str().expect("utf-8 path");
        let (code, stdout, stderr) = egressd(&["compile", "-c", f, "-o", out_s]);
        assert_eq!(code, 0, "{f}: {stdout}{stderr}");
        // The artifact runs the same policy tests.
        check_example(out_s);
    }
}

#[test]
fn explain_shows_rule_conditions_pool_and_chain() {
    let (code, stdout, stderr) = egressd(&[
        "explain",
        "-c",
        "configs/examples/portugal.toml",
        "--dst",
        "203.0.113.10:443",
        "--user",
        "alice@example.com",
        "--src",
        "10.0.0.5",
    ]);
    assert_eq!(code, 0, "{stderr}");
    for want in [
        "#1 \"third-party allowlist via Portugal\": MATCH",
        "true  net.dst.ip in $third_party    [net.dst.ip = 203.0.113.10]",
        "true  any(identity.groups[*] in {\"finance\"})    [identity.groups = [\"finance\"]]",
        "egress: pool \"pt-montijo\" (PT): 198.51.100.10, then 198.51.100.11, then fallback: default egress",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }

    let (code, stdout, _) = egressd(&[
        "explain",
        "-c",
        "configs/examples/portugal.toml",
        "--dst",
        "203.0.113.10:443",
        "--user",
        "bob@example.com",
        "--json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(v["matched_rule"], "catch-all");
    assert_eq!(v["action"], "default");
    assert_eq!(v["egress"]["kind"], "default");
    // The index handed the table the finance rule too: it was checked and failed on groups.
    let checked = v["checked"].as_array().expect("checked");
    assert_eq!(checked[0]["rule"], "third-party allowlist via Portugal");
    assert_eq!(checked[0]["matched"], false);
    assert_eq!(checked[0]["conditions"][1]["field"], "identity.groups");
    assert_eq!(checked[0]["conditions"][1]["value"], "[\"engineering\"]");
    assert_eq!(checked[0]["conditions"][1]["result"], false);
}

#[test]
fn damaged_artifacts_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("p.bin");
    let out_s = out.to_str().expect("utf-8");
    let (code, ..) = egressd(&[
        "compile",
        "-c",
        "configs/examples/portugal.toml",
        "-o",
        out_s,
    ]);
    assert_eq!(code, 0);
    let bytes = std::fs::read(&out).expect("artifact");

    std::fs::write(&out, &bytes[..bytes.len() / 2]).expect("write");
    let (code, _, stderr) = egressd(&["check", "-c", out_s]);
    assert_eq!(code, 1);
    assert!(stderr.contains("compiled policy is truncated"), "{stderr}");

    let mut flipped = bytes.clone();
    let i = flipped.len() - 10;
    flipped[i] ^= 1;
    std::fs::write(&out, &flipped).expect("write");
    let (code, _, stderr) = egressd(&["explain", "-c", out_s, "--dst", "1.2.3.4:80"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("content hash does not match"), "{stderr}");

    let mut version = bytes;
    version[8] = 7;
    std::fs::write(&out, &version).expect("write");
    let (code, _, stderr) = egressd(&["check", "-c", out_s]);
    assert_eq!(code, 1);
    assert!(stderr.contains("format version 7"), "{stderr}");
}

#[test]
fn hash_password_makes_a_verifiable_argon2id_hash() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_egressd"))
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"correct horse\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let phc = String::from_utf8(out.stdout).expect("utf-8");
    let phc = phc.trim();
    assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let parsed = PasswordHash::new(phc).expect("PHC");
    assert!(
        argon2::Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok()
    );
    assert!(
        argon2::Argon2::default()
            .verify_password(b"correct horse\n", &parsed)
            .is_err()
    );
}

/// The configuration the end-to-end tests start from (`support::Config`) renders in the order
/// it was built, with one `[proxy]` table and one listener, and is a clean config.
#[test]
fn the_test_support_config_renders_in_order_and_checks_clean() {
    let text = Config::new()
        .proxy("handshake_timeout", "\"1s\"")
        .proxy("handshake_timeout", "\"2s\"")
        .deny(&["127.0.0.9/32"])
        .auth("optional")
        .auth("required")
        .user("alice", "alice-pw", &["finance"])
        .pool("finance", &["127.0.0.2"], &["fallback = \"deny\""])
        .block("port 1", "net.dst.port == 1")
        .egress_group("finance")
        .toml("[[device]]\nsource = \"127.0.0.1/32\"\npassed = [\"managed\"]")
        .catch_all()
        .to_string();
    let hash = text
        .lines()
        .find_map(|l| l.strip_prefix("password = "))
        .unwrap();
    assert!(hash.starts_with("\"$argon2id$"), "{hash}");
    assert_eq!(
        text.replace(hash, "HASH"),
        r#"[proxy]
deny_destinations = ["127.0.0.9/32"]
handshake_timeout = "2s"

[[listener]]
name = "office"
bind = "127.0.0.1:0"
auth = "required"

[[user]]
name = "alice"
password = HASH
groups = ["finance"]

[[pool]]
name = "finance"
ipv4 = ["127.0.0.2"]
fallback = "deny"

[[rule]]
name = "port 1"
when = 'net.dst.port == 1'
action = "block"

[[rule]]
name = "finance"
when = 'any(identity.groups[*] == "finance")'
action = "egress"
pool = "finance"

[[device]]
source = "127.0.0.1/32"
passed = ["managed"]

[[rule]]
name = "catch-all"
action = "default"
"#
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("support.toml");
    std::fs::write(&path, &text).unwrap();
    let (code, stdout, stderr) = egressd(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        !stdout.contains("error:") && !stdout.contains("warning:"),
        "{stdout}"
    );
}

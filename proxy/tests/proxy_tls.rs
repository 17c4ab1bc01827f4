//! The `https` listener with curl as an HTTPS-proxy client: client certificates verified
//! against `client_ca`, identity from the certificate (SAN e-mail, else CN), the device id
//! (certificate SHA-256) selecting `[[device]]` posture, and a client without a certificate
//! refused when one is required. Certificates are made in the test with the openssl CLI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;

use support::{Config, Proxy, Upstream, curl, tempdir};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1, and client certificates for alice (SAN e-mail)
/// and a device whose certificate has only a CN.
fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=egressd test CA",
        ],
    );
    let leaf = |name: &str, subj: &str, ext: &str| {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                subj,
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    };
    leaf(
        "server",
        "/CN=egressd",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    leaf(
        "alice",
        "/CN=Alice",
        "subjectAltName=email:alice@example.com\nextendedKeyUsage=clientAuth\n",
    );
    leaf("laptop", "/CN=laptop-42", "extendedKeyUsage=clientAuth\n");
}

fn fingerprint(pem: &Path) -> String {
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(pem)
        .output()
        .unwrap()
        .stdout;
    use sha2::Digest;
    sha2::Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn client_certificates_give_identity_and_posture() {
    let dir = tempdir("tls");
    make_certs(dir.path());
    let up = Upstream::start("127.0.0.1:0");
    let d = dir.path().display();
    let config = Config::new()
        .proxy("handshake_timeout", "\"2s\"")
        .listener_line("protocols = [\"https\"]")
        .auth("required")
        .listener_line(&format!(
            "tls = {{ cert = \"{d}/server.pem\", key = \"{d}/server.key\", client_ca = \"{d}/ca.pem\", client_auth = \"required\" }}"
        ))
        .toml(&format!(
            "[[device]]\nid = \"sha256:{}\"\npassed = [\"managed\"]",
            fingerprint(&dir.path().join("laptop.pem"))
        ))
        .pool("people", &["127.0.0.2"], &[])
        .pool("devices", &["127.0.0.3"], &[])
        .egress(
            "alice by certificate",
            "identity.email == \"alice@example.com\"",
            "people",
        )
        .egress(
            "managed devices",
            "any(device_posture.checks.passed[*] == \"managed\")",
            "devices",
        )
        .catch_all()
        .to_string();
    let proxy = Proxy::start(&config);
    let p = format!("https://{}", proxy.addr);
    let ca = format!("{d}/ca.pem");
    let with_cert = |who: &str, args: &[&str]| {
        let cert = format!("{d}/{who}.pem");
        let key = format!("{d}/{who}.key");
        let mut all = vec![
            "--proxy",
            &p,
            "--proxy-cacert",
            &ca,
            "--proxy-cert",
            &cert,
            "--proxy-key",
            &key,
        ];
        all.extend_from_slice(args);
        curl(&all)
    };
    let (code, body, err) = with_cert("alice", &[&up.url("/")]);
    assert_eq!((code, body.as_str()), (0, "127.0.0.2"), "{err}");
    let (code, body, err) = with_cert("laptop", &["-p", &up.url("/")]);
    assert_eq!((code, body.as_str()), (0, "127.0.0.3"), "{err}");
    let rec = proxy.wait_record(|r| r["user"] == "alice@example.com" && r["outcome"] == "ok");
    assert_eq!(rec["protocol"], "https");
    assert_eq!(rec["rule"], "alice by certificate");
    // No certificate while one is required: the handshake fails, nothing reaches upstream.
    let before = up.connections();
    let (code, _, _) = curl(&["--proxy", &p, "--proxy-cacert", &ca, &up.url("/")]);
    assert_ne!(code, 0);
    assert_eq!(up.connections(), before);
    proxy.wait_record(|r| r["outcome"] == "tls_handshake_failed");
    // A client that stalls in the handshake is cut off by the 2 s handshake timeout.
    let mut silent = std::net::TcpStream::connect(proxy.addr).unwrap();
    silent
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(std::io::Read::read(&mut silent, &mut byte).unwrap_or(0), 0);
    proxy.wait_record(|r| r["protocol"] == "https" && r["outcome"] == "handshake_timeout");
}

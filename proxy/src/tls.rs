//! The `https` listener's TLS side: server configurations built on the control thread from a
//! listener's `tls` table (certificate chain, key, optional client CA and whether client
//! certificates are optional or required), and what a client certificate says: the identity
//! (SAN e-mail, else the subject CN) and the device id (SHA-256 of the certificate).

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use egressd_policy::Policy;
use egressd_policy::model::{ClientAuth, ListenerProtocol, Tls};
use egressd_policy::named::FileRole;
use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// What a verified client certificate says.
#[derive(Debug, Clone)]
pub struct CertIdentity {
    /// SAN e-mail, else the subject's common name.
    pub name: String,
    /// SHA-256 of the certificate (DER): the `[[device]] id`.
    pub fingerprint: [u8; 32],
}

/// Why a listener's TLS configuration could not be built.
#[derive(Debug)]
pub struct TlsError {
    /// The `https` listener.
    pub listener: Option<String>,
    /// The certificate, key or CA file at fault, if one is.
    pub path: Option<std::path::PathBuf>,
    pub what: String,
}

impl TlsError {
    fn file(path: &Path, what: impl std::fmt::Display) -> Self {
        TlsError {
            listener: None,
            path: Some(path.to_owned()),
            what: what.to_string(),
        }
    }
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(l) = &self.listener {
            write!(f, "listener \"{l}\": ")?;
        }
        if let Some(p) = &self.path {
            write!(f, "{}: ", p.display())?;
        }
        f.write_str(&self.what)
    }
}

impl std::error::Error for TlsError {}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file = File::open(path).map_err(|e| TlsError::file(path, e))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::file(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::file(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let file = File::open(path).map_err(|e| TlsError::file(path, e))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| TlsError::file(path, e))?
        .ok_or_else(|| TlsError::file(path, "no PEM private key in the file"))
}

/// Reads one file a `tls` table names as a server configuration would (certificates, a
/// private key, CA certificates a client verifier accepts), so that each file's problem is
/// found on its own: `server_config` stops at the first. Blocking: control thread only.
pub fn check_file(role: FileRole, path: &Path) -> Result<(), TlsError> {
    match role {
        FileRole::TlsCert => read_certs(path).map(drop),
        FileRole::TlsKey => read_key(path).map(drop),
        FileRole::TlsClientCa => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(path)? {
                roots.add(cert).map_err(|e| TlsError::file(path, e))?;
            }
            Ok(())
        }
        FileRole::Geoip => Ok(()),
    }
}

/// Builds one listener's server configuration (blocking file reads: control thread only).
pub fn server_config(tls: &Tls) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = match (&tls.client_ca, tls.client_auth) {
        (Some(ca), ClientAuth::Optional | ClientAuth::Required) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots.add(cert).map_err(|e| TlsError::file(ca, e))?;
            }
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let builder = if tls.client_auth == ClientAuth::Optional {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            builder.build().map_err(|e| TlsError::file(ca, e))?
        }
        _ => WebPkiClientVerifier::no_client_auth(),
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError {
            listener: None,
            path: None,
            what: e.to_string(),
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(read_certs(&tls.cert)?, read_key(&tls.key)?)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::file(
                &tls.key,
                format!("not the key of the certificate {}", tls.cert.display()),
            ),
            e => TlsError::file(&tls.key, e),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Server configurations of every `https` listener, by listener name.
pub fn server_configs(policy: &Policy) -> Result<HashMap<String, Arc<ServerConfig>>, TlsError> {
    policy
        .listeners
        .iter()
        .filter(|l| l.protocols.contains(&ListenerProtocol::Https))
        .filter_map(|l| l.tls.as_ref().map(|t| (l, t)))
        .map(|(l, t)| {
            server_config(t)
                .map(|c| (l.name.clone(), c))
                .map_err(|e| TlsError {
                    listener: Some(l.name.clone()),
                    ..e
                })
        })
        .collect()
}

/// Identity and device id from a (verified) client certificate.
pub fn cert_identity(cert: &CertificateDer<'_>) -> CertIdentity {
    let fingerprint: [u8; 32] = Sha256::digest(cert.as_ref()).into();
    let name = x509_parser::parse_x509_certificate(cert.as_ref())
        .ok()
        .and_then(|(_, x509)| {
            let email = x509
                .subject_alternative_name()
                .ok()
                .flatten()
                .and_then(|san| {
                    san.value.general_names.iter().find_map(|n| match n {
                        x509_parser::extensions::GeneralName::RFC822Name(e) => Some(e.to_string()),
                        _ => None,
                    })
                });
            email.or_else(|| {
                x509.subject()
                    .iter_common_name()
                    .next()
                    .and_then(|cn| cn.as_str().ok())
                    .map(str::to_string)
            })
        })
        .unwrap_or_default();
    CertIdentity { name, fingerprint }
}

//! The files a configuration names, read as the proxy reads them when it builds a generation
//! (`state::Generation::load`): the certificate chain, key and client CA of every `https`
//! listener, and the geolocation database. Each file is read on its own so that every problem
//! is found, not only the first, and reported at the key that named the file; when a
//! listener's files all read, they are also put together, which finds a key that does not
//! belong to its certificate.

use egressd_policy::Policy;
use egressd_policy::model::ListenerProtocol;
use egressd_policy::named::{FileRole, Named, NamedFile};

use super::Finding;
use crate::geo::GeoDb;

/// What reading the named files found.
#[derive(Debug, Default)]
pub struct FileReport {
    /// One error per file that cannot be used (and per listener whose files do not fit).
    pub findings: Vec<Finding>,
    /// The geolocation database, when one is named and it loaded.
    pub geo: Option<GeoDb>,
}

/// Reads every file `named` lists. `policy`, when the configuration is valid, gives each
/// `https` listener's whole `tls` table, to build its server configuration once its files
/// read. Blocking: control side only.
pub fn check(named: &Named, policy: Option<&Policy>) -> FileReport {
    let mut report = FileReport::default();
    let mut failed_listeners = Vec::new();
    for file in &named.files {
        match (file.role, &file.listener) {
            (FileRole::Geoip, _) => match GeoDb::open(&file.path) {
                Ok(db) => report.geo = Some(db),
                Err(e) => report
                    .findings
                    .push(Finding::error(file.loc, e.to_string())),
            },
            (role, listener) => {
                if let Err(e) = crate::tls::check_file(role, &file.path) {
                    let listener = listener.as_deref().unwrap_or("?");
                    failed_listeners.push(listener);
                    report.findings.push(Finding::error(
                        file.loc,
                        format!("listener \"{listener}\": tls.{}: {e}", role.key()),
                    ));
                }
            }
        }
    }
    let Some(policy) = policy else {
        return report;
    };
    for listener in &policy.listeners {
        let Some(tls) = &listener.tls else { continue };
        if !listener.protocols.contains(&ListenerProtocol::Https)
            || failed_listeners.contains(&listener.name.as_str())
        {
            continue;
        }
        if let Err(e) = crate::tls::server_config(tls) {
            // At the file the error names (the key, for a key that does not fit).
            let of_listener = |f: &&NamedFile| f.listener.as_deref() == Some(&listener.name);
            let at = named
                .files
                .iter()
                .filter(of_listener)
                .find(|f| e.path.as_deref() == Some(f.path.as_path()))
                .or_else(|| {
                    named
                        .files
                        .iter()
                        .filter(of_listener)
                        .find(|f| f.role == FileRole::TlsKey)
                });
            report.findings.push(Finding::error(
                at.and_then(|f| f.loc),
                format!("listener \"{}\": {e}", listener.name),
            ));
        }
    }
    report
}

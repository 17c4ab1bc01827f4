//! The compiled-policy artifact written by `egressd compile`: a validated policy in bincode,
//! behind a header that names the format, its version and a SHA-256 of the payload, so that a
//! truncated, corrupted or foreign file is refused with a clear error instead of misread.
//!
//! Layout (integers little-endian):
//! `"EGRESSD\0"` | format version u32 | payload length u64 | SHA-256 of payload | payload

use sha2::{Digest, Sha256};

use crate::model::Policy;

pub const MAGIC: &[u8; 8] = b"EGRESSD\0";
/// Bumped whenever the serialized model changes shape.
pub const FORMAT_VERSION: u32 = 4;
const HEADER: usize = 8 + 4 + 8 + 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArtifactError {
    #[error("not an egressd compiled policy (bad magic bytes)")]
    NotAnArtifact,
    #[error(
        "compiled policy has format version {found}; this egressd reads version {expected}: recompile it with `egressd compile`"
    )]
    Version { found: u32, expected: u32 },
    #[error("compiled policy is truncated: expected {expected} bytes, found {found}")]
    Truncated { expected: u64, found: u64 },
    #[error("compiled policy has {0} trailing bytes after its payload")]
    Trailing(u64),
    #[error("compiled policy is corrupted: its content hash does not match")]
    HashMismatch,
    #[error("compiled policy is corrupted: {0}")]
    Decode(String),
    #[error("cannot encode policy: {0}")]
    Encode(String),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
}

fn encode_payload(policy: &Policy) -> Result<Vec<u8>, ArtifactError> {
    bincode::serde::encode_to_vec(policy, config())
        .map_err(|e| ArtifactError::Encode(e.to_string()))
}

/// Hex SHA-256 of the policy's canonical encoding: equal policies have equal hashes.
pub fn content_hash(policy: &Policy) -> String {
    encode_payload(policy)
        .map(|p| hex(&Sha256::digest(&p)))
        .unwrap_or_default()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Serializes a validated policy into an artifact.
pub fn encode(policy: &Policy) -> Result<Vec<u8>, ArtifactError> {
    let payload = encode_payload(policy)?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&payload));
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Whether bytes look like an artifact (for choosing between TOML and artifact input).
pub fn is_artifact(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Reads an artifact back, checking magic, version, length and hash before decoding.
pub fn decode(bytes: &[u8]) -> Result<Policy, ArtifactError> {
    if !is_artifact(bytes) {
        return Err(ArtifactError::NotAnArtifact);
    }
    let field = |range: std::ops::Range<usize>| {
        bytes.get(range).ok_or(ArtifactError::Truncated {
            expected: HEADER as u64,
            found: bytes.len() as u64,
        })
    };
    let version = u32::from_le_bytes(
        field(8..12)?
            .try_into()
            .map_err(|_| ArtifactError::NotAnArtifact)?,
    );
    if version != FORMAT_VERSION {
        return Err(ArtifactError::Version {
            found: version,
            expected: FORMAT_VERSION,
        });
    }
    let len = u64::from_le_bytes(
        field(12..20)?
            .try_into()
            .map_err(|_| ArtifactError::NotAnArtifact)?,
    );
    let hash = field(20..HEADER)?;
    let payload = &bytes[HEADER..];
    let have = payload.len() as u64;
    if have < len {
        return Err(ArtifactError::Truncated {
            expected: HEADER as u64 + len,
            found: bytes.len() as u64,
        });
    }
    if have > len {
        return Err(ArtifactError::Trailing(have - len));
    }
    if Sha256::digest(payload).as_slice() != hash {
        return Err(ArtifactError::HashMismatch);
    }
    let (policy, used) = bincode::serde::decode_from_slice::<Policy, _>(payload, config())
        .map_err(|e| ArtifactError::Decode(e.to_string()))?;
    if used != payload.len() {
        return Err(ArtifactError::Decode(format!(
            "{} bytes left undecoded",
            payload.len() - used
        )));
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Policy {
        let c = crate::check_str(
            "p.toml",
            r#"
[[pool]]
name = "pt"
ipv4 = ["198.51.100.10"]
[[list]]
name = "third"
kind = "domain"
items = ["example.com"]
[[rule]]
name = "r"
when = 'net.fqdn.host in $third and net.fqdn.host matches "^api"'
action = "egress"
pool = "pt"
[[rule]]
name = "catch-all"
action = "default"
"#,
        );
        assert!(!c.diags.has_errors(), "{}", c.render());
        c.policy.expect("valid")
    }

    #[test]
    fn round_trips() {
        let p = sample();
        let bytes = encode(&p).unwrap();
        assert_eq!(decode(&bytes).unwrap(), p);
        assert_eq!(content_hash(&p), content_hash(&decode(&bytes).unwrap()));
    }

    #[test]
    fn every_damage_is_a_clear_error() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(decode(b"[proxy]\n"), Err(ArtifactError::NotAnArtifact));
        assert!(matches!(
            decode(&bytes[..bytes.len() - 1]),
            Err(ArtifactError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&bytes[..10]),
            Err(ArtifactError::Truncated { .. })
        ));
        let mut other = bytes.clone();
        other[8] = 99;
        assert_eq!(
            decode(&other),
            Err(ArtifactError::Version {
                found: 99,
                expected: FORMAT_VERSION
            })
        );
        let mut flipped = bytes.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x40;
        assert_eq!(decode(&flipped), Err(ArtifactError::HashMismatch));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer), Err(ArtifactError::Trailing(1)));
        // Every truncation and every single-byte flip is refused without a panic.
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err());
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xff;
            assert!(decode(&b).is_err(), "flip at {i}");
        }
    }
}

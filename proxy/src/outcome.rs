//! How a connection (or a forwarded request) ended: one name per way, written to the access
//! log in snake_case and counted per listener, each knowing which side failed.

use serde::Serialize;

/// Who a failure is attributed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The client: it closed, stalled, spoke something else or sent a bad message or password.
    Client,
    /// The policy refused (a rule's `block`, `deny_destinations`, no address of a family the
    /// rule allows).
    Policy,
    /// The destination or the way to it: name resolution, connect, the server's answer.
    Upstream,
    /// egressd itself: its egress addresses, its configuration, its capacity.
    Internal,
}

macro_rules! outcomes {
    ($($(#[$meta:meta])* $variant:ident = $name:literal, $side:expr;)*) => {
        /// How a connection or forwarded request ended.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub enum Outcome {
            #[default]
            $($(#[$meta])* $variant,)*
        }

        impl Outcome {
            /// Every outcome, in index order.
            pub const ALL: &[Outcome] = &[$(Outcome::$variant,)*];

            /// The access-log name.
            pub fn name(self) -> &'static str {
                match self {
                    $(Outcome::$variant => $name,)*
                }
            }

            /// Who failed; `None` when nothing did.
            pub fn side(self) -> Option<Side> {
                match self {
                    $(Outcome::$variant => $side,)*
                }
            }
        }
    };
}

use Side::{Client, Internal, Policy, Upstream};

outcomes! {
    Ok = "ok", None;
    /// Nothing moved either way for `idle_timeout`: ended by egressd, nobody failed.
    IdleTimeout = "idle_timeout", None;
    RelayErrorClient = "relay_error", Some(Client);
    RelayErrorUpstream = "relay_error", Some(Upstream);
    ClosedBeforeRequest = "closed_before_request", Some(Client);
    HandshakeTimeout = "handshake_timeout", Some(Client);
    ClientError = "client_error", Some(Client);
    BadRequest = "bad_request", Some(Client);
    HeadTooLarge = "head_too_large", Some(Client);
    NotAProxyRequest = "not_a_proxy_request", Some(Client);
    UnknownProtocol = "unknown_protocol", Some(Client);
    UnsupportedCommand = "unsupported_command", Some(Client);
    AuthRequired = "auth_required", Some(Client);
    AuthFailed = "auth_failed", Some(Client);
    TlsHandshakeFailed = "tls_handshake_failed", Some(Client);
    /// Password verification could not run in time (the shard's verifications were busy).
    AuthBusy = "auth_busy", Some(Internal);
    TlsNotConfigured = "tls_not_configured", Some(Internal);
    Blocked = "blocked", Some(Policy);
    DeniedDestination = "denied_destination", Some(Policy);
    /// No resolved address has a family the deciding rule allows.
    NoAddress = "no_address", Some(Policy);
    /// Every pool address failed and the pool's fallback is `deny`.
    NoEgress = "no_egress", Some(Internal);
    ResolveFailed = "resolve_failed", Some(Upstream);
    ConnectFailed = "connect_failed", Some(Upstream);
    UpstreamError = "upstream_error", Some(Upstream);
    UpstreamClosed = "upstream_closed", Some(Upstream);
}

impl Outcome {
    /// The position in `ALL` (for counters indexed by outcome).
    pub fn index(self) -> usize {
        self as usize
    }
}

impl Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_follow_the_list_and_names_are_snake_case() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
            let n = o.name();
            assert!(
                n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{n}"
            );
            assert_eq!(serde_json::to_string(o).unwrap(), format!("\"{n}\""));
        }
        assert_eq!(Outcome::default(), Outcome::Ok);
    }

    #[test]
    fn success_blames_nobody_and_failures_name_a_side() {
        assert_eq!(Outcome::Ok.side(), None);
        assert_eq!(Outcome::Blocked.side(), Some(Policy));
        assert_eq!(Outcome::ConnectFailed.side(), Some(Upstream));
        assert_eq!(Outcome::AuthFailed.side(), Some(Client));
        assert_eq!(Outcome::NoEgress.side(), Some(Internal));
        // One name, two sides.
        assert_eq!(
            Outcome::RelayErrorClient.name(),
            Outcome::RelayErrorUpstream.name()
        );
    }
}

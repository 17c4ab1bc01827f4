//! What egressd says once it serves: what listens where and with which authentication, where
//! connections leave from by default, what is refused whatever the rules say, and where the
//! access log goes. Readable on a terminal; one JSON line otherwise.

use std::net::SocketAddr;

use egressd_policy::Policy;
use egressd_policy::model::{Action, Auth, DefaultAction, ListenerProtocol};

/// How operational logs (standard error) are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for journald, log shippers, tests).
    Json,
    /// Plain lines for a person at a terminal.
    Text,
}

impl LogFormat {
    /// `EGRESSD_LOG_FORMAT=json|text` if set, else text when standard error is a terminal.
    pub fn from_env() -> LogFormat {
        match std::env::var("EGRESSD_LOG_FORMAT").ok().as_deref() {
            Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            _ if std::io::IsTerminal::is_terminal(&std::io::stderr()) => LogFormat::Text,
            _ => LogFormat::Json,
        }
    }
}

/// The start-up summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// One line per listener: name, address, protocols, authentication.
    pub listeners: Vec<String>,
    /// Where a connection no rule sends elsewhere leaves from.
    pub default_egress: String,
    /// What is refused whatever the rules say, and how to allow it.
    pub refused: String,
    pub access_log: String,
}

fn auth_text(auth: Auth) -> &'static str {
    match auth {
        Auth::None => "no authentication",
        Auth::Optional => "authentication optional (anonymous clients allowed)",
        Auth::Required => "authentication required",
    }
}

fn protocol_text(p: ListenerProtocol) -> &'static str {
    match p {
        ListenerProtocol::Socks5 => "socks5",
        ListenerProtocol::Http => "http",
        ListenerProtocol::Https => "https",
    }
}

impl Summary {
    /// The summary of `policy` served on `bound` (each listener's name and bound address).
    pub fn new(policy: &Policy, bound: &[(String, SocketAddr)]) -> Summary {
        let listeners = bound
            .iter()
            .filter_map(|(name, addr)| {
                let l = policy.listeners.iter().find(|l| &l.name == name)?;
                let protocols: Vec<_> = l.protocols.iter().map(|p| protocol_text(*p)).collect();
                Some(format!(
                    "{addr} ({}) listener \"{name}\", {}",
                    protocols.join(", "),
                    auth_text(l.auth)
                ))
            })
            .collect();
        let catch_all = policy.rules.iter().rfind(|r| r.enabled && r.is_catch_all());
        let default_egress = match catch_all {
            Some(r) => match r.action {
                Action::Default => format!("the host's default route (rule \"{}\")", r.name),
                Action::Ingress => {
                    format!("the address the client connected to (rule \"{}\")", r.name)
                }
                Action::Block => format!("nothing: rule \"{}\" blocks the rest", r.name),
                Action::Egress => {
                    let pool = r.pool.and_then(|p| policy.pool(p));
                    match pool {
                        Some(p) => {
                            let addrs: Vec<String> = p
                                .ipv4
                                .iter()
                                .map(ToString::to_string)
                                .chain(p.ipv6.iter().map(ToString::to_string))
                                .collect();
                            format!(
                                "pool \"{}\" ({}) (rule \"{}\")",
                                p.name,
                                addrs.join(", "),
                                r.name
                            )
                        }
                        None => format!("rule \"{}\"", r.name),
                    }
                }
            },
            None => match policy.default_action {
                DefaultAction::Default => {
                    "the host's default route (no catch-all rule: [policy] default_action)"
                        .to_string()
                }
                DefaultAction::Block => {
                    "nothing: connections no rule matches are blocked ([policy] default_action)"
                        .to_string()
                }
            },
        };
        let deny = &policy.settings.deny_destinations;
        let refused = if deny.is_empty() {
            "nothing beyond the rules ([proxy] deny_destinations is empty)".to_string()
        } else {
            let nets: Vec<String> = deny.iter().map(ToString::to_string).collect();
            format!(
                "destinations in {} ([proxy] deny_destinations; to reach a local test server, \
                 set deny_destinations = [] or list only what to refuse)",
                nets.join(", ")
            )
        };
        let to_terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
        let access_log = format!(
            "standard output{}, one JSON line per connection and per forwarded request",
            if to_terminal { " (this terminal)" } else { "" }
        );
        Summary {
            listeners,
            default_egress,
            refused,
            access_log,
        }
    }

    /// Says it: plain lines on standard error, or one `ready` JSON log line.
    pub fn log(&self, format: LogFormat, generation: u64, rules: usize) {
        match format {
            LogFormat::Text => {
                let plural = if rules == 1 { "" } else { "s" };
                let mut out =
                    format!("egressd is ready (generation {generation}, {rules} rule{plural})\n");
                for l in &self.listeners {
                    out.push_str(&format!("  listening on  {l}\n"));
                }
                out.push_str(&format!("  default egress  {}\n", self.default_egress));
                out.push_str(&format!("  refused         {}\n", self.refused));
                out.push_str(&format!("  access log      {}\n", self.access_log));
                // The control thread, before serving: a blocking write is fine here.
                eprint!("{out}");
            }
            LogFormat::Json => tracing::info!(
                generation,
                rules,
                listeners = ?self.listeners,
                default_egress = %self.default_egress,
                refused = %self.refused,
                access_log = %self.access_log,
                "ready"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(toml: &str) -> Summary {
        let policy = egressd_policy::check_str("<test>", toml).policy.unwrap();
        let bound: Vec<_> = policy
            .listeners
            .iter()
            .map(|l| (l.name.clone(), "127.0.0.1:1080".parse().unwrap()))
            .collect();
        Summary::new(&policy, &bound)
    }

    #[test]
    fn the_built_in_default_explains_itself() {
        let s = summary(crate::control::DEFAULT_CONFIG);
        assert_eq!(
            s.listeners,
            ["127.0.0.1:1080 (socks5, http) listener \"default\", no authentication"]
        );
        assert_eq!(
            s.default_egress,
            "the host's default route (rule \"catch-all\")"
        );
        assert!(s.refused.contains("127.0.0.0/8"), "{}", s.refused);
        assert!(
            s.refused.contains("deny_destinations = []"),
            "{}",
            s.refused
        );
    }

    #[test]
    fn a_pool_catch_all_and_no_catch_all_are_named() {
        let s = summary(
            r#"
[proxy]
deny_destinations = []
[[listener]]
name = "office"
bind = "127.0.0.1:0"
auth = "required"
[[user]]
name = "a"
[[pool]]
name = "pt"
ipv4 = ["198.51.100.10"]
[[rule]]
name = "rest"
action = "egress"
pool = "pt"
"#,
        );
        assert!(s.listeners[0].ends_with("authentication required"));
        assert_eq!(
            s.default_egress,
            "pool \"pt\" (198.51.100.10) (rule \"rest\")"
        );
        assert!(s.refused.starts_with("nothing beyond the rules"));
        let s = summary(
            "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n[[rule]]\nname = \"x\"\nwhen = 'net.dst.port == 1'\naction = \"block\"\n",
        );
        assert!(
            s.default_egress.contains("[policy] default_action"),
            "{}",
            s.default_egress
        );
    }
}

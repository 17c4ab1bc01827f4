//! The control loop: one thread that owns reloading and stopping, fed by event sources over a
//! channel (signals today; the admin endpoint and a fleet watcher send the same events). A
//! reload takes a policy source, not a path: it builds a whole new generation off the shards
//! and publishes it with one store, or keeps the current one and says why.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};

use egressd_policy::model::Listener;
use egressd_policy::{Policy, Severity, check_str};

use crate::files::{Source, load};
use crate::state::{Generation, GenerationError, Shared};

/// The configuration `egressd` runs with when given none.
pub const DEFAULT_CONFIG: &str = r#"# egressd's built-in default configuration: what `egressd` (or `egressd run` without -c)
# runs with, and what `egressd default-config` prints as a starting point. One listener on
# 127.0.0.1:1080 speaking SOCKS5 and HTTP, no authentication, and one catch-all rule:
# every connection leaves from the default address (the kernel picks the source address).
# Every key is described in docs/CONFIG.md in egressd's source repository.

# Destinations in [proxy] deny_destinations are refused whatever a rule says. Without the
# key, loopback, link-local and unspecified addresses are refused (127.0.0.0/8, ::1/128,
# 169.254.0.0/16, fe80::/10, 0.0.0.0/8, ::/128). To reach services on this host through the
# proxy, uncomment these two lines: the same list without loopback.
# [proxy]
# deny_destinations = ["169.254.0.0/16", "fe80::/10", "0.0.0.0/8", "::/128"]

[[listener]]
name = "default"
bind = "127.0.0.1:1080"
protocols = ["socks5", "http"]
auth = "none"

[[rule]]
name = "catch-all"
action = "default"
"#;

/// Where a policy comes from.
pub trait PolicySource: Send + Sync {
    /// For log lines: the file, the built-in default, an etcd key.
    fn describe(&self) -> String;

    /// Reads and validates the policy (blocking: control side only). Diagnostics are logged.
    fn load(&self) -> Result<Policy, LoadError>;
}

/// A TOML configuration or a compiled artifact on disk.
#[derive(Debug, Clone)]
pub struct FileSource(pub PathBuf);

impl PolicySource for FileSource {
    fn describe(&self) -> String {
        self.0.display().to_string()
    }

    fn load(&self) -> Result<Policy, LoadError> {
        load_file(&self.0)
    }
}

/// The configuration `egressd` runs with when given none.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinSource;

impl PolicySource for BuiltinSource {
    fn describe(&self) -> String {
        "<built-in default>".into()
    }

    fn load(&self) -> Result<Policy, LoadError> {
        check_str("<built-in default>", DEFAULT_CONFIG)
            .policy
            .ok_or(LoadError::Invalid {
                source: self.describe(),
                errors: 1,
            })
    }
}

/// Why a policy could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read or decoded.
    Read(crate::files::FileError),
    /// The configuration has errors (each was logged with its position).
    Invalid { source: String, errors: usize },
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Read(e) => e.fmt(f),
            LoadError::Invalid { source, errors } => write!(f, "{source}: {errors} error(s)"),
        }
    }
}

impl std::error::Error for LoadError {}

/// Loads a policy from a file (TOML or artifact), logging every diagnostic.
pub fn load_file(path: &Path) -> Result<Policy, LoadError> {
    match load(path).map_err(LoadError::Read)? {
        Source::Config(checked) => {
            for d in &checked.diags.items {
                let line = checked.sources.render(d);
                match d.severity {
                    Severity::Error => tracing::error!(diagnostic = %line, "config"),
                    Severity::Warning => tracing::warn!(diagnostic = %line, "config"),
                }
            }
            let errors = checked.diags.error_count();
            checked.policy.ok_or_else(|| LoadError::Invalid {
                source: path.display().to_string(),
                errors,
            })
        }
        Source::Artifact(p) => Ok(p),
    }
}

/// Why a reload kept the current generation.
#[derive(Debug)]
pub enum ReloadError {
    Load(LoadError),
    /// The policy is valid but a file it names (geolocation database, certificate) is not.
    Generation(GenerationError),
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadError::Load(e) => e.fmt(f),
            ReloadError::Generation(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ReloadError {}

/// What the control loop is asked to do.
pub enum Event {
    /// Load the policy from this source (`None`: the source the process started with) and
    /// publish it; the answer, if wanted, goes to `reply`.
    Reload {
        source: Option<Arc<dyn PolicySource>>,
        reply: Option<Sender<Result<u64, ReloadError>>>,
    },
    /// Stop accepting, drain, exit (the signal's name, for the log).
    Stop(&'static str),
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Reload { source, .. } => f
                .debug_struct("Reload")
                .field("source", &source.as_ref().map(|s| s.describe()))
                .finish(),
            Event::Stop(why) => f.debug_tuple("Stop").field(why).finish(),
        }
    }
}

/// The control side's state: the published generation, the listeners as bound at start, and
/// where the policy comes from.
pub struct Control {
    pub shared: Shared,
    pub startup_listeners: Vec<Listener>,
    pub source: Arc<dyn PolicySource>,
}

impl Control {
    /// Handles events until a `Stop` arrives (or every sender is gone); returns why it stopped.
    pub fn run(&self, events: &Receiver<Event>) -> &'static str {
        while let Ok(event) = events.recv() {
            match event {
                Event::Reload { source, reply } => {
                    let source = source.unwrap_or_else(|| self.source.clone());
                    let r = self.reload(&*source);
                    if let Some(reply) = reply {
                        let _ = reply.send(r);
                    }
                }
                Event::Stop(why) => return why,
            }
        }
        "control channel closed"
    }

    /// Loads `source` into a new generation and publishes it; on any error the current
    /// generation keeps serving. Returns the new generation's id.
    pub fn reload(&self, source: &dyn PolicySource) -> Result<u64, ReloadError> {
        let current = self.shared.load();
        let policy = source.load().map_err(|e| {
            tracing::error!(generation = current.id, source = %source.describe(), error = %e, "reload rejected; the current generation keeps serving");
            ReloadError::Load(e)
        })?;
        if policy.listeners != self.startup_listeners {
            tracing::warn!(
                generation = current.id,
                "listener changes need a restart; the listeners keep their start-up settings (auth mode changes apply)"
            );
        }
        let id = current.id + 1;
        crate::preflight::warn_unassigned(&policy, id);
        let next = Generation::load(id, policy).map_err(|e| {
            tracing::error!(generation = current.id, source = %source.describe(), error = %e, "reload rejected; the current generation keeps serving");
            ReloadError::Generation(e)
        })?;
        let (hash, rules) = (next.hash.clone(), next.policy().rules.len());
        self.shared.store(Arc::new(next));
        // Said once it is true: a connection that starts after this line gets the new
        // generation.
        tracing::info!(generation = id, hash = %hash, rules, source = %source.describe(), "reloaded");
        Ok(id)
    }
}

/// Turns SIGHUP into `Reload` and SIGTERM/SIGINT into `Stop`, on a thread of its own.
pub fn signal_source(
    events: Sender<Event>,
) -> std::io::Result<(signal_hook::iterator::Handle, std::thread::JoinHandle<()>)> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT])?;
    let handle = signals.handle();
    let thread = std::thread::Builder::new()
        .name("egressd-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let event = match signal {
                    SIGHUP => Event::Reload {
                        source: None,
                        reply: None,
                    },
                    SIGTERM => Event::Stop("SIGTERM"),
                    _ => Event::Stop("SIGINT"),
                };
                if events.send(event).is_err() {
                    return;
                }
            }
        })?;
    Ok((handle, thread))
}

#[cfg(test)]
mod tests {
    use arc_swap::ArcSwap;

    use super::*;

    /// A policy source in memory whose text a test changes between reloads.
    struct Text(std::sync::Mutex<String>);

    impl PolicySource for Text {
        fn describe(&self) -> String {
            "<test>".into()
        }
        fn load(&self) -> Result<Policy, LoadError> {
            let checked = check_str("<test>", &self.0.lock().unwrap());
            let errors = checked.diags.error_count();
            checked.policy.ok_or(LoadError::Invalid {
                source: self.describe(),
                errors,
            })
        }
    }

    const LISTENER: &str = "[[listener]]\nname = \"main\"\nbind = \"127.0.0.1:0\"\n";

    fn policy_text(rule: &str) -> String {
        format!("{LISTENER}[[rule]]\nname = \"{rule}\"\naction = \"default\"\n")
    }

    #[test]
    fn reload_events_publish_new_generations_and_keep_the_old_one_on_errors() {
        let text = Arc::new(Text(std::sync::Mutex::new(policy_text("first"))));
        let policy = text.load().unwrap();
        let shared: Shared = Arc::new(ArcSwap::new(Arc::new(
            Generation::load(1, policy.clone()).unwrap(),
        )));
        let control = Control {
            shared: shared.clone(),
            startup_listeners: policy.listeners.clone(),
            source: text.clone(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let looping = std::thread::spawn(move || control.run(&rx));
        // Each reload is answered before the text changes again.
        let reload = |source: Option<Arc<dyn PolicySource>>| {
            let (reply, answer) = std::sync::mpsc::channel();
            tx.send(Event::Reload {
                source,
                reply: Some(reply),
            })
            .unwrap();
            answer.recv().unwrap()
        };
        *text.0.lock().unwrap() = policy_text("second");
        assert_eq!(reload(None).unwrap(), 2);
        *text.0.lock().unwrap() = "[[rule]]\nname = 3\n".into();
        assert!(matches!(
            reload(None),
            Err(ReloadError::Load(LoadError::Invalid { .. }))
        ));
        assert_eq!(shared.load().policy().rules[0].name, "second");
        let other: Arc<dyn PolicySource> =
            Arc::new(Text(std::sync::Mutex::new(policy_text("elsewhere"))));
        assert_eq!(reload(Some(other)).unwrap(), 3);
        tx.send(Event::Stop("test")).unwrap();
        assert_eq!(looping.join().unwrap(), "test");
        let now = shared.load();
        assert_eq!(now.id, 3);
        assert_eq!(now.policy().rules[0].name, "elsewhere");
    }
}

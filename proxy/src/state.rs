//! A generation: one validated, compiled configuration, published to the shards with a
//! single `ArcSwap::store` and read by each shard through its own `arc_swap::Cache`.

use std::sync::Arc;

use arc_swap::ArcSwap;
use egressd_policy::compile::sets::IpSet;
use egressd_policy::geo::Geolocate;
use egressd_policy::model::User;
use egressd_policy::{CompiledPolicy, Policy, artifact};

use crate::geo::{GeoDb, GeoError};

/// Why a valid policy could not become a generation: a file it names.
#[derive(Debug)]
pub enum GenerationError {
    Geo(GeoError),
    Tls(crate::tls::TlsError),
}

impl std::fmt::Display for GenerationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GenerationError::Geo(e) => e.fmt(f),
            GenerationError::Tls(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for GenerationError {}

#[derive(Debug)]
pub struct Generation {
    /// 1 for the configuration loaded at start, +1 per successful reload.
    pub id: u64,
    /// The decision table; it also indexes users, listeners and devices for the facts of a
    /// connection (`table.directory()`).
    pub table: CompiledPolicy,
    /// `[proxy] deny_destinations`, refused whatever a rule says.
    pub deny: IpSet,
    /// SHA-256 of the compiled policy's canonical encoding.
    pub hash: String,
    /// The `[geoip]` database, read with this generation (a reload re-reads it).
    pub geo: Option<Arc<GeoDb>>,
    /// TLS server configurations of the `https` listeners, by listener name.
    pub tls: std::collections::HashMap<String, Arc<rustls::ServerConfig>>,
    /// What an unknown user's password is verified against (`auth::dummy_hash`).
    pub dummy_hash: String,
}

impl Generation {
    /// Builds a generation, reading its geolocation database (blocking: control thread only).
    /// Also reads the `https` listeners' certificates and keys.
    pub fn load(id: u64, policy: Policy) -> Result<Self, GenerationError> {
        let geo = match &policy.geoip {
            Some(path) => Some(Arc::new(GeoDb::open(path).map_err(GenerationError::Geo)?)),
            None => None,
        };
        let tls = crate::tls::server_configs(&policy).map_err(GenerationError::Tls)?;
        let deny = IpSet::new(&policy.settings.deny_destinations);
        let hash = artifact::content_hash(&policy);
        let dummy_hash = crate::auth::dummy_hash(&policy.users);
        Ok(Generation {
            id,
            table: CompiledPolicy::new(policy),
            deny,
            hash,
            geo,
            tls,
            dummy_hash,
        })
    }

    pub fn policy(&self) -> &Policy {
        self.table.policy()
    }

    /// The `[[user]]` of this name.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.table.directory().user(name)
    }

    /// The geolocation database, as the facts builder takes it.
    pub fn geolocation(&self) -> Option<&dyn Geolocate> {
        self.geo.as_deref().map(|g| g as &dyn Geolocate)
    }
}

impl crate::auth::Credentials for Generation {
    fn password_hash(&self, user: &str) -> Option<&str> {
        self.user(user)
            .and_then(|u| u.password.as_ref())
            .map(|h| h.0.as_str())
    }

    fn dummy_hash(&self) -> &str {
        &self.dummy_hash
    }

    fn id(&self) -> u64 {
        self.id
    }
}

/// What shards read the current generation from.
pub type Shared = Arc<ArcSwap<Generation>>;

/// A shard-local handle on a generation: cloning it touches no shared cache line (one `Arc`
/// clone per shard per reload instead of one per connection).
pub type GenRef = std::rc::Rc<Arc<Generation>>;

/// A shard's view of the current generation: one atomic pointer comparison per load while
/// nothing changed, no reference-count traffic.
pub type GenerationCache = arc_swap::Cache<Shared, Arc<Generation>>;

/// A shard's handle on the current generation: `get` costs one pointer comparison unless a
/// reload happened, and hands out a shard-local reference.
pub struct Current {
    cache: std::cell::RefCell<GenerationCache>,
    local: std::cell::RefCell<GenRef>,
}

impl Current {
    pub fn new(shared: &Shared) -> Self {
        let first = shared.load_full();
        Current {
            cache: std::cell::RefCell::new(arc_swap::Cache::new(shared.clone())),
            local: std::cell::RefCell::new(std::rc::Rc::new(first)),
        }
    }

    /// The current generation.
    pub fn get(&self) -> GenRef {
        let mut cache = self.cache.borrow_mut();
        let latest = cache.load();
        let mut local = self.local.borrow_mut();
        if !Arc::ptr_eq(&local, latest) {
            *local = std::rc::Rc::new(latest.clone());
        }
        local.clone()
    }
}

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Current")
            .field("generation", &self.local.borrow().id)
            .finish()
    }
}

//! Leaving from the right address: socket preparation, per-shard pools of pre-bound sockets,
//! and dialing a destination according to a policy decision (pool order, cool-down,
//! fallback, ingress, interface and mark).

pub mod dial;
pub mod socket;

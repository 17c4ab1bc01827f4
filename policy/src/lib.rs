//! egressd policy engine: configuration model, the rule language, validation, the compiled
//! decision table and its reference evaluator, and egress address selection.
//!
//! Pure: no sockets, files, clocks, threads or randomness. Callers pass file contents (through
//! [`config::FileSource`]), time and hash keys in.
#![forbid(unsafe_code)]

pub mod config;
pub mod diag;
pub mod expr;
pub mod meta;
pub mod model;
pub mod validate;

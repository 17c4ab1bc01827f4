//! End-to-end tests of the `egressd-loadgen` binary: real sinks, real runs, and tiny in-test
//! SOCKS5 and HTTP proxies (threads and std::net) standing in for the proxy under test.
//!
//! Every port is 0; readiness is the sink's `listening` line or a bound std listener, never a
//! sleep.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod direct;
mod http_proxy;
mod proxied;
mod relay;
mod sink_modes;
mod socks5_proxy;
mod support;

//! Sans-I/O protocol codecs: bytes in, requests or errors out, and reply encoders.
#![allow(dead_code)] // wired into the sessions by the integrator

pub mod http;
pub mod socks5;

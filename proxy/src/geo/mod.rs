//! Geolocation of addresses (being written).
#![allow(dead_code)] // wired into decisions by the integrator

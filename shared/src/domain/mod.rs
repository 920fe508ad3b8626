//! The domain: pure types and rules, no I/O.

pub mod devices;
pub mod tenancy;

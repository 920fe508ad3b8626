//! smartsite-shared: the domain, its ports, and every adapter.
//!
//! Handlers in `functions/*` and the single-box edition in `cli/` are built from these pieces;
//! only the adapters differ between the AWS edition and the single-box edition.

pub mod accounts;
pub mod alarming;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod directory;
pub mod domain;
pub mod export;
pub mod fleet;
pub mod fsutil;
pub mod funds;
pub mod handoff;
pub mod http;
pub mod ids;
pub mod ingest;
pub mod iot;
pub mod password;
pub mod store;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod throttle;

//! The domain: pure types and rules, no I/O.

pub mod alarms;
pub mod billing;
pub mod bounds;
pub mod bulk_csv;
pub mod devices;
pub mod hj212;
pub mod safety_fund;
pub mod telemetry;
pub mod tenancy;
pub mod text;

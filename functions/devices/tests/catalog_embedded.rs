//! The device-catalog suite on the embedded store.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod suite;

catalog_suite!(smartsite_shared::testkit::embedded);

//! The billing service suite on the embedded store, with 1,000,000 events delivered three times.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod suite;

billing_suite!(smartsite_shared::testkit::embedded, 1_000_000);

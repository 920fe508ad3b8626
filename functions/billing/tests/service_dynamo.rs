//! The billing service suite on DynamoDB (the emulator), with 5,000 events delivered three times.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod suite;

billing_suite!(smartsite_shared::testkit::dynamo, 5_000);

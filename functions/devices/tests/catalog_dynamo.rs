//! The device-catalog suite on DynamoDB (the emulator, via `AWS_ENDPOINT_URL`; fails without it).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod suite;

catalog_suite!(smartsite_shared::testkit::dynamo);

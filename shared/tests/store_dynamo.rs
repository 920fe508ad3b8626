//! The storage contract against the DynamoDB adapter, on the emulator (or any endpoint named by
//! the standard `AWS_ENDPOINT_URL`). Each case gets a table of its own. These tests fail — they do
//! not skip — when no endpoint is configured: `scripts/test` starts the emulator for them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod contract;

use contract::Fixture;

async fn fixture() -> Fixture {
    let f = smartsite_shared::testkit::dynamo().await;
    Fixture {
        store: f.store,
        _guard: f.guard,
    }
}

store_contract!(fixture);

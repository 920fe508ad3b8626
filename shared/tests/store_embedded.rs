//! The storage contract against the embedded (redb) adapter.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod contract;

use contract::Fixture;

async fn fixture() -> Fixture {
    let f = smartsite_shared::testkit::embedded().await;
    Fixture {
        store: f.store,
        _guard: f.guard,
    }
}

store_contract!(fixture);

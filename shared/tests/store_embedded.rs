//! The storage contract against the embedded (redb) adapter.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod contract;

use std::sync::Arc;

use contract::Fixture;
use smartsite_shared::store::TableDef;
use smartsite_shared::store::embedded::EmbeddedStore;

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store =
        EmbeddedStore::open(dir.path().join("store.redb"), TableDef::main().unwrap()).unwrap();
    Fixture {
        store: Arc::new(store),
        _guard: Box::new(dir),
    }
}

store_contract!(fixture);

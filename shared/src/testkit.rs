//! Fixtures for tests of anything built on the storage port (feature `testkit`): a fresh store
//! per test, on either adapter.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::store::dynamo::DynamoStore;
use crate::store::embedded::EmbeddedStore;
use crate::store::{Store, TableDef};

/// A store and whatever keeps it alive (its temp dir).
pub struct StoreFixture {
    pub store: Arc<dyn Store>,
    pub guard: Box<dyn Any + Send + Sync>,
}

/// A fresh embedded store in a temp dir of its own.
pub async fn embedded() -> StoreFixture {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let store = EmbeddedStore::open(dir.path().join("store.redb"), main_table())
        .unwrap_or_else(|e| panic!("open embedded store: {e}"));
    StoreFixture {
        store: Arc::new(store),
        guard: Box::new(dir),
    }
}

/// A fresh DynamoDB table of its own on the endpoint named by `AWS_ENDPOINT_URL` (the emulator).
/// Panics — never skips — when no endpoint is configured.
pub async fn dynamo() -> StoreFixture {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok_and(|v| !v.is_empty()),
        "AWS_ENDPOINT_URL is not set: run scripts/test, which starts the emulator, \
         or `localstack/emulator start && eval \"$(localstack/emulator env)\"`"
    );
    static N: AtomicU32 = AtomicU32::new(0);
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_dynamodb::Client::new(&conf);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let name = format!(
        "test-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    DynamoStore::create_table(&client, &name, main_table())
        .await
        .unwrap_or_else(|e| panic!("create table {name}: {e:?}"));
    StoreFixture {
        store: Arc::new(DynamoStore::new(client, name, main_table())),
        guard: Box::new(()),
    }
}

fn main_table() -> &'static TableDef {
    TableDef::main().unwrap_or_else(|e| panic!("table definition: {e}"))
}

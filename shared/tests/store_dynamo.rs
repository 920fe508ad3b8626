//! The storage contract against the DynamoDB adapter, on the emulator (or any endpoint named by
//! the standard `AWS_ENDPOINT_URL`). Each case gets a table of its own. These tests fail — they do
//! not skip — when no endpoint is configured: `scripts/test` starts the emulator for them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod contract;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use contract::Fixture;
use smartsite_shared::store::TableDef;
use smartsite_shared::store::dynamo::DynamoStore;

async fn fixture() -> Fixture {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok_and(|v| !v.is_empty()),
        "AWS_ENDPOINT_URL is not set: run scripts/test, which starts the emulator, \
         or `eval \"$(localstack/emulator env)\"` after `localstack/emulator start`"
    );
    static N: AtomicU32 = AtomicU32::new(0);
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_dynamodb::Client::new(&conf);
    let name = format!(
        "contract-{}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let def = TableDef::main().unwrap();
    DynamoStore::create_table(&client, &name, def)
        .await
        .unwrap();
    Fixture {
        store: Arc::new(DynamoStore::new(client, name, def)),
        _guard: Box::new(()),
    }
}

store_contract!(fixture);

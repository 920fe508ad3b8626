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

/// Drives a router in-process (`oneshot`), as every concern's HTTP test suite does. Panics on
/// transport failures: in a test they are failures.
#[derive(Clone)]
pub struct RouterClient {
    router: axum::Router,
}

impl RouterClient {
    pub fn new(router: axum::Router) -> Self {
        RouterClient { router }
    }

    /// Any request with an optional `(content type, body)`; answers the status and the JSON body
    /// (`Null` when empty or not JSON).
    pub async fn send(
        &self,
        method: http::Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> (http::StatusCode, serde_json::Value) {
        let (status, _, bytes) = self.send_raw(method, path, token, body).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    /// A GET answered as bytes with its content type (exports: CSV, XLSX).
    pub async fn get_bytes(&self, path: &str, token: &str) -> (http::StatusCode, String, Vec<u8>) {
        self.send_raw(http::Method::GET, path, Some(token), None)
            .await
    }

    /// Any request, answered as status, content type and body bytes.
    pub async fn send_raw(
        &self,
        method: http::Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> (http::StatusCode, String, Vec<u8>) {
        use tower::ServiceExt as _;
        let mut req = http::Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some((content_type, bytes)) => req
                .header("content-type", content_type)
                .body(axum::body::Body::from(bytes)),
            None => req.body(axum::body::Body::empty()),
        }
        .unwrap_or_else(|e| panic!("request: {e}"));
        let res = self
            .router
            .clone()
            .oneshot(req)
            .await
            .unwrap_or_else(|e| panic!("router: {e}"));
        let status = res.status();
        let content_type = res
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 24)
            .await
            .unwrap_or_else(|e| panic!("body: {e}"));
        (status, content_type, bytes.to_vec())
    }

    /// A JSON request.
    pub async fn call(
        &self,
        method: http::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (http::StatusCode, serde_json::Value) {
        let body = body.map(|b| ("application/json", b.to_string().into_bytes()));
        self.send(method, path, token, body).await
    }

    pub async fn post(
        &self,
        path: &str,
        token: &str,
        body: serde_json::Value,
    ) -> (http::StatusCode, serde_json::Value) {
        self.call(http::Method::POST, path, Some(token), Some(body))
            .await
    }

    pub async fn get(&self, path: &str, token: &str) -> (http::StatusCode, serde_json::Value) {
        self.call(http::Method::GET, path, Some(token), None).await
    }
}

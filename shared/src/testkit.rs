//! Fixtures for tests of anything built on the storage port (feature `testkit`): a fresh store
//! per test, on either adapter.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::directory::Directory;
use crate::domain::tenancy::{
    Customer, CustomerId, CustomerKind, Integrator, Operator, RegionCode, Status,
};
use crate::ids::IntegratorId;
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
    // The emulator answers one request at a time (localstack/moto_serial.py), so with a suite's
    // tests running in parallel on a loaded CI machine one request can wait minutes behind the
    // others. The edge's 60 s request timeout (503) is the edge's business, tested black-box
    // against the binary; here it would only turn the emulator's queue into failures.
    crate::http::set_edge_limits(crate::http::EdgeLimits {
        request_timeout: std::time::Duration::from_secs(900),
        ..crate::http::EdgeLimits::default()
    });
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

/// An active integrator `id` (a Jilin telecom, province 220000) in the directory.
pub async fn integrator(dir: &Directory, id: &IntegratorId) {
    dir.create_integrator(&Integrator {
        id: id.clone(),
        name: "Telecom Jilin".into(),
        operator: Operator::ChinaTelecom,
        province_code: region("220000"),
        status: Status::Active,
        created_at: chrono::Utc::now().to_rfc3339(),
    })
    .await
    .unwrap_or_else(|e| panic!("create integrator {id}: {e}"));
}

/// A new active customer of `i`, of `kind`, in Changchun's Chaoyang district (220102).
pub async fn customer(dir: &Directory, i: &IntegratorId, kind: CustomerKind) -> CustomerId {
    customer_named(dir, i, kind, "一建").await
}

/// [`customer`] with a name of the caller's choosing.
pub async fn customer_named(
    dir: &Directory,
    i: &IntegratorId,
    kind: CustomerKind,
    name: &str,
) -> CustomerId {
    let id = CustomerId::generate();
    dir.create_customer(&Customer {
        id: id.clone(),
        integrator_id: i.clone(),
        kind,
        name: name.into(),
        region_code: region("220102"),
        uscc: None,
        status: Status::Active,
        created_at: chrono::Utc::now().to_rfc3339(),
        status_changed_at: None,
        status_changed_by: None,
    })
    .await
    .unwrap_or_else(|e| panic!("create customer: {e}"));
    id
}

fn region(code: &str) -> RegionCode {
    RegionCode::parse("region_code", code).unwrap_or_else(|e| panic!("{code}: {}", e.message))
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

    /// Every item of a `{items, next}` list, read `limit` at a time by following `next`.
    /// Panics unless every page answers 200 with at most `limit` items.
    pub async fn walk(&self, path: &str, token: &str, limit: u32) -> Vec<serde_json::Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10_000 {
            let url = match &cursor {
                None => format!("{path}{sep}limit={limit}"),
                Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
            };
            let (status, v) = self.get(&url, token).await;
            assert_eq!(status, http::StatusCode::OK, "GET {url}: {v}");
            let items = v["items"]
                .as_array()
                .unwrap_or_else(|| panic!("GET {url}: no items: {v}"));
            assert!(
                items.len() <= limit as usize,
                "GET {url}: {} items on a page of {limit}",
                items.len()
            );
            out.extend(items.iter().cloned());
            match v["next"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
        panic!("GET {path}: more than 10,000 pages")
    }
}

/// `on_both_stores!(case, make)`: the async `case(T)` as two tests, on the embedded store and on
/// DynamoDB (the emulator), with `T` built by `make(StoreFixture).await`. `make` is named from
/// inside the generated module (`super::T::new`).
#[macro_export]
macro_rules! on_both_stores {
    ($case:ident, $make:expr) => {
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$case($make($crate::testkit::embedded().await).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dynamo() {
                super::$case($make($crate::testkit::dynamo().await).await).await;
            }
        }
    };
}

/// A token issuer for router suites: signs the tokens `POST /v1/auth/token` would, for any
/// claims, and verifies them as the routers do.
pub struct TestIssuer {
    issuer: Arc<crate::auth::LocalIssuer>,
    _keys: tempfile::TempDir,
}

impl TestIssuer {
    pub fn new() -> TestIssuer {
        let keys = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let issuer = crate::auth::LocalIssuer::load_or_create(keys.path(), "test-issuer", 900)
            .unwrap_or_else(|e| panic!("issuer: {e}"));
        TestIssuer {
            issuer: Arc::new(issuer),
            _keys: keys,
        }
    }

    /// The authenticator a router verifies this issuer's tokens with.
    pub fn auth(&self) -> crate::auth::Authenticator {
        let verifier = self
            .issuer
            .verifier()
            .unwrap_or_else(|e| panic!("verifier: {e}"));
        crate::auth::Authenticator::Bearer(Arc::new(verifier))
    }

    /// A token of user `usr-test` with these roles and tenant.
    pub fn token(
        &self,
        roles: &[&str],
        integrator: Option<&str>,
        customer: Option<&str>,
    ) -> String {
        let claims = crate::auth::Claims {
            sub: "usr-test".into(),
            integrator_id: integrator.map(Into::into),
            customer_id: customer.map(Into::into),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        };
        self.issuer
            .issue(claims, crate::store::now_epoch())
            .unwrap_or_else(|e| panic!("token: {e}"))
    }
}

impl Default for TestIssuer {
    fn default() -> Self {
        TestIssuer::new()
    }
}

/// Tenancy records as the tenants concern stores them, for the suites of other concerns: the
/// integrator `integrator` (province 220000) and its enterprise customer named `enterprise`
/// (220102).
pub async fn tenant(
    directory: &Directory,
    integrator: &str,
    enterprise: &str,
) -> (IntegratorId, CustomerId) {
    let i = IntegratorId::parse(integrator).unwrap_or_else(|e| panic!("{e}"));
    self::integrator(directory, &i).await;
    let c = customer_named(directory, &i, CustomerKind::Enterprise, enterprise).await;
    (i, c)
}

/// A building project in 220102 contracted by `contractor`, signed 2026-03-01 and started
/// 2026-04-01, stored as given (so a suite can also hold a record accepted before today's
/// bounds).
pub async fn project(
    directory: &crate::directory::Directory,
    integrator: &crate::ids::IntegratorId,
    contractor: &crate::domain::tenancy::CustomerId,
    name: &str,
    contract_value_fen: i64,
) -> crate::domain::tenancy::ProjectId {
    use crate::domain::tenancy::{Project, ProjectId, ProjectType};
    let date = |s: &str| s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
    let p = Project {
        id: ProjectId::generate(),
        integrator_id: integrator.clone(),
        name: name.into(),
        contractor_customer_id: contractor.clone(),
        owner_customer_id: None,
        region_code: region("220102"),
        project_type: ProjectType::Building,
        contract_value_fen,
        contract_signed_date: date("2026-03-01"),
        tender_completed_date: None,
        start_date: Some(date("2026-04-01")),
        planned_end_date: None,
        created_at: chrono::Utc::now().to_rfc3339(),
    };
    directory
        .create_project(&p)
        .await
        .unwrap_or_else(|e| panic!("create project: {e}"));
    p.id
}

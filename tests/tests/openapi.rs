//! The OpenAPI document `smartsite serve` publishes is a valid OpenAPI 3.1 document that client
//! generators accept (issue 19, defect 2): `openapi-spec-validator` (pinned in
//! scripts/requirements.txt, installed into .build/venv by scripts/bootstrap) passes it, every
//! operationId is unique, and schemas of the same Rust name in two concerns do not collapse into
//! one (the alarm's status is open/acknowledged/resolved, the tenant's active/suspended/…).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use smartsite_tests::world::Api;
use smartsite_tests::{Server, operations};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_smartsite-under-test"))
}

async fn document() -> Value {
    let server = Server::spawn(bin()).unwrap();
    let api = Api::new(&server.http());
    let (status, doc) = api.call("GET", "/openapi.json", None, None).await.unwrap();
    assert_eq!(status, 200);
    doc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_has_its_own_operation_id() {
    let doc = document().await;
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (method, path, op) in operations(&doc) {
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"))
            .to_owned();
        seen.entry(id).or_default().push(format!("{method} {path}"));
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, ops)| ops.len() > 1).collect();
    assert!(repeated.is_empty(), "operationIds used twice: {repeated:?}");
    assert!(seen.len() > 60, "only {} operations", seen.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rust_types_of_one_name_keep_their_own_schemas() {
    let doc = document().await;
    let schemas = &doc["components"]["schemas"];
    assert!(schemas.get("Status").is_none(), "an ambiguous `Status`");
    assert_eq!(
        schemas["AlarmStatus"]["enum"],
        serde_json::json!(["open", "acknowledged", "resolved"])
    );
    assert_eq!(
        schemas["TenantStatus"]["enum"],
        serde_json::json!(["active", "suspended", "offboarded"])
    );
    assert_eq!(
        schemas["Alarm"]["properties"]["status"]["$ref"],
        "#/components/schemas/AlarmStatus"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_spec_validator_accepts_the_document() {
    let doc = document().await;
    let validator =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../.build/venv/bin/openapi-spec-validator");
    assert!(
        validator.is_file(),
        "{} is missing: run scripts/bootstrap",
        validator.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let out = std::process::Command::new(&validator)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

//! Authorization before input (issue 19, defect 3), for every operation at once: a caller none
//! of whose roles an operation admits (its `x-roles` in `/openapi.json`) gets 403 before the
//! body is read — a malformed body, a body of the wrong shape or an unknown id all answer the same
//! 403, so a forbidden role learns nothing about what a valid request looks like. An admitted
//! role sending the malformed body gets the validation answer instead, so the check is not
//! passing by accident.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;

use serde_json::Value;
use smartsite_tests::world::onboard;
use smartsite_tests::{Server, operations};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_smartsite-under-test"))
}

/// The roles `onboard` gives a token to.
const ROLES: [&str; 7] = [
    "integrator_admin",
    "gov_supervisor",
    "enterprise_admin",
    "project_manager",
    "safety_officer",
    "labour_officer",
    "owner_rep",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_role_gets_403_before_its_body_is_read() {
    let (server, api, admin) = Server::spawn_as_admin(bin()).await.unwrap();
    let w = onboard(&api, &admin, "az", "220100", "220102", 1)
        .await
        .unwrap();
    let (_, doc) = api.call("GET", "/openapi.json", None, None).await.unwrap();
    let http = reqwest::Client::new();
    let mut checked = 0;
    let mut validated = 0;
    for (method, path, op) in operations(&doc) {
        if !["POST", "PUT", "PATCH"].contains(&method.as_str()) {
            continue;
        }
        let Some(admitted) = op["x-roles"].as_array() else {
            continue;
        };
        let admitted: Vec<&str> = admitted.iter().filter_map(Value::as_str).collect();
        // Real ids where the path has them: the project, the device, the integrator.
        let url = format!(
            "{}{}",
            server.http(),
            path.replace("{id}", &w.project)
                .replace("{code}", "220102")
                .replace("{customer_id}", &w.enterprise)
                .replace("{year}", "2026")
        );
        let send = |token: &str| {
            http.request(method.parse().unwrap(), &url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body("{\"name\": 1.5, \"unexpected\": [")
                .send()
        };
        for role in ROLES.iter().filter(|r| !admitted.contains(r)) {
            let res = send(w.token(role)).await.unwrap();
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            assert_eq!(status, 403, "{role} on {method} {path}: {body}");
            assert_eq!(body["type"], "https://smartsite.dev/problems/forbidden");
            checked += 1;
        }
        if let Some(role) = ROLES.iter().find(|r| admitted.contains(r)) {
            let res = send(w.token(role)).await.unwrap();
            let status = res.status().as_u16();
            assert_ne!(
                status, 403,
                "{role} is admitted to {method} {path} yet refused"
            );
            if status == 400 || status == 422 {
                validated += 1;
            }
        }
    }
    assert!(checked > 100, "only {checked} forbidden calls checked");
    assert!(
        validated > 20,
        "only {validated} admitted calls reached validation"
    );
}

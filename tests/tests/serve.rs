//! Black-box tests of the single-box edition's process contract (API.md, "Single-box edition
//! command line"): ports, endpoints.json, health, problem+json, clean shutdown, one process per
//! data dir, data surviving restarts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;

use smartsite_tests::Server;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_smartsite-under-test"))
}

#[tokio::test]
async fn serves_health_and_problem_json_on_a_random_port() {
    let server = Server::spawn(bin()).unwrap();
    let addr = server.endpoints["http"].as_str().unwrap();
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );

    let res = reqwest::get(format!("{}/healthz", server.http()))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");

    // The tenants concern's router is mounted and round-trips the durable store.
    let res = reqwest::get(format!("{}/v1/tenants/healthz", server.http()))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let res = reqwest::get(format!("{}/v1/no-such-thing", server.http()))
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let p: serde_json::Value = res.json().await.unwrap();
    assert_eq!(p["status"], 404);
    assert!(p["type"].as_str().unwrap().ends_with("/not-found"));
}

#[test]
fn stops_cleanly_on_sigterm_and_sigint_and_restarts_on_the_same_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    for signal in ["TERM", "INT"] {
        let mut server = Server::spawn_in(bin(), dir.path(), &[]).unwrap();
        assert!(dir.path().join("endpoints.json").exists());
        let status = server.stop(signal).unwrap();
        assert!(status.success(), "SIG{signal}: exit {status}");
        assert!(
            !dir.path().join("endpoints.json").exists(),
            "endpoints.json removed on clean stop"
        );
    }
    // After SIGKILL the store must still open.
    let mut server = Server::spawn_in(bin(), dir.path(), &[]).unwrap();
    let status = server.stop("KILL").unwrap();
    assert!(!status.success());
    let mut server = Server::spawn_in(bin(), dir.path(), &[]).unwrap();
    assert!(server.stop("TERM").unwrap().success());
}

#[test]
fn a_second_process_on_the_same_data_dir_is_refused_clearly() {
    let first = Server::spawn(bin()).unwrap();
    let out = Command::new(bin())
        .args(["serve", "--data-dir"])
        .arg(&first.data_dir)
        .args(["--http", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot open the store"), "{err}");
}

#[test]
fn an_occupied_http_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--http", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen for HTTP"), "{err}");
}

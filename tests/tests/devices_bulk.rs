//! Bulk provisioning (black-box): 1,000 devices from one CSV in one call, then paged back; and
//! `smartsite admin devices import` of a small CSV in batches.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::Value;
use smartsite_tests::Server;
use smartsite_tests::world::onboard;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_smartsite-under-test"))
}

/// POSTs a CSV body; status and JSON answer.
async fn post_csv(base: &str, path: &str, token: &str, csv: String) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The model of A's provisioned device: certified, its supplier not blacklisted.
async fn certified_model(api: &smartsite_tests::world::Api, token: &str, device: &str) -> String {
    let (s, d) = api
        .call("GET", &format!("/v1/devices/{device}"), Some(token), None)
        .await
        .unwrap();
    assert_eq!(s, 200, "{d}");
    d["model_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_devices_from_one_csv_in_one_call() {
    let (server, api, admin) = Server::spawn_as_admin(bin()).await.unwrap();
    let a = onboard(&api, &admin, "a", "220100", "220102", 1)
        .await
        .unwrap();
    let ia = a.token("integrator_admin");
    let model = certified_model(&api, ia, &a.device).await;
    let mut csv = String::from("serial_no,model_id,category,mn,rated_load_t,rated_moment_tm\n");
    for i in 0..1000 {
        csv.push_str(&format!("SN-{i:04},{model},tower_crane,,8,125\n"));
    }

    let path = format!("/v1/projects/{}/devices:bulk", a.project);
    let started = Instant::now();
    let (s, v) = post_csv(&server.http(), &path, ia, csv).await;
    let took = started.elapsed();
    eprintln!("bulk provisioning: 1,000 CSV rows in one call took {took:.2?}");
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (
            v["created"].as_u64(),
            v["exists"].as_u64(),
            v["errors"].as_u64()
        ),
        (Some(1000), Some(0), Some(0)),
        "{}",
        v["results"]
            .as_array()
            .map(|r| r.iter().find(|r| r["status"] != "created").cloned())
            .unwrap_or_default()
            .unwrap_or_default()
    );
    assert!(v["ca_pem"].as_str().unwrap().contains("CERTIFICATE"));
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 1000);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["row"].as_u64(), Some(i as u64 + 1));
        assert_eq!(r["serial_no"], format!("SN-{i:04}").as_str());
        assert!(
            r["credentials"]["private_key_pem"]
                .as_str()
                .unwrap()
                .contains("PRIVATE KEY")
        );
    }
    let created: BTreeSet<String> = results
        .iter()
        .map(|r| r["device_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(created.len(), 1000);

    // Paged back: the 1,000 new devices and the one the world provisioned.
    let mut listed = BTreeSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut q = format!("/v1/projects/{}/devices?limit=200", a.project);
        if let Some(c) = &cursor {
            q.push_str(&format!("&cursor={c}"));
        }
        let (s, page) = api.call("GET", &q, Some(ia), None).await.unwrap();
        assert_eq!(s, 200, "{page}");
        pages += 1;
        for d in page["items"].as_array().unwrap() {
            assert!(listed.insert(d["id"].as_str().unwrap().to_owned()), "{d}");
        }
        match page["next"].as_str() {
            Some(n) => cursor = Some(n.to_owned()),
            None => break,
        }
        assert!(pages < 20, "paging does not end");
    }
    assert!(pages >= 6, "{pages} pages");
    assert_eq!(listed.len(), 1001);
    assert!(created.is_subset(&listed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_imports_a_csv_in_batches_and_keeps_the_credentials() {
    let (server, api, admin) = Server::spawn_as_admin(bin()).await.unwrap();
    let a = onboard(&api, &admin, "c", "220100", "220102", 4)
        .await
        .unwrap();
    let ia = a.token("integrator_admin");
    let model = certified_model(&api, ia, &a.device).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("devices.csv");
    let good = format!(
        "serial_no,model_id,category,mn,rated_load_t,rated_moment_tm\n\
         CLI-1,{model},tower_crane,,8,125\n\
         CLI-2,{model},tower_crane,,8,125\n\
         CLI-3,{model},tower_crane,,6,90\n"
    );
    std::fs::write(&file, &good).unwrap();
    let url = server.http();
    let import = |extra: &[&str]| {
        let mut cmd = Command::new(bin());
        cmd.args(["admin", "--url", &url, "--token", ia, "devices", "import"])
            .arg(&file)
            .args(["--project", &a.project, "--batch", "2"])
            .args(extra)
            .env_remove("SMARTSITE_URL")
            .env_remove("SMARTSITE_TOKEN");
        cmd.output().unwrap()
    };

    let out = import(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stdout.trim(), "created 3, exists 0, errors 0", "{stderr}");
    let creds_path = dir.path().join("devices.csv.credentials.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&creds_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let creds: Value = serde_json::from_slice(&std::fs::read(&creds_path).unwrap()).unwrap();
    let devices = creds["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 3, "{creds}");
    let rows: Vec<u64> = devices.iter().map(|d| d["row"].as_u64().unwrap()).collect();
    assert_eq!(rows, [1, 2, 3], "rows of the file, not of the batch");
    for d in devices {
        assert!(
            d["private_key_pem"]
                .as_str()
                .unwrap()
                .contains("PRIVATE KEY")
        );
        assert!(d["device_id"].as_str().unwrap().starts_with("dev-"), "{d}");
    }
    assert!(creds["ca_pem"].as_str().unwrap().contains("CERTIFICATE"));

    // Again with a bad row: the rest exist, the bad one is reported, exit 1, file still written.
    std::fs::write(
        &file,
        format!("{good}CLI-4,{model},tower_crane,,9999,125\n"),
    )
    .unwrap();
    let out_path = dir.path().join("again.json");
    let out = import(&["--out", out_path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert_eq!(stdout.trim(), "created 0, exists 3, errors 1", "{stderr}");
    assert!(
        stderr.contains("row 4 (CLI-4)") && stderr.contains("rated_load_t"),
        "{stderr}"
    );
    let again: Value = serde_json::from_slice(&std::fs::read(&out_path).unwrap()).unwrap();
    assert_eq!(again["devices"].as_array().unwrap().len(), 0);

    // list and get.
    let out = Command::new(bin())
        .args(["admin", "--url", &url, "--token", ia, "devices", "list"])
        .args(["--project", &a.project])
        .output()
        .unwrap();
    assert!(out.status.success());
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 4);
    let id = devices[0]["device_id"].as_str().unwrap();
    let out = Command::new(bin())
        .args(["admin", "--url", &url, "--token", ia, "devices", "get", id])
        .output()
        .unwrap();
    assert!(out.status.success());
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["serial_no"], "CLI-1");
}

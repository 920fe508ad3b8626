//! The device-side tools, black-box: `smartsite simulate` provisions a fleet and publishes over
//! MQTT until its messages are acknowledged and stored; `smartsite gateway hj212` turns HJ 212
//! TCP frames into MQTT telemetry of the matching device and acknowledges them only after the
//! broker did.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{FixedOffset, Utc};
use serde_json::{Value, json};
use smartsite_shared::domain::hj212::{self, Splitter};
use smartsite_tests::Server;
use smartsite_tests::world::{onboard, provision_dust};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_smartsite-under-test"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_provisions_a_fleet_and_its_messages_are_stored() {
    let (server, api, admin) = Server::spawn_as_admin_with(bin(), &["--mqtt", "127.0.0.1:0"], &[])
        .await
        .unwrap();
    let w = onboard(&api, &admin, "sim", "220100", "220102", 1)
        .await
        .unwrap();
    let ia = w.token("integrator_admin");
    let (_, d) = api
        .call("GET", &format!("/v1/devices/{}", w.device), Some(ia), None)
        .await
        .unwrap();
    let model = d["model_id"].as_str().unwrap();
    let endpoints = server.data_dir.join("endpoints.json");
    let run = |messages: &str| {
        Command::new(bin())
            .args(["simulate", "--endpoints"])
            .arg(&endpoints)
            .args(["--devices", "3", "--rate", "60", "--messages", messages])
            .args(["--scenario", "crane-overload", "--project-id", &w.project])
            .args(["--model-id", model])
            .env("SMARTSITE_TOKEN", ia)
            .stderr(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run("30");
    assert!(out.status.success(), "{out:?}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (summary["sent"].as_u64(), summary["acked"].as_u64()),
        (Some(30), Some(30)),
        "{summary}"
    );

    // The fleet is kept beside endpoints.json and reused: no new devices the second time.
    let state: Value = serde_json::from_slice(
        &std::fs::read(server.data_dir.join("simulator-devices.json")).unwrap(),
    )
    .unwrap();
    let devices: Vec<String> = state["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(devices.len(), 3);
    let out = run("30");
    assert!(out.status.success(), "{out:?}");
    let (_, list) = api
        .call(
            "GET",
            &format!("/v1/projects/{}/devices", w.project),
            Some(ia),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        4,
        "the world's device and the 3 simulated: {list}"
    );

    // Every acknowledged message is stored: 2 runs × 30 over 3 devices = 20 each.
    let so = w.token("safety_officer");
    for d in &devices {
        assert_eq!(api.telemetry(d, so).await.unwrap().len(), 20, "{d}");
    }
    // The crane-overload scenario's climbing moment raised TC-MOMENT.
    let (_, alarms) = api
        .call(
            "GET",
            &format!("/v1/alarms?project_id={}", w.project),
            Some(so),
            None,
        )
        .await
        .unwrap();
    assert!(
        alarms["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["rule"] == "TC-MOMENT"),
        "{alarms}"
    );
}

/// Without a plain listener the simulator connects each device over TLS with its own client
/// certificate; at full speed (no rate) it keeps a window of unacknowledged publishes per device,
/// and every acknowledged message is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_over_tls_at_full_speed_stores_every_acknowledged_message() {
    let (server, api, admin) = Server::spawn_as_admin_with(bin(), &[], &[]).await.unwrap();
    assert!(server.endpoints["mqtt"].is_null(), "{}", server.endpoints);
    let w = onboard(&api, &admin, "simtls", "220100", "220102", 1)
        .await
        .unwrap();
    let ia = w.token("integrator_admin");
    let (_, d) = api
        .call("GET", &format!("/v1/devices/{}", w.device), Some(ia), None)
        .await
        .unwrap();
    let out = Command::new(bin())
        .args(["simulate", "--endpoints"])
        .arg(server.data_dir.join("endpoints.json"))
        .args(["--devices", "4", "--rate", "0", "--messages", "400"])
        .args(["--inflight", "16", "--project-id", &w.project])
        .args(["--model-id", d["model_id"].as_str().unwrap()])
        .env("SMARTSITE_TOKEN", ia)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            summary["sent"].as_u64(),
            summary["acked"].as_u64(),
            summary["connection_errors"].as_u64()
        ),
        (Some(400), Some(400), Some(0)),
        "{summary}"
    );
    let state: Value = serde_json::from_slice(
        &std::fs::read(server.data_dir.join("simulator-devices.json")).unwrap(),
    )
    .unwrap();
    let so = w.token("safety_officer");
    for d in state["devices"].as_array().unwrap() {
        assert!(
            d["certificate_pem"]
                .as_str()
                .unwrap()
                .contains("BEGIN CERTIFICATE")
        );
        let id = d["device_id"].as_str().unwrap();
        assert_eq!(api.telemetry(id, so).await.unwrap().len(), 100, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hj212_gateway_publishes_frames_as_the_devices_telemetry() {
    let (server, api, admin) = Server::spawn_as_admin_with(bin(), &["--mqtt", "127.0.0.1:0"], &[])
        .await
        .unwrap();
    let w = onboard(&api, &admin, "gw", "220100", "220102", 1)
        .await
        .unwrap();
    let mn = "FEDCBA9876543210FEDCBA98";
    let v = provision_dust(&api, &w, "gw", mn, 99).await.unwrap();
    let device = v["device_id"].as_str().unwrap().to_owned();
    // What provisioning answered, as the gateway's device list (plain MQTT with the token).
    let devices = server.data_dir.join("gateway-devices.json");
    std::fs::write(
        &devices,
        serde_json::to_vec(
            &json!([{"mn": mn, "device_id": device, "telemetry_topic": v["topics"]["telemetry"],
            "events_topic": v["topics"]["events"], "device_token": v["device_token"]}]),
        )
        .unwrap(),
    )
    .unwrap();
    let mut gateway = Command::new(bin())
        .args(["gateway", "hj212", "--listen", "127.0.0.1:0", "--mqtt"])
        .arg(server.endpoints["mqtt"].as_str().unwrap())
        .arg("--devices")
        .arg(&devices)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(gateway.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap()
        .to_owned();

    let t = Utc::now()
        .with_timezone(&FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y%m%d%H%M%S")
        .to_string();
    let seg = format!(
        "QN={t}001;ST=39;CN=2011;PW=123456;MN={mn};Flag=5;CP=&&DataTime={t};a34002-Rtd=77.0,a34002-Flag=N;LA-Rtd=55.2,LA-Flag=N&&"
    );
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    sock.write_all(&hj212::encode(&seg)).await.unwrap();
    let mut sp = Splitter::new();
    let ack = loop {
        if let Some(item) = sp.next_item() {
            break hj212::decode(&item.unwrap()).unwrap();
        }
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(15), sock.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the gateway closed the connection");
        sp.extend(&buf[..n]);
    };
    assert_eq!(ack.cn, "9014");
    // The ack came after the broker's PUBACK, so the reading is stored already.
    let (_, state) = api
        .call(
            "GET",
            &format!("/v1/devices/{device}/state"),
            Some(w.token("safety_officer")),
            None,
        )
        .await
        .unwrap();
    assert_eq!(state["values"]["pm10_ugm3"], 77.0, "{state}");
    assert_eq!(state["values"]["noise_dba"], 55.2, "{state}");
    let _ = gateway.kill();
    let _ = gateway.wait();
}

//! HJ 212 over real TCP (black-box, issue 6): a dust monitor's frames — 2017 and 2025, with the
//! standard's own sample frame (CRC 1C80) — reach the device whose MN matches, are acknowledged
//! with CN 9014 when the flag asks, and bad frames land in quarantine while the connection stays.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::time::Duration;

use chrono::{FixedOffset, Utc};
use serde_json::Value;
use smartsite_shared::domain::hj212::{self, Splitter};
use smartsite_tests::Server;
use smartsite_tests::world::{onboard, provision_dust};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_smartsite-under-test"))
}

const MN: &str = "0A1B2C3D4E5F60718293A4B5";

async fn read_frame(sock: &mut TcpStream, sp: &mut Splitter) -> hj212::Frame {
    loop {
        if let Some(item) = sp.next_item() {
            return hj212::decode(&item.unwrap()).unwrap();
        }
        let mut buf = [0u8; 2048];
        let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the listener closed the connection");
        sp.extend(&buf[..n]);
    }
}

fn now_local() -> String {
    Utc::now()
        .with_timezone(&FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y%m%d%H%M%S")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dust_frames_over_tcp_are_stored_acked_and_bad_ones_quarantined() {
    let (server, api, admin) = Server::spawn_as_admin_with(bin(), &["--hj212", "127.0.0.1:0"], &[])
        .await
        .unwrap();
    let w = onboard(&api, &admin, "h1", "220100", "220102", 1)
        .await
        .unwrap();
    let v = provision_dust(&api, &w, "h1", MN, 88).await.unwrap();
    let device = v["device_id"].as_str().unwrap().to_owned();

    let addr = server.endpoints["hj212"].as_str().unwrap();
    let mut sock = TcpStream::connect(addr).await.unwrap();
    let mut sp = Splitter::new();

    // 1. HJ 212-2017 real-time data, Flag=5 (2017, ack wanted): stored, answered with 9014.
    let t = now_local();
    let seg = format!(
        "QN={t}123;ST=39;CN=2011;PW=123456;MN={MN};Flag=5;CP=&&DataTime={t};a34002-Rtd=56.0,a34002-Flag=N;a34004-Rtd=31.5,a34004-Flag=N;LA-Rtd=58.3,LA-Flag=N&&"
    );
    sock.write_all(&hj212::encode(&seg)).await.unwrap();
    let ack = read_frame(&mut sock, &mut sp).await;
    assert_eq!((ack.cn.as_str(), ack.st.as_str()), ("9014", "91"));
    assert_eq!(ack.qn.as_deref(), Some(format!("{t}123").as_str()));

    // 2. A corrupted CRC: quarantined (in the project of the MN it names), no ack, connection kept.
    let mut bad = hj212::encode(&seg.replace("56.0", "57.0"));
    let n = bad.len();
    bad[n - 6..n - 2].copy_from_slice(b"0000");
    sock.write_all(&bad).await.unwrap();

    // 3. The standard's own sample frame (length 0101, CRC 1C80): a well-formed frame of a
    //    command we do not take (ST=32 water, CN=1062 set interval) from an MN nobody holds —
    //    refused into the platform quarantine, connection kept.
    let sample = "QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&";
    let framed = hj212::encode(sample);
    assert!(String::from_utf8_lossy(&framed).starts_with("##0101"));
    assert!(String::from_utf8_lossy(&framed).ends_with("1C80\r\n"));
    sock.write_all(&framed).await.unwrap();

    // 4. HJ 212-2025 (Flag=9): stored and acked with the 2025 version bits.
    let t2 = now_local();
    let seg25 = format!(
        "QN={t2}456;ST=39;CN=2011;PW=123456;MN={MN};Flag=9;CP=&&DataTime={t2};a34002-Rtd=61.0,a34002-Flag=N;a01007-Rtd=2.4,a01007-Flag=N&&"
    );
    sock.write_all(&hj212::encode(&seg25)).await.unwrap();
    let ack = read_frame(&mut sock, &mut sp).await;
    assert_eq!(
        ack.cn, "9014",
        "the only ack is for the 2025 frame (the bad ones got none)"
    );
    assert_eq!(ack.qn.as_deref(), Some(format!("{t2}456").as_str()));
    assert_eq!(
        ack.flag,
        Some(8),
        "2025 ack carries the 2025 version bits without A"
    );

    let so = w.token("safety_officer");
    let (s, state) = api
        .call(
            "GET",
            &format!("/v1/devices/{device}/state"),
            Some(so),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{state}");
    assert_eq!(state["values"]["pm10_ugm3"], 61.0, "{state}");
    let items = api.telemetry(&device, so).await.unwrap();
    assert_eq!(items.len(), 2, "{items:?}");
    // Both frames may carry the same second; within an instant the order is the payload digest's.
    assert!(
        items.iter().any(|i| i["values"]["noise_dba"] == 58.3),
        "the 2017 frame's noise reading is stored: {items:?}"
    );

    let (_, q) = api
        .call(
            "GET",
            &format!("/v1/quarantine?project_id={}", w.project),
            Some(so),
            None,
        )
        .await
        .unwrap();
    let reasons: Vec<&str> = q["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["bad_crc"], "{q}");
    let (_, pq) = api
        .call("GET", "/v1/quarantine", Some(&admin), None)
        .await
        .unwrap();
    let platform: Vec<Value> = pq["items"].as_array().unwrap().clone();
    assert!(
        platform.iter().any(|i| i["payload"]
            .as_str()
            .unwrap_or_default()
            .contains("CN=1062")),
        "{pq}"
    );

    // 5. A 2025 heartbeat (CN 9015, Flag=9 asks for a reply) on the same, still open connection:
    // answered with the 2025 version bits, and the monitor shows online.
    let t3 = now_local();
    sock.write_all(&hj212::encode(&format!(
        "QN={t3}789;ST=91;CN=9015;PW=123456;MN={MN};Flag=9;CP=&&&&"
    )))
    .await
    .unwrap();
    let ack = read_frame(&mut sock, &mut sp).await;
    assert_eq!(
        (ack.cn.as_str(), ack.flag),
        ("9014", Some(8)),
        "heartbeat reply"
    );
    assert_eq!(ack.qn.as_deref(), Some(format!("{t3}789").as_str()));
    let (s, state) = api
        .call(
            "GET",
            &format!("/v1/devices/{device}/state"),
            Some(so),
            None,
        )
        .await
        .unwrap();
    assert_eq!((s, &state["online"]), (200, &Value::Bool(true)), "{state}");
}

//! The project's live endpoint (`GET /v1/projects/{id}/live`, issue 16), black-box: a dashboard
//! holding the event stream sees a device's telemetry published over real MQTT (TLS client
//! certificate) as a `state` event, the alarm it raises as an `alarm` event, and the alarm's
//! acknowledgement as another; the snapshot answer carries an ETag that If-None-Match turns into
//! 304; another integrator's caller gets 404.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use rumqttc::ConnectReturnCode;
use serde_json::{Value, json};
use smartsite_tests::Server;
use smartsite_tests::mqtt::{DeviceCreds, connect};
use smartsite_tests::world::{onboard, provision_dust};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_smartsite-under-test"))
}

/// A text/event-stream read as it arrives: `(event, data)` pairs.
struct Stream {
    res: reqwest::Response,
    buf: String,
    /// Every event read so far, in order.
    log: Vec<(String, Value)>,
}

impl Stream {
    async fn open(base: &str, project: &str, token: &str) -> Stream {
        let res = reqwest::Client::new()
            .get(format!("{base}/v1/projects/{project}/live"))
            .bearer_auth(token)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Stream {
            res,
            buf: String::new(),
            log: Vec::new(),
        }
    }

    /// The next event, skipping keep-alive comments; fails after `secs` without one.
    async fn next(&mut self, secs: u64) -> (String, Value) {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut name, mut data) = (String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ").or(line.strip_prefix("event:")) {
                        name = v.to_owned();
                    } else if let Some(v) =
                        line.strip_prefix("data: ").or(line.strip_prefix("data:"))
                    {
                        data.push_str(v);
                    }
                }
                if name.is_empty() {
                    continue; // a comment
                }
                let event = (name, serde_json::from_str::<Value>(&data).unwrap());
                self.log.push(event.clone());
                return event;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(secs), self.res.chunk())
                .await
                .expect("no live event in time")
                .unwrap()
                .expect("the stream ended");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Reads events until one named `name` satisfies `pred`.
    async fn until(&mut self, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..50 {
            let (n, v) = self.next(20).await;
            if n == name && pred(&v) {
                return v;
            }
        }
        panic!("no {name} event matched");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_shows_telemetry_alarms_and_their_handling_and_snapshots_carry_etags() {
    let (server, api, admin) = Server::spawn_as_admin(bin()).await.unwrap();
    let w = onboard(&api, &admin, "lv", "220100", "220102", 1)
        .await
        .unwrap();
    let pm = w.token("project_manager");
    let creds = DeviceCreds::from_answer(
        &provision_dust(&api, &w, "lv", "0123456789ABCDEF01234599", 77)
            .await
            .unwrap(),
    )
    .unwrap();

    // The first round is the whole picture: the device, offline and without readings yet.
    let mut live = Stream::open(&api.base, &w.project, pm).await;
    let ours = |v: &Value| v["device_id"] == creds.device_id.as_str();
    let p = live.until("presence", ours).await;
    assert_eq!(p["online"], false, "{p}");
    let s = live.until("state", ours).await;
    assert_eq!(s["category"], "dust_noise", "{s}");
    assert_eq!(s["values"], json!({}), "{s}");

    // Over the hourly PM10 limit in the last hour: the reading and its alarm arrive as events.
    let mut dev = connect(&creds, &server.endpoint("mqtts"), false, &creds.device_id).unwrap();
    assert_eq!(dev.connack().await.unwrap(), Ok(ConnectReturnCode::Success));
    let ts = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    dev.publish_acked(
        &creds.telemetry,
        &json!({"ts": ts, "pm10_ugm3": 200.0, "pm25_ugm3": 80.0, "noise_dba": 60.0}),
    )
    .await
    .unwrap();
    let s = live
        .until("state", |v| {
            v["values"]["pm10_ugm3"].as_f64() == Some(200.0)
        })
        .await;
    assert_eq!(s["device_id"], creds.device_id.as_str(), "{s}");
    let alarm = live.until("alarm", |v| v["rule"] == "DU-PM10").await;
    assert_eq!(alarm["status"], "open", "{alarm}");
    assert_eq!(alarm["value"].as_f64(), Some(200.0), "{alarm}");
    assert!(
        live.log.iter().any(|(n, v)| n == "presence"
            && v["online"] == true
            && v["device_id"] == creds.device_id.as_str()),
        "the device's connection shows as presence: {:?}",
        live.log
    );

    // Handling it shows on the stream too.
    let so = w.token("safety_officer");
    let (st, v) = api
        .call(
            "POST",
            &format!("/v1/alarms/{}/acknowledge", alarm["id"].as_str().unwrap()),
            Some(so),
            Some(&json!({"note": "spraying"})),
        )
        .await
        .unwrap();
    assert_eq!(st, 200, "{v}");
    let acked = live
        .until("alarm", |v| {
            v["id"] == alarm["id"] && v["status"] == "acknowledged"
        })
        .await;
    assert!(
        acked["version"].as_i64() > alarm["version"].as_i64(),
        "{acked}"
    );

    // Without the stream: one snapshot with an ETag, 304 while nothing changes.
    let http = reqwest::Client::new();
    let url = format!("{}/v1/projects/{}/live", api.base, w.project);
    let res = http.get(&url).bearer_auth(pm).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let tag = res.headers()["etag"].to_str().unwrap().to_owned();
    let snap: Value = res.json().await.unwrap();
    let dust = snap["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| ours(d))
        .unwrap();
    assert_eq!(dust["category"], "dust_noise");
    assert_eq!(dust["values"]["pm10_ugm3"].as_f64(), Some(200.0));
    let a = snap["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == alarm["id"])
        .unwrap();
    assert_eq!(a["status"], "acknowledged", "{snap}");
    let again = http
        .get(&url)
        .bearer_auth(pm)
        .header("if-none-match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    dev.publish_acked(
        &creds.telemetry,
        &json!({"ts": Utc::now().to_rfc3339(), "pm10_ugm3": 40.0}),
    )
    .await
    .unwrap();
    live.until("state", |v| {
        ours(v) && v["values"]["pm10_ugm3"].as_f64() == Some(40.0)
    })
    .await;
    let changed = http
        .get(&url)
        .bearer_auth(pm)
        .header("if-none-match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200, "a new reading changes the ETag");

    // Another integrator's people cannot see the project, streamed or not.
    let other = onboard(&api, &admin, "lx", "220200", "220202", 2)
        .await
        .unwrap();
    for accept in ["text/event-stream", "application/json"] {
        let res = http
            .get(&url)
            .bearer_auth(other.token("integrator_admin"))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{accept}");
    }
}

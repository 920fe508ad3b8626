//! Device messages over real MQTT (black-box, issue 6; revocation from issue 4): devices connect
//! with the TLS client certificates the platform issued (or their token on plain MQTT), publish
//! telemetry that lands in state, series, quarantine and alarms; the broker enforces the topic
//! ACL, refuses revoked and retired credentials, sends spray commands, and acknowledges a QoS 1
//! publish only once it is durable (kill -9 after the ack loses nothing).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use rumqttc::{ConnectReturnCode, QoS};
use serde_json::{Value, json};
use smartsite::simulate::Scenario;
use smartsite_tests::Server;
use smartsite_tests::mqtt::{DeviceCreds, Seen, connect, crane, raw_session};
use smartsite_tests::world::{Api, World, onboard, provision_dust, urlencode};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_smartsite-under-test"))
}

/// A certified dust/noise model and a device of it with an HJ 212 MN.
async fn dust(api: &Api, w: &World, tag: &str, mn: &str) -> DeviceCreds {
    DeviceCreds::from_answer(&provision_dust(api, w, tag, mn, 77).await.unwrap()).unwrap()
}

async fn get(api: &Api, token: &str, path: &str) -> Value {
    let (s, v) = api.call("GET", path, Some(token), None).await.unwrap();
    assert_eq!(s, 200, "GET {path}: {v}");
    v
}

/// Polls `path` until `pred` holds (the pipeline's after-commit steps are asynchronous to the
/// ack only for state and alarms; stored data is there at the ack).
async fn eventually(api: &Api, token: &str, path: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        last = get(api, token, path).await;
        if pred(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} never satisfied the condition; last answer {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_over_tls_lands_in_state_series_quarantine_and_alarms() {
    let (server, api, admin) = Server::spawn_as_admin(bin()).await.unwrap();
    let w = onboard(&api, &admin, "m1", "220100", "220102", 1)
        .await
        .unwrap();
    let so = w.token("safety_officer");
    let creds = crane(&api, &w, "m1-TC-9").await.unwrap();
    let mut dev = connect(&creds, &server.endpoint("mqtts"), false, &creds.device_id).unwrap();
    assert_eq!(dev.connack().await.unwrap(), Ok(ConnectReturnCode::Success));

    // 95 % moment: TC-MOMENT warning (≥ 90, < 100).
    let ts = Utc::now().to_rfc3339();
    dev.publish_acked(
        &creds.telemetry,
        &json!({"ts": ts, "moment_pct": 95.0, "load_t": 3.2, "radius_m": 30.0, "wind_ms": 4.1}),
    )
    .await
    .unwrap();
    // At the ack the message is stored: the series has it.
    let series = api.telemetry(&creds.device_id, so).await.unwrap();
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(series[0]["values"]["moment_pct"], 95.0);
    let state = eventually(
        &api,
        so,
        &format!("/v1/devices/{}/state", creds.device_id),
        |v| v["values"]["moment_pct"] == 95.0,
    )
    .await;
    assert_eq!(state["online"], true, "{state}");
    let alarms = eventually(
        &api,
        so,
        &format!("/v1/alarms?project_id={}", w.project),
        |v| v["items"].as_array().is_some_and(|a| !a.is_empty()),
    )
    .await;
    let a = &alarms["items"][0];
    assert_eq!(
        (
            a["rule"].as_str(),
            a["level"].as_str(),
            a["status"].as_str()
        ),
        (Some("TC-MOMENT"), Some("warning"), Some("open")),
        "{a}"
    );
    assert_eq!(
        (a["value"].as_f64(), a["threshold"].as_f64()),
        (Some(95.0), Some(90.0))
    );

    // Lifecycle with who, when and note.
    let id = a["id"].as_str().unwrap();
    let (s, v) = api
        .call(
            "POST",
            &format!("/v1/alarms/{id}/acknowledge"),
            Some(so),
            Some(&json!({"note": "吊重已减"})),
        )
        .await
        .unwrap();
    assert_eq!(
        (s, v["status"].as_str()),
        (200, Some("acknowledged")),
        "{v}"
    );
    let (s, v) = api
        .call(
            "POST",
            &format!("/v1/alarms/{id}/acknowledge"),
            Some(so),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 409, "acknowledging twice is a conflict: {v}");
    let (s, v) = api
        .call(
            "POST",
            &format!("/v1/alarms/{id}/resolve"),
            Some(so),
            Some(&json!({"note": "复查正常"})),
        )
        .await
        .unwrap();
    assert_eq!((s, v["status"].as_str()), (200, Some("resolved")), "{v}");
    assert_eq!(v["handling"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["handling"][1]["note"], "复查正常");

    // Bad data is acknowledged (kept) but quarantined with its reason, never stored as data.
    dev.publish_acked(
        &creds.telemetry,
        &json!({"ts": Utc::now().to_rfc3339(), "moment_pct": 95.0, "moment_percent": 1}),
    )
    .await
    .unwrap();
    dev.publish_acked(
        &creds.telemetry,
        &json!({"ts": Utc::now().to_rfc3339(), "wind_ms": -3.0}),
    )
    .await
    .unwrap();
    let q = get(
        &api,
        so,
        &format!("/v1/quarantine?project_id={}", w.project),
    )
    .await;
    let reasons: Vec<&str> = q["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.contains(&"unknown_field") && reasons.contains(&"out_of_range"),
        "{q}"
    );
    let series = api.telemetry(&creds.device_id, so).await.unwrap();
    assert_eq!(
        series.len(),
        1,
        "rejected messages are not data: {series:?}"
    );

    // Another device's topic: refused (3.1.1 has no negative ack: the connection is closed) and
    // recorded; the other device has no data.
    let other = crane(&api, &w, "m1-TC-10").await.unwrap();
    dev.client
        .publish(
            &other.telemetry,
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&json!({"ts": Utc::now().to_rfc3339(), "moment_pct": 10.0}))
                .unwrap(),
        )
        .await
        .unwrap();
    loop {
        match dev.next(10).await.unwrap() {
            Seen::Closed(_) => break,
            Seen::PubAck(_) => panic!("a publish on another device's topic was acknowledged"),
            _ => {}
        }
    }
    let q = get(
        &api,
        so,
        &format!("/v1/quarantine?project_id={}", w.project),
    )
    .await;
    assert_eq!(q["items"][0]["reason"], "topic_not_allowed", "{q}");
    let series = api.telemetry(&other.device_id, so).await.unwrap();
    assert!(series.is_empty(), "{series:?}");

    // A device may not subscribe to another device's commands.
    let mut dev = connect(&creds, &server.endpoint("mqtts"), false, &creds.device_id).unwrap();
    assert_eq!(dev.connack().await.unwrap(), Ok(ConnectReturnCode::Success));
    dev.client
        .subscribe(&other.cmd, QoS::AtLeastOnce)
        .await
        .unwrap();
    // rumqttc reports a refused filter only inside the SUBACK; the test checks no command of
    // the other device ever reaches this one below (spray test) and that the own cmd works.
    assert_eq!(dev.next(10).await.unwrap(), Seen::SubAck);

    // Retention is the integrator's to set (its admin's), within 1..=3650 days.
    let ia = w.token("integrator_admin");
    let path = format!("/v1/integrators/{}/ingest-settings", w.integrator);
    let (s, v) = api
        .call(
            "PUT",
            &path,
            Some(ia),
            Some(&json!({"telemetry_retention_days": 90})),
        )
        .await
        .unwrap();
    assert_eq!(
        (s, v["telemetry_retention_days"].as_i64()),
        (200, Some(90)),
        "{v}"
    );
    let (s, v) = api
        .call(
            "PUT",
            &path,
            Some(ia),
            Some(&json!({"telemetry_retention_days": 0})),
        )
        .await
        .unwrap();
    assert_eq!(
        (s, v["field"].as_str()),
        (422, Some("telemetry_retention_days")),
        "{v}"
    );
    let v = get(&api, ia, &path).await;
    assert_eq!(v["telemetry_retention_days"], 90);
    // A role that may not touch settings learns nothing about which integrators exist: the same
    // 403 for this one, a made-up one and a malformed one, before the body is looked at.
    let ops = w.token("integrator_ops");
    for p in [
        path.clone(),
        "/v1/integrators/int-nosuchintegrator/ingest-settings".to_owned(),
        "/v1/integrators/!!/ingest-settings".to_owned(),
    ] {
        for (method, body) in [("GET", None), ("PUT", Some(json!({"x": "not settings"})))] {
            let (s, v) = api
                .call(method, &p, Some(ops), body.as_ref())
                .await
                .unwrap();
            assert_eq!(s, 403, "{method} {p}: {v}");
        }
    }

    // Another tenant cannot read this device's data.
    let w2 = onboard(&api, &admin, "m2", "220200", "220202", 2)
        .await
        .unwrap();
    let (s, _) = api
        .call(
            "GET",
            &format!("/v1/devices/{}/state", creds.device_id),
            Some(w2.token("integrator_admin")),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 404);
    let (s, _) = api
        .call("GET", &path, Some(w2.token("integrator_admin")), None)
        .await
        .unwrap();
    assert_eq!(s, 404, "another integrator's settings are as if absent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_retired_credentials_are_refused() {
    let temp = tempfile::tempdir().unwrap();
    let mut server = Server::spawn_in_with_env(
        bin(),
        temp.path(),
        &["--mqtt", "127.0.0.1:0"],
        &[("SMARTSITE_ADMIN_PASSWORD", "Admin-Pass-2026!")],
    )
    .unwrap();
    let api = Api::new(&server.http());
    let admin = api.login("admin", "Admin-Pass-2026!").await.unwrap();
    let w = onboard(&api, &admin, "r1", "220100", "220102", 1)
        .await
        .unwrap();
    let ia = w.token("integrator_admin");
    let mqtts = server.endpoint("mqtts");
    let mqtt = server.endpoint("mqtt");

    // Certificate and token both work; a wrong token, a wrong client id do not.
    let creds = crane(&api, &w, "r1-TC-2").await.unwrap();
    let mut d = connect(&creds, &mqtts, false, &creds.device_id).unwrap();
    assert_eq!(d.connack().await.unwrap(), Ok(ConnectReturnCode::Success));
    let mut d = connect(&creds, &mqtt, true, &creds.device_id).unwrap();
    assert_eq!(d.connack().await.unwrap(), Ok(ConnectReturnCode::Success));
    let mut bad = creds.clone();
    bad.device_token = "not-the-token".into();
    let mut d = connect(&bad, &mqtt, true, &creds.device_id).unwrap();
    assert_eq!(
        d.connack().await.unwrap(),
        Ok(ConnectReturnCode::BadUserNamePassword)
    );
    let mut d = connect(&creds, &mqtts, false, "someone-else").unwrap();
    assert_eq!(
        d.connack().await.unwrap(),
        Ok(ConnectReturnCode::BadClientId)
    );

    // Rotation: the new certificate works; once used, the old one is retired and refused.
    let (s, rotated) = api
        .call(
            "POST",
            &format!("/v1/devices/{}/rotate", creds.device_id),
            Some(ia),
            None,
        )
        .await
        .unwrap();
    assert!(s == 200 || s == 201, "rotate: {s} {rotated}");
    let mut new = creds.clone();
    new.certificate_pem = rotated["certificate_pem"].as_str().unwrap().to_owned();
    new.private_key_pem = rotated["private_key_pem"].as_str().unwrap().to_owned();
    let mut d = connect(&creds, &mqtts, false, &creds.device_id).unwrap();
    assert_eq!(
        d.connack().await.unwrap(),
        Ok(ConnectReturnCode::Success),
        "the old certificate works until the new one is used"
    );
    let mut d = connect(&new, &mqtts, false, &creds.device_id).unwrap();
    assert_eq!(d.connack().await.unwrap(), Ok(ConnectReturnCode::Success));
    let mut d = connect(&creds, &mqtts, false, &creds.device_id).unwrap();
    assert_eq!(
        d.connack().await.unwrap(),
        Ok(ConnectReturnCode::NotAuthorized),
        "the old certificate is retired once the new one connected"
    );

    // Decommissioning revokes everything: the (still CA-signed, unexpired) certificate and the token.
    let (s, v) = api
        .call(
            "DELETE",
            &format!("/v1/devices/{}", creds.device_id),
            Some(ia),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    let mut d = connect(&new, &mqtts, false, &creds.device_id).unwrap();
    assert_eq!(
        d.connack().await.unwrap(),
        Ok(ConnectReturnCode::NotAuthorized)
    );
    let mut d = connect(&creds, &mqtt, true, &creds.device_id).unwrap();
    assert_eq!(
        d.connack().await.unwrap(),
        Ok(ConnectReturnCode::BadUserNamePassword)
    );
    server.stop("TERM").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos1_message_acknowledged_before_kill_9_is_there_after_restart() {
    let temp = tempfile::tempdir().unwrap();
    let env = [("SMARTSITE_ADMIN_PASSWORD", "Admin-Pass-2026!")];
    let mut server = Server::spawn_in_with_env(bin(), temp.path(), &[], &env).unwrap();
    let api = Api::new(&server.http());
    let admin = api.login("admin", "Admin-Pass-2026!").await.unwrap();
    let w = onboard(&api, &admin, "k1", "220100", "220102", 1)
        .await
        .unwrap();
    let creds = crane(&api, &w, "k1-TC-2").await.unwrap();
    let mut dev = connect(&creds, &server.endpoint("mqtts"), false, &creds.device_id).unwrap();
    assert_eq!(dev.connack().await.unwrap(), Ok(ConnectReturnCode::Success));

    // Publish a stream without waiting; kill -9 while acks are still arriving.
    let start = Utc::now() - chrono::Duration::seconds(600);
    for i in 0..400i64 {
        let ts = (start + chrono::Duration::milliseconds(i * 1000)).to_rfc3339();
        dev.client
            .publish(
                &creds.telemetry,
                QoS::AtLeastOnce,
                false,
                serde_json::to_vec(&json!({"ts": ts, "load_t": 1.0, "moment_pct": 10.0})).unwrap(),
            )
            .await
            .unwrap();
    }
    let mut acked = 0;
    while acked < 150 {
        if let Seen::PubAck(_) = dev.next(20).await.unwrap() {
            acked += 1;
        }
    }
    server.stop("KILL").unwrap();
    // Count the acks that made it out before the process died.
    while let Ok(Ok(Some(s))) = tokio::time::timeout(Duration::from_millis(500), dev.events.recv())
        .await
        .map(Ok::<_, ()>)
    {
        match s {
            Seen::PubAck(_) => acked += 1,
            Seen::Closed(_) => break,
            _ => {}
        }
    }

    let server = Server::spawn_in_with_env(bin(), temp.path(), &[], &env).unwrap();
    let api = Api::new(&server.http());
    let token = api
        .login(
            &format!("k1-{}", "safety-officer"),
            smartsite_tests::world::PASSWORD,
        )
        .await
        .unwrap();
    let mut stored = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!(
            "/v1/devices/{}/telemetry?from={}&limit=200",
            creds.device_id,
            urlencode(&(start - chrono::Duration::seconds(1)).to_rfc3339())
        );
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", urlencode(c)));
        }
        let page = get(&api, &token, &path).await;
        stored += page["items"].as_array().unwrap().len();
        match page["next"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert!(
        stored >= acked,
        "{acked} messages were acknowledged but only {stored} are stored after kill -9"
    );
    eprintln!("kill -9: {acked} acknowledged, {stored} stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dust_over_the_hourly_limit_sprays_and_stops_below_the_stop_value() {
    let (server, api, admin) = Server::spawn_as_admin(bin()).await.unwrap();
    let w = onboard(&api, &admin, "s1", "220100", "220102", 1)
        .await
        .unwrap();
    let so = w.token("safety_officer");
    let creds = dust(&api, &w, "s1", "0123456789ABCDEF01234567").await;
    let mut dev = connect(&creds, &server.endpoint("mqtts"), false, &creds.device_id).unwrap();
    assert_eq!(dev.connack().await.unwrap(), Ok(ConnectReturnCode::Success));
    dev.client
        .subscribe(&creds.cmd, QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(dev.next(10).await.unwrap(), Seen::SubAck);

    // Last hour: PM10 200, 260, 300. The hour's running mean is judged as data arrive: after the
    // first message it is 200 > 150 → alarm and spray on (start 150); 230 and 253.33 keep both.
    let last_hour = Utc::now() - chrono::Duration::hours(1);
    for (i, pm10) in [200.0, 260.0, 300.0].into_iter().enumerate() {
        let ts = (last_hour + chrono::Duration::seconds(i as i64)).to_rfc3339();
        dev.publish_acked(
            &creds.telemetry,
            &json!({"ts": ts, "pm10_ugm3": pm10, "pm25_ugm3": 80.0, "noise_dba": 60.0}),
        )
        .await
        .unwrap();
    }
    let cmd = loop {
        match dev.next(10).await.unwrap() {
            Seen::Publish { topic, payload } => {
                break (topic, serde_json::from_slice::<Value>(&payload).unwrap());
            }
            Seen::Closed(e) => panic!("closed: {e}"),
            _ => {}
        }
    };
    assert_eq!(cmd.0, creds.cmd);
    assert_eq!(
        (
            cmd.1["cmd"].as_str(),
            cmd.1["state"].as_str(),
            cmd.1["rule"].as_str()
        ),
        (Some("spray"), Some("on"), Some("DU-PM10")),
        "{}",
        cmd.1
    );
    let alarms = eventually(
        &api,
        so,
        &format!("/v1/alarms?project_id={}", w.project),
        |v| {
            v["items"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["rule"] == "DU-PM10"))
        },
    )
    .await;
    let a = alarms["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"] == "DU-PM10")
        .unwrap();
    assert_eq!(a["level"], "alarm", "{a}");
    assert_eq!(a["value"].as_f64(), Some(200.0), "{a}");
    assert_eq!(a["threshold"].as_f64(), Some(150.0), "{a}");
    // The hourly mean is kept: (200 + 260 + 300) / 3 = 253.33.

    // This hour: PM10 40 → mean 40 < stop value 120: spray off.
    dev.publish_acked(
        &creds.telemetry,
        &json!({"ts": Utc::now().to_rfc3339(), "pm10_ugm3": 40.0}),
    )
    .await
    .unwrap();
    let cmd = loop {
        match dev.next(10).await.unwrap() {
            Seen::Publish { payload, .. } => {
                break serde_json::from_slice::<Value>(&payload).unwrap();
            }
            Seen::Closed(e) => panic!("closed: {e}"),
            _ => {}
        }
    };
    assert_eq!(cmd["state"], "off", "{cmd}");
    let cmds = get(
        &api,
        so,
        &format!("/v1/devices/{}/commands", creds.device_id),
    )
    .await;
    assert_eq!(cmds["items"].as_array().unwrap().len(), 2, "{cmds}");
    assert!(cmds["items"][0]["delivered"].as_bool().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_rules_show_the_override_chain() {
    let (_server, api, admin) = Server::spawn_as_admin(bin()).await.unwrap();
    let w = onboard(&api, &admin, "o1", "220100", "220102", 1)
        .await
        .unwrap();
    let gov = w.token("gov_supervisor");
    let pm = w.token("project_manager");
    // The region (the government's own) lowers the PM10 limit to Hebei's 80; the project lowers
    // the crane moment warning to 85.
    let (s, v) = api.call("PUT", "/v1/regions/220100/alarm-rules", Some(gov), Some(&json!({"DU-PM10": {"alarm": 80.0, "warn": 64.0, "spray_start": 80.0, "spray_stop": 64.0}}))).await.unwrap();
    assert_eq!(s, 200, "{v}");
    let (s, v) = api
        .call(
            "PUT",
            "/v1/regions/330100/alarm-rules",
            Some(gov),
            Some(&json!({})),
        )
        .await
        .unwrap();
    assert_eq!(s, 403, "outside the jurisdiction: {v}");
    let (s, v) = api
        .call(
            "PUT",
            &format!("/v1/projects/{}/alarm-rules", w.project),
            Some(pm),
            Some(&json!({"TC-MOMENT": {"warn": 85.0}})),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    let (s, v) = api
        .call(
            "PUT",
            &format!("/v1/projects/{}/alarm-rules", w.project),
            Some(pm),
            Some(&json!({"TC-MOMENT": {"warn": 120.0}})),
        )
        .await
        .unwrap();
    assert_eq!(
        (s, v["field"].as_str()),
        (422, Some("TC-MOMENT.warn")),
        "warn above alarm: {v}"
    );
    let v = get(&api, pm, &format!("/v1/projects/{}/alarm-rules", w.project)).await;
    let rule = |id: &str| {
        v["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()
            .clone()
    };
    let pm10 = rule("DU-PM10");
    assert_eq!(pm10["alarm"], 80.0, "{pm10}");
    assert_eq!(pm10["set_by"]["alarm"]["layer"], "region", "{pm10}");
    let moment = rule("TC-MOMENT");
    assert_eq!(
        (moment["warn"].as_f64(), moment["alarm"].as_f64()),
        (Some(85.0), Some(100.0)),
        "{moment}"
    );
    assert_eq!(moment["set_by"]["warn"]["layer"], "project", "{moment}");
    assert_eq!(moment["set_by"]["alarm"]["layer"], "default", "{moment}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_offline_presence_events_and_untrusted_data() {
    let temp = tempfile::tempdir().unwrap();
    let env = [
        ("SMARTSITE_ADMIN_PASSWORD", "Admin-Pass-2026!"),
        ("SMARTSITE_SWEEP_SECS", "1"),
    ];
    let server = Server::spawn_in_with_env(bin(), temp.path(), &[], &env).unwrap();
    let api = Api::new(&server.http());
    let admin = api.login("admin", "Admin-Pass-2026!").await.unwrap();
    let w = onboard(&api, &admin, "e1", "220100", "220102", 1)
        .await
        .unwrap();
    let so = w.token("safety_officer");
    let gov = w.token("gov_supervisor");
    // Seconds instead of the default 30 min / 2 h, and a 1 s expected interval for DU-OFFLINE.
    let (s, v) = api
        .call(
            "PUT",
            &format!("/v1/projects/{}/alarm-rules", w.project),
            Some(w.token("project_manager")),
            Some(
                &json!({"TC-MOMENT": {"escalate_enterprise_s": 1, "escalate_government_s": 2},
                         "DU-OFFLINE": {"interval_s": 1}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    let creds = crane(&api, &w, "e1-TC-2").await.unwrap();
    let mut dev = connect(&creds, &server.endpoint("mqtts"), false, &creds.device_id).unwrap();
    assert_eq!(dev.connack().await.unwrap(), Ok(ConnectReturnCode::Success));

    // 105 % moment: an alarm (not a warning, which would never leave the project).
    dev.publish_acked(
        &creds.telemetry,
        &json!({"ts": Utc::now().to_rfc3339(), "moment_pct": 105.0}),
    )
    .await
    .unwrap();
    // A work cycle on the events topic.
    let start = (Utc::now() - chrono::Duration::seconds(90)).to_rfc3339();
    let end = (Utc::now() - chrono::Duration::seconds(10)).to_rfc3339();
    dev.publish_acked(
        &creds.events,
        &json!({"ts": end, "type": "work_cycle", "start": start, "end": end, "max_load_t": 5.1, "max_moment_pct": 105.0}),
    )
    .await
    .unwrap();
    let events = get(&api, so, &format!("/v1/devices/{}/events", creds.device_id)).await;
    assert_eq!(
        events["items"][0]["values"]["type"], "work_cycle",
        "{events}"
    );

    // Unhandled, it reaches the government after ~2 s; the government's supervisor sees it.
    let alarms = eventually(
        &api,
        gov,
        &format!("/v1/alarms?project_id={}", w.project),
        |v| {
            v["items"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["rule"] == "TC-MOMENT"))
        },
    )
    .await;
    let a = alarms["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"] == "TC-MOMENT")
        .unwrap();
    assert_eq!(
        (a["level"].as_str(), a["escalated_to"].as_str()),
        (Some("alarm"), Some("government")),
        "{a}"
    );
    let steps: Vec<&str> = a["handling"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    // Via the enterprise unless one sweep found both delays passed at once.
    assert_eq!(steps.last(), Some(&"escalated to government"), "{a}");
    assert!(steps.iter().all(|s| s.starts_with("escalated to")), "{a}");

    // Silent for more than three intervals: DU-OFFLINE.
    let alarms = eventually(
        &api,
        so,
        &format!("/v1/alarms?project_id={}", w.project),
        |v| {
            v["items"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|a| a["rule"] == "DU-OFFLINE" && a["level"] == "alarm")
            })
        },
    )
    .await;
    assert!(
        alarms["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["device_id"] == creds.device_id.as_str())
    );

    // Disconnecting is seen.
    dev.client.disconnect().await.unwrap();
    eventually(
        &api,
        so,
        &format!("/v1/devices/{}/state", creds.device_id),
        |v| v["online"] == false,
    )
    .await;

    // A blacklist entry on the model flags the device; its later data are tagged untrusted.
    let model = get(&api, so, &format!("/v1/devices/{}", creds.device_id)).await["model_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, v) = api
        .call("POST", "/v1/blacklist", Some(gov), Some(&json!({"scope": "model", "target_id": model, "region_code": "220100", "reason": "数据异常"})))
        .await
        .unwrap();
    assert_eq!(s, 201, "{v}");
    let mut dev = connect(&creds, &server.endpoint("mqtts"), false, &creds.device_id).unwrap();
    assert_eq!(dev.connack().await.unwrap(), Ok(ConnectReturnCode::Success));
    let mut tagged = false;
    for _ in 0..12 {
        dev.publish_acked(
            &creds.telemetry,
            &json!({"ts": Utc::now().to_rfc3339(), "moment_pct": 20.0}),
        )
        .await
        .unwrap();
        let series = api.telemetry(&creds.device_id, so).await.unwrap();
        if series.iter().any(|p| p["untrusted"] == true) {
            tagged = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        tagged,
        "data of a flagged device are tagged untrusted within the device cache's 5 s"
    );
    let state = get(&api, so, &format!("/v1/devices/{}/state", creds.device_id)).await;
    assert_eq!(state["untrusted"], true, "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_acks_stored_messages_and_refuses_foreign_topics_with_a_reason() {
    use rumqttc::v5::mqttbytes::QoS as QoS5;
    use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode as Code5, Packet as P5, PubAckReason};
    use rumqttc::v5::{AsyncClient as Client5, Event as Event5, MqttOptions as Options5};

    let (server, api, admin) = Server::spawn_as_admin(bin()).await.unwrap();
    let w = onboard(&api, &admin, "v5", "220100", "220102", 1)
        .await
        .unwrap();
    let creds = crane(&api, &w, "v5-TC-2").await.unwrap();
    let other = crane(&api, &w, "v5-TC-3").await.unwrap();
    let (host, port) = smartsite::simulate::host_port(&server.endpoint("mqtts")).unwrap();
    let mut opts = Options5::new(creds.device_id.clone(), host, port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_transport(rumqttc::Transport::tls_with_config(
        smartsite::simulate::device_tls(
            &creds.ca_pem,
            &creds.certificate_pem,
            &creds.private_key_pem,
        )
        .unwrap(),
    ));
    let (client, mut eventloop) = Client5::new(opts, 16);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(e) = eventloop.poll().await {
            if let Event5::Incoming(p) = e {
                let _ = tx.send(p);
            }
        }
    });
    let mut next = async || loop {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap()
        {
            P5::ConnAck(c) => break Err(c.code),
            P5::PubAck(a) => break Ok(a.reason),
            _ => {}
        }
    };
    assert_eq!(next().await, Err(Code5::Success));
    let msg = |m: f64| {
        serde_json::to_vec(&json!({"ts": Utc::now().to_rfc3339(), "moment_pct": m})).unwrap()
    };
    client
        .publish(&creds.telemetry, QoS5::AtLeastOnce, false, msg(30.0))
        .await
        .unwrap();
    assert_eq!(next().await, Ok(PubAckReason::Success));
    // MQTT 5 can say no: "not authorized", and the connection stays.
    client
        .publish(&other.telemetry, QoS5::AtLeastOnce, false, msg(31.0))
        .await
        .unwrap();
    assert_eq!(next().await, Ok(PubAckReason::NotAuthorized));
    client
        .publish(&creds.telemetry, QoS5::AtLeastOnce, false, msg(32.0))
        .await
        .unwrap();
    assert_eq!(next().await, Ok(PubAckReason::Success));

    let so = w.token("safety_officer");
    let series = api.telemetry(&creds.device_id, so).await.unwrap();
    assert_eq!(series.len(), 2, "{series:?}");
    let series = api.telemetry(&other.device_id, so).await.unwrap();
    assert!(series.is_empty(), "{series:?}");
}

/// An MQTT 5 client library's clean disconnect (DISCONNECT with remaining length 0, as rumqttc
/// and most clients send it) discards the will; a dropped MQTT 5 link delivers it (issue 19).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt5_clean_disconnect_discards_the_will_and_a_lost_link_delivers_it() {
    use rumqttc::v5::mqttbytes::QoS as QoS5;
    use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode as Code5, LastWill, Packet as P5};
    use rumqttc::v5::{AsyncClient as Client5, Event as Event5, MqttOptions as Options5};

    let (server, api, admin) = Server::spawn_as_admin(bin()).await.unwrap();
    let w = onboard(&api, &admin, "w5", "220100", "220102", 1)
        .await
        .unwrap();
    let so = w.token("safety_officer");
    let creds = crane(&api, &w, "w5-TC-9").await.unwrap();
    let (host, port) = smartsite::simulate::host_port(&server.endpoint("mqtts")).unwrap();
    let state = format!("/v1/devices/{}/state", creds.device_id);
    let events = format!("/v1/devices/{}/events", creds.device_id);

    // A session with a will naming `cause`; answers the client, its event loop and a channel
    // that closes when the loop ends.
    let session = |cause: &str| {
        let mut opts = Options5::new(creds.device_id.clone(), host.clone(), port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_transport(rumqttc::Transport::tls_with_config(
            smartsite::simulate::device_tls(
                &creds.ca_pem,
                &creds.certificate_pem,
                &creds.private_key_pem,
            )
            .unwrap(),
        ));
        let will = json!({"ts": Utc::now().to_rfc3339(), "type": "fault", "cause": cause});
        opts.set_last_will(LastWill::new(
            creds.events.clone(),
            will.to_string(),
            QoS5::AtLeastOnce,
            false,
            None,
        ));
        let (client, mut eventloop) = Client5::new(opts, 16);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok(e) = eventloop.poll().await {
                if let Event5::Incoming(p) = e {
                    let _ = tx.send(p);
                }
            }
        });
        (client, task, rx)
    };
    let connack = async |rx: &mut tokio::sync::mpsc::UnboundedReceiver<P5>| loop {
        let p = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        if let P5::ConnAck(c) = p {
            break c.code;
        }
    };

    let (client, task, mut rx) = session("clean5");
    assert_eq!(connack(&mut rx).await, Code5::Success);
    eventually(&api, so, &state, |v| v["online"] == true).await;
    client.disconnect().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the broker closes after a clean DISCONNECT")
        .unwrap();
    eventually(&api, so, &state, |v| v["online"] == false).await;

    let (_client, task, mut rx) = session("lost5");
    assert_eq!(connack(&mut rx).await, Code5::Success);
    eventually(&api, so, &state, |v| v["online"] == true).await;
    task.abort(); // the TLS connection is dropped without DISCONNECT
    let ev = eventually(&api, so, &events, |v| {
        causes(v).contains(&"lost5".to_owned())
    })
    .await;
    assert!(
        !causes(&ev).contains(&"clean5".to_owned()),
        "a clean MQTT 5 disconnect published its will: {ev}"
    );
}

fn causes(events: &Value) -> Vec<String> {
    events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["values"]["cause"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_expiry_and_lost_links_deliver_the_last_will_a_clean_disconnect_does_not() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (server, api, admin) = Server::spawn_as_admin_with(bin(), &["--mqtt", "127.0.0.1:0"], &[])
        .await
        .unwrap();
    let w = onboard(&api, &admin, "k1", "220100", "220102", 1)
        .await
        .unwrap();
    let so = w.token("safety_officer");
    let creds = crane(&api, &w, "k1-TC-2").await.unwrap();
    let addr = server.endpoint("mqtt");
    let state = format!("/v1/devices/{}/state", creds.device_id);
    let events = format!("/v1/devices/{}/events", creds.device_id);

    // 1. A clean DISCONNECT: the will is discarded (MQTT 3.1.1 §3.14.4). Three QoS 1 publishes
    // arrive in the same write as the DISCONNECT: all are stored and acknowledged before the
    // broker closes.
    let mut sock = raw_session(&addr, &creds, 30, "clean").await.unwrap();
    eventually(&api, so, &state, |v| v["online"] == true).await;
    let mut buf = bytes::BytesMut::new();
    for k in 1..=3u16 {
        let body = smartsite::simulate::reading("tower_crane", Scenario::Normal, u64::from(k), 0);
        let mut p = rumqttc::mqttbytes::v4::Publish::new(
            creds.telemetry.clone(),
            QoS::AtLeastOnce,
            body.to_string(),
        );
        p.pkid = k;
        p.write(&mut buf).unwrap();
    }
    buf.extend_from_slice(&[0xE0, 0x00]);
    sock.write_all(&buf).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut rest)).await;
    assert_eq!(
        rest,
        [0x40, 0x02, 0, 1, 0x40, 0x02, 0, 2, 0x40, 0x02, 0, 3],
        "three PUBACKs, then the close"
    );
    let series = api.telemetry(&creds.device_id, so).await.unwrap();
    assert_eq!(series.len(), 3, "{series:?}");
    eventually(&api, so, &state, |v| v["online"] == false).await;

    // 2. Keep-alive 1 s and then silence on an open socket: the broker gives up after 1.5 ×
    // keep-alive, closes the connection, marks the device offline and delivers the will.
    let mut sock = raw_session(&addr, &creds, 1, "keepalive").await.unwrap();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut rest))
        .await
        .expect("the broker closes a silent session after 1.5 × keep-alive")
        .unwrap();
    assert_eq!(n, 0, "nothing but the close");
    let ev = eventually(&api, so, &events, |v| {
        causes(v).contains(&"keepalive".to_owned())
    })
    .await;
    eventually(&api, so, &state, |v| v["online"] == false).await;

    // 3. The link drops without DISCONNECT (socket closed): the will is delivered too.
    let sock = raw_session(&addr, &creds, 30, "link_lost").await.unwrap();
    drop(sock);
    let ev2 = eventually(&api, so, &events, |v| {
        causes(v).contains(&"link_lost".to_owned())
    })
    .await;
    // The clean disconnect's will never appeared, before or after.
    assert!(!causes(&ev).contains(&"clean".to_owned()), "{ev}");
    assert!(!causes(&ev2).contains(&"clean".to_owned()), "{ev2}");
    assert_eq!(ev2["items"][0]["values"]["type"], "fault", "{ev2}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_silent_across_a_restart_still_gets_du_offline() {
    let temp = tempfile::tempdir().unwrap();
    let env = [
        ("SMARTSITE_ADMIN_PASSWORD", "Admin-Pass-2026!"),
        ("SMARTSITE_SWEEP_SECS", "1"),
    ];
    let mut server = Server::spawn_in_with_env(bin(), temp.path(), &[], &env).unwrap();
    let api = Api::new(&server.http());
    let admin = api.login("admin", "Admin-Pass-2026!").await.unwrap();
    let w = onboard(&api, &admin, "o1", "220100", "220102", 1)
        .await
        .unwrap();
    // Expected interval 1 s: offline (alarm) after more than 3 s of silence.
    let (s, v) = api
        .call(
            "PUT",
            &format!("/v1/projects/{}/alarm-rules", w.project),
            Some(w.token("project_manager")),
            Some(&json!({"DU-OFFLINE": {"interval_s": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    let creds = crane(&api, &w, "o1-TC-2").await.unwrap();
    let mut dev = connect(&creds, &server.endpoint("mqtts"), false, &creds.device_id).unwrap();
    assert_eq!(dev.connack().await.unwrap(), Ok(ConnectReturnCode::Success));
    dev.publish_acked(
        &creds.telemetry,
        &json!({"ts": Utc::now().to_rfc3339(), "moment_pct": 20.0}),
    )
    .await
    .unwrap();
    // Stopped well before the device could count as offline; it never speaks again.
    server.stop("TERM").unwrap();
    drop(dev);

    let server = Server::spawn_in_with_env(bin(), temp.path(), &[], &env).unwrap();
    let api = Api::new(&server.http());
    let alarms = eventually(
        &api,
        w.token("safety_officer"),
        &format!("/v1/alarms?project_id={}", w.project),
        |v| {
            v["items"].as_array().is_some_and(|a| {
                a.iter().any(|a| {
                    a["rule"] == "DU-OFFLINE"
                        && a["level"] == "alarm"
                        && a["device_id"] == creds.device_id.as_str()
                })
            })
        },
    )
    .await;
    assert!(
        alarms["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["rule"] == "DU-OFFLINE"),
        "{alarms}"
    );
}

/// The most recent whole minute at least `min_age` ago whose Asia/Shanghai hour satisfies `pred`.
fn past_shanghai_hour(
    min_age: chrono::Duration,
    pred: impl Fn(u32) -> bool,
) -> chrono::DateTime<Utc> {
    use chrono::{DurationRound, Timelike};
    let mut t = (Utc::now() - min_age)
        .duration_trunc(chrono::Duration::hours(1))
        .unwrap();
    while !pred((t + chrono::Duration::hours(8)).hour()) {
        t -= chrono::Duration::hours(1);
    }
    t + chrono::Duration::minutes(20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_dust_data_and_boundary_noise_by_day_and_night_raise_their_alarms() {
    use chrono::DurationRound;
    let (server, api, admin) = Server::spawn_as_admin(bin()).await.unwrap();
    let w = onboard(&api, &admin, "n1", "220100", "220102", 1)
        .await
        .unwrap();
    let so = w.token("safety_officer");
    let creds = dust(&api, &w, "n1", "0123456789ABCDEF01234568").await;
    let mut dev = connect(&creds, &server.endpoint("mqtts"), false, &creds.device_id).unwrap();
    assert_eq!(dev.connack().await.unwrap(), Ok(ConnectReturnCode::Success));

    // Boundary noise, GB 12523: at night (22:00–06:00 Shanghai) above 55 dB(A), by day above
    // 70, each held for the rule's 60 s.
    let night = past_shanghai_hour(chrono::Duration::hours(6), |h| !(6..22).contains(&h));
    let day = past_shanghai_hour(chrono::Duration::hours(6), |h| (7..21).contains(&h));
    for (t, db) in [(night, 60.0), (day, 72.0)] {
        for s in [0, 61] {
            let ts = (t + chrono::Duration::seconds(s)).to_rfc3339();
            dev.publish_acked(&creds.telemetry, &json!({"ts": ts, "noise_dba": db}))
                .await
                .unwrap();
        }
    }
    // PM10 exactly 77.0 in each of the last three complete hours, then a reading this hour: the
    // monitor is stuck (DU-STUCK, three identical hourly means).
    let hour = Utc::now()
        .duration_trunc(chrono::Duration::hours(1))
        .unwrap();
    for back in [3, 2, 1, 0] {
        let ts = (hour - chrono::Duration::hours(back)
            + chrono::Duration::minutes(if back == 0 { 0 } else { 10 }))
        .min(Utc::now());
        dev.publish_acked(
            &creds.telemetry,
            &json!({"ts": ts.to_rfc3339(), "pm10_ugm3": 77.0}),
        )
        .await
        .unwrap();
    }
    let alarms = eventually(
        &api,
        so,
        &format!("/v1/alarms?project_id={}", w.project),
        |v| {
            let rules: Vec<&str> = v["items"].as_array().map_or(Vec::new(), |a| {
                a.iter().filter_map(|a| a["rule"].as_str()).collect()
            });
            ["NO-NIGHT", "NO-DAY", "DU-STUCK"]
                .iter()
                .all(|r| rules.contains(r))
        },
    )
    .await;
    let find = |rule: &str| {
        alarms["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["rule"] == rule)
            .unwrap()
            .clone()
    };
    let night = find("NO-NIGHT");
    assert_eq!(
        (
            night["level"].as_str(),
            night["value"].as_f64(),
            night["threshold"].as_f64()
        ),
        (Some("alarm"), Some(60.0), Some(55.0)),
        "{night}"
    );
    let day = find("NO-DAY");
    assert_eq!(
        (day["level"].as_str(), day["threshold"].as_f64()),
        (Some("alarm"), Some(70.0)),
        "{day}"
    );
    let stuck = find("DU-STUCK");
    assert_eq!(
        (stuck["level"].as_str(), stuck["value"].as_f64()),
        (Some("alarm"), Some(3.0)),
        "{stuck}"
    );
    // 77 is below DU-PM10's warning (0.8 × 150 = 120): no dust alarm.
    assert!(
        alarms["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["rule"] != "DU-PM10"),
        "{alarms}"
    );
}

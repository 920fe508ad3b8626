//! The workforce concern over HTTP on the single-box edition: teams, enrolment, the 409 of a
//! second active enrolment, the same person keeping one `worker_id` in a second project, masked
//! answers, the full number for the labour officer only and audited, another integrator's 404 —
//! and, with the server stopped, no clear ID number, phone or bank card in any file of the data
//! dir or in the server's log. A face gate over real MQTT: gate requests answered on its `cmd`
//! topic with the exact deny reasons, then attendance and headcount over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Stdio;

use chrono::Utc;
use rumqttc::{ConnectReturnCode, QoS};
use serde_json::{Value, json};
use smartsite_tests::Server;
use smartsite_tests::mqtt::{Device as MqttDevice, DeviceCreds, Seen, connect};
use smartsite_tests::world::{Api, World, onboard, resident_id, uscc};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_smartsite-under-test"))
}

/// Every file below `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

async fn team(api: &Api, w: &World, project: &str, seq: u32) -> String {
    api.create(
        &format!("/v1/projects/{project}/teams"),
        w.token("labour_officer"),
        json!({"name": "钢筋一班", "subcontractor_name": "吉林省宏达劳务有限公司",
            "subcontractor_uscc": uscc(&format!("91220101G{seq:08}"))}),
    )
    .await
    .unwrap()
}

fn enrolment(team: &str, id_number: &str) -> Value {
    json!({"id_card_type": "01", "id_number": id_number, "name": "张三", "phone": "13912345601",
        "bank_card": "6222021234567890123", "bank_name": "中国工商银行",
        "id_valid_until": "long_term", "work_type": "010", "work_role": "20", "team_id": team,
        "entry_date": "2026-05-06",
        "contract": {"kind": "written_agreement", "start_date": "2026-05-06", "day_rate_fen": 35000}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_masking_audited_reveal_and_no_clear_numbers_at_rest() {
    let data = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut server = Server::spawn_logging_to(
        bin(),
        data.path(),
        &[],
        &[("RUST_LOG", "debug")],
        Stdio::from(log),
    )
    .unwrap();
    let api = Api::new(&server.http());
    let admin = api
        .login("admin", &server.admin_password().unwrap())
        .await
        .unwrap();
    let w = onboard(&api, &admin, "wf", "220100", "220102", 41)
        .await
        .unwrap();
    let ia = w.token("integrator_admin");
    let second = api
        .create(
            "/v1/projects",
            ia,
            json!({"name": "住宅二期", "contractor_customer_id": w.enterprise, "region_code": "220102",
                "project_type": "building", "contract_value_fen": 5_000_000_000i64,
                "contract_signed_date": "2026-03-01", "start_date": "2026-04-01"}),
        )
        .await
        .unwrap();
    let (team1, team2) = (
        team(&api, &w, &w.project, 1).await,
        team(&api, &w, &second, 2).await,
    );
    let number = resident_id("220102", "19880808", "017");
    let lo = w.token("labour_officer");

    // Enrol: 201 with a new worker_id and masked numbers only.
    let enrol = |project: &str, team: &str| {
        let api = api.clone();
        let path = format!("/v1/projects/{project}/workers");
        let body = enrolment(team, &number);
        let lo = lo.to_owned();
        async move {
            api.call("POST", &path, Some(&lo), Some(&body))
                .await
                .unwrap()
        }
    };
    let (s, a) = enrol(&w.project, &team1).await;
    assert_eq!(s, 201, "{a}");
    assert_eq!(a["new_person"], true);
    let worker = a["worker_id"].as_str().unwrap().to_owned();
    assert_eq!(
        a["id_number_masked"],
        format!("{}********{}", &number[..6], &number[14..])
    );
    assert!(!a.to_string().contains(&number));
    // Again while active: 409.
    let (s, v) = enrol(&w.project, &team1).await;
    assert_eq!(s, 409, "{v}");
    // The same person in the second project: the same worker_id.
    let (s, b) = enrol(&second, &team2).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        (b["worker_id"].as_str(), b["new_person"].as_bool()),
        (Some(worker.as_str()), Some(false))
    );

    // The list and the person: masked for every viewer.
    let (s, list) = api
        .call(
            "GET",
            &format!("/v1/projects/{}/workers", w.project),
            Some(w.token("project_manager")),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["items"][0]["worker_id"], worker.as_str());
    assert_eq!(list["items"][0]["status"], "active");
    let path = format!("/v1/workers/{worker}");
    let (s, person) = api
        .call("GET", &path, Some(w.token("safety_officer")), None)
        .await
        .unwrap();
    assert_eq!(s, 200, "{person}");
    assert_eq!(person["phone_masked"], "139****5601");
    assert_eq!(person["enrolments"].as_array().unwrap().len(), 2);
    for v in [&list, &person] {
        let text = v.to_string();
        assert!(
            !text.contains(&number) && !text.contains("13912345601"),
            "{text}"
        );
    }

    // The full number: the labour officer only, and every reveal audited.
    let reveal = format!("{path}?reveal=id_number");
    for role in ["project_manager", "enterprise_admin", "integrator_admin"] {
        let (s, v) = api
            .call("GET", &reveal, Some(w.token(role)), None)
            .await
            .unwrap();
        assert_eq!(s, 403, "{role}: {v}");
    }
    let (s, v) = api.call("GET", &reveal, Some(lo), None).await.unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["id_number"], number.as_str());
    let (s, audit) = api
        .call("GET", "/v1/pii-reveals", Some(ia), None)
        .await
        .unwrap();
    assert_eq!(s, 200, "{audit}");
    let items = audit["items"].as_array().unwrap();
    assert_eq!(
        items.len(),
        1,
        "only the allowed reveal is recorded: {audit}"
    );
    assert_eq!(
        (items[0]["worker_id"].as_str(), items[0]["field"].as_str()),
        (Some(worker.as_str()), Some("id_number"))
    );
    assert!(items[0]["by"].as_str().unwrap().starts_with("usr-"));
    assert!(items[0]["at"].as_str().is_some());

    // Another integrator sees nothing of it; a government supervisor has no worker routes.
    let x = onboard(&api, &admin, "wx", "220200", "220202", 42)
        .await
        .unwrap();
    for role in ["integrator_admin", "labour_officer", "enterprise_admin"] {
        for p in [
            reveal.clone(),
            path.clone(),
            format!("/v1/projects/{}/workers", w.project),
        ] {
            let (s, v) = api
                .call("GET", &p, Some(x.token(role)), None)
                .await
                .unwrap();
            assert_eq!(s, 404, "{role} of another integrator, {p}: {v}");
        }
    }
    let (s, _) = api
        .call("GET", &path, Some(w.token("gov_supervisor")), None)
        .await
        .unwrap();
    assert_eq!(s, 403);

    // At rest: stop the server, then read every file of the data dir (the store, keys, CA …)
    // and the log as bytes.
    let status = server.stop("TERM").unwrap();
    assert!(status.success(), "{status:?}");
    let mut read = 0;
    for file in files(data.path()).into_iter().chain([log_path.clone()]) {
        let bytes = std::fs::read(&file).unwrap();
        read += bytes.len();
        for secret in [
            number.as_str(),
            &number[..17],
            "13912345601",
            "6222021234567890123",
        ] {
            assert!(
                !contains(&bytes, secret),
                "{secret} in clear in {}",
                file.display()
            );
        }
    }
    assert!(read > 100_000, "the store was read ({read} bytes)");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("worker enrolled"), "the log was written");
}

/// Provisions an access gate (its own supplier and certified model) into the world's project.
async fn gate(api: &Api, w: &World, tag: &str, uscc_seq: u32) -> DeviceCreds {
    let ia = w.token("integrator_admin");
    let supplier = api
        .create(
            "/v1/suppliers",
            ia,
            json!({"name": format!("{tag} 门禁"), "uscc": uscc(&format!("91220101F{uscc_seq:08}"))}),
        )
        .await
        .unwrap();
    let model = api
        .create(
            "/v1/device-models",
            ia,
            json!({"supplier_id": supplier, "name": "人脸识别闸机", "category": "access_gate",
                "protocol": "mqtt_json", "access_cert_no": format!("JL-{tag}-GATE")}),
        )
        .await
        .unwrap();
    let (s, v) = api
        .call(
            "POST",
            &format!("/v1/projects/{}/devices", w.project),
            Some(ia),
            Some(&json!({"model_id": model, "serial_no": format!("{tag}-GATE-1"), "category": "access_gate"})),
        )
        .await
        .unwrap();
    assert_eq!(s, 201, "provisioning a gate: {v}");
    DeviceCreds::from_answer(&v).unwrap()
}

/// The next command on the gate's `cmd` topic.
async fn next_cmd(dev: &mut MqttDevice, creds: &DeviceCreds) -> Value {
    loop {
        match dev.next(10).await.unwrap() {
            Seen::Publish { topic, payload } => {
                assert_eq!(topic, creds.cmd);
                return serde_json::from_slice(&payload).unwrap();
            }
            Seen::Closed(e) => panic!("closed: {e}"),
            _ => {}
        }
    }
}

/// A face gate over real MQTT with its TLS client certificate: each gate request is answered on
/// the gate's `cmd` topic with the exact deny reasons (none for a valid worker, `under_age`,
/// `certificate_expired`, `not_enrolled`), a redelivered request gets the same answer, and only
/// the allowed passes make the attendance and headcount read over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn face_gate_over_mqtt_decides_and_counts_attendance() {
    let (server, api, admin) = Server::spawn_as_admin(bin()).await.unwrap();
    let w = onboard(&api, &admin, "wg", "220100", "220102", 43)
        .await
        .unwrap();
    let team = team(&api, &w, &w.project, 3).await;
    let lo = w.token("labour_officer");
    // The day of the passes: yesterday in Shanghai (fixed times, whatever the hour now).
    let today = (Utc::now() + chrono::Duration::hours(8)).date_naive();
    let day = today - chrono::Days::new(1);
    let entry = today - chrono::Days::new(10);
    let at = |hms: &str| {
        chrono::DateTime::parse_from_rfc3339(&format!("{day}T{hms}+08:00"))
            .unwrap()
            .to_utc()
    };
    let enrol = |id_number: String, name: &'static str, work_type: &'static str, certs: Value| {
        let api = api.clone();
        let path = format!("/v1/projects/{}/workers", w.project);
        let body = json!({"id_number": id_number, "name": name, "phone": "13912345601",
            "id_valid_until": "long_term", "work_type": work_type, "work_role": "20",
            "team_id": team, "entry_date": entry, "certificates": certs,
            "contract": {"kind": "labour_contract", "start_date": entry, "day_rate_fen": 35000}});
        let lo = lo.to_owned();
        async move {
            let (s, v) = api
                .call("POST", &path, Some(&lo), Some(&body))
                .await
                .unwrap();
            assert_eq!(s, 201, "{v}");
            let worker = v["worker_id"].as_str().unwrap().to_owned();
            for (level, hours) in [("company", 15), ("project", 15), ("team", 20)] {
                let (s, v) = api
                    .call(
                        "POST",
                        &format!("/v1/workers/{worker}/training"),
                        Some(&lo),
                        Some(&json!({"level": level, "hours": hours, "completed_on": entry, "passed": true})),
                    )
                    .await
                    .unwrap();
                assert_eq!(s, 201, "{v}");
            }
            worker
        }
    };
    let birth = |years: u32| {
        (day - chrono::Months::new(12 * years))
            .format("%Y%m%d")
            .to_string()
    };
    let valid = enrol(
        resident_id("220102", &birth(30), "011"),
        "张三",
        "010",
        json!([]),
    )
    .await;
    let young = enrol(
        resident_id("220102", &birth(17), "013"),
        "李四",
        "010",
        json!([]),
    )
    .await;
    let electrician = enrol(
        resident_id("220102", &birth(40), "015"),
        "王五",
        "130",
        json!([{"kind": "special_operation", "number": "吉A042024000001", "work_type": "130",
            "valid_until": day - chrono::Days::new(1)}]),
    )
    .await;

    let creds = gate(&api, &w, "wg", 43).await;
    let mut dev = connect(&creds, &server.endpoint("mqtts"), false, &creds.device_id).unwrap();
    assert_eq!(dev.connack().await.unwrap(), Ok(ConnectReturnCode::Success));
    dev.client
        .subscribe(&creds.cmd, QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(dev.next(10).await.unwrap(), Seen::SubAck);

    let request = |id: &str, worker: &str, dir: &str, hms: &str| {
        json!({"ts": at(hms).to_rfc3339(), "type": "gate_request", "request_id": id,
            "worker_id": worker, "direction": dir, "attend_type": "001"})
    };
    let cases = [
        (request("q-1", &valid, "in", "08:00:00"), "allow", json!([])),
        (
            request("q-2", &young, "in", "08:01:00"),
            "deny",
            json!(["under_age"]),
        ),
        (
            request("q-3", &electrician, "in", "08:02:00"),
            "deny",
            json!(["certificate_expired"]),
        ),
        (
            request("q-4", "wkr-0000unknown", "in", "08:03:00"),
            "deny",
            json!(["not_enrolled"]),
        ),
        (
            request("q-5", &valid, "out", "12:30:00"),
            "allow",
            json!([]),
        ),
        // The first request again (a gate that lost the answer): the same answer.
        (request("q-1", &valid, "in", "08:00:00"), "allow", json!([])),
    ];
    for (req, decision, reasons) in cases {
        dev.publish_acked(&creds.events, &req).await.unwrap();
        let answer = next_cmd(&mut dev, &creds).await;
        assert_eq!(
            answer,
            json!({"cmd": "gate", "request_id": req["request_id"], "worker_id": req["worker_id"],
                "decision": decision, "reasons": reasons})
        );
    }

    // Every decision once, in ts order.
    let p = &w.project;
    let (s, decisions) = api
        .call(
            "GET",
            &format!("/v1/projects/{p}/gate-decisions?date={day}"),
            Some(lo),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{decisions}");
    let got: Vec<(&str, &str)> = decisions["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["request_id"].as_str().unwrap(),
                d["decision"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("q-1", "allow"),
            ("q-2", "deny"),
            ("q-3", "deny"),
            ("q-4", "deny"),
            ("q-5", "allow")
        ]
    );

    // Attendance: only the valid worker; 08:00 to 12:30 is a valid Jilin day (2 punches, ≥ 4 h).
    let stamp = |hms: &str| at(hms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (s, a) = api
        .call(
            "GET",
            &format!("/v1/projects/{p}/attendance?date={day}"),
            Some(w.token("project_manager")),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{a}");
    assert_eq!(
        a["items"],
        json!([{"worker_id": valid, "name": "张三", "team_id": team, "work_type": "010",
            "first_in": stamp("08:00:00"), "last_out": stamp("12:30:00"), "hours": 4.5,
            "punches": 2, "valid": true}])
    );
    // Headcount: for the project's people and its government supervisor, numbers only.
    for role in ["labour_officer", "gov_supervisor"] {
        let (s, h) = api
            .call(
                "GET",
                &format!("/v1/projects/{p}/headcount?date={day}"),
                Some(w.token(role)),
                None,
            )
            .await
            .unwrap();
        assert_eq!(s, 200, "{role}: {h}");
        assert_eq!(
            h,
            json!({"date": day, "on_site_now": 0, "attended": 1, "by_team": {team.clone(): 1},
                "by_work_type": {"010": 1}}),
            "{role}"
        );
    }
    let (s, _) = api
        .call(
            "GET",
            &format!("/v1/projects/{p}/attendance?date={day}"),
            Some(w.token("gov_supervisor")),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 403);
    drop(dev);
    drop(server);
}

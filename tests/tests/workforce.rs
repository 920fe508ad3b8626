//! The workforce concern over HTTP on the single-box edition: teams, enrolment, the 409 of a
//! second active enrolment, the same person keeping one `worker_id` in a second project, masked
//! answers, the full number for the labour officer only and audited, another integrator's 404 —
//! and, with the server stopped, no clear ID number, phone or bank card in any file of the data
//! dir or in the server's log.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};
use smartsite_tests::Server;
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

//! The safety-fund concern over HTTP on the single-box edition: accrual, owner payment,
//! expenditure (and a refused diversion), the statement in JSON, CSV and XLSX with the same
//! totals, the cost plan approved by the owner, the enterprise year and the government's
//! read-only region summary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::Cursor;
use std::path::Path;

use calamine::{Data, Reader, Xlsx};
use serde_json::json;
use smartsite_tests::Server;
use smartsite_tests::world::onboard;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_smartsite-under-test"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_statement_exports_and_summaries() {
    let (_server, api, admin) = Server::spawn_as_admin(bin()).await.unwrap();
    let w = onboard(&api, &admin, "sf", "220100", "220102", 7)
        .await
        .unwrap();
    let base = format!("/v1/projects/{}/safety-fund", w.project);

    // The world's project: building, ¥120,000,000.00 contract signed 2026-03-01 → r2022, 300 bp;
    // planned 12 000 000 000 × 300 / 10 000 = 360 000 000 fen. The owner sees the account.
    let (s, v) = api
        .call("GET", &base, Some(w.token("owner_rep")), None)
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (
            v["regime"].as_str(),
            v["rate_bp"].as_i64(),
            v["planned_total_fen"].as_i64()
        ),
        (Some("r2022"), Some(300), Some(360_000_000))
    );

    // April progress 1 000 000 000 × 3 % = 30 000 000.
    let (s, v) = api
        .call("POST", &format!("{base}/progress"), Some(w.token("project_manager")), Some(&json!({"month": "2026-04", "progress_value_fen": 1_000_000_000i64, "date": "2026-05-01"})))
        .await
        .unwrap();
    assert_eq!(
        (s, v["accrued_fen"].as_i64()),
        (201, Some(30_000_000)),
        "{v}"
    );
    // The owner pays 180 000 000 (exactly 50 % of the planned fee) within a month of 2026-04-01.
    let (s, v) = api
        .call("POST", &format!("{base}/owner-payments"), Some(w.token("owner_rep")), Some(&json!({"date": "2026-04-10", "amount_fen": 180_000_000, "evidence_ref": "BANK-0410"})))
        .await
        .unwrap();
    assert_eq!(s, 201, "{v}");
    // A safety officer spends 2 500 000 on PPE, for cost-plan line L1.
    let (s, v) = api
        .call("POST", &format!("{base}/expenditures"), Some(w.token("safety_officer")), Some(&json!({"date": "2026-04-20", "amount_fen": 2_500_000, "category": "ppe", "evidence_ref": "VCH-0420", "plan_line_id": "L1"})))
        .await
        .unwrap();
    assert_eq!(
        (s, v["balance_fen"].as_i64(), v["overspent"].as_bool()),
        (201, Some(27_500_000), Some(false)),
        "{v}"
    );
    // Diversion is refused with a problem naming the category; nothing is booked.
    let (s, v) = api
        .call("POST", &format!("{base}/expenditures"), Some(w.token("safety_officer")), Some(&json!({"date": "2026-04-21", "amount_fen": 100, "category": "banquet", "evidence_ref": "X"})))
        .await
        .unwrap();
    assert_eq!((s, v["field"].as_str()), (422, Some("category")), "{v}");
    assert!(v["type"].as_str().unwrap().ends_with("/diversion"), "{v}");
    // Government supervision reads but never books.
    let (s, _) = api
        .call("POST", &format!("{base}/expenditures"), Some(w.token("gov_supervisor")), Some(&json!({"date": "2026-04-21", "amount_fen": 100, "category": "ppe", "evidence_ref": "X"})))
        .await
        .unwrap();
    assert_eq!(s, 403);

    let (s, v) = api
        .call(
            "GET",
            &format!("{base}?as_of=2026-05-02"),
            Some(w.token("gov_supervisor")),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (
            v["accrued_fen"].as_i64(),
            v["spent_fen"].as_i64(),
            v["balance_fen"].as_i64(),
            v["owner_paid_fen"].as_i64()
        ),
        (
            Some(30_000_000),
            Some(2_500_000),
            Some(27_500_000),
            Some(180_000_000)
        )
    );
    assert_eq!(v["flags"], json!([]), "50 % paid on time: no FEE-OWNER-50");

    // The statement: JSON, CSV and XLSX carry the same rows and totals.
    let (s, st) = api
        .call(
            "GET",
            &format!("{base}/statement"),
            Some(w.token("enterprise_admin")),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{st}");
    assert_eq!(st["rows"].as_array().unwrap().len(), 3);
    assert_eq!(
        (
            st["accrued_fen"].as_i64(),
            st["spent_fen"].as_i64(),
            st["balance_fen"].as_i64()
        ),
        (Some(30_000_000), Some(2_500_000), Some(27_500_000))
    );
    let (s, ct, csv) = api
        .bytes(
            &format!("{base}/statement?format=csv"),
            w.token("enterprise_admin"),
        )
        .await
        .unwrap();
    assert_eq!((s, ct.as_str()), (200, "text/csv; charset=utf-8"));
    let csv = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = csv.trim_start_matches('\u{feff}').lines().collect();
    assert_eq!(lines[0], "日期,摘要,类别,计提(元),支出(元),余额(元)");
    assert_eq!(
        lines[3],
        "2026-04-20,安全生产费支出,配备和更新现场作业人员安全防护用品,0.00,25000.00,275000.00"
    );
    assert_eq!(lines[4], "合计,,,300000.00,25000.00,275000.00");
    let (s, ct, xlsx) = api
        .bytes(
            &format!("{base}/statement?format=xlsx"),
            w.token("owner_rep"),
        )
        .await
        .unwrap();
    assert_eq!(
        (s, ct.as_str()),
        (
            200,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        )
    );
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(xlsx)).expect("the XLSX opens");
    let sheet = book.sheet_names()[0].clone();
    let rows: Vec<Vec<Data>> = book
        .worksheet_range(&sheet)
        .unwrap()
        .rows()
        .map(<[Data]>::to_vec)
        .collect();
    let headers: Vec<String> = rows[0].iter().map(|c| c.to_string()).collect();
    assert_eq!(
        headers,
        ["日期", "摘要", "类别", "计提(元)", "支出(元)", "余额(元)"]
    );
    let total = rows.last().unwrap();
    assert_eq!(total[0], Data::String("合计".into()));
    for (col, field) in [(3, "accrued_fen"), (4, "spent_fen"), (5, "balance_fen")] {
        assert_eq!(
            total[col],
            Data::Float(st[field].as_i64().unwrap() as f64 / 100.0),
            "{field}"
        );
    }
    let (s, v) = api
        .call(
            "GET",
            &format!("{base}/verify"),
            Some(w.token("owner_rep")),
            None,
        )
        .await
        .unwrap();
    assert_eq!((s, v["ok"].as_bool()), (200, Some(true)), "{v}");

    // The smart-site cost plan: drafted by the project, approved by the owner only, then frozen;
    // L1 planned 2 × 3 000 000 = 6 000 000, actual 2 500 000.
    let plan = json!({"lines": [{"id": "L1", "item": "塔吊安全监控", "quantity": 2, "unit_price_fen": 3_000_000}]});
    let (s, v) = api
        .call(
            "PUT",
            &format!("{base}/cost-plan"),
            Some(w.token("project_manager")),
            Some(&plan),
        )
        .await
        .unwrap();
    assert_eq!(
        (s, v["planned_total_fen"].as_i64()),
        (200, Some(6_000_000)),
        "{v}"
    );
    let (s, _) = api
        .call(
            "POST",
            &format!("{base}/cost-plan/approve"),
            Some(w.token("project_manager")),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 403);
    let (s, v) = api
        .call(
            "POST",
            &format!("{base}/cost-plan/approve"),
            Some(w.token("owner_rep")),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["vs_actual"]["lines"][0]["actual_fen"].as_i64(),
        Some(2_500_000)
    );
    assert_eq!(
        v["vs_actual"]["lines"][0]["variance_fen"].as_i64(),
        Some(-3_500_000)
    );
    let (s, _) = api
        .call(
            "PUT",
            &format!("{base}/cost-plan"),
            Some(w.token("project_manager")),
            Some(&plan),
        )
        .await
        .unwrap();
    assert_eq!(s, 409);

    // The enterprise's 2026: required 30 000 000, used 2 500 000 → 833 bp < 60 %: under-use,
    // explanation due 2027-04-30.
    let ent = format!("/v1/enterprises/{}/safety-fund/2026", w.enterprise);
    let (s, v) = api
        .call("GET", &ent, Some(w.token("enterprise_admin")), None)
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (
            v["required_accrual_fen"].as_i64(),
            v["used_fen"].as_i64(),
            v["use_ratio_bp"].as_i64()
        ),
        (Some(30_000_000), Some(2_500_000), Some(833))
    );
    assert_eq!(v["under_use"]["report_due"], "2027-04-30");
    let (s, _, csv) = api
        .bytes(&format!("{ent}?format=csv"), w.token("enterprise_admin"))
        .await
        .unwrap();
    assert_eq!(s, 200);
    assert!(
        String::from_utf8(csv)
            .unwrap()
            .contains("住宅一期,220102,300,3600000.00,300000.00,300000.00,25000.00,8.33,275000.00")
    );
    let (s, _) = api
        .call("GET", &ent, Some(w.token("owner_rep")), None)
        .await
        .unwrap();
    assert_eq!(s, 403);

    // The government's read-only region summary.
    let (s, v) = api
        .call(
            "GET",
            "/v1/regions/220100/safety-fund?year=2026",
            Some(w.token("gov_supervisor")),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["projects"].as_array().unwrap().len(), 1);
    assert_eq!(
        (
            v["required_accrual_fen"].as_i64(),
            v["used_fen"].as_i64(),
            v["use_ratio_bp"].as_i64()
        ),
        (Some(30_000_000), Some(2_500_000), Some(833))
    );
    // Outside its jurisdiction: as if the region did not exist.
    let (s, _) = api
        .call(
            "GET",
            "/v1/regions/220200/safety-fund?year=2026",
            Some(w.token("gov_supervisor")),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 404);

    // 安全文明施工费 planned at 20 000 000 for 2026 and nothing prepaid by 2026-04-29 (start +
    // 28 days): FEE-CIV-PREPAY stands, as an alarm the owner and the government see.
    let (s, v) = api
        .call(
            "PUT",
            &format!("{base}/civilized"),
            Some(w.token("enterprise_admin")),
            Some(&json!({"year_planned_fen": {"2026": 20_000_000}})),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    let civ = v["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "FEE-CIV-PREPAY")
        .cloned()
        .unwrap();
    assert_eq!(
        (
            civ["required_fen"].as_i64(),
            civ["paid_fen"].as_i64(),
            civ["level"].as_str()
        ),
        (Some(12_000_000), Some(0), Some("breach"))
    );
    for role in ["owner_rep", "gov_supervisor", "project_manager"] {
        let (s, v) = api
            .call(
                "GET",
                &format!("/v1/alarms?project_id={}", w.project),
                Some(w.token(role)),
                None,
            )
            .await
            .unwrap();
        assert_eq!(s, 200, "{v}");
        let items = v["items"].as_array().unwrap();
        assert!(
            items.iter().any(|a| a["rule"] == "FEE-CIV-PREPAY"
                && a["level"] == "alarm"
                && a["threshold"] == 120_000.0),
            "{role}: {v}"
        );
    }
}

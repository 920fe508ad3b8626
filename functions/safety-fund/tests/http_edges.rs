//! Hostile input at the safety-fund HTTP edge, through the router (`oneshot`) on both stores:
//! free text that would show differently from what is stored, amounts and sums beyond the
//! bounds (10^15 fen), a project stored with an out-of-range contract value before the bound
//! existed, and exports whose text cells would be formulas in a spreadsheet.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::Cursor;
use std::sync::Arc;

use calamine::{Data, Reader, Xlsx};
use http::StatusCode;
use serde_json::{Value, json};
use smartsite_safety_fund::AppState;
use smartsite_shared::directory::Directory;
use smartsite_shared::domain::bounds::MAX_AMOUNT_FEN;
use smartsite_shared::domain::tenancy::CustomerId;
use smartsite_shared::funds::Funds;
use smartsite_shared::ids::IntegratorId;
use smartsite_shared::on_both_stores;
use smartsite_shared::testkit::{self, RouterClient, StoreFixture, TestIssuer};

struct T {
    client: RouterClient,
    issuer: TestIssuer,
    directory: Directory,
    integrator: IntegratorId,
    enterprise: CustomerId,
    _store: StoreFixture,
}

impl std::ops::Deref for T {
    type Target = RouterClient;
    fn deref(&self) -> &RouterClient {
        &self.client
    }
}

impl T {
    async fn new(store: StoreFixture) -> T {
        let issuer = TestIssuer::new();
        let funds = Funds::with_default_rules(Arc::clone(&store.store)).unwrap();
        let state = AppState::new(Arc::clone(&store.store), issuer.auth(), funds);
        let directory = state.directory.clone();
        let (integrator, enterprise) = testkit::tenant(&directory, "int-edges", "吉林建工").await;
        T {
            client: RouterClient::new(smartsite_safety_fund::app(state)),
            issuer,
            directory,
            integrator,
            enterprise,
            _store: store,
        }
    }

    fn token(&self, roles: &[&str], customer: Option<&CustomerId>) -> String {
        let integrator = (!roles.contains(&"platform_admin")).then(|| self.integrator.as_str());
        self.issuer
            .token(roles, integrator, customer.map(CustomerId::as_str))
    }

    fn admin(&self) -> String {
        self.token(&["integrator_admin"], None)
    }

    /// A project as the directory holds it (so values accepted before today's bounds can be
    /// stored too), by the path of its safety fund.
    async fn project(&self, name: &str, contract_value_fen: i64) -> String {
        let id = testkit::project(
            &self.directory,
            &self.integrator,
            &self.enterprise,
            name,
            contract_value_fen,
        )
        .await;
        format!("/v1/projects/{id}/safety-fund")
    }

    async fn entries(&self, fund: &str) -> u64 {
        let (s, v) = self.get(fund, &self.admin()).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["entries"].as_u64().unwrap()
    }
}

fn assert_422(res: &(StatusCode, Value), field: &str) {
    assert_eq!(res.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.1);
    assert_eq!(res.1["field"], field, "{}", res.1);
}

const HOSTILE: [&str; 7] = [
    "VCH\u{0}1",
    "VCH\n1",
    "VCH\u{1b}[2J",
    "VCH\u{202E}1",
    "VCH\u{2066}1\u{2069}",
    "VCH\u{200B}1",
    "\u{3164}",
];

async fn hostile_text_is_refused_naming_the_field(t: T) {
    let fund = t.project("住宅一期", 12_000_000_000).await;
    let admin = t.admin();
    for bad in HOSTILE {
        let expenditure = |field: &str| {
            let mut b = json!({"date": "2026-04-20", "amount_fen": 100, "category": "ppe",
                "evidence_ref": "VCH-1"});
            b[field] = json!(bad);
            b
        };
        for (path, body, field) in [
            (
                format!("{fund}/expenditures"),
                expenditure("evidence_ref"),
                "evidence_ref",
            ),
            (
                format!("{fund}/expenditures"),
                expenditure("summary"),
                "summary",
            ),
            (
                format!("{fund}/expenditures"),
                expenditure("plan_line_id"),
                "plan_line_id",
            ),
            (
                format!("{fund}/owner-payments"),
                json!({"date": "2026-04-02", "amount_fen": 100, "evidence_ref": bad}),
                "evidence_ref",
            ),
            (
                format!("{fund}/variations"),
                json!({"date": "2026-06-01", "amount_fen": 100, "reference": bad}),
                "reference",
            ),
            (
                format!("{fund}/subcontracts"),
                json!({"id": bad, "share_fen": 100, "start_date": "2026-04-01"}),
                "id",
            ),
            (
                format!("{fund}/allocations"),
                json!({"date": "2026-04-10", "subcontract_id": bad, "amount_fen": 100}),
                "subcontract_id",
            ),
            (
                format!("{fund}/entries/1/reverse"),
                json!({"date": "2026-04-02", "reason": bad}),
                "reason",
            ),
        ] {
            let res = t.post(&path, &admin, body).await;
            assert_422(&res, field);
            assert!(
                res.1["detail"].as_str().unwrap().contains("must"),
                "{path} {bad:?}: {}",
                res.1
            );
        }
        let res = t
            .call(
                http::Method::PUT,
                &format!("{fund}/cost-plan"),
                Some(&admin),
                Some(json!({"lines": [
                    {"id": "L1", "item": "塔吊监控", "quantity": 1, "unit_price_fen": 100},
                    {"id": "L2", "item": bad, "quantity": 1, "unit_price_fen": 100}]})),
            )
            .await;
        assert_422(&res, "lines[1].item");
    }
    // Nothing was booked.
    assert_eq!(t.entries(&fund).await, 0);
}

async fn ledger_totals_stay_within_the_bounds(t: T) {
    let fund = t.project("住宅一期", MAX_AMOUNT_FEN).await;
    let admin = t.admin();
    // One amount: 10^15 fen at most, i64::MAX and beyond refused naming the field.
    for (amount, field) in [
        (json!(MAX_AMOUNT_FEN + 1), "amount_fen"),
        (json!(i64::MAX), "amount_fen"),
        (json!(u64::MAX), "amount_fen"),
        (json!(i64::MIN), "amount_fen"),
    ] {
        let res = t
            .post(
                &format!("{fund}/owner-payments"),
                &admin,
                json!({"date": "2026-04-02", "amount_fen": amount}),
            )
            .await;
        assert_422(&res, field);
    }
    let pay = json!({"date": "2026-04-02", "amount_fen": MAX_AMOUNT_FEN});
    let (s, v) = t.post(&format!("{fund}/owner-payments"), &admin, pay).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // A second payment would take the column's total beyond 10^15: refused, nothing written.
    let res = t
        .post(
            &format!("{fund}/owner-payments"),
            &admin,
            json!({"date": "2026-04-03", "amount_fen": 1}),
        )
        .await;
    assert_422(&res, "amount_fen");
    assert!(
        res.1["detail"]
            .as_str()
            .unwrap()
            .contains("ledger's totals"),
        "{}",
        res.1
    );

    // Progress up to the contract value (10^15) accrues; the contract cannot grow past 10^15.
    let (s, v) = t
        .post(
            &format!("{fund}/progress"),
            &admin,
            json!({"month": "2026-04", "progress_value_fen": MAX_AMOUNT_FEN, "date": "2026-04-30"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["accrued_fen"],
        json!(MAX_AMOUNT_FEN / 100 * 3),
        "3 % of 10^15: {v}"
    );
    let res = t
        .post(
            &format!("{fund}/variations"),
            &admin,
            json!({"date": "2026-06-01", "amount_fen": 1, "reference": "BG-1"}),
        )
        .await;
    assert_422(&res, "amount_fen");

    // Expenditures: the spent column is bounded like every other, however many entries.
    let spend = |fen: i64| json!({"date": "2026-04-20", "amount_fen": fen, "category": "ppe", "evidence_ref": "VCH"});
    for _ in 0..4 {
        let (s, v) = t
            .post(
                &format!("{fund}/expenditures"),
                &admin,
                spend(MAX_AMOUNT_FEN / 4),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    for fen in [1, MAX_AMOUNT_FEN] {
        let res = t
            .post(&format!("{fund}/expenditures"), &admin, spend(fen))
            .await;
        assert_422(&res, "amount_fen");
    }
    // What is stored is exact and verifies.
    let (s, v) = t.get(&fund, &admin).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["spent_fen"], &v["owner_paid_fen"], &v["entries"]),
        (&json!(MAX_AMOUNT_FEN), &json!(MAX_AMOUNT_FEN), &json!(6))
    );
    assert_eq!(
        v["balance_fen"],
        json!(MAX_AMOUNT_FEN / 100 * 3 - MAX_AMOUNT_FEN)
    );
    let (_, v) = t.get(&format!("{fund}/verify"), &admin).await;
    assert_eq!(v["ok"], json!(true), "{v}");

    // A contract's prepayment window beyond the calendar would fail every later view.
    let res = t
        .call(
            http::Method::PUT,
            &format!("{fund}/civilized"),
            Some(&admin),
            Some(json!({"year_planned_fen": {"2026": 100},
                "prepay_rule": {"rule": "contract", "min_share_bp": 6000, "within_days": 4_000_000_000u32}})),
        )
        .await;
    assert_422(&res, "within_days");
    assert_eq!(t.get(&fund, &admin).await.0, StatusCode::OK);
}

async fn a_project_stored_beyond_the_bounds_breaks_only_itself(t: T) {
    let good = t.project("住宅一期", 12_000_000_000).await;
    let poisoned = t.project("旧项目", i64::MAX).await;
    let admin = t.admin();
    // Its own account answers a clear 422 naming the field, not a 500.
    let res = t.get(&poisoned, &admin).await;
    assert_422(&res, "contract_value_fen");
    let res = t
        .post(
            &format!("{poisoned}/progress"),
            &admin,
            json!({"month": "2026-04", "progress_value_fen": 1}),
        )
        .await;
    assert_422(&res, "contract_value_fen");
    // The contractor's other projects keep working: the 3× pause test, the enterprise year and
    // the region summary read every project of the contractor or region.
    let (s, v) = t
        .post(
            &format!("{good}/progress"),
            &admin,
            json!({"month": "2026-04", "progress_value_fen": 1_000_000_000, "date": "2026-04-30"}),
        )
        .await;
    assert_eq!(
        (s, &v["accrued_fen"]),
        (StatusCode::CREATED, &json!(30_000_000)),
        "{v}"
    );
    let (s, v) = t
        .get(
            &format!("/v1/enterprises/{}/safety-fund/2026", t.enterprise),
            &admin,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["projects"].as_array().unwrap().len(), 1, "{v}");
    let platform = t.token(&["platform_admin"], None);
    let (s, v) = t
        .get("/v1/regions/220100/safety-fund?year=2026", &platform)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["required_accrual_fen"], json!(30_000_000), "{v}");
    // A summary year outside 2000–2200 is refused, not computed.
    for year in ["1999", "2201", "2147483647"] {
        let res = t
            .get(
                &format!("/v1/regions/220100/safety-fund?year={year}"),
                &platform,
            )
            .await;
        assert_422(&res, "year");
    }
}

async fn exports_write_formula_text_as_inert_text(t: T) {
    let fund = t
        .project("=HYPERLINK(\"http://evil\",\"点我\")", 12_000_000_000)
        .await;
    let admin = t.admin();
    let (s, v) = t
        .post(
            &format!("{fund}/progress"),
            &admin,
            json!({"month": "2026-04", "progress_value_fen": 1_000_000_000, "date": "2026-04-30"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = t
        .post(
            &format!("{fund}/expenditures"),
            &admin,
            json!({"date": "2026-04-20", "amount_fen": 2_500_000, "category": "ppe",
                "evidence_ref": "VCH-1", "summary": "@SUM(1+1)*cmd|' /C calc'!A0"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = t
        .post(
            &format!("{fund}/entries/1/reverse"),
            &admin,
            json!({"date": "2026-04-21", "reason": "-重复录入"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    let ea = t.token(&["enterprise_admin"], Some(&t.enterprise));
    let (s, ct, csv) = t
        .get_bytes(&format!("{fund}/statement?format=csv"), &ea)
        .await;
    assert_eq!(
        (s, ct.as_str()),
        (StatusCode::OK, "text/csv; charset=utf-8")
    );
    let csv = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = csv.trim_start_matches('\u{feff}').split("\r\n").collect();
    // The expenditure's summary is text with a leading apostrophe; the reversal's negative
    // amounts stay numbers.
    assert!(
        lines[2].starts_with("2026-04-20,'@SUM(1+1)*cmd|' /C calc'!A0,"),
        "{csv}"
    );
    assert!(lines[3].ends_with(",-300000.00,0.00,-25000.00"), "{csv}");
    for l in &lines {
        for cell in l.split(',') {
            assert!(
                !cell.starts_with(['=', '+', '@']),
                "formula-like cell {cell:?} in {csv}"
            );
        }
    }
    let year = format!("/v1/enterprises/{}/safety-fund/2026", t.enterprise);
    let (s, _, csv) = t.get_bytes(&format!("{year}?format=csv"), &ea).await;
    assert_eq!(s, StatusCode::OK);
    let csv = String::from_utf8(csv).unwrap();
    assert!(
        csv.contains("\r\n\"'=HYPERLINK(\"\"http://evil\"\",\"\"点我\"\")\",220102,300,"),
        "{csv}"
    );
    let (s, _, xlsx) = t.get_bytes(&format!("{year}?format=xlsx"), &ea).await;
    assert_eq!(s, StatusCode::OK);
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(xlsx)).unwrap();
    let sheet = book.sheet_names()[0].clone();
    let rows: Vec<Vec<Data>> = book
        .worksheet_range(&sheet)
        .unwrap()
        .rows()
        .map(|r| r.to_vec())
        .collect();
    assert_eq!(
        rows[1][0],
        Data::String("'=HYPERLINK(\"http://evil\",\"点我\")".into())
    );
    assert_eq!(rows[1][2], Data::Float(300.0));
    let formulas = book.worksheet_formula(&sheet).unwrap();
    assert!(formulas.used_cells().all(|(_, _, f)| f.is_empty()));
}

on_both_stores!(hostile_text_is_refused_naming_the_field, super::T::new);
on_both_stores!(ledger_totals_stay_within_the_bounds, super::T::new);
on_both_stores!(
    a_project_stored_beyond_the_bounds_breaks_only_itself,
    super::T::new
);
on_both_stores!(exports_write_formula_text_as_inert_text, super::T::new);

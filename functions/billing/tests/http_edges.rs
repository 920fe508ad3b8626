//! Hostile input at the billing HTTP edge, through the router (`oneshot`) on both stores:
//! prices, counts and usage quantities beyond the bounds, a rating that would exceed 10^15 fen
//! (that subscription is reported, nothing is written for it, the rest closes), credit notes
//! that would overflow, free text with control or bidi characters, and invoice exports whose
//! text cells would be formulas.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::Cursor;
use std::sync::Arc;

use calamine::{Data, Reader, Xlsx};
use chrono::Utc;
use http::StatusCode;
use serde_json::{Value, json};
use smartsite_billing::AppState;
use smartsite_billing::service::previous;
use smartsite_shared::domain::billing::Period;
use smartsite_shared::domain::bounds::{MAX_AMOUNT_FEN, MAX_COUNT, MAX_EVENT_QUANTITY};
use smartsite_shared::domain::tenancy::{CustomerId, ProjectId};
use smartsite_shared::on_both_stores;
use smartsite_shared::testkit::{self, RouterClient, StoreFixture, TestIssuer};

struct T {
    client: RouterClient,
    admin: String,
    customer: CustomerId,
    projects: [ProjectId; 2],
    _issuer: TestIssuer,
    _store: StoreFixture,
}

impl std::ops::Deref for T {
    type Target = RouterClient;
    fn deref(&self) -> &RouterClient {
        &self.client
    }
}

impl T {
    /// One integrator with a customer (named like a formula) contracting two projects (named
    /// like formulas too).
    async fn new(store: StoreFixture) -> T {
        let issuer = TestIssuer::new();
        let state = AppState::new(Arc::clone(&store.store), issuer.auth());
        let dir = state.directory.clone();
        let (i, customer) = testkit::tenant(&dir, "int-edges", "=1+1").await;
        let mut projects = Vec::new();
        for name in ["@项目一", "-项目二"] {
            projects.push(testkit::project(&dir, &i, &customer, name, 12_000_000_000).await);
        }
        T {
            client: RouterClient::new(smartsite_billing::app(state)),
            admin: issuer.token(&["integrator_admin"], Some(i.as_str()), None),
            customer,
            projects: projects.try_into().unwrap(),
            _issuer: issuer,
            _store: store,
        }
    }

    async fn package(&self, prices: Value) -> (StatusCode, Value) {
        self.post(
            "/v1/packages",
            &self.admin,
            json!({"name": "服务包", "model": "leasing", "prices": prices}),
        )
        .await
    }

    async fn subscribe(&self, package: &str, project: usize, start: &str) -> (StatusCode, Value) {
        self.post(
            "/v1/subscriptions",
            &self.admin,
            json!({"customer_id": self.customer, "project_id": self.projects[project],
                "package_id": package, "start_date": start, "funding_source": "other"}),
        )
        .await
    }
}

fn month() -> Period {
    previous(Period::containing(Utc::now()))
}

fn assert_422(res: &(StatusCode, Value), field: &str) {
    assert_eq!(res.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.1);
    assert_eq!(res.1["field"], field, "{}", res.1);
}

async fn prices_counts_and_quantities_are_bounded(t: T) {
    let day = |price: Value| json!([{"unit": "device_day", "price_fen": price}]);
    let (s, v) = t.package(day(json!(MAX_AMOUNT_FEN))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    for price in [json!(MAX_AMOUNT_FEN + 1), json!(i64::MAX), json!(u64::MAX)] {
        assert_422(&t.package(day(price)).await, "prices[0].price_fen");
    }
    let tiers = |up_to: Value, price: i64| json!([{"unit": "device_month", "tiers": [{"up_to": up_to, "price_fen": 1}, {"price_fen": price}]}]);
    assert_422(
        &t.package(tiers(json!(MAX_COUNT + 1), 1)).await,
        "prices[0].tiers[0].up_to",
    );
    assert_422(
        &t.package(tiers(json!(3), MAX_AMOUNT_FEN + 1)).await,
        "prices[0].tiers[1].price_fen",
    );
    let (s, v) = t.package(tiers(json!(MAX_COUNT), MAX_AMOUNT_FEN)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let included =
        |n: i64| json!([{"unit": "message_overage_per_1k", "price_fen": 50, "included": n}]);
    assert_422(
        &t.package(included(MAX_COUNT + 1)).await,
        "prices[0].included",
    );
    for name in ["套餐\u{202E}甲", "套餐\n甲", "套餐\u{0}", "\u{200B}"] {
        let res = t
            .post(
                "/v1/packages",
                &t.admin,
                json!({"name": name, "model": "leasing", "prices": day(json!(1))}),
            )
            .await;
        assert_422(&res, "name");
    }

    // Subscription dates a business record cannot carry.
    let pkg = t.package(day(json!(800))).await.1["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_422(&t.subscribe(&pkg, 0, "2201-01-01").await, "start_date");
    let (s, v) = t.subscribe(&pkg, 0, &month().first_day().to_string()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let sub = v["id"].as_str().unwrap().to_owned();

    // Usage: at most 10^9 messages per event; the others of the batch are unaffected.
    let ts = format!("{}T08:00:00+08:00", month().first_day());
    let event = |id: &str, q: Value| json!({"id": id, "subscription_id": sub, "metric": "messages", "quantity": q, "ts": ts});
    let (s, v) = t
        .post(
            "/v1/usage",
            &t.admin,
            json!({"events": [
                event("e-max", json!(MAX_EVENT_QUANTITY)),
                event("e-over", json!(MAX_EVENT_QUANTITY + 1)),
                event("e-i64", json!(i64::MAX)),
                event("e-u64", json!(u64::MAX)),
                event("e-neg", json!(-1)),
            ]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["accepted"], &v["rejected"]),
        (&json!(1), &json!(4)),
        "{v}"
    );
    let results = v["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], "accepted");
    for r in &results[1..] {
        assert_eq!(r["status"], "rejected", "{r}");
    }
    for r in &results[1..3] {
        assert!(r["reason"].as_str().unwrap().contains("quantity"), "{r}");
    }
}

async fn a_rating_beyond_the_bounds_fails_one_subscription_and_closes_the_rest(t: T) {
    let m = month();
    // 10^15 fen per device-day: one device bound all month rates far beyond 10^15.
    let (_, huge) = t
        .package(json!([{"unit": "device_day", "price_fen": MAX_AMOUNT_FEN}]))
        .await;
    let (_, fee) = t
        .package(json!([{"unit": "project_month", "price_fen": 300_000}]))
        .await;
    let start = m.first_day().to_string();
    let (_, a) = t.subscribe(huge["id"].as_str().unwrap(), 0, &start).await;
    let (_, b) = t.subscribe(fee["id"].as_str().unwrap(), 1, &start).await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let (s, v) = t
        .post(
            "/v1/usage",
            &t.admin,
            json!({"events": [{"id": "bind-1", "subscription_id": a, "metric": "device_bound",
                "ts": format!("{start}T00:00:00+08:00"), "device_id": "crane-1"}]}),
        )
        .await;
    assert_eq!((s, &v["accepted"]), (StatusCode::OK, &json!(1)), "{v}");

    let close = json!({"period": m.to_string()});
    let (s, v) = t.post("/v1/billing/close", &t.admin, close.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{v}");
    assert_eq!(
        (&items[0]["subscription_id"], &items[0]["total_fen"]),
        (&json!(b), &json!(300_000))
    );
    assert_eq!(
        v["failed"],
        json!([{"subscription_id": a, "field": "device_day",
            "detail": "the amount would exceed 10^15 fen (10 trillion yuan); nothing was billed"}])
    );
    // Nothing was written for it: a rerun tries it again and answers the same.
    let (s, again) = t.post("/v1/billing/close", &t.admin, close).await;
    assert_eq!((s, &again), (StatusCode::OK, &v));
    let (_, list) = t.get(&format!("/v1/invoices?period={m}"), &t.admin).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");

    // Credit notes: bounded amounts, checked sums, single text rules.
    let inv = items[0]["id"].as_str().unwrap().to_owned();
    let (s, v) = t
        .post(&format!("/v1/invoices/{inv}/issue"), &t.admin, json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let credit = |amount: Value, reason: &str| json!({"amount_fen": amount, "reason": reason});
    let path = format!("/v1/invoices/{inv}/credit-notes");
    for amount in [
        json!(i64::MAX),
        json!(MAX_AMOUNT_FEN + 1),
        json!(0),
        json!(i64::MIN),
    ] {
        assert_422(
            &t.post(&path, &t.admin, credit(amount, "退款")).await,
            "amount_fen",
        );
    }
    for reason in ["退\u{0}款", "退\u{202E}款", " "] {
        assert_422(
            &t.post(&path, &t.admin, credit(json!(100), reason)).await,
            "reason",
        );
    }
    let (s, v) = t
        .post(
            &path,
            &t.admin,
            credit(json!(299_999), "停工期间\r\n设备未使用"),
        )
        .await;
    assert_eq!(
        (s, &v["reason"]),
        (StatusCode::CREATED, &json!("停工期间\n设备未使用")),
        "{v}"
    );
    // 299,999 of 300,000 credited: one more fen fits, anything beyond is refused.
    assert_422(
        &t.post(&path, &t.admin, credit(json!(MAX_AMOUNT_FEN), "x"))
            .await,
        "amount_fen",
    );
    assert_422(
        &t.post(&path, &t.admin, credit(json!(2), "x")).await,
        "amount_fen",
    );
    assert_eq!(
        t.post(&path, &t.admin, credit(json!(1), "x")).await.0,
        StatusCode::CREATED
    );
}

async fn invoice_exports_write_formula_text_as_inert_text(t: T) {
    let m = month();
    let (_, full) = t
        .package(json!([{"unit": "project_month", "price_fen": 300_000},
            {"unit": "one_off", "price_fen": 1_200_000}]))
        .await;
    let (_, s) = t
        .subscribe(full["id"].as_str().unwrap(), 0, &m.first_day().to_string())
        .await;
    assert!(s["id"].is_string(), "{s}");
    let (_, closed) = t
        .post(
            "/v1/billing/close",
            &t.admin,
            json!({"period": m.to_string()}),
        )
        .await;
    let inv = closed["items"][0]["id"].as_str().unwrap().to_owned();

    let (s, ct, csv) = t
        .get_bytes(&format!("/v1/invoices/{inv}?format=csv"), &t.admin)
        .await;
    assert_eq!(
        (s, ct.as_str()),
        (StatusCode::OK, "text/csv; charset=utf-8")
    );
    let csv = String::from_utf8(csv).unwrap();
    let rows: Vec<&str> = csv.trim_start_matches('\u{feff}').split("\r\n").collect();
    // 发票号, 客户, 项目, 计费项, 数量, 单价(元), 金额(元): the customer and project names are
    // neutralised, quantities and amounts stay numbers.
    assert!(
        rows[1].contains(",'=1+1,'@项目一,一次性费用（服务包）,1,12000.00,12000.00"),
        "{csv}"
    );
    assert!(rows[2].contains(",'=1+1,'@项目一,"), "{csv}");
    assert_eq!(rows[3], "合计,,,,,,15000.00", "{csv}");

    let (s, _, xlsx) = t
        .get_bytes(&format!("/v1/invoices/{inv}?format=xlsx"), &t.admin)
        .await;
    assert_eq!(s, StatusCode::OK);
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(xlsx)).unwrap();
    let sheet = book.sheet_names()[0].clone();
    let rows: Vec<Vec<Data>> = book
        .worksheet_range(&sheet)
        .unwrap()
        .rows()
        .map(|r| r.to_vec())
        .collect();
    assert_eq!(rows[1][1], Data::String("'=1+1".into()));
    assert_eq!(rows[1][2], Data::String("'@项目一".into()));
    assert_eq!(rows[1][4], Data::Float(1.0));
    assert_eq!(rows[1][6], Data::Float(12_000.0));
    let formulas = book.worksheet_formula(&sheet).unwrap();
    assert!(formulas.used_cells().all(|(_, _, f)| f.is_empty()));
}

on_both_stores!(prices_counts_and_quantities_are_bounded, super::T::new);
on_both_stores!(
    a_rating_beyond_the_bounds_fails_one_subscription_and_closes_the_rest,
    super::T::new
);
on_both_stores!(
    invoice_exports_write_formula_text_as_inert_text,
    super::T::new
);

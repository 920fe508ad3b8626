//! Black-box billing over HTTP against the single-box edition: packages under the three models,
//! subscriptions, the same usage posted (and redelivered) for each, the close, the invoice
//! lifecycle, customer visibility, and the CSV and XLSX exports read back.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;

use calamine::{Data, Reader, Xlsx};
use chrono::{Days, Utc};
use serde_json::{Value, json};
use smartsite_shared::domain::billing::Period;
use smartsite_tests::Server;
use smartsite_tests::world::{Api, World, onboard};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_smartsite-under-test"))
}

/// The previous Shanghai month: its usage is still accepted, and it has ended.
fn last_month() -> Period {
    Period::of_date(Period::containing(Utc::now()).first_day() - Days::new(1))
}

fn at(p: Period, day: u32, hm: &str) -> String {
    format!("{p}-{day:02}T{hm}:00+08:00")
}

/// The usage month of `stream` (see the service suite for the table): crane-1 bound days 1–10
/// with 40,000 messages, dust-1 bound days 2–22 with 60,000, hoist-1 bound on day 3 and flagged
/// active, cam-1 3,000 messages unbound, 1,500 messages without a device.
fn stream(sub: &str, tag: &str, m: Period) -> Vec<Value> {
    let e = |n: u32, metric: &str, q: i64, ts: String, dev: Option<(&str, &str)>| {
        let mut v = json!({"id": format!("{tag}-{n}"), "subscription_id": sub, "metric": metric, "quantity": q, "ts": ts});
        if let Some((d, c)) = dev {
            v["device_id"] = json!(d);
            v["category"] = json!(c);
        }
        v
    };
    let tc = Some(("crane-1", "tower_crane"));
    let dn = Some(("dust-1", "dust_noise"));
    let h = Some(("hoist-1", "hoist"));
    vec![
        e(1, "device_bound", 1, at(m, 1, "00:00"), tc),
        e(2, "device_unbound", 1, at(m, 11, "00:00"), tc),
        e(3, "messages", 10_000, at(m, 2, "08:00"), tc),
        e(4, "messages", 10_000, at(m, 5, "08:00"), tc),
        e(5, "messages", 10_000, at(m, 8, "08:00"), tc),
        e(6, "messages", 10_000, at(m, 9, "08:00"), tc),
        e(7, "device_bound", 1, at(m, 2, "08:00"), dn),
        e(8, "device_unbound", 1, at(m, 22, "08:00"), dn),
        e(9, "messages", 20_000, at(m, 5, "12:00"), dn),
        e(10, "messages", 20_000, at(m, 15, "12:00"), dn),
        e(11, "messages", 20_000, at(m, 25, "12:00"), dn),
        e(12, "device_bound", 1, at(m, 3, "08:00"), h),
        e(13, "device_unbound", 1, at(m, 3, "17:00"), h),
        e(14, "device_active", 1, at(m, 3, "09:00"), h),
        e(
            15,
            "messages",
            3_000,
            at(m, 10, "10:00"),
            Some(("cam-1", "camera")),
        ),
        e(16, "messages", 1_500, at(m, 21, "10:00"), None),
    ]
}

/// The three packages of the service suite, over HTTP; answers their ids by model.
async fn packages(api: &Api, ia: &str) -> BTreeMap<&'static str, String> {
    let bodies = [
        (
            "full_solution",
            json!({"name": "总体解决方案", "model": "full_solution", "prices": [
                {"unit": "project_month", "price_fen": 300_000},
                {"unit": "one_off", "price_fen": 1_200_000},
                {"unit": "message_overage_per_1k", "price_fen": 50, "included": 100_250}]}),
        ),
        (
            "tech_service",
            json!({"name": "单纯技术服务", "model": "tech_service", "prices": [
                {"unit": "device_month", "tiers": [{"up_to": 3, "price_fen": 5_000}, {"price_fen": 4_000}]}]}),
        ),
        (
            "leasing",
            json!({"name": "租赁服务", "model": "leasing", "prices": [
                {"unit": "device_day", "price_fen": 800, "category": "tower_crane"},
                {"unit": "device_day", "price_fen": 300, "category": "dust_noise"},
                {"unit": "device_day", "price_fen": 200}]}),
        ),
    ];
    let mut out = BTreeMap::new();
    for (model, body) in bodies {
        let (s, v) = api
            .call("POST", "/v1/packages", Some(ia), Some(&body))
            .await
            .unwrap();
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["version"], 1);
        out.insert(model, v["id"].as_str().unwrap().to_owned());
    }
    out
}

/// Subscribes A's project to `package` from the first day of `m`.
pub async fn subscribe(api: &Api, w: &World, package: &str, m: Period, funding: &str) -> String {
    api.create(
        "/v1/subscriptions",
        w.token("integrator_admin"),
        json!({"customer_id": w.enterprise, "project_id": w.project, "package_id": package,
            "start_date": m.first_day(), "funding_source": funding}),
    )
    .await
    .unwrap()
}

async fn raw(server: &Server, path: &str, token: &str) -> (u16, String, Vec<u8>) {
    let res = reqwest::Client::new()
        .get(format!("{}{path}", server.http()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, res.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_models_close_issue_and_export_over_http() {
    let (server, api, admin) = Server::spawn_as_admin(bin()).await.unwrap();
    let w = onboard(&api, &admin, "bl", "220100", "220102", 11)
        .await
        .unwrap();
    let ia = w.token("integrator_admin");
    let m = last_month();
    let pkgs = packages(&api, ia).await;
    let full = subscribe(&api, &w, &pkgs["full_solution"], m, "civilized_fee").await;
    let tech = subscribe(&api, &w, &pkgs["tech_service"], m, "other").await;
    let lease = subscribe(&api, &w, &pkgs["leasing"], m, "safety_fee").await;

    // The same usage for each subscription; delivered twice, counted once.
    let mut events = Vec::new();
    for (s, tag) in [(&full, "f"), (&tech, "t"), (&lease, "l")] {
        events.extend(stream(s, tag, m));
    }
    let (s, v) = api
        .call(
            "POST",
            "/v1/usage",
            Some(ia),
            Some(&json!({"events": events})),
        )
        .await
        .unwrap();
    assert_eq!(
        (s, &v["accepted"], &v["rejected"]),
        (200, &json!(48), &json!(0)),
        "{v}"
    );
    let (_, v) = api
        .call(
            "POST",
            "/v1/usage",
            Some(ia),
            Some(&json!({"events": events})),
        )
        .await
        .unwrap();
    assert_eq!(
        (&v["accepted"], &v["duplicates"]),
        (&json!(0), &json!(48)),
        "{v}"
    );
    // A bad batch is a problem, naming the field.
    let (s, v) = api
        .call("POST", "/v1/usage", Some(ia), Some(&json!({"evts": []})))
        .await
        .unwrap();
    assert_eq!(s, 422, "{v}");

    let close = json!({"period": m.to_string()});
    let (s, closed) = api
        .call("POST", "/v1/billing/close", Some(ia), Some(&close))
        .await
        .unwrap();
    assert_eq!(s, 200, "{closed}");
    let totals: BTreeMap<String, i64> = closed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["subscription_id"].as_str().unwrap().to_owned(),
                i["total_fen"].as_i64().unwrap(),
            )
        })
        .collect();
    // Hand-computed in the service suite:
    //   full solution 1,200,000 + 300,000 + round(4,250 × 50 / 1,000 = 212.5) = 1,500,213
    //   tech service  3 × 5,000 + 1 × 4,000                                    =    19,000
    //   leasing       10 × 800 + 21 × 300 + 1 × 200                            =    14,500
    assert_eq!(totals[&full], 1_500_213);
    assert_eq!(totals[&tech], 19_000);
    assert_eq!(totals[&lease], 14_500);
    let (_, again) = api
        .call("POST", "/v1/billing/close", Some(ia), Some(&close))
        .await
        .unwrap();
    assert_eq!(
        again, closed,
        "re-running the close answers the same invoices"
    );
    let full_inv = closed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["subscription_id"] == full.as_str())
        .unwrap()
        .clone();
    let line = &full_inv["lines"][2];
    assert_eq!(
        (&line["item"], &line["quantity_milli"], &line["amount_fen"]),
        (&json!("messages_overage"), &json!(4_250), &json!(213))
    );
    assert_eq!(line["trace"], json!([format!("{m}/messages")]));

    // The enterprise sees its invoices; the owner's representative those of the project its
    // customer owns (the same three, billed to the contractor), and cannot issue them.
    let ids = |v: &Value| {
        let mut ids: Vec<String> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let (s, mine) = api
        .call(
            "GET",
            &format!("/v1/invoices?period={m}"),
            Some(w.token("enterprise_admin")),
            None,
        )
        .await
        .unwrap();
    assert_eq!((s, mine["items"].as_array().unwrap().len()), (200, 3));
    let (s, owned) = api
        .call("GET", "/v1/invoices", Some(w.token("owner_rep")), None)
        .await
        .unwrap();
    assert_eq!((s, ids(&owned)), (200, ids(&mine)));
    let (s, _) = api
        .call(
            "POST",
            &format!("/v1/invoices/{}/issue", ids(&mine)[0]),
            Some(w.token("owner_rep")),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 403);
    let (s, _) = api
        .call(
            "GET",
            &format!("/v1/invoices?customer_id={}", w.owner),
            Some(w.token("enterprise_admin")),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 404, "another customer's invoices are not found");

    // Lifecycle: issue, pay, credit note; void only from draft or issued.
    let id = full_inv["id"].as_str().unwrap();
    let post = |path: String, body: Option<Value>| {
        let api = api.clone();
        let ia = ia.to_owned();
        async move {
            api.call("POST", &path, Some(&ia), body.as_ref())
                .await
                .unwrap()
        }
    };
    let (s, v) = post(format!("/v1/invoices/{id}/issue"), None).await;
    assert_eq!((s, &v["status"]), (200, &json!("issued")), "{v}");
    let (s, _) = post(format!("/v1/invoices/{id}/issue"), None).await;
    assert_eq!(s, 409);
    let (s, v) = post(
        format!("/v1/invoices/{id}/credit-notes"),
        Some(json!({"amount_fen": 13, "reason": "超量消息减免"})),
    )
    .await;
    assert_eq!((s, &v["amount_fen"]), (201, &json!(13)), "{v}");
    let (s, v) = post(format!("/v1/invoices/{id}/pay"), None).await;
    assert_eq!(
        (s, &v["status"], &v["credited_fen"]),
        (200, &json!("paid"), &json!(13))
    );
    let (s, _) = post(format!("/v1/invoices/{id}/void"), None).await;
    assert_eq!(s, 409);
    let (s, v) = api
        .call(
            "GET",
            &format!("/v1/invoices/{id}"),
            Some(w.token("enterprise_admin")),
            None,
        )
        .await
        .unwrap();
    assert_eq!((s, &v["credit_notes"][0]["amount_fen"]), (200, &json!(13)));

    // CSV of the period: BOM, the Chinese headers, one row per line, the total.
    let (s, ct, body) = raw(&server, &format!("/v1/invoices?period={m}&format=csv"), ia).await;
    assert_eq!((s, ct.as_str()), (200, "text/csv; charset=utf-8"));
    let csv = String::from_utf8(body).unwrap();
    let csv = csv.strip_prefix('\u{feff}').unwrap();
    let rows: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(rows[0], "发票号,客户,项目,计费项,数量,单价(元),金额(元)");
    // 3 + 2 + 3 lines, then the total: 1,533,713 fen.
    assert_eq!(rows.len(), 1 + 8 + 1, "{csv}");
    assert_eq!(*rows.last().unwrap(), "合计,,,,,,15337.13");
    assert!(
        rows.iter().any(|r| r.ends_with(",4.25,0.50,2.13")
            && r.contains("建工集团")
            && r.contains("住宅一期")),
        "{csv}"
    );

    // XLSX of the leasing invoice, read back.
    let lease_id = closed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["subscription_id"] == lease.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, ct, body) = raw(&server, &format!("/v1/invoices/{lease_id}?format=xlsx"), ia).await;
    assert_eq!(s, 200);
    assert_eq!(ct, smartsite_shared::export::XLSX_MIME);
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(body)).unwrap();
    let sheet = book.sheet_names()[0].clone();
    let range = book.worksheet_range(&sheet).unwrap();
    let rows: Vec<Vec<Data>> = range.rows().map(|r| r.to_vec()).collect();
    let headers: Vec<String> = rows[0].iter().map(|c| c.to_string()).collect();
    assert_eq!(
        headers,
        [
            "发票号",
            "客户",
            "项目",
            "计费项",
            "数量",
            "单价(元)",
            "金额(元)"
        ]
    );
    assert_eq!(rows.len(), 1 + 3 + 1);
    let amounts: f64 = rows[1..4]
        .iter()
        .map(|r| match r[6] {
            Data::Float(f) => f,
            ref other => panic!("amount cell {other:?}"),
        })
        .sum();
    assert!((amounts - 145.0).abs() < 1e-9, "{amounts}");
    assert_eq!(rows[4][0], Data::String("合计".into()));
    assert_eq!(rows[4][6], Data::Float(145.0));

    // The hand-off, end to end: the issued full-solution invoice (funded by the 安全文明施工费)
    // reaches the project's civilized ledger as a `smart_site` expenditure of 1,500,213 fen, and
    // its 13-fen credit note as a correction taking 13 back; the leasing invoice (funded by the
    // 安全生产费), once issued, its safety ledger under the 2022 list's `safety_informatisation`
    // (contract signed 2026-03-01: r2022). Each once.
    let (s, v) = post(format!("/v1/invoices/{lease_id}/issue"), None).await;
    assert_eq!(s, 200, "{v}");
    let fund = format!("/v1/projects/{}/safety-fund", w.project);
    let ea = w.token("enterprise_admin");
    let mut posted = (Value::Null, Value::Null);
    for _ in 0..100 {
        let (_, civ) = api
            .call(
                "GET",
                &format!("{fund}/statement?fund=civilized"),
                Some(ea),
                None,
            )
            .await
            .unwrap();
        let (_, safety) = api
            .call("GET", &format!("{fund}/statement"), Some(ea), None)
            .await
            .unwrap();
        if civ["entries"].as_array().is_some_and(|e| e.len() >= 2)
            && !safety["entries"].as_array().is_none_or(Vec::is_empty)
        {
            posted = (civ, safety);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (civ, safety) = posted;
    assert_eq!(civ["entries"].as_array().map(Vec::len), Some(2), "{civ}");
    for (e, kind, spent) in [
        (&civ["entries"][0], "expenditure", 1_500_213),
        (&civ["entries"][1], "correction", -13),
    ] {
        assert_eq!(
            (
                e["kind"].as_str(),
                e["category"].as_str(),
                e["spent_fen"].as_i64()
            ),
            (Some(kind), Some("smart_site"), Some(spent)),
            "{e}"
        );
        assert_eq!(e["links"]["invoice_id"].as_str(), Some(id));
    }
    assert_eq!(
        safety["entries"].as_array().map(Vec::len),
        Some(1),
        "{safety}"
    );
    let e = &safety["entries"][0];
    assert_eq!(
        (e["category"].as_str(), e["spent_fen"].as_i64()),
        (Some("safety_informatisation"), Some(14_500)),
        "{e}"
    );
    assert_eq!(e["links"]["invoice_id"].as_str(), Some(lease_id.as_str()));
    // Funded spending beyond what was received or accrued is allowed and shows as a flag.
    let (_, acct) = api.call("GET", &fund, Some(ea), None).await.unwrap();
    assert_eq!(
        acct["civilized"]["spent_fen"].as_i64(),
        Some(1_500_200),
        "{acct}"
    );
    assert!(
        acct["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "FEE-OVERSPENT"),
        "{acct}"
    );
}

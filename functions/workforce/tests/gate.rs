//! Gate decisions through the ingest pipeline on both stores (the embedded store, and DynamoDB
//! on the emulator): a gate's `gate_request` events are stored as events, decided for the
//! Asia/Shanghai day of their own `ts`, stored once per `request_id`, answered on the gate's
//! downlink; then the day's decisions, attendance and headcount over the router.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Days, Months, NaiveDate, Utc};
use http::StatusCode;
use serde_json::{Value, json};
use smartsite_shared::directory::Directory;
use smartsite_shared::domain::devices::{Category, DeviceId, ModelId, SerialNo, SupplierId};
use smartsite_shared::domain::tenancy::{CustomerId, CustomerKind, ProjectId, RegionCode, Uscc};
use smartsite_shared::fleet::{Device, DeviceStatus, Fleet};
use smartsite_shared::ids::IntegratorId;
use smartsite_shared::ingest::{Downlink, Inbound, MessageKind, Outcome, Pipeline};
use smartsite_shared::on_both_stores;
use smartsite_shared::store::{Query, SkCond, Store};
use smartsite_shared::testkit::{self, RouterClient, StoreFixture, TestIssuer};
use smartsite_workforce::AppState;
use smartsite_workforce::domain::id_card::check_char;
use smartsite_workforce::keys;
use smartsite_workforce::service::gate::GateObserver;
use smartsite_workforce::service::vault::LocalKeyVault;
use smartsite_workforce::service::{Workforce, today};

fn resident(birth: NaiveDate, seq: &str) -> String {
    let first17 = format!("220102{}{seq}", birth.format("%Y%m%d"));
    format!("{first17}{}", check_char(&first17).unwrap())
}

/// Every command handed to a gate, in order.
#[derive(Default)]
struct Recorder(Mutex<Vec<(String, Value)>>);

#[async_trait]
impl Downlink for Recorder {
    async fn send(&self, device: &Device, payload: Bytes) -> bool {
        let v = serde_json::from_slice(&payload).unwrap();
        self.0.lock().unwrap().push((device.id.to_string(), v));
        true
    }
}

impl Recorder {
    fn take(&self) -> Vec<(String, Value)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct T {
    client: RouterClient,
    issuer: TestIssuer,
    store: Arc<dyn Store>,
    pipeline: Pipeline,
    sent: Arc<Recorder>,
    integrator: IntegratorId,
    enterprise: CustomerId,
    project: ProjectId,
    gate: Device,
    team: String,
    _keys: tempfile::TempDir,
    _store: StoreFixture,
}

impl std::ops::Deref for T {
    type Target = RouterClient;
    fn deref(&self) -> &RouterClient {
        &self.client
    }
}

/// The day the suite's passes happen: two days ago in Shanghai, well inside the enrolments.
fn day() -> NaiveDate {
    today() - Days::new(2)
}

/// `hh:mm:ss` on `d` in Asia/Shanghai, as UTC.
fn at(d: NaiveDate, hms: &str) -> DateTime<Utc> {
    let local = format!("{d}T{hms}+08:00");
    DateTime::parse_from_rfc3339(&local).unwrap().to_utc()
}

impl T {
    async fn new(fixture: StoreFixture) -> T {
        let store = Arc::clone(&fixture.store);
        let issuer = TestIssuer::new();
        let keys = tempfile::tempdir().unwrap();
        let vault = Arc::new(LocalKeyVault::new(keys.path().join(LocalKeyVault::FILE)));
        let workforce = Workforce::with_default_rules(Arc::clone(&store), vault).unwrap();
        let state = AppState::new(Arc::clone(&store), issuer.auth(), workforce.clone());
        let directory = state.directory.clone();
        let (integrator, enterprise) = testkit::tenant(&directory, "int-gate", "吉林建工").await;
        let project =
            testkit::project(&directory, &integrator, &enterprise, "一期", 1_000_000_000).await;
        let gate = Device {
            id: DeviceId::generate(),
            integrator_id: integrator.clone(),
            project_id: project.clone(),
            region_code: RegionCode::parse("r", "220102").unwrap(),
            model_id: ModelId::generate(),
            supplier_id: SupplierId::generate(),
            category: Category::AccessGate,
            serial_no: SerialNo::parse("s", &format!("GATE-{}", DeviceId::generate())).unwrap(),
            mn: None,
            config: BTreeMap::new(),
            status: DeviceStatus::Active,
            certificate_id: "c".repeat(64),
            created_by: "test".into(),
            created_at: Utc::now().to_rfc3339(),
            decommissioned_by: None,
            decommissioned_at: None,
            flags: Vec::new(),
        };
        let (_, versions) = smartsite_shared::catalog::Catalog::new(store.clone())
            .active_bans_for(&gate.supplier_id, &gate.model_id, &gate.serial_no)
            .await
            .unwrap();
        Fleet::new(store.clone())
            .bind(&integrator, &gate, &versions)
            .await
            .unwrap();
        let sent = Arc::new(Recorder::default());
        let observer =
            GateObserver::new(workforce, Directory::new(store.clone())).with_downlink(sent.clone());
        let pipeline = Pipeline::new(store.clone()).with_observer(Arc::new(observer));
        let mut t = T {
            client: RouterClient::new(smartsite_workforce::app(state)),
            issuer,
            store,
            pipeline,
            sent,
            integrator,
            enterprise,
            project,
            gate,
            team: String::new(),
            _keys: keys,
            _store: fixture,
        };
        let uscc = {
            let first17 = "91220101MA0000001";
            format!("{first17}{}", Uscc::check_char(first17).unwrap())
        };
        let (s, v) = t
            .post(
                &format!("/v1/projects/{}/teams", t.project),
                &t.token("labour_officer"),
                json!({"name": "钢筋一班", "subcontractor_name": "吉林省宏达劳务有限公司",
                    "subcontractor_uscc": uscc}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        t.team = v["id"].as_str().unwrap().to_owned();
        t
    }

    fn token(&self, role: &str) -> String {
        let customer = (!role.starts_with("integrator_")).then(|| self.enterprise.as_str());
        self.issuer
            .token(&[role], Some(self.integrator.as_str()), customer)
    }

    /// Enrols a person (entered 30 days ago, open-ended contract) with all three training
    /// levels passed 20 days ago; `tweak` adjusts the body. Returns the worker id.
    async fn enrol(&self, id_number: &str, name: &str, tweak: impl FnOnce(&mut Value)) -> String {
        let entry = today() - Days::new(30);
        let mut b = json!({"id_number": id_number, "name": name, "phone": "13812345678",
            "id_valid_until": "long_term", "work_type": "010", "work_role": "20",
            "team_id": self.team, "entry_date": entry,
            "contract": {"kind": "labour_contract", "start_date": entry, "day_rate_fen": 35_000}});
        tweak(&mut b);
        let lo = self.token("labour_officer");
        let (s, v) = self
            .post(&format!("/v1/projects/{}/workers", self.project), &lo, b)
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let w = v["worker_id"].as_str().unwrap().to_owned();
        for (level, hours) in [("company", 15), ("project", 15), ("team", 20)] {
            let (s, v) = self
                .post(
                    &format!("/v1/workers/{w}/training"),
                    &lo,
                    json!({"level": level, "hours": hours,
                        "completed_on": today() - Days::new(20), "passed": true}),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
        }
        w
    }

    /// The gate sends one request; the pipeline's outcome.
    async fn ask(&self, request_id: &str, worker: &str, dir: &str, ts: DateTime<Utc>) -> Outcome {
        let payload = json!({"ts": ts.to_rfc3339(), "type": "gate_request",
            "request_id": request_id, "worker_id": worker, "direction": dir, "attend_type": "001"});
        self.send(payload.to_string()).await
    }

    async fn send(&self, payload: String) -> Outcome {
        let m = Inbound {
            integrator_id: self.integrator.clone(),
            project_id: self.project.to_string(),
            device_id: self.gate.id.to_string(),
            kind: MessageKind::Events,
            payload: Bytes::from(payload),
            received_at: Utc::now(),
        };
        self.pipeline.process(&[m]).await.remove(0).unwrap()
    }

    /// The one command sent since the last call.
    fn answer(&self) -> Value {
        let mut sent = self.sent.take();
        assert_eq!(sent.len(), 1, "{sent:?}");
        let (device, cmd) = sent.remove(0);
        assert_eq!(device, self.gate.id.to_string());
        cmd
    }

    async fn stored_decisions(&self) -> usize {
        let q = Query::partition(&keys::project(&self.integrator, &self.project))
            .sk(SkCond::BeginsWith(keys::GATE_REQUEST_PREFIX.into()));
        self.store.query(q).await.unwrap().items.len()
    }
}

fn cmd(request_id: &str, worker: &str, decision: &str, reasons: Value) -> Value {
    json!({"cmd": "gate", "request_id": request_id, "worker_id": worker,
        "decision": decision, "reasons": reasons})
}

async fn gates_are_answered_after_the_decision_is_stored_once(t: T) {
    let d = day();
    let valid = t
        .enrol(&resident(d - Months::new(12 * 30), "011"), "张三", |_| {})
        .await;
    let young = t
        .enrol(&resident(d - Months::new(12 * 17), "013"), "少年", |_| {})
        .await;
    let electrician = t
        .enrol(&resident(d - Months::new(12 * 35), "015"), "电工", |b| {
            b["work_type"] = json!("130");
            b["certificates"] = json!([{"kind": "special_operation", "number": "吉A042024000001",
                "work_type": "130", "valid_until": d - Days::new(1)}]);
        })
        .await;

    assert_eq!(
        t.ask("r-1", &valid, "in", at(d, "09:00:00")).await,
        Outcome::Stored
    );
    assert_eq!(t.answer(), cmd("r-1", &valid, "allow", json!([])));
    t.ask("r-2", &young, "in", at(d, "09:01:00")).await;
    assert_eq!(t.answer(), cmd("r-2", &young, "deny", json!(["under_age"])));
    t.ask("r-3", &electrician, "in", at(d, "09:02:00")).await;
    assert_eq!(
        t.answer(),
        cmd("r-3", &electrician, "deny", json!(["certificate_expired"]))
    );
    t.ask("r-4", "wkr-nobody", "in", at(d, "09:03:00")).await;
    assert_eq!(
        t.answer(),
        cmd("r-4", "wkr-nobody", "deny", json!(["not_enrolled"]))
    );
    t.ask("r-5", "not an id", "in", at(d, "09:04:00")).await;
    assert_eq!(
        t.answer(),
        cmd("r-5", "not an id", "deny", json!(["not_enrolled"]))
    );
    assert_eq!(t.stored_decisions().await, 5);

    // The same message redelivered: the event is a duplicate, the answer is sent again, and
    // nothing new is stored.
    assert_eq!(
        t.ask("r-1", &valid, "in", at(d, "09:00:00")).await,
        Outcome::Duplicate
    );
    assert_eq!(t.answer(), cmd("r-1", &valid, "allow", json!([])));
    // The same request re-stamped by the gate (another payload): the stored answer, still one
    // decision — even though it now names another person.
    t.ask("r-2", &valid, "in", at(d, "09:05:00")).await;
    assert_eq!(t.answer(), cmd("r-2", &young, "deny", json!(["under_age"])));
    assert_eq!(t.stored_decisions().await, 5);

    // A bad request is quarantined, decided never.
    let bad = json!({"ts": at(d, "09:06:00").to_rfc3339(), "type": "gate_request",
        "worker_id": valid, "direction": "in"});
    assert_eq!(t.send(bad.to_string()).await, Outcome::Quarantined);
    assert!(t.sent.take().is_empty());

    // The rest of the day, sent late and out of order: out 13:00 (exactly 4 h after the first
    // in: a valid Jilin day), an in at 12:00, then the last second of the day, and the first
    // second of the next day, which belongs to the next day.
    t.ask("r-6", &valid, "out", at(d, "13:00:00")).await;
    t.ask("r-7", &valid, "in", at(d, "12:00:00")).await;
    t.ask("r-8", &young, "out", at(d, "23:59:59")).await;
    t.ask("r-9", &valid, "in", at(d + Days::new(1), "00:00:00"))
        .await;
    assert_eq!(t.sent.take().len(), 4);

    let lo = t.token("labour_officer");
    let p = &t.project;
    let (s, page) = t
        .get(&format!("/v1/projects/{p}/gate-decisions?date={d}"), &lo)
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let items = page["items"].as_array().unwrap();
    let ids: Vec<&str> = items
        .iter()
        .map(|i| i["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["r-1", "r-2", "r-3", "r-4", "r-5", "r-7", "r-6", "r-8"]
    );
    assert_eq!(items[1]["worker_id"], young.as_str());
    assert_eq!(items[1]["decision"], "deny");
    assert_eq!(items[1]["reasons"], json!(["under_age"]));
    assert_eq!(items[1]["direction"], "in");
    assert_eq!(
        items[1]["ts"],
        json!(at(d, "09:01:00").to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    );
    // Paged.
    let (_, first) = t
        .get(
            &format!("/v1/projects/{p}/gate-decisions?date={d}&limit=3"),
            &lo,
        )
        .await;
    assert_eq!(first["items"].as_array().unwrap().len(), 3);
    let next = first["next"].as_str().unwrap();
    let (_, rest) = t
        .get(
            &format!("/v1/projects/{p}/gate-decisions?date={d}&limit=50&cursor={next}"),
            &lo,
        )
        .await;
    assert_eq!(rest["items"][0]["request_id"], "r-4");
    let (_, next_day) = t
        .get(
            &format!("/v1/projects/{p}/gate-decisions?date={}", d + Days::new(1)),
            &lo,
        )
        .await;
    assert_eq!(next_day["items"][0]["request_id"], "r-9");
    assert_eq!(next_day["items"].as_array().unwrap().len(), 1);

    // Attendance: only allowed passes; the young worker's out was denied too (under age).
    let (s, a) = t
        .get(&format!("/v1/projects/{p}/attendance?date={d}"), &lo)
        .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    let stamp = |x: DateTime<Utc>| x.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    assert_eq!(
        a["items"],
        json!([{"worker_id": valid, "name": "张三", "team_id": t.team, "work_type": "010",
            "first_in": stamp(at(d, "09:00:00")), "last_out": stamp(at(d, "13:00:00")),
            "hours": 4.0, "punches": 3, "valid": true}])
    );
    let (_, h) = t
        .get(&format!("/v1/projects/{p}/headcount?date={d}"), &lo)
        .await;
    assert_eq!(
        h,
        json!({"date": d, "on_site_now": 0, "attended": 1,
            "by_team": {t.team.clone(): 1}, "by_work_type": {"010": 1}})
    );
    let (_, h2) = t
        .get(
            &format!("/v1/projects/{p}/headcount?date={}", d + Days::new(1)),
            &lo,
        )
        .await;
    assert_eq!(
        (h2["on_site_now"].as_u64(), h2["attended"].as_u64()),
        (Some(1), Some(1))
    );

    // A bad date names the field.
    let (s, v) = t
        .get(&format!("/v1/projects/{p}/attendance?date=2026-13-01"), &lo)
        .await;
    assert_eq!(
        (s, v["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("date"))
    );
}

/// Government supervisors read the headcount only: numbers, no names; never attendance or the
/// decisions.
async fn government_reads_headcount_only(t: T) {
    let d = day();
    let w = t
        .enrol(&resident(d - Months::new(12 * 30), "011"), "张三", |_| {})
        .await;
    t.ask("g-1", &w, "in", at(d, "08:00:00")).await;
    let directory = Directory::new(t.store.clone());
    let region = testkit::customer(&directory, &t.integrator, CustomerKind::GovRegion).await;
    let gov = t.issuer.token(
        &["gov_supervisor"],
        Some(t.integrator.as_str()),
        Some(region.as_str()),
    );
    let p = &t.project;
    let (s, h) = t
        .get(&format!("/v1/projects/{p}/headcount?date={d}"), &gov)
        .await;
    assert_eq!(s, StatusCode::OK, "{h}");
    assert_eq!(h["attended"], 1);
    assert!(!h.to_string().contains("张三"), "{h}");
    assert!(!h.to_string().contains(&w), "{h}");
    for path in ["attendance", "gate-decisions"] {
        let (s, _) = t
            .get(&format!("/v1/projects/{p}/{path}?date={d}"), &gov)
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
    }
}

on_both_stores!(
    gates_are_answered_after_the_decision_is_stored_once,
    super::T::new
);
on_both_stores!(government_reads_headcount_only, super::T::new);

//! The workforce concern through its router (`oneshot`) on both stores (the embedded store, and
//! DynamoDB on the emulator): teams, enrolment with one `worker_id` per person, the 409s, exits,
//! the list's ages and blockers, training, audited reveals, isolation between integrators, and
//! stored records free of clear numbers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;

use chrono::{Days, Months, NaiveDate};
use http::StatusCode;
use serde_json::{Value, json};
use smartsite_shared::directory::Directory;
use smartsite_shared::domain::tenancy::{CustomerId, ProjectId, Uscc};
use smartsite_shared::ids::IntegratorId;
use smartsite_shared::on_both_stores;
use smartsite_shared::store::{Key, Query, SkCond, Store};
use smartsite_shared::testkit::{self, RouterClient, StoreFixture, TestIssuer};
use smartsite_workforce::AppState;
use smartsite_workforce::domain::id_card::check_char;
use smartsite_workforce::keys;
use smartsite_workforce::service::vault::LocalKeyVault;
use smartsite_workforce::service::{Workforce, today};

/// A type-01 number born on `birth` (`YYYYMMDD`) with sequence `seq` (odd last digit: a man).
fn resident(birth: &str, seq: &str) -> String {
    let first17 = format!("220102{birth}{seq}");
    format!("{first17}{}", check_char(&first17).unwrap())
}

fn uscc(first17: &str) -> String {
    format!("{first17}{}", Uscc::check_char(first17).unwrap())
}

fn ymd(d: NaiveDate) -> String {
    d.format("%Y%m%d").to_string()
}

struct T {
    client: RouterClient,
    issuer: TestIssuer,
    directory: Directory,
    store: Arc<dyn Store>,
    integrator: IntegratorId,
    enterprise: CustomerId,
    _keys: tempfile::TempDir,
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
        let keys = tempfile::tempdir().unwrap();
        let vault = Arc::new(LocalKeyVault::new(keys.path().join(LocalKeyVault::FILE)));
        let workforce = Workforce::with_default_rules(Arc::clone(&store.store), vault).unwrap();
        let state = AppState::new(Arc::clone(&store.store), issuer.auth(), workforce);
        let directory = state.directory.clone();
        let (integrator, enterprise) = testkit::tenant(&directory, "int-wf", "吉林建工").await;
        T {
            client: RouterClient::new(smartsite_workforce::app(state)),
            issuer,
            directory,
            store: Arc::clone(&store.store),
            integrator,
            enterprise,
            _keys: keys,
            _store: store,
        }
    }

    /// A token of `role` in this integrator (customer roles: of its enterprise).
    fn token(&self, role: &str) -> String {
        let customer = (!role.starts_with("integrator_")).then(|| self.enterprise.as_str());
        self.issuer
            .token(&[role], Some(self.integrator.as_str()), customer)
    }

    async fn project(&self, name: &str) -> ProjectId {
        testkit::project(
            &self.directory,
            &self.integrator,
            &self.enterprise,
            name,
            1_000_000_000,
        )
        .await
    }

    async fn team(&self, p: &ProjectId) -> String {
        let (s, v) = self
            .post(
                &format!("/v1/projects/{p}/teams"),
                &self.token("labour_officer"),
                json!({"name": "钢筋一班", "subcontractor_name": "吉林省宏达劳务有限公司",
                    "subcontractor_uscc": uscc("91220101MA0000001")}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_str().unwrap().to_owned()
    }

    async fn enrol(&self, p: &ProjectId, body: Value) -> (StatusCode, Value) {
        self.post(
            &format!("/v1/projects/{p}/workers"),
            &self.token("labour_officer"),
            body,
        )
        .await
    }
}

/// An enrolment body: a man born 1990-01-01, entered 30 days ago, open-ended contract, no
/// certificates.
fn body(team: &str, id_number: &str, name: &str) -> Value {
    let entry = today() - Days::new(30);
    json!({"id_number": id_number, "name": name, "phone": "13812345678",
        "id_valid_until": "long_term", "work_type": "010", "work_role": "20", "team_id": team,
        "entry_date": entry,
        "contract": {"kind": "labour_contract", "start_date": entry, "day_rate_fen": 35_000}})
}

fn assert_422(res: &(StatusCode, Value), field: &str) {
    assert_eq!(res.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.1);
    assert_eq!(res.1["field"], field, "{}", res.1);
}

async fn one_person_is_one_worker_id_within_the_integrator(t: T) {
    let (p1, p2) = (t.project("一期").await, t.project("二期").await);
    let (team1, team2) = (t.team(&p1).await, t.team(&p2).await);
    let n = resident("19900101", "011");
    let (s, a) = t.enrol(&p1, body(&team1, &n, "张三")).await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    assert_eq!(a["new_person"], true);
    assert_eq!(
        a["id_number_masked"],
        format!("{}********{}", &n[..6], &n[14..])
    );
    assert_eq!(a["sex"], "male");
    assert!(!a.to_string().contains(&n), "{a}");
    assert!(!a.to_string().contains("13812345678"), "{a}");
    let w = a["worker_id"].as_str().unwrap().to_owned();
    assert!(w.starts_with("wkr-"));

    // Again while active: 409, nothing changes.
    let again = t.enrol(&p1, body(&team1, &n, "张三")).await;
    assert_eq!(again.0, StatusCode::CONFLICT, "{}", again.1);
    assert!(
        again.1["type"]
            .as_str()
            .unwrap()
            .ends_with("/already-enrolled")
    );
    // The same person in a second project keeps the worker_id (a lower-case x or not).
    let (s, b) = t.enrol(&p2, body(&team2, &n, "张三")).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(
        (b["worker_id"].as_str(), b["new_person"].as_bool()),
        (Some(w.as_str()), Some(false))
    );
    // Another person gets another id; the same number under another name is refused.
    let (s, c) = t
        .enrol(&p1, body(&team1, &resident("19900101", "022"), "李四"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    assert_ne!(c["worker_id"], a["worker_id"]);
    assert_eq!(c["sex"], "female");
    let p3 = t.project("三期").await;
    let team3 = t.team(&p3).await;
    let mismatch = t.enrol(&p3, body(&team3, &n, "王五")).await;
    assert_eq!(
        (mismatch.0, mismatch.1["field"].as_str()),
        (StatusCode::CONFLICT, Some("name")),
        "{}",
        mismatch.1
    );

    // Two enrolments of a new person at the same moment: one person, one enrolment.
    let fresh = resident("19850505", "031");
    let (r1, r2) = tokio::join!(
        t.enrol(&p3, body(&team3, &fresh, "赵六")),
        t.enrol(&p3, body(&team3, &fresh, "赵六"))
    );
    let mut statuses = [r1.0, r2.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::CREATED, StatusCode::CONFLICT],
        "{} / {}",
        r1.1,
        r2.1
    );

    // The list: both people of p1, masked, with age today and what the gate would deny.
    let items = t
        .walk(
            &format!("/v1/projects/{p1}/workers"),
            &t.token("owner_rep"),
            1,
        )
        .await;
    assert_eq!(items.len(), 2);
    let zhang = items.iter().find(|i| i["worker_id"] == w.as_str()).unwrap();
    let born = NaiveDate::from_ymd_opt(1990, 1, 1).unwrap();
    assert_eq!(
        zhang["age"],
        json!(smartsite_workforce::domain::age_on(born, today()))
    );
    assert_eq!(zhang["status"], "active");
    assert_eq!(zhang["blockers"], json!(["no_safety_training"]));
    assert!(!Value::Array(items.clone()).to_string().contains(&n[6..14]));
}

async fn bad_documents_are_refused_naming_the_field_without_echoing(t: T) {
    let p = t.project("一期").await;
    let team = t.team(&p).await;
    let good = resident("19900101", "011");
    let wrong_check = format!(
        "{}{}",
        &good[..17],
        if good.ends_with('0') { '1' } else { '0' }
    );
    for bad in [wrong_check.as_str(), &good[..17], "110105194902301234"] {
        let res = t.enrol(&p, body(&team, bad, "张三")).await;
        assert_422(&res, "id_number");
        assert!(!res.1.to_string().contains(&bad[..12]), "{}", res.1);
    }
    // A number sent as a JSON number is refused without being repeated either.
    let mut b = body(&team, &good, "张三");
    b["id_number"] = json!(220102199001010115_u64);
    let res = t.enrol(&p, b).await;
    assert_422(&res, "id_number");
    assert!(!res.1.to_string().contains("2201021990"), "{}", res.1);
    let mut b = body(&team, &good, "张三");
    b["phone"] = json!("0431-8888888");
    assert_422(&t.enrol(&p, b).await, "phone");
    // Type 01 derives birth date and sex: sending them is refused.
    let mut b = body(&team, &good, "张三");
    b["birth_date"] = json!("1990-01-01");
    assert_422(&t.enrol(&p, b).await, "birth_date");
    // Other types need them, and take the number as given.
    let mut passport = body(&team, "E12345678", "John Smith");
    passport["id_card_type"] = json!("08");
    assert_422(&t.enrol(&p, passport.clone()).await, "birth_date");
    passport["birth_date"] = json!("1988-03-04");
    assert_422(&t.enrol(&p, passport.clone()).await, "sex");
    passport["sex"] = json!("male");
    let (s, v) = t.enrol(&p, passport).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["id_number_masked"], "E12********78");
    let mut b = body(&team, &good, "张三");
    b["id_card_type"] = json!("26");
    assert_422(&t.enrol(&p, b).await, "id_card_type");
    // Fields of the enrolment itself.
    for (field, value, named) in [
        ("work_type", json!("260"), "work_type"),
        ("work_role", json!("30"), "work_role"),
        ("team_id", json!("team-0"), "team_id"),
        ("name", json!("张\u{202e}三"), "name"),
        ("entry_date", json!(today() + Days::new(1)), "entry_date"),
        ("id_valid_until", json!("someday"), "id_valid_until"),
    ] {
        let mut b = body(&team, &good, "张三");
        b[field] = value;
        assert_422(&t.enrol(&p, b).await, named);
    }
    let mut b = body(&team, &good, "张三");
    b["contract"]["end_date"] = json!("2000-01-01");
    assert_422(&t.enrol(&p, b).await, "contract.end_date");
    let mut b = body(&team, &good, "张三");
    b["certificates"] = json!([{"kind": "special_operation", "number": "JL-1", "work_type": "999", "valid_until": "2030-01-01"}]);
    assert_422(&t.enrol(&p, b).await, "certificates[0].work_type");
    // Teams: the subcontractor's USCC is checked.
    let res = t
        .post(
            &format!("/v1/projects/{p}/teams"),
            &t.token("project_manager"),
            json!({"name": "木工班", "subcontractor_name": "某劳务", "subcontractor_uscc": "91220101MA00000010"}),
        )
        .await;
    assert_422(&res, "subcontractor_uscc");
    // Nothing of the refused enrolments was stored.
    let (_, list) = t
        .get(
            &format!("/v1/projects/{p}/workers"),
            &t.token("labour_officer"),
        )
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
}

async fn exits_lie_between_entry_and_today_and_re_entry_follows(t: T) {
    let p = t.project("一期").await;
    let team = t.team(&p).await;
    let (_, a) = t
        .enrol(&p, body(&team, &resident("19900101", "011"), "张三"))
        .await;
    let w = a["worker_id"].as_str().unwrap().to_owned();
    let exit = format!("/v1/projects/{p}/workers/{w}/exit");
    let entry = today() - Days::new(30);
    let lo = t.token("labour_officer");
    assert_422(
        &t.post(&exit, &lo, json!({"date": entry - Days::new(1)}))
            .await,
        "date",
    );
    assert_422(
        &t.post(&exit, &lo, json!({"date": today() + Days::new(1)}))
            .await,
        "date",
    );
    // Roles outside the write roles are refused before anything is read.
    let (s, _) = t
        .post(&exit, &t.token("safety_officer"), json!({"date": today()}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = t
        .post(&exit, &lo, json!({"date": today() - Days::new(2)}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["status"].as_str(), v["blockers"][0].as_str()),
        (Some("exited"), Some("exited"))
    );
    let (s, v) = t.post(&exit, &lo, json!({"date": today()})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    // An unknown worker of the project: 404.
    let (s, _) = t
        .post(
            &format!("/v1/projects/{p}/workers/wkr-0/exit"),
            &lo,
            json!({"date": today()}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let list = |status: &'static str| {
        let path = format!("/v1/projects/{p}/workers?status={status}");
        let lo = lo.clone();
        let t = &t;
        async move { t.walk(&path, &lo, 10).await.len() }
    };
    assert_eq!((list("active").await, list("exited").await), (0, 1));
    assert_422(
        &t.get(&format!("/v1/projects/{p}/workers?status=gone"), &lo)
            .await,
        "status",
    );
    // Back on site: not before the last exit; then active again with the same worker_id.
    let mut back = body(&team, &resident("19900101", "011"), "张三");
    back["entry_date"] = json!(today() - Days::new(3));
    assert_422(&t.enrol(&p, back.clone()).await, "entry_date");
    back["entry_date"] = json!(today());
    let (s, v) = t.enrol(&p, back).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        (v["worker_id"].as_str(), v["status"].as_str()),
        (Some(w.as_str()), Some("active"))
    );
    assert_eq!((list("active").await, list("exited").await), (1, 0));
    let (_, worker) = t.get(&format!("/v1/workers/{w}"), &lo).await;
    assert_eq!(
        worker["enrolments"][0]["previous"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{worker}"
    );
}

async fn blockers_follow_age_training_and_certificates(t: T) {
    let p = t.project("一期").await;
    let team = t.team(&p).await;
    let lo = t.token("labour_officer");
    // 18 today versus 18 tomorrow.
    let eighteen = today().checked_sub_months(Months::new(18 * 12)).unwrap();
    let (_, adult) = t
        .enrol(&p, body(&team, &resident(&ymd(eighteen), "011"), "成年"))
        .await;
    let (_, minor) = t
        .enrol(
            &p,
            body(
                &team,
                &resident(&ymd(eighteen + Days::new(1)), "013"),
                "未成年",
            ),
        )
        .await;
    assert_eq!(adult["age"], 18, "{adult}");
    assert_eq!(adult["blockers"], json!(["no_safety_training"]));
    assert_eq!(minor["age"], 17, "{minor}");
    assert_eq!(
        minor["blockers"],
        json!(["under_age", "no_safety_training"])
    );

    // Three levels, the team level one hour short, then made up.
    let w = adult["worker_id"].as_str().unwrap();
    let training = format!("/v1/workers/{w}/training");
    for (level, hours) in [("company", 15), ("project", 15), ("team", 19)] {
        let (s, v) = t
            .post(
                &training,
                &lo,
                json!({"level": level, "hours": hours, "completed_on": today(), "passed": true}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let list = format!("/v1/projects/{p}/workers");
    let blockers = |w: String| {
        let t = &t;
        let lo = lo.clone();
        let list = list.clone();
        async move {
            let items = t.walk(&list, &lo, 50).await;
            items
                .into_iter()
                .find(|i| i["worker_id"] == w.as_str())
                .unwrap()["blockers"]
                .clone()
        }
    };
    assert_eq!(blockers(w.to_owned()).await, json!(["no_safety_training"]));
    t.post(
        &training,
        &lo,
        json!({"level": "team", "hours": 1, "completed_on": today(), "passed": true}),
    )
    .await;
    assert_eq!(blockers(w.to_owned()).await, json!([]));
    assert_422(
        &t.post(&training, &lo, json!({"level": "team", "hours": 1, "completed_on": today() + Days::new(1), "passed": true}))
            .await,
        "completed_on",
    );
    assert_422(
        &t.post(
            &training,
            &lo,
            json!({"level": "site", "hours": 1, "completed_on": today(), "passed": true}),
        )
        .await,
        "level",
    );
    let (s, _) = t
        .post(
            &training,
            &t.token("project_manager"),
            json!({"level": "team", "hours": 1, "completed_on": today(), "passed": true}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // An electrician (130, a special work type): certificate valid until today passes, until
    // yesterday is expired, none is missing; no contract is no_contract.
    let mut e = body(&team, &resident("19880808", "017"), "电工");
    e["work_type"] = json!("130");
    e["certificates"] = json!([{"kind": "special_operation", "number": "吉A042024000001", "work_type": "130", "valid_until": today()}]);
    let (_, ok) = t.enrol(&p, e.clone()).await;
    assert_eq!(ok["blockers"], json!(["no_safety_training"]), "{ok}");
    let mut e2 = body(&team, &resident("19880808", "019"), "电工二");
    e2["work_type"] = json!("130");
    e2["certificates"] = json!([{"kind": "special_operation", "number": "吉A042024000002", "work_type": "130", "valid_until": today() - Days::new(1)}]);
    e2.as_object_mut().unwrap().remove("contract");
    let (_, expired) = t.enrol(&p, e2).await;
    assert_eq!(
        expired["blockers"],
        json!(["no_contract", "certificate_expired", "no_safety_training"]),
        "{expired}"
    );
    let mut e3 = body(&team, &resident("19880808", "037"), "电工三");
    e3["work_type"] = json!("130");
    e3["id_valid_until"] = json!(today() - Days::new(1));
    let (_, missing) = t.enrol(&p, e3).await;
    assert_eq!(
        missing["blockers"],
        json!(["id_expired", "certificate_missing", "no_safety_training"]),
        "{missing}"
    );
}

async fn full_numbers_only_for_the_labour_officer_and_audited(t: T) {
    let p = t.project("一期").await;
    let team = t.team(&p).await;
    let n = resident("19900101", "011");
    let mut b = body(&team, &n, "张三");
    b["bank_card"] = json!("6222 0212 3456 7890 123");
    b["bank_name"] = json!("中国工商银行长春分行");
    let (_, a) = t.enrol(&p, b).await;
    let w = a["worker_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/workers/{w}");

    let (s, v) = t.get(&path, &t.token("project_manager")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["id_number_masked"],
        format!("{}********{}", &n[..6], &n[14..])
    );
    assert_eq!(v["phone_masked"], "138****5678");
    assert_eq!(v["bank_card_masked"], "622202********0123");
    assert_eq!(v["enrolments"][0]["project_id"], p.as_str());
    let text = v.to_string();
    assert!(
        !text.contains(&n)
            && !text.contains("13812345678")
            && !text.contains("6222021234567890123")
    );

    for role in [
        "project_manager",
        "safety_officer",
        "enterprise_admin",
        "owner_rep",
        "integrator_admin",
    ] {
        let (s, v) = t
            .get(&format!("{path}?reveal=id_number"), &t.token(role))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{role}: {v}");
        assert!(!v.to_string().contains(&n));
    }
    let lo = t.token("labour_officer");
    assert_422(
        &t.get(&format!("{path}?reveal=everything"), &lo).await,
        "reveal",
    );
    let (s, v) = t.get(&format!("{path}?reveal=id_number"), &lo).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["id_number"], n.as_str());
    assert!(v.get("phone").is_none(), "only what was asked for: {v}");
    let (_, v) = t.get(&format!("{path}?reveal=phone"), &lo).await;
    assert_eq!(
        (v["phone"].as_str(), v.get("id_number")),
        (Some("13812345678"), None)
    );

    // The audit: who, when, which worker, which number — newest first, for the integrator.
    let (s, audit) = t
        .get(
            &format!("/v1/pii-reveals?worker_id={w}"),
            &t.token("integrator_ops"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{audit}");
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{audit}");
    assert_eq!(
        (items[0]["field"].as_str(), items[1]["field"].as_str()),
        (Some("phone"), Some("id_number"))
    );
    assert_eq!(items[1]["by"], "usr-test");
    assert_eq!(items[1]["worker_id"], w.as_str());
    assert!(items[1]["at"].as_str().unwrap().ends_with('Z'));
    assert!(!audit.to_string().contains(&n));
    let (s, _) = t.get("/v1/pii-reveals", &lo).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Government supervisors have no worker routes at all.
    let (s, _) = t.get(&path, &t.token("gov_supervisor")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Another integrator sees none of it: 404 like an id that does not exist.
    let (other, other_ent) = testkit::tenant(&t.directory, "int-other", "外地建工").await;
    let foreign_lo = t.issuer.token(
        &["labour_officer"],
        Some(other.as_str()),
        Some(other_ent.as_str()),
    );
    let foreign_ia = t
        .issuer
        .token(&["integrator_admin"], Some(other.as_str()), None);
    for (token, what) in [
        (&foreign_lo, "labour officer"),
        (&foreign_ia, "integrator admin"),
    ] {
        for path in [
            format!("{path}?reveal=id_number"),
            path.clone(),
            format!("/v1/projects/{p}/workers"),
        ] {
            let (s, v) = t.get(&path, token).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{what} {path}: {v}");
        }
        let (s, _) = t
            .post(
                &format!("{path}/training"),
                token,
                json!({"level": "team", "hours": 1, "completed_on": today(), "passed": true}),
            )
            .await;
        assert!(
            s == StatusCode::NOT_FOUND || s == StatusCode::FORBIDDEN,
            "{what}: {s}"
        );
    }
    let (_, foreign_audit) = t.get("/v1/pii-reveals", &foreign_ia).await;
    assert_eq!(foreign_audit["items"], json!([]));
    // The same number enrolled by the other integrator is another worker_id there.
    let other_project =
        testkit::project(&t.directory, &other, &other_ent, "外地项目", 1_000_000).await;
    let other_team = {
        let (s, v) = t
            .post(
                &format!("/v1/projects/{other_project}/teams"),
                &foreign_ia,
                json!({"name": "班", "subcontractor_name": "劳务", "subcontractor_uscc": uscc("91220101MA0000001")}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_str().unwrap().to_owned()
    };
    let (s, v) = t
        .post(
            &format!("/v1/projects/{other_project}/workers"),
            &foreign_ia,
            body(&other_team, &n, "张三"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_ne!(v["worker_id"].as_str(), Some(w.as_str()));
    assert_eq!(v["new_person"], true);
}

/// Every item the concern wrote, read back raw from the store: no clear number anywhere, not in
/// a key and not in an attribute.
async fn stored_records_hold_no_clear_numbers(t: T) {
    let p = t.project("一期").await;
    let team = t.team(&p).await;
    let n = resident("19900101", "011");
    let mut b = body(&team, &n, "张三");
    b["bank_card"] = json!("6222021234567890123");
    let (_, a) = t.enrol(&p, b).await;
    let w = smartsite_workforce::domain::WorkerId::parse("w", a["worker_id"].as_str().unwrap())
        .unwrap();
    t.get(
        &format!("/v1/workers/{w}?reveal=id_number"),
        &t.token("labour_officer"),
    )
    .await;
    let mut items = Vec::new();
    for pk in [
        keys::project(&t.integrator, &p),
        keys::worker(&t.integrator, &w),
        keys::integrator(&t.integrator),
    ] {
        let page = t
            .store
            .query(Query::partition(&pk).sk(SkCond::Any))
            .await
            .unwrap();
        items.extend(page.items);
    }
    let person = t
        .store
        .get(&Key::new(keys::worker(&t.integrator, &w), keys::SK_PERSON))
        .await
        .unwrap()
        .unwrap();
    assert!(person.attr("pii").is_some());
    assert!(items.len() >= 6, "{} items", items.len());
    for item in &items {
        let text = format!("{item:?}");
        for secret in [
            n.as_str(),
            &n[..17],
            "13812345678",
            "6222021234567890123",
            "19900101",
        ] {
            assert!(
                !text.contains(secret),
                "{secret} stored in clear in {}",
                item.key.sk
            );
        }
    }
}

on_both_stores!(
    one_person_is_one_worker_id_within_the_integrator,
    super::T::new
);
on_both_stores!(
    bad_documents_are_refused_naming_the_field_without_echoing,
    super::T::new
);
on_both_stores!(
    exits_lie_between_entry_and_today_and_re_entry_follows,
    super::T::new
);
on_both_stores!(blockers_follow_age_training_and_certificates, super::T::new);
on_both_stores!(
    full_numbers_only_for_the_labour_officer_and_audited,
    super::T::new
);
on_both_stores!(stored_records_hold_no_clear_numbers, super::T::new);

//! The device-catalog suite: the `devices` router driven through `oneshot`, plus the catalog's
//! binding-check API, over whichever store a fixture gives. `catalog_suite!(fixture)` expands to
//! one test per case, so the same cases run against redb and against DynamoDB on the emulator.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use smartsite_devices::AppState;
use smartsite_shared::auth::{Authenticator, Claims, LocalIssuer};
use smartsite_shared::catalog::Catalog;
use smartsite_shared::directory::Directory;
use smartsite_shared::domain::devices::{
    Candidate, Category, ModelId, SerialNo, SupplierId, blocking_entry,
};
use smartsite_shared::domain::tenancy::{Customer, CustomerId, CustomerKind, RegionCode, Status};
use smartsite_shared::domain::tenancy::{Project, ProjectId, ProjectType};
use smartsite_shared::ids::IntegratorId;
use smartsite_shared::iot::local::{CredentialStatus, LocalRegistry};
use smartsite_shared::testkit::{RouterClient, StoreFixture};

pub struct T {
    client: RouterClient,
    pub issuer: Arc<LocalIssuer>,
    pub catalog: Catalog,
    pub directory: Directory,
    pub registry: Arc<LocalRegistry>,
    _store: StoreFixture,
    _keys: tempfile::TempDir,
    _ca: tempfile::TempDir,
}

#[macro_export]
macro_rules! catalog_suite {
    ($fixture:path) => {
        catalog_suite!(@cases $fixture;
            suppliers_and_models_registry,
            compliance_marks_are_per_integrator,
            blacklist_issuing_rules,
            blacklist_blocks_across_the_region_hierarchy,
            blacklist_visibility_follows_jurisdiction,
            lifting_is_recorded_and_unblocks,
            provisioning_issues_working_credentials,
            provisioning_checks_in_order,
            blacklist_blocks_provisioning_by_region,
            serial_is_unique_per_supplier,
            decommissioning_revokes_and_keeps_history,
            rotation_and_retirement,
            blacklisting_flags_bound_devices,
            binding_racing_a_blacklist_entry_never_misses_its_flag,
            fleet_and_blacklist_lists_page,
            bulk_provisioning_from_csv,
            hostile_text_is_refused_naming_the_field,
        );
    };
    (@cases $fixture:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                suite::$case(suite::T::new($fixture().await)).await;
            }
        )*
    };
}

pub const A: &str = "int-a";
pub const B: &str = "int-b";

impl std::ops::Deref for T {
    type Target = RouterClient;
    fn deref(&self) -> &RouterClient {
        &self.client
    }
}

impl T {
    pub fn new(store: StoreFixture) -> T {
        let keys = tempfile::tempdir().unwrap();
        let issuer =
            Arc::new(LocalIssuer::load_or_create(keys.path(), "test-issuer", 900).unwrap());
        let auth = Authenticator::Bearer(Arc::new(issuer.verifier().unwrap()));
        let ca = tempfile::tempdir().unwrap();
        let registry = Arc::new(LocalRegistry::open(ca.path(), Arc::clone(&store.store)).unwrap());
        let state = AppState::new(
            Arc::clone(&store.store),
            auth,
            registry.clone(),
            "mqtts://127.0.0.1:8883".into(),
        );
        let (catalog, directory) = (state.catalog.clone(), state.directory.clone());
        let (routes, doc) = smartsite_devices::routes().split_for_parts();
        let router = smartsite_devices::finish(routes, &doc, state);
        T {
            client: RouterClient::new(router),
            issuer,
            catalog,
            directory,
            registry,
            _store: store,
            _keys: keys,
            _ca: ca,
        }
    }

    /// A token for arbitrary claims, as the issuer would sign them after a login of user `sub`.
    pub fn token_of(
        &self,
        sub: &str,
        roles: &[&str],
        integrator: Option<&str>,
        customer: Option<&str>,
    ) -> String {
        let claims = Claims {
            sub: sub.into(),
            integrator_id: integrator.map(Into::into),
            customer_id: customer.map(Into::into),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        };
        self.issuer
            .issue(claims, smartsite_shared::store::now_epoch())
            .unwrap()
    }

    pub fn platform(&self) -> String {
        self.token_of("usr-platform", &["platform_admin"], None, None)
    }

    /// Integrator staff of `integrator` with `role`, signed in as `usr-{role}-{integrator}`.
    pub fn staff(&self, integrator: &str, role: &str) -> String {
        let sub = format!("usr-{}-{integrator}", role.replace('_', ""));
        self.token_of(&sub, &[role], Some(integrator), None)
    }

    /// A government customer of `integrator` governing `region`, and a supervisor's token.
    pub async fn gov(&self, integrator: &str, region: &str) -> (String, String) {
        let c = Customer {
            id: CustomerId::generate(),
            integrator_id: IntegratorId::parse(integrator).unwrap(),
            kind: CustomerKind::GovRegion,
            name: format!("{region} 住建局"),
            region_code: RegionCode::parse("region_code", region).unwrap(),
            uscc: None,
            status: Status::Active,
            created_at: "2026-01-01T00:00:00Z".into(),
            status_changed_at: None,
            status_changed_by: None,
        };
        self.directory.create_customer(&c).await.unwrap();
        let sub = format!("usr-gov-{region}");
        let token = self.token_of(
            &sub,
            &["gov_supervisor"],
            Some(integrator),
            Some(c.id.as_str()),
        );
        (c.id.to_string(), token)
    }

    /// Creates an object and returns it, asserting 201.
    pub async fn create(&self, path: &str, token: &str, body: Value) -> Value {
        let (s, v) = self.post(path, token, body).await;
        assert_eq!(s, StatusCode::CREATED, "POST {path}: {v}");
        v
    }

    pub async fn supplier(&self, token: &str, seq: u32) -> String {
        let v = self
            .create(
                "/v1/suppliers",
                token,
                json!({"name": format!("供应商{seq}"), "uscc": uscc(&format!("91430100MA{seq:07}"))}),
            )
            .await;
        v["id"].as_str().unwrap().to_owned()
    }

    pub async fn model(&self, token: &str, supplier: &str, cert: Option<&str>) -> String {
        let v = self
            .create(
                "/v1/device-models",
                token,
                json!({"supplier_id": supplier, "name": "塔机黑匣子", "category": "tower_crane",
                    "protocol": "mqtt_json", "access_cert_no": cert}),
            )
            .await;
        v["id"].as_str().unwrap().to_owned()
    }
}

pub fn uscc(first17: &str) -> String {
    format!(
        "{first17}{}",
        smartsite_shared::domain::tenancy::Uscc::check_char(first17).unwrap()
    )
}

fn ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

fn assert_422(res: &(StatusCode, Value), field: &str) {
    assert_eq!(res.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.1);
    assert_eq!(res.1["field"], field, "{}", res.1);
    assert_eq!(res.1["type"], "https://smartsite.dev/problems/validation");
}

fn region(s: &str) -> RegionCode {
    RegionCode::parse("region", s).unwrap()
}

pub async fn suppliers_and_models_registry(t: T) {
    let a_admin = t.staff(A, "integrator_admin");
    let b_ops = t.staff(B, "integrator_ops");
    let (_, gov) = t.gov(A, "220100").await;
    let enterprise = t.token_of("usr-e", &["enterprise_admin"], Some(A), Some("cus-1"));

    let body = json!({"name": " 智塔科技 ", "uscc": uscc("91430100MA0000001").to_lowercase()});
    let sup = t.create("/v1/suppliers", &a_admin, body.clone()).await;
    let sup_id = sup["id"].as_str().unwrap().to_owned();
    assert!(sup_id.starts_with("sup-"));
    assert_eq!(sup["name"], "智塔科技");
    assert_eq!(sup["uscc"], uscc("91430100MA0000001"), "USCC upper-cased");
    assert_eq!(sup["created_by"], "usr-integratoradmin-int-a");
    assert!(sup["created_at"].as_str().unwrap().ends_with('Z'));

    // Suppliers are platform-wide and unique by USCC: another integrator registering the same
    // manufacturer is told which supplier it already is.
    let (s, v) = t.post("/v1/suppliers", &b_ops, body).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["detail"].as_str().unwrap().contains(&sup_id), "{v}");
    for reader in [&b_ops, &gov, &t.platform()] {
        let (s, v) = t.get(&format!("/v1/suppliers/{sup_id}"), reader).await;
        assert_eq!(
            (s, v["id"].as_str()),
            (StatusCode::OK, Some(sup_id.as_str()))
        );
        let (_, list) = t.get("/v1/suppliers", reader).await;
        assert_eq!(ids(&list), vec![sup_id.clone()]);
    }
    assert_eq!(
        t.get(&format!("/v1/suppliers/{sup_id}"), &enterprise)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        t.get("/v1/suppliers/sup-00000000000000000000000000000000", &b_ops)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        t.post(
            "/v1/suppliers",
            &gov,
            json!({"name": "x", "uscc": uscc("91430100MA0000002")})
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_422(
        &t.post(
            "/v1/suppliers",
            &a_admin,
            json!({"name": "x", "uscc": "91430100MA00000010"}),
        )
        .await,
        "uscc",
    );
    assert_422(
        &t.post(
            "/v1/suppliers",
            &a_admin,
            json!({"name": " ", "uscc": uscc("91430100MA0000003")}),
        )
        .await,
        "name",
    );

    // Models.
    let other_sup = t.supplier(&t.platform(), 4).await;
    let model = |supplier: &str, category: &str, protocol: &str| {
        json!({"supplier_id": supplier, "name": "扬尘监测仪", "category": category,
            "protocol": protocol, "access_cert_no": "JL-JR-2026-0001"})
    };
    let m = t
        .create(
            "/v1/device-models",
            &a_admin,
            model(&sup_id, "dust_noise", "hj212"),
        )
        .await;
    let m_id = m["id"].as_str().unwrap().to_owned();
    assert!(m_id.starts_with("mdl-"));
    assert_eq!(
        (
            &m["supplier_id"],
            &m["category"],
            &m["protocol"],
            &m["access_cert_no"]
        ),
        (
            &json!(sup_id),
            &json!("dust_noise"),
            &json!("hj212"),
            &json!("JL-JR-2026-0001")
        )
    );
    assert_eq!(m["compliant_for_you"], false);
    // Who registered a shared entry is the registering integrator's business (and the
    // platform's): another integrator's users see `null`, never a foreign user id.
    let m_path = format!("/v1/device-models/{m_id}");
    let sup_path = format!("/v1/suppliers/{sup_id}");
    for (reader, sees) in [(&a_admin, true), (&t.platform(), true), (&b_ops, false)] {
        for path in [&sup_path, &m_path] {
            let (s, v) = t.get(path, reader).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            let want = if sees {
                json!("usr-integratoradmin-int-a")
            } else {
                Value::Null
            };
            assert_eq!(v["created_by"], want, "{path}: {v}");
            assert!(v.get("created_by_integrator_id").is_none(), "{v}");
        }
        for list in ["/v1/suppliers", "/v1/device-models"] {
            let (_, v) = t.get(list, reader).await;
            for item in v["items"].as_array().unwrap() {
                if item["id"] == json!(sup_id) || item["id"] == json!(m_id) {
                    let want = if sees {
                        json!("usr-integratoradmin-int-a")
                    } else {
                        Value::Null
                    };
                    assert_eq!(item["created_by"], want, "{list}: {item}");
                }
                assert!(item.get("created_by_integrator_id").is_none(), "{item}");
            }
        }
    }
    let m2 = t.model(&b_ops, &other_sup, None).await;
    assert_422(
        &t.post(
            "/v1/device-models",
            &a_admin,
            model(&sup_id, "crane", "mqtt_json"),
        )
        .await,
        "category",
    );
    assert_422(
        &t.post(
            "/v1/device-models",
            &a_admin,
            model(
                "sup-00000000000000000000000000000000",
                "camera",
                "mqtt_json",
            ),
        )
        .await,
        "supplier_id",
    );
    assert_422(
        &t.post(
            "/v1/device-models",
            &a_admin,
            model("mdl-1", "camera", "mqtt_json"),
        )
        .await,
        "supplier_id",
    );
    assert_422(
        &t.post(
            "/v1/device-models",
            &a_admin,
            model(&sup_id, "tower_crane", "hj212"),
        )
        .await,
        "protocol",
    );
    assert_eq!(
        t.post(
            "/v1/device-models",
            &enterprise,
            model(&sup_id, "camera", "mqtt_json")
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );

    let (_, all) = t.get("/v1/device-models", &gov).await;
    let mut all = ids(&all);
    all.sort();
    let mut want = vec![m_id.clone(), m2.clone()];
    want.sort();
    assert_eq!(all, want);
    let (_, one) = t
        .get(&format!("/v1/device-models?supplier_id={sup_id}"), &gov)
        .await;
    assert_eq!(ids(&one), vec![m_id.clone()]);
    assert!(one["items"][0].get("compliant_for_you").is_none(), "{one}");
    let (_, none) = t
        .get(
            "/v1/device-models?supplier_id=sup-00000000000000000000000000000000",
            &gov,
        )
        .await;
    assert!(ids(&none).is_empty());
    assert_422(
        &t.get("/v1/device-models?supplier_id=bad", &gov).await,
        "supplier_id",
    );
    let (s, v) = t.get(&format!("/v1/device-models/{m2}"), &a_admin).await;
    assert_eq!((s, &v["access_cert_no"]), (StatusCode::OK, &Value::Null));
    assert_eq!(
        t.get(
            "/v1/device-models/mdl-00000000000000000000000000000000",
            &gov
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
}

pub async fn compliance_marks_are_per_integrator(t: T) {
    let a_admin = t.staff(A, "integrator_admin");
    let b_admin = t.staff(B, "integrator_admin");
    let (_, gov) = t.gov(A, "220100").await;
    let sup = t.supplier(&a_admin, 1).await;
    let uncertified = t.model(&a_admin, &sup, None).await;
    let certified = t.model(&a_admin, &sup, Some("JL-JR-2026-0002")).await;
    let (a, b) = (
        IntegratorId::parse(A).unwrap(),
        IntegratorId::parse(B).unwrap(),
    );
    let mid = |s: &str| ModelId::parse("id", s).unwrap();

    // A certificate suffices everywhere; without one, nobody may provision until marked.
    for i in [&a, &b] {
        assert!(
            t.catalog
                .may_provision_model(i, &mid(&certified))
                .await
                .unwrap()
        );
        assert!(
            !t.catalog
                .may_provision_model(i, &mid(&uncertified))
                .await
                .unwrap()
        );
    }
    assert!(
        !t.catalog
            .may_provision_model(&a, &mid("mdl-00000000000000000000000000000000"))
            .await
            .unwrap()
    );

    let path = format!("/v1/device-models/{uncertified}/compliance");
    for not_admin in [t.staff(A, "integrator_ops"), gov.clone(), t.platform()] {
        let (s, v) = t.post(&path, &not_admin, json!({"note": "x"})).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    }
    assert_422(&t.post(&path, &a_admin, json!({"note": ""})).await, "note");
    let (s, mark) = t
        .post(&path, &a_admin, json!({"note": "检测报告 2026-031 已核验"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{mark}");
    assert_eq!(mark["model_id"], uncertified.as_str());
    assert_eq!(mark["integrator_id"], A);
    assert_eq!(mark["marked_by"], "usr-integratoradmin-int-a");
    assert_eq!(mark["note"], "检测报告 2026-031 已核验");
    assert!(mark["marked_at"].as_str().unwrap().ends_with('Z'));
    // Marking again answers the first record unchanged.
    let (s, again) = t.post(&path, &a_admin, json!({"note": "second"})).await;
    assert_eq!((s, &again), (StatusCode::OK, &mark));

    assert!(
        t.catalog
            .may_provision_model(&a, &mid(&uncertified))
            .await
            .unwrap()
    );
    assert!(
        !t.catalog
            .may_provision_model(&b, &mid(&uncertified))
            .await
            .unwrap(),
        "A's mark is not B's"
    );
    let stored = t
        .catalog
        .compliance(&a, &mid(&uncertified))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.marked_by, "usr-integratoradmin-int-a");
    assert!(
        t.catalog
            .compliance(&b, &mid(&uncertified))
            .await
            .unwrap()
            .is_none()
    );

    let model_path = format!("/v1/device-models/{uncertified}");
    assert_eq!(
        t.get(&model_path, &a_admin).await.1["compliant_for_you"],
        true
    );
    assert_eq!(
        t.get(&model_path, &t.staff(A, "integrator_ops")).await.1["compliant_for_you"],
        true
    );
    assert_eq!(
        t.get(&model_path, &b_admin).await.1["compliant_for_you"],
        false
    );
    assert!(
        t.get(&model_path, &gov)
            .await
            .1
            .get("compliant_for_you")
            .is_none()
    );
    let (_, list) = t
        .get(&format!("/v1/device-models?supplier_id={sup}"), &b_admin)
        .await;
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["compliant_for_you"] == false),
        "{list}"
    );
    assert_eq!(
        t.post(
            "/v1/device-models/mdl-00000000000000000000000000000000/compliance",
            &a_admin,
            json!({"note": "x"})
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
}

fn entry_body(scope: &str, target: &str, region: &str) -> Value {
    json!({"scope": scope, "target_id": target, "region_code": region, "reason": "数据造假"})
}

pub async fn blacklist_issuing_rules(t: T) {
    let a_admin = t.staff(A, "integrator_admin");
    let (gov_id, gov) = t.gov(A, "220100").await;
    let sup = t.supplier(&a_admin, 1).await;
    let model = t.model(&a_admin, &sup, None).await;

    for inside in ["220100", "220102"] {
        let e = t
            .create("/v1/blacklist", &gov, entry_body("supplier", &sup, inside))
            .await;
        assert!(e["id"].as_str().unwrap().starts_with("blk-"));
        assert_eq!(
            (&e["scope"], &e["target_id"], &e["region_code"]),
            (&json!("supplier"), &json!(sup), &json!(inside))
        );
        assert_eq!(e["issued_by"], "usr-gov-220100");
        assert_eq!(e["issued_by_customer_id"], gov_id.as_str());
        assert_eq!(e["issued_by_integrator_id"], A);
        assert_eq!(e["lifted"], Value::Null);
    }
    // Outside its jurisdiction, including the province above it.
    for outside in ["220200", "220000"] {
        assert_422(
            &t.post("/v1/blacklist", &gov, entry_body("supplier", &sup, outside))
                .await,
            "region_code",
        );
    }
    // Integrator staff may not issue.
    for staff in [a_admin.clone(), t.staff(A, "integrator_ops")] {
        let (s, v) = t
            .post(
                "/v1/blacklist",
                &staff,
                entry_body("supplier", &sup, "220100"),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    }
    // The platform administrator issues anywhere, as nobody's customer.
    let e = t
        .create(
            "/v1/blacklist",
            &t.platform(),
            entry_body("model", &model, "440300"),
        )
        .await;
    assert_eq!(e["issued_by_customer_id"], Value::Null);
    assert_eq!(e["issued_by"], "usr-platform");
    // Targets: supplier and model must exist; a device is a serial number.
    assert_422(
        &t.post(
            "/v1/blacklist",
            &gov,
            entry_body("model", "mdl-00000000000000000000000000000000", "220100"),
        )
        .await,
        "target_id",
    );
    assert_422(
        &t.post(
            "/v1/blacklist",
            &gov,
            entry_body("supplier", &model, "220100"),
        )
        .await,
        "target_id",
    );
    assert_422(
        &t.post(
            "/v1/blacklist",
            &gov,
            entry_body("device", "SN#1", "220100"),
        )
        .await,
        "target_id",
    );
    assert_422(
        &t.post("/v1/blacklist", &gov, entry_body("vendor", &sup, "220100"))
            .await,
        "scope",
    );
    assert_422(
        &t.post("/v1/blacklist", &gov, entry_body("device", "SN-1", "2201"))
            .await,
        "region_code",
    );
    let d = t
        .create(
            "/v1/blacklist",
            &gov,
            entry_body("device", " zt-2024-0001 ", "220100"),
        )
        .await;
    assert_eq!(d["target_id"], "ZT-2024-0001");
}

pub async fn blacklist_blocks_across_the_region_hierarchy(t: T) {
    let a_admin = t.staff(A, "integrator_admin");
    let (_, gov) = t.gov(A, "220100").await;
    let (_, province) = t.gov(B, "220000").await;
    let sup = t.supplier(&a_admin, 1).await;
    let clean_sup = t.supplier(&a_admin, 2).await;
    let model = t.model(&a_admin, &sup, Some("C-1")).await;
    let clean_model = t.model(&a_admin, &clean_sup, Some("C-2")).await;

    let by_supplier = t
        .create(
            "/v1/blacklist",
            &gov,
            entry_body("supplier", &sup, "220100"),
        )
        .await;
    let by_serial = t
        .create(
            "/v1/blacklist",
            &province,
            entry_body("device", "SN-9", "220000"),
        )
        .await;
    let sid = |s: &str| SupplierId::parse("s", s).unwrap();
    let mid = |s: &str| ModelId::parse("m", s).unwrap();
    let serial = |s: &str| SerialNo::parse("n", s).unwrap();

    let bans = t
        .catalog
        .active_bans_for(&sid(&sup), &mid(&model), &serial("SN-1"))
        .await
        .unwrap()
        .0;
    assert_eq!(bans.len(), 1, "{bans:?}");
    let cand = |region: &RegionCode, s: &str, m: &str, n: &'static str| {
        (s.to_owned(), m.to_owned(), n, region.clone())
    };
    let blocked = |c: (String, String, &str, RegionCode), bans: &[_]| {
        blocking_entry(
            &Candidate {
                supplier_id: &c.0,
                model_id: &c.1,
                serial_no: c.2,
                project_region: &c.3,
            },
            bans,
        )
        .map(|b| b.id.clone())
    };
    // A Changchun (220100) entry blocks a Chaoyang (220102) project, not a Jilin City one.
    assert_eq!(
        blocked(cand(&region("220102"), &sup, &model, "SN-1"), &bans),
        Some(by_supplier["id"].as_str().unwrap().to_owned())
    );
    assert_eq!(
        blocked(cand(&region("220201"), &sup, &model, "SN-1"), &bans),
        None
    );
    // A province-wide device entry is found by serial (case-folded) and blocks anywhere in 22.
    let bans = t
        .catalog
        .active_bans_for(&sid(&clean_sup), &mid(&clean_model), &serial("sn-9"))
        .await
        .unwrap()
        .0;
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!(
        blocked(
            cand(&region("220201"), &clean_sup, &clean_model, "SN-9"),
            &bans
        ),
        Some(by_serial["id"].as_str().unwrap().to_owned())
    );
    assert_eq!(
        blocked(
            cand(&region("440300"), &clean_sup, &clean_model, "SN-9"),
            &bans
        ),
        None
    );
    // Nothing names a clean supplier, model and serial.
    assert!(
        t.catalog
            .active_bans_for(&sid(&clean_sup), &mid(&clean_model), &serial("SN-1"))
            .await
            .unwrap()
            .0
            .is_empty()
    );
    // A model entry is found through the model.
    let by_model = t
        .create(
            "/v1/blacklist",
            &gov,
            entry_body("model", &clean_model, "220102"),
        )
        .await;
    let bans = t
        .catalog
        .active_bans_for(&sid(&clean_sup), &mid(&clean_model), &serial("SN-1"))
        .await
        .unwrap()
        .0;
    assert_eq!(
        blocked(
            cand(&region("220102"), &clean_sup, &clean_model, "SN-1"),
            &bans
        ),
        Some(by_model["id"].as_str().unwrap().to_owned())
    );
    assert_eq!(
        blocked(
            cand(&region("220104"), &clean_sup, &clean_model, "SN-1"),
            &bans
        ),
        None
    );
}

pub async fn blacklist_visibility_follows_jurisdiction(t: T) {
    let a_admin = t.staff(A, "integrator_admin");
    let b_admin = t.staff(B, "integrator_admin");
    let (gov_id, gov) = t.gov(A, "220100").await;
    let (_, b_city) = t.gov(B, "220200").await;
    let (_, b_province) = t.gov(B, "220000").await;
    let (_, b_district) = t.gov(B, "220102").await;
    let sup = t.supplier(&a_admin, 1).await;
    let e = t
        .create(
            "/v1/blacklist",
            &gov,
            entry_body("supplier", &sup, "220100"),
        )
        .await;
    let id = e["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/blacklist/{id}");

    // Jurisdictions that overlap 220100 (above it, below it, itself) see it; 220200 does not.
    for (who, token, sees) in [
        ("A's city", &gov, true),
        ("B's province", &b_province, true),
        ("B's district", &b_district, true),
        ("B's other city", &b_city, false),
    ] {
        let (s, v) = t.get(&path, token).await;
        assert_eq!(s == StatusCode::OK, sees, "{who}: {s} {v}");
        if !sees {
            assert_eq!(s, StatusCode::NOT_FOUND, "{who}");
        }
        let (_, list) = t.get("/v1/blacklist", token).await;
        assert_eq!(ids(&list).contains(&id), sees, "{who}: {list}");
    }
    // Every integrator sees every entry; only the issuing integrator sees who issued it.
    let (_, own) = t.get(&path, &a_admin).await;
    assert_eq!(own["issued_by_customer_id"], gov_id.as_str());
    let (s, foreign) = t.get(&path, &b_admin).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(foreign["issued_by_customer_id"], Value::Null);
    assert_eq!(foreign["issued_by_integrator_id"], Value::Null);
    assert!(!foreign.to_string().contains(&gov_id), "{foreign}");
    let (_, list) = t.get("/v1/blacklist", &b_province).await;
    assert!(!list.to_string().contains(&gov_id), "{list}");
    let (_, list) = t.get("/v1/blacklist", &t.platform()).await;
    assert_eq!(list["items"][0]["issued_by_customer_id"], gov_id.as_str());
    // Enterprise users have no business with it.
    let enterprise = t.token_of("usr-e", &["enterprise_admin"], Some(A), Some("cus-1"));
    assert_eq!(t.get(&path, &enterprise).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        t.get(
            "/v1/blacklist/blk-00000000000000000000000000000000",
            &a_admin
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
}

pub async fn lifting_is_recorded_and_unblocks(t: T) {
    let a_admin = t.staff(A, "integrator_admin");
    let (_, gov) = t.gov(A, "220100").await;
    let (_, b_province) = t.gov(B, "220000").await;
    let (_, b_city) = t.gov(B, "220200").await;
    let sup = t.supplier(&a_admin, 1).await;
    let model = t.model(&a_admin, &sup, Some("C-1")).await;
    let e = t
        .create(
            "/v1/blacklist",
            &gov,
            entry_body("supplier", &sup, "220100"),
        )
        .await;
    let id = e["id"].as_str().unwrap().to_owned();
    let other = t
        .create(
            "/v1/blacklist",
            &t.platform(),
            entry_body("model", &model, "220000"),
        )
        .await;
    let other_id = other["id"].as_str().unwrap().to_owned();
    let lift = format!("/v1/blacklist/{id}/lift");
    let reason = json!({"reason": "整改完成"});

    // Only the issuing authority (or the platform administrator) lifts; strangers see nothing.
    assert_eq!(
        t.post(&lift, &b_province, reason.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        t.post(&lift, &a_admin, reason.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        t.post(&lift, &b_city, reason.clone()).await.0,
        StatusCode::NOT_FOUND
    );
    assert_422(&t.post(&lift, &gov, json!({"reason": ""})).await, "reason");
    // A role that may never lift gets the same answer for a real entry and a made-up one (no
    // existence oracle), and nothing about its body.
    let fake = "/v1/blacklist/blk-00000000000000000000000000000000/lift";
    for path in [lift.as_str(), fake, "/v1/blacklist/nonsense/lift"] {
        let (s, v) = t.post(path, &a_admin, json!({"reason": 42})).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}: {v}");
        assert_eq!(v["type"], "https://smartsite.dev/problems/forbidden", "{v}");
    }

    let (s, lifted) = t.post(&lift, &gov, reason.clone()).await;
    assert_eq!(s, StatusCode::OK, "{lifted}");
    assert_eq!(lifted["lifted"]["by"], "usr-gov-220100");
    assert_eq!(lifted["lifted"]["reason"], "整改完成");
    assert!(lifted["lifted"]["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        lifted["issued_at"], e["issued_at"],
        "the issue record stays"
    );

    // Recorded, never deleted: still listed and readable; `?active=` filters.
    let (_, got) = t.get(&format!("/v1/blacklist/{id}"), &a_admin).await;
    assert_eq!(got["lifted"], lifted["lifted"]);
    let (_, all) = t.get("/v1/blacklist", &a_admin).await;
    let mut all = ids(&all);
    all.sort();
    let mut want = vec![id.clone(), other_id.clone()];
    want.sort();
    assert_eq!(all, want);
    let (_, active) = t.get("/v1/blacklist?active=true", &a_admin).await;
    assert_eq!(ids(&active), vec![other_id.clone()]);
    let (_, inactive) = t.get("/v1/blacklist?active=false", &gov).await;
    assert_eq!(ids(&inactive), vec![id.clone()]);

    // Twice: 409, for the issuer and the platform administrator alike.
    for who in [&gov, &t.platform()] {
        let (s, v) = t.post(&lift, who, reason.clone()).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
    }
    // The store refuses a second lift even when the caller raced past the check.
    let mut again = t
        .catalog
        .blacklist_entry(&smartsite_shared::domain::devices::BlacklistId::parse("id", &id).unwrap())
        .await
        .unwrap()
        .unwrap();
    again.lifted.as_mut().unwrap().reason = "again".into();
    assert!(matches!(
        t.catalog.lift_blacklist(&again).await,
        Err(smartsite_shared::catalog::CatalogError::AlreadyLifted)
    ));

    // A lifted entry no longer blocks; the platform administrator lifts anyone's entry.
    let sid = SupplierId::parse("s", &sup).unwrap();
    let mid = ModelId::parse("m", &model).unwrap();
    let sn = SerialNo::parse("n", "SN-1").unwrap();
    let bans = t.catalog.active_bans_for(&sid, &mid, &sn).await.unwrap().0;
    assert_eq!(
        bans.iter().map(|b| b.id.clone()).collect::<Vec<_>>(),
        vec![other_id.clone()]
    );
    let (s, _) = t
        .post(
            &format!("/v1/blacklist/{other_id}/lift"),
            &t.platform(),
            reason,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        t.catalog
            .active_bans_for(&sid, &mid, &sn)
            .await
            .unwrap()
            .0
            .is_empty()
    );
    let r = region("220102");
    let none: Vec<_> = Vec::new();
    assert!(
        blocking_entry(
            &Candidate {
                supplier_id: &sup,
                model_id: &model,
                serial_no: "SN-1",
                project_region: &r,
            },
            &none
        )
        .is_none()
    );
}

// ---- devices bound to projects

impl T {
    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// A project of `integrator` in `region`, contracted by a fresh enterprise customer; returns
    /// the project id and the enterprise id.
    pub async fn project(&self, integrator: &str, region: &str) -> (String, String) {
        let i = IntegratorId::parse(integrator).unwrap();
        let c = Customer {
            id: CustomerId::generate(),
            integrator_id: i.clone(),
            kind: CustomerKind::Enterprise,
            name: "建工集团".into(),
            region_code: RegionCode::parse("region_code", region).unwrap(),
            uscc: None,
            status: Status::Active,
            created_at: "2026-01-01T00:00:00Z".into(),
            status_changed_at: None,
            status_changed_by: None,
        };
        self.directory.create_customer(&c).await.unwrap();
        let date = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let p = Project {
            id: ProjectId::generate(),
            integrator_id: i,
            name: "住宅一期".into(),
            contractor_customer_id: c.id.clone(),
            owner_customer_id: None,
            region_code: RegionCode::parse("region_code", region).unwrap(),
            project_type: ProjectType::Building,
            contract_value_fen: 12_000_000_000,
            contract_signed_date: date("2026-03-01"),
            tender_completed_date: None,
            start_date: None,
            planned_end_date: None,
            created_at: "2026-03-01T00:00:00Z".into(),
        };
        self.directory.create_project(&p).await.unwrap();
        (p.id.to_string(), c.id.to_string())
    }
}

impl T {
    /// Integrator A's ops staff, a Changchun (220100) government, a supplier with a certified
    /// model, and the devices path of a Chaoyang (220102) project of A.
    pub async fn scene(&self) -> (String, String, String, String, String) {
        let a_ops = self.staff(A, "integrator_ops");
        let (prj, _) = self.project(A, "220102").await;
        let (_, gov) = self.gov(A, "220100").await;
        let sup = self.supplier(&a_ops, 1).await;
        let model = self.model(&a_ops, &sup, Some("C-1")).await;
        let path = format!("/v1/projects/{prj}/devices");
        (a_ops, gov, sup, model, path)
    }

    /// Provisions a crane of `model` with `serial` under `path`; answers its id.
    pub async fn crane(&self, path: &str, token: &str, model: &str, serial: &str) -> String {
        self.create(path, token, crane(model, serial)).await["device_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

fn crane(model: &str, serial: &str) -> Value {
    json!({"model_id": model, "serial_no": serial, "category": "tower_crane",
        "rated_load_t": 8.0, "rated_moment_tm": 125.0})
}

fn assert_no_credentials(v: &Value) {
    let s = v.to_string();
    for k in [
        "private_key_pem",
        "device_token",
        "certificate_pem",
        "PRIVATE KEY",
    ] {
        assert!(!s.contains(k), "{k} leaked: {v}");
    }
}

pub async fn provisioning_issues_working_credentials(t: T) {
    let a_ops = t.staff(A, "integrator_ops");
    let (prj, ent) = t.project(A, "220102").await;
    let sup = t.supplier(&a_ops, 1).await;
    let model = t.model(&a_ops, &sup, Some("JL-2026-001")).await;
    let v = t
        .create(
            &format!("/v1/projects/{prj}/devices"),
            &a_ops,
            crane(&model, "tc-0001"),
        )
        .await;
    let dev = v["device_id"].as_str().unwrap().to_owned();
    assert!(dev.starts_with("dev-"), "{v}");
    assert_eq!(v["mqtt_endpoint"], "mqtts://127.0.0.1:8883");
    assert!(v["ca_pem"].as_str().unwrap().contains("BEGIN CERTIFICATE"));
    assert!(
        v["private_key_pem"]
            .as_str()
            .unwrap()
            .contains("PRIVATE KEY")
    );
    for kind in ["telemetry", "events", "cmd"] {
        assert_eq!(
            v["topics"][kind],
            format!("ss/{A}/{prj}/{dev}/{kind}"),
            "{v}"
        );
    }
    let info = t
        .registry
        .ca()
        .verify_chain(v["certificate_pem"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        (
            info.integrator_id.as_str(),
            info.project_id.as_str(),
            info.device_id.as_str()
        ),
        (A, prj.as_str(), dev.as_str())
    );
    assert_eq!(info.fingerprint, v["certificate_id"].as_str().unwrap());
    let a = IntegratorId::parse(A).unwrap();
    let token = v["device_token"].as_str().unwrap();
    assert!(
        t.registry
            .authenticate_token(&a, &dev, token)
            .await
            .unwrap()
    );
    assert!(
        !t.registry
            .authenticate_token(&a, &dev, "nope")
            .await
            .unwrap()
    );

    // Reads never show credentials; anyone who may see the project reads the device.
    let pm = t.token_of("usr-pm", &["project_manager"], Some(A), Some(&ent));
    for reader in [&a_ops, &pm, &t.platform()] {
        let (s, d) = t.get(&format!("/v1/devices/{dev}"), reader).await;
        assert_eq!(s, StatusCode::OK, "{d}");
        assert_eq!(d["status"], "active");
        assert_eq!(d["untrusted"], false);
        assert_eq!(d["flags"], json!([]));
        assert_eq!(d["serial_no"], "TC-0001");
        assert_eq!(d["config"]["rated_load_t"], 8.0);
        assert_no_credentials(&d);
        let (s, l) = t.get(&format!("/v1/projects/{prj}/devices"), reader).await;
        assert_eq!(s, StatusCode::OK, "{l}");
        assert_eq!(ids(&l), vec![dev.clone()]);
        assert_no_credentials(&l);
    }
    // Another integrator: as if it did not exist. A project user may not provision (403).
    let b_admin = t.staff(B, "integrator_admin");
    assert_eq!(
        t.get(&format!("/v1/devices/{dev}"), &b_admin).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        t.post(
            &format!("/v1/projects/{prj}/devices"),
            &b_admin,
            crane(&model, "X-1")
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        t.post(
            &format!("/v1/projects/{prj}/devices"),
            &pm,
            crane(&model, "X-1")
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        t.get("/v1/devices/dev-00000000000000000000000000000000", &a_ops)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

pub async fn provisioning_checks_in_order(t: T) {
    let a_admin = t.staff(A, "integrator_admin");
    let (prj, _) = t.project(A, "220102").await;
    let path = format!("/v1/projects/{prj}/devices");
    let sup = t.supplier(&a_admin, 1).await;
    let uncertified = t.model(&a_admin, &sup, None).await;

    assert_422(
        &t.post(
            &path,
            &a_admin,
            crane("mdl-00000000000000000000000000000000", "S-1"),
        )
        .await,
        "model_id",
    );
    let mut wrong = crane(&uncertified, "S-1");
    wrong["category"] = json!("hoist");
    assert_422(&t.post(&path, &a_admin, wrong).await, "category");
    let mut bad = crane(&uncertified, "S-1");
    bad["rated_moment_tm"] = json!(1.0e9);
    assert_422(&t.post(&path, &a_admin, bad).await, "rated_moment_tm");
    let mut no_load = crane(&uncertified, "S-1");
    no_load.as_object_mut().unwrap().remove("rated_load_t");
    assert_422(&t.post(&path, &a_admin, no_load).await, "rated_load_t");
    let mut mn = crane(&uncertified, "S-1");
    mn["mn"] = json!("010000A8900016F000169DC0");
    assert_422(&t.post(&path, &a_admin, mn).await, "mn");

    // No access certificate: refused until the integrator marks the model compliant.
    let res = t.post(&path, &a_admin, crane(&uncertified, "S-1")).await;
    assert_422(&res, "model_id");
    assert!(
        res.1["detail"].as_str().unwrap().contains("接入标准"),
        "{}",
        res.1
    );
    t.post(
        &format!("/v1/device-models/{uncertified}/compliance"),
        &a_admin,
        json!({"note": "自检合格"}),
    )
    .await;
    let v = t.create(&path, &a_admin, crane(&uncertified, "S-1")).await;
    assert!(v.get("warnings").is_none(), "{v}");

    // Dust monitors carry an MN; a non-standard one is accepted with a warning.
    let dust = t
        .create(
            "/v1/device-models",
            &a_admin,
            json!({"supplier_id": sup, "name": "扬尘监测仪", "category": "dust_noise",
                "protocol": "hj212", "access_cert_no": "HJ-1"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cfg = Category::DustNoise
        .config_fields()
        .iter()
        .filter(|f| f.required)
        .map(|f| (f.name.to_owned(), json!(f.min)))
        .collect::<serde_json::Map<_, _>>();
    let mut body =
        json!({"model_id": dust, "serial_no": "D-1", "category": "dust_noise", "mn": "ABC123"});
    body.as_object_mut().unwrap().extend(cfg);
    let v = t.create(&path, &a_admin, body).await;
    assert_eq!(v["warnings"].as_array().map(Vec::len), Some(1), "{v}");
    let (_, d) = t
        .get(
            &format!("/v1/devices/{}", v["device_id"].as_str().unwrap()),
            &a_admin,
        )
        .await;
    assert_eq!(d["mn"], "ABC123");
}

pub async fn blacklist_blocks_provisioning_by_region(t: T) {
    let a_admin = t.staff(A, "integrator_admin");
    let (prj, _) = t.project(A, "220102").await;
    let path = format!("/v1/projects/{prj}/devices");
    let (_, province) = t.gov(A, "220000").await;
    let (_, jilin_city) = t.gov(A, "220200").await;
    let sup = t.supplier(&a_admin, 1).await;
    let model = t.model(&a_admin, &sup, Some("C-1")).await;

    // An entry for another city does not block.
    t.create(
        "/v1/blacklist",
        &jilin_city,
        entry_body("supplier", &sup, "220200"),
    )
    .await;
    t.create(&path, &a_admin, crane(&model, "S-1")).await;
    // The province's entry covers the project's district.
    let e = t
        .create(
            "/v1/blacklist",
            &province,
            entry_body("supplier", &sup, "220000"),
        )
        .await;
    let entry = e["id"].as_str().unwrap();
    let (s, v) = t.post(&path, &a_admin, crane(&model, "S-2")).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["type"], "https://smartsite.dev/problems/blacklisted");
    assert_eq!(v["blacklist_entry_id"], entry);
    assert!(v["detail"].as_str().unwrap().contains(entry), "{v}");
}

pub async fn serial_is_unique_per_supplier(t: T) {
    let a_admin = t.staff(A, "integrator_admin");
    let b_admin = t.staff(B, "integrator_admin");
    let (p1, _) = t.project(A, "220102").await;
    let (p2, _) = t.project(A, "220102").await;
    let (pb, _) = t.project(B, "220102").await;
    let sup = t.supplier(&a_admin, 1).await;
    let other_sup = t.supplier(&a_admin, 2).await;
    let model = t.model(&a_admin, &sup, Some("C-1")).await;
    let other_model = t.model(&a_admin, &other_sup, Some("C-2")).await;
    let v = t
        .create(
            &format!("/v1/projects/{p1}/devices"),
            &a_admin,
            crane(&model, "S-1"),
        )
        .await;
    let dev = v["device_id"].as_str().unwrap();
    for prj in [&p1, &p2] {
        let (s, v) = t
            .post(
                &format!("/v1/projects/{prj}/devices"),
                &a_admin,
                crane(&model, "s-1"),
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert!(v["detail"].as_str().unwrap().contains(dev), "{v}");
    }
    // Another integrator is refused without learning the holder's ids.
    let (s, v) = t
        .post(
            &format!("/v1/projects/{pb}/devices"),
            &b_admin,
            crane(&model, "S-1"),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(
        !v.to_string().contains(dev) && !v.to_string().contains(&p1),
        "{v}"
    );
    // The same serial of another supplier is another device.
    t.create(
        &format!("/v1/projects/{p2}/devices"),
        &a_admin,
        crane(&other_model, "S-1"),
    )
    .await;
}

pub async fn decommissioning_revokes_and_keeps_history(t: T) {
    let a_ops = t.staff(A, "integrator_ops");
    let (prj, ent) = t.project(A, "220102").await;
    let sup = t.supplier(&a_ops, 1).await;
    let model = t.model(&a_ops, &sup, Some("C-1")).await;
    let path = format!("/v1/projects/{prj}/devices");
    let v = t.create(&path, &a_ops, crane(&model, "S-1")).await;
    let dev = v["device_id"].as_str().unwrap().to_owned();
    let token = v["device_token"].as_str().unwrap().to_owned();
    let fp = v["certificate_id"].as_str().unwrap().to_owned();
    let a = IntegratorId::parse(A).unwrap();

    let pm = t.token_of("usr-pm", &["project_manager"], Some(A), Some(&ent));
    assert_eq!(
        t.delete(&format!("/v1/devices/{dev}"), &pm).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        t.delete(
            &format!("/v1/devices/{dev}"),
            &t.staff(B, "integrator_admin")
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    let (s, d) = t.delete(&format!("/v1/devices/{dev}"), &a_ops).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["status"], "decommissioned");
    assert_eq!(d["decommissioned_by"], "usr-integratorops-int-a");
    assert_eq!(
        t.registry.certificate_status(&a, &dev, &fp).await.unwrap(),
        Some(CredentialStatus::Revoked)
    );
    assert!(
        !t.registry
            .authenticate_token(&a, &dev, &token)
            .await
            .unwrap()
    );
    // History kept; a second decommission is a conflict.
    let (s, d) = t.get(&format!("/v1/devices/{dev}"), &a_ops).await;
    assert_eq!(
        (s, d["status"].as_str()),
        (StatusCode::OK, Some("decommissioned"))
    );
    assert_eq!(
        t.delete(&format!("/v1/devices/{dev}"), &a_ops).await.0,
        StatusCode::CONFLICT
    );
    let (_, l) = t.get(&path, &a_ops).await;
    assert_eq!(ids(&l), vec![dev.clone()]);
    // The serial can be bound again, as a new device.
    let again = t.create(&path, &a_ops, crane(&model, "S-1")).await;
    assert_ne!(again["device_id"].as_str().unwrap(), dev);
}

pub async fn rotation_and_retirement(t: T) {
    let a_ops = t.staff(A, "integrator_ops");
    let (prj, _) = t.project(A, "220102").await;
    let sup = t.supplier(&a_ops, 1).await;
    let model = t.model(&a_ops, &sup, Some("C-1")).await;
    let v = t
        .create(
            &format!("/v1/projects/{prj}/devices"),
            &a_ops,
            crane(&model, "S-1"),
        )
        .await;
    let dev = v["device_id"].as_str().unwrap().to_owned();
    let old_fp = v["certificate_id"].as_str().unwrap().to_owned();
    let a = IntegratorId::parse(A).unwrap();

    let (s, r) = t
        .post(&format!("/v1/devices/{dev}/rotate"), &a_ops, json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let new_fp = r["certificate_id"].as_str().unwrap().to_owned();
    assert_ne!(new_fp, old_fp);
    assert!(
        r["private_key_pem"]
            .as_str()
            .unwrap()
            .contains("PRIVATE KEY")
    );
    assert_eq!(r["topics"]["cmd"], format!("ss/{A}/{prj}/{dev}/cmd"));
    // Both valid until the device proves it uses the new one.
    for fp in [&old_fp, &new_fp] {
        assert_eq!(
            t.registry.certificate_status(&a, &dev, fp).await.unwrap(),
            Some(CredentialStatus::Active)
        );
    }
    let retire = format!("/v1/devices/{dev}/credentials/retire");
    assert_422(
        &t.post(
            &retire,
            &a_ops,
            json!({"keep_certificate_id": "0".repeat(64)}),
        )
        .await,
        "keep_certificate_id",
    );
    let (s, d) = t
        .post(&retire, &a_ops, json!({"keep_certificate_id": new_fp}))
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["certificate_id"], new_fp.as_str());
    assert_eq!(
        t.registry
            .certificate_status(&a, &dev, &old_fp)
            .await
            .unwrap(),
        Some(CredentialStatus::Revoked)
    );
    assert_eq!(
        t.registry
            .certificate_status(&a, &dev, &new_fp)
            .await
            .unwrap(),
        Some(CredentialStatus::Active)
    );
}

pub async fn blacklisting_flags_bound_devices(t: T) {
    let (a_ops, gov, _, model, path) = t.scene().await;
    let dev = t.crane(&path, &a_ops, &model, "S-1").await;
    let other = t.crane(&path, &a_ops, &model, "S-2").await;
    let (_, l) = t.get("/v1/devices?flagged=true", &a_ops).await;
    assert_eq!(ids(&l), Vec::<String>::new());

    let e = t
        .create("/v1/blacklist", &gov, entry_body("device", "s-1", "220100"))
        .await;
    let entry = e["id"].as_str().unwrap().to_owned();
    let (_, d) = t.get(&format!("/v1/devices/{dev}"), &a_ops).await;
    assert_eq!(d["untrusted"], true, "{d}");
    assert_eq!(d["flags"][0]["entry_id"], entry.as_str());
    assert_eq!(d["flags"][0]["scope"], "device");
    assert!(d["flags"][0]["since"].as_str().is_some());
    let (_, o) = t.get(&format!("/v1/devices/{other}"), &a_ops).await;
    assert_eq!(o["untrusted"], false, "{o}");
    let (_, l) = t.get("/v1/devices?flagged=true", &a_ops).await;
    assert_eq!(ids(&l), vec![dev.clone()]);
    let (_, l) = t
        .get("/v1/devices?flagged=true", &t.staff(B, "integrator_ops"))
        .await;
    assert_eq!(ids(&l), Vec::<String>::new());

    let (s, v) = t
        .post(
            &format!("/v1/blacklist/{entry}/lift"),
            &gov,
            json!({"reason": "整改完成"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, d) = t.get(&format!("/v1/devices/{dev}"), &a_ops).await;
    assert_eq!(
        (d["untrusted"].clone(), d["flags"].clone()),
        (json!(false), json!([]))
    );
    let (_, l) = t.get("/v1/devices?flagged=true", &a_ops).await;
    assert_eq!(ids(&l), Vec::<String>::new());
}

impl T {
    /// POSTs a CSV body.
    pub async fn post_csv(&self, path: &str, token: &str, csv: &str) -> (StatusCode, Value) {
        let body = Some(("text/csv", csv.as_bytes().to_vec()));
        self.send(Method::POST, path, Some(token), body).await
    }
}

pub async fn bulk_provisioning_from_csv(t: T) {
    let a_admin = t.staff(A, "integrator_admin");
    let (prj, _) = t.project(A, "220102").await;
    let (_, province) = t.gov(A, "220000").await;
    let sup = t.supplier(&a_admin, 1).await;
    let banned_sup = t.supplier(&a_admin, 2).await;
    let model = t.model(&a_admin, &sup, Some("C-1")).await;
    let banned_model = t.model(&a_admin, &banned_sup, Some("C-2")).await;
    let e = t
        .create(
            "/v1/blacklist",
            &province,
            entry_body("supplier", &banned_sup, "220000"),
        )
        .await;
    let entry = e["id"].as_str().unwrap().to_owned();
    let csv = format!(
        "serial_no,model_id,category,mn,rated_load_t,rated_moment_tm\n\
         B-1,{model},tower_crane,,8,125\n\
         B-2,{model},tower_crane,,8,125\n\
         B-3,{model},tower_crane,,9999,125\n\
         B-4,{banned_model},tower_crane,,8,125\n\
         B-5,{model},tower_crane,,6.5,80\n"
    );
    let path = format!("/v1/projects/{prj}/devices:bulk");

    // Only the project's integrator staff.
    let (s, _) = t
        .post_csv(&path, &t.staff(B, "integrator_admin"), &csv)
        .await;
    assert!(
        s == StatusCode::NOT_FOUND || s == StatusCode::FORBIDDEN,
        "{s}"
    );

    let (s, v) = t.post_csv(&path, &a_admin, &csv).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["project_id"], prj.as_str());
    assert_eq!(
        (
            v["created"].as_u64(),
            v["exists"].as_u64(),
            v["errors"].as_u64()
        ),
        (Some(3), Some(0), Some(2)),
        "{v}"
    );
    assert!(v["ca_pem"].as_str().unwrap().contains("CERTIFICATE"));
    assert_eq!(v["mqtt_endpoint"], "mqtts://127.0.0.1:8883");
    let rows = v["results"].as_array().unwrap();
    let rownums: Vec<u64> = rows.iter().map(|r| r["row"].as_u64().unwrap()).collect();
    assert_eq!(rownums, [1, 2, 3, 4, 5]);
    let mut ids = Vec::new();
    for i in [0, 1, 4] {
        let r = &rows[i];
        assert_eq!(r["status"], "created", "{r}");
        let c = &r["credentials"];
        assert!(
            c["private_key_pem"]
                .as_str()
                .unwrap()
                .contains("PRIVATE KEY"),
            "{r}"
        );
        assert!(
            c["certificate_pem"]
                .as_str()
                .unwrap()
                .contains("CERTIFICATE"),
            "{r}"
        );
        assert!(
            c["certificate_id"].is_string() && c.get("device_token").is_some(),
            "{r}"
        );
        ids.push(r["device_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(rows[2]["status"], "error");
    assert_eq!(rows[2]["serial_no"], "B-3");
    assert_eq!(rows[2]["error"]["field"], "rated_load_t", "{}", rows[2]);
    assert_eq!(
        rows[2]["error"]["type"],
        "https://smartsite.dev/problems/validation"
    );
    assert!(rows[2].get("credentials").is_none() && rows[2].get("device_id").is_none());
    assert_eq!(rows[3]["status"], "error");
    assert_eq!(rows[3]["error"]["title"], "Blacklisted");
    assert_eq!(
        rows[3]["error"]["type"],
        "https://smartsite.dev/problems/blacklisted"
    );
    assert_eq!(rows[3]["error"]["blacklist_entry_id"], entry.as_str());
    assert!(
        rows[3]["error"]["detail"]
            .as_str()
            .unwrap()
            .contains(&entry),
        "{}",
        rows[3]
    );
    // The created devices are real: readable, with their configuration.
    let (s, d) = t.get(&format!("/v1/devices/{}", ids[2]), &a_admin).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["config"]["rated_load_t"], 6.5);
    assert_no_credentials(&d);

    // Again: idempotent by serial, the same devices without credentials, the same errors.
    let (s, v) = t.post_csv(&path, &a_admin, &csv).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (
            v["created"].as_u64(),
            v["exists"].as_u64(),
            v["errors"].as_u64()
        ),
        (Some(0), Some(3), Some(2)),
        "{v}"
    );
    let rows = v["results"].as_array().unwrap();
    for (i, id) in [0, 1, 4].into_iter().zip(&ids) {
        assert_eq!(rows[i]["status"], "exists", "{}", rows[i]);
        assert_eq!(rows[i]["device_id"], id.as_str());
        assert!(rows[i].get("credentials").is_none(), "{}", rows[i]);
    }
    assert_eq!(rows[2]["error"]["field"], "rated_load_t");
    assert_eq!(rows[3]["error"]["blacklist_entry_id"], entry.as_str());
    let (_, list) = t
        .get(&format!("/v1/projects/{prj}/devices"), &a_admin)
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 3, "{list}");

    // The same serial in another project is an error there, not an "exists".
    let (other, _) = t.project(A, "220102").await;
    let (s, v) = t
        .post_csv(
            &format!("/v1/projects/{other}/devices:bulk"),
            &a_admin,
            &csv,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (
            v["created"].as_u64(),
            v["exists"].as_u64(),
            v["errors"].as_u64()
        ),
        (Some(0), Some(0), Some(5)),
        "{v}"
    );
    assert!(
        v["results"][0]["error"]["detail"]
            .as_str()
            .unwrap()
            .contains(&ids[0])
    );

    // Malformed CSV and missing columns: 422 on body; a bad row alone is an error row.
    let (s, v) = t
        .post_csv(&path, &a_admin, "serial_no,category\nX,tower_crane\n")
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "body");
    let (s, v) = t
        .post_csv(
            &path,
            &a_admin,
            &format!("serial_no,model_id,category\n\"B-9,{model},tower_crane\n"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["errors"], 1);
    let big = format!(
        "serial_no,model_id,category\n{}",
        "X,mdl-x,tower_crane\n".repeat(5001)
    );
    let (s, v) = t.post_csv(&path, &a_admin, &big).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let huge = format!(
        "serial_no,model_id,category\n{}",
        "x".repeat(10 * 1024 * 1024)
    );
    let (s, v) = t.post_csv(&path, &a_admin, &huge).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
}

/// Rounds of each race below.
const RACE_ROUNDS: usize = 16;
/// How long the second request of a race waits: spread so that on either store some rounds
/// start it inside the first one's window (the embedded store answers in microseconds, the
/// emulator in milliseconds).
const RACE_DELAYS_MS: [u64; 16] = [0, 1, 2, 3, 5, 8, 12, 17, 23, 30, 40, 55, 75, 100, 130, 170];

/// Runs two requests at once, on two tasks, the second after `delay_ms`.
async fn race(
    t: &T,
    a: (String, String, Value),
    b: (String, String, Value),
    delay_ms: u64,
) -> ((StatusCode, Value), (StatusCode, Value)) {
    let (ca, cb) = (t.client.clone(), t.client.clone());
    let first = tokio::spawn(async move { ca.post(&a.0, &a.1, a.2).await });
    let second = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        cb.post(&b.0, &b.1, b.2).await
    });
    (first.await.unwrap(), second.await.unwrap())
}

fn flag_ids(d: &Value) -> std::collections::BTreeSet<String> {
    d["flags"]
        .as_array()
        .unwrap_or_else(|| panic!("no flags: {d}"))
        .iter()
        .map(|f| f["entry_id"].as_str().unwrap().to_owned())
        .collect()
}

/// A binding racing the issue of a blacklist entry that covers it (two tasks, repeated, at
/// staggered starts) either is refused as blacklisted or ends bound *with* the entry's flag —
/// never bound and unflagged. And two entries flagging one bound device at once both stay.
pub async fn binding_racing_a_blacklist_entry_never_misses_its_flag(t: T) {
    let (a_ops, gov, sup, model, path) = t.scene().await;
    let (mut refused, mut flagged) = (0, 0);
    for n in 0..RACE_ROUNDS {
        let serial = format!("RACE-{n}");
        let (bound, entry) = race(
            &t,
            (path.clone(), a_ops.clone(), crane(&model, &serial)),
            (
                "/v1/blacklist".into(),
                gov.clone(),
                entry_body("device", &serial, "220100"),
            ),
            RACE_DELAYS_MS[n % RACE_DELAYS_MS.len()],
        )
        .await;
        assert_eq!(entry.0, StatusCode::CREATED, "{}", entry.1);
        let entry_id = entry.1["id"].as_str().unwrap().to_owned();
        match bound.0 {
            StatusCode::CONFLICT => {
                assert_eq!(
                    bound.1["type"], "https://smartsite.dev/problems/blacklisted",
                    "{}",
                    bound.1
                );
                refused += 1;
            }
            StatusCode::CREATED => {
                let dev = bound.1["device_id"].as_str().unwrap();
                let (_, d) = t.get(&format!("/v1/devices/{dev}"), &a_ops).await;
                assert!(
                    flag_ids(&d).contains(&entry_id),
                    "round {n}: {dev} bound without the flag of {entry_id}: {d}"
                );
                flagged += 1;
            }
            other => panic!("round {n}: provisioning answered {other}: {}", bound.1),
        }
    }
    eprintln!("binding vs blacklisting: {refused} refused, {flagged} bound and flagged");

    for n in 0..RACE_ROUNDS / 2 {
        let model = t.model(&a_ops, &sup, Some("C-1")).await;
        let serial = format!("TWO-{n}");
        let dev = t.crane(&path, &a_ops, &model, &serial).await;
        let (x, y) = race(
            &t,
            (
                "/v1/blacklist".into(),
                gov.clone(),
                entry_body("model", &model, "220100"),
            ),
            (
                "/v1/blacklist".into(),
                gov.clone(),
                entry_body("device", &serial, "220100"),
            ),
            0,
        )
        .await;
        assert_eq!((x.0, y.0), (StatusCode::CREATED, StatusCode::CREATED));
        let (_, d) = t.get(&format!("/v1/devices/{dev}"), &a_ops).await;
        let want: std::collections::BTreeSet<String> = [&x.1, &y.1]
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(flag_ids(&d), want, "round {n}: {d}");
    }
}

/// `/v1/devices` (with and without `?flagged=true`) and `/v1/blacklist` page with a real
/// cursor: walked a few at a time, every item comes once.
pub async fn fleet_and_blacklist_lists_page(t: T) {
    let (a_ops, gov, _, model, path) = t.scene().await;
    let mut devices = std::collections::BTreeSet::new();
    for n in 0..7 {
        devices.insert(t.crane(&path, &a_ops, &model, &format!("PG-{n}")).await);
    }
    let mut entries = std::collections::BTreeSet::new();
    for n in [1, 4, 6] {
        let e = t
            .create(
                "/v1/blacklist",
                &gov,
                entry_body("device", &format!("PG-{n}"), "220100"),
            )
            .await;
        entries.insert(e["id"].as_str().unwrap().to_owned());
    }
    let walked = |path: &'static str, token: String, limit: u32| {
        let client = t.client.clone();
        async move {
            let items = client.walk(path, &token, limit).await;
            let ids: Vec<String> = items
                .iter()
                .map(|v| v["id"].as_str().unwrap().to_owned())
                .collect();
            let set: std::collections::BTreeSet<String> = ids.iter().cloned().collect();
            assert_eq!(set.len(), ids.len(), "{path}: an item came twice: {ids:?}");
            set
        }
    };
    for limit in [1, 2, 5] {
        assert_eq!(walked("/v1/devices", a_ops.clone(), limit).await, devices);
        let flagged = walked("/v1/devices?flagged=true", a_ops.clone(), limit).await;
        assert_eq!(flagged.len(), 3);
        assert!(flagged.is_subset(&devices));
        assert_eq!(walked("/v1/blacklist", a_ops.clone(), limit).await, entries);
        assert_eq!(walked("/v1/blacklist", gov.clone(), limit).await, entries);
    }
}

/// Text that would show differently from what is stored (controls, NUL, bidi overrides,
/// invisible characters) is refused with 422 naming the field, in every free-text field of the
/// catalogue; notes and reasons may span lines.
pub async fn hostile_text_is_refused_naming_the_field(t: T) {
    let a_admin = t.staff(A, "integrator_admin");
    let (_, gov) = t.gov(A, "220100").await;
    let sup = t.supplier(&a_admin, 1).await;
    let model = t.model(&a_admin, &sup, None).await;
    let hostile = [
        "a\u{0}b",
        "a\u{7}b",
        "a\u{1b}[31mb",
        "report\u{202E}fdp.exe",
        "a\u{2067}b",
        "a\u{200F}b",
        "a\u{FEFF}b",
        "\u{3164}",
    ];
    for bad in hostile {
        for (path, body, field) in [
            (
                "/v1/suppliers".to_owned(),
                json!({"name": bad, "uscc": uscc("91430100MA0000009")}),
                "name",
            ),
            (
                "/v1/device-models".to_owned(),
                json!({"supplier_id": sup, "name": bad, "category": "tower_crane", "protocol": "mqtt_json"}),
                "name",
            ),
            (
                "/v1/device-models".to_owned(),
                json!({"supplier_id": sup, "name": "塔机", "category": "tower_crane",
                    "protocol": "mqtt_json", "access_cert_no": bad}),
                "access_cert_no",
            ),
            (
                format!("/v1/device-models/{model}/compliance"),
                json!({"note": bad}),
                "note",
            ),
        ] {
            let res = t.post(&path, &a_admin, body).await;
            assert_422(&res, field);
            assert!(
                res.1["detail"].as_str().unwrap().contains("must"),
                "{bad:?}: {}",
                res.1
            );
        }
        let mut entry = entry_body("supplier", &sup, "220100");
        entry["reason"] = json!(bad);
        assert_422(&t.post("/v1/blacklist", &gov, entry).await, "reason");
    }
    // Single-line fields take no line break; notes and reasons may have several lines.
    assert_422(
        &t.post(
            "/v1/suppliers",
            &a_admin,
            json!({"name": "智塔\n科技", "uscc": uscc("91430100MA0000009")}),
        )
        .await,
        "name",
    );
    let (s, v) = t
        .post(
            &format!("/v1/device-models/{model}/compliance"),
            &a_admin,
            json!({"note": "检测报告 2026-031\r\n已核验"}),
        )
        .await;
    assert_eq!(
        (s, &v["note"]),
        (StatusCode::OK, &json!("检测报告 2026-031\n已核验")),
        "{v}"
    );
    let mut entry = entry_body("supplier", &sup, "220100");
    entry["reason"] = json!("数据造假\n第二次");
    let e = t.create("/v1/blacklist", &gov, entry).await;
    let lift = format!("/v1/blacklist/{}/lift", e["id"].as_str().unwrap());
    assert_422(
        &t.post(&lift, &gov, json!({"reason": "整改\u{202E}完成"}))
            .await,
        "reason",
    );
    let (s, v) = t.post(&lift, &gov, json!({"reason": "整改完成"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Nothing hostile was stored: only the supplier and model of this test exist.
    let (_, list) = t.get("/v1/suppliers", &a_admin).await;
    assert_eq!(ids(&list), vec![sup.clone()]);
    let (_, list) = t.get("/v1/device-models", &a_admin).await;
    assert_eq!(ids(&list), vec![model.clone()]);
}

//! The tenancy domain suite: the `tenants` router driven through `oneshot`, over whichever store a
//! fixture gives. `tenancy_suite!(fixture)` expands to one test per case, so the same cases run
//! against redb and against DynamoDB on the emulator.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use smartsite_shared::accounts::LocalAccounts;
use smartsite_shared::auth::{Authenticator, Claims, LocalIssuer};
use smartsite_shared::directory::Directory;
use smartsite_shared::testkit::{RouterClient, StoreFixture};
use smartsite_tenants::AppState;

pub struct T {
    client: RouterClient,
    pub issuer: Arc<LocalIssuer>,
    _store: StoreFixture,
    _keys: tempfile::TempDir,
}

#[macro_export]
macro_rules! tenancy_suite {
    ($fixture:path) => {
        tenancy_suite!(@cases $fixture;
            onboarding_and_visibility_by_role,
            government_jurisdiction_spans_integrators,
            invalid_fields_answer_422_naming_the_field,
            cross_tenant_access_is_404_like_nonexistent,
            suspension_blocks_writes_and_offboarding_exports,
            user_creation_rules,
            login_issues_tokens_and_refuses_wrong_passwords,
            lists_paginate,
            hostile_names_and_amounts_answer_422,
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
        let accounts = Arc::new(LocalAccounts::new(Directory::new(Arc::clone(&store.store))));
        let state = AppState::new(
            Arc::clone(&store.store),
            auth,
            Some(Arc::clone(&issuer)),
            accounts,
        );
        let (routes, doc) = smartsite_tenants::routes()
            .merge(smartsite_tenants::local_identity_routes())
            .split_for_parts();
        let router = smartsite_tenants::finish(routes, &doc, state);
        T {
            client: RouterClient::new(router),
            issuer,
            _store: store,
            _keys: keys,
        }
    }

    /// A token for arbitrary claims, as the issuer would sign them after a login.
    pub fn token(
        &self,
        roles: &[&str],
        integrator: Option<&str>,
        customer: Option<&str>,
    ) -> String {
        let claims = Claims {
            sub: "usr-test".into(),
            integrator_id: integrator.map(Into::into),
            customer_id: customer.map(Into::into),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        };
        self.issuer
            .issue(claims, smartsite_shared::store::now_epoch())
            .unwrap()
    }

    /// Creates an object and returns its id, asserting 201.
    pub async fn create(&self, path: &str, token: &str, body: Value) -> String {
        let (s, v) = self.post(path, token, body).await;
        assert_eq!(s, StatusCode::CREATED, "POST {path}: {v}");
        v["id"].as_str().unwrap().to_owned()
    }
}

pub fn uscc(first17: &str) -> String {
    format!(
        "{first17}{}",
        smartsite_shared::domain::tenancy::Uscc::check_char(first17).unwrap()
    )
}

/// One integrator with a government customer, an enterprise, an owner and a project.
pub struct World {
    pub integrator: String,
    pub admin: String,
    pub gov: String,
    pub enterprise: String,
    pub owner: String,
    pub project: String,
}

pub async fn world(t: &T, name: &str, gov_region: &str, project_region: &str) -> World {
    let platform = t.token(&["platform_admin"], None, None);
    let integrator = t
        .create(
            "/v1/integrators",
            &platform,
            json!({"name": name, "operator": "china_unicom", "province_code": "220000"}),
        )
        .await;
    let admin = t.token(&["integrator_admin"], Some(&integrator), None);
    let gov = t
        .create(
            "/v1/customers",
            &admin,
            json!({"kind": "gov_region", "name": "住建局", "region_code": gov_region}),
        )
        .await;
    let enterprise = t
        .create(
            "/v1/customers",
            &admin,
            json!({"kind": "enterprise", "name": "建工集团", "region_code": "220100", "uscc": uscc("91220101MA0000001")}),
        )
        .await;
    let owner = t
        .create(
            "/v1/customers",
            &admin,
            json!({"kind": "project_owner", "name": "开发公司", "region_code": "220100", "uscc": uscc("91220101MA0000002")}),
        )
        .await;
    let project = t
        .create(
            "/v1/projects",
            &admin,
            project_body(&enterprise, Some(&owner), project_region),
        )
        .await;
    World {
        integrator,
        admin,
        gov,
        enterprise,
        owner,
        project,
    }
}

pub fn project_body(contractor: &str, owner: Option<&str>, region: &str) -> Value {
    json!({
        "name": "住宅一期", "contractor_customer_id": contractor, "owner_customer_id": owner,
        "region_code": region, "project_type": "building", "contract_value_fen": 12_000_000_000i64,
        "contract_signed_date": "2026-03-01", "tender_completed_date": "2026-02-15",
        "start_date": "2026-04-01", "planned_end_date": "2027-10-31"
    })
}

fn ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

pub async fn onboarding_and_visibility_by_role(t: T) {
    let w = world(&t, "CU Jilin", "220100", "220102").await;
    let i = Some(w.integrator.as_str());
    let (s, p) = t
        .get(&format!("/v1/projects/{}", w.project), &w.admin)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p["contract_value_fen"], 12_000_000_000i64);
    assert_eq!(p["contractor_customer_id"], w.enterprise.as_str());

    // Every party sees the project; a second enterprise (not a party) does not.
    let other = t
        .create(
            "/v1/customers",
            &w.admin,
            json!({"kind": "enterprise", "name": "另一家", "region_code": "220100", "uscc": uscc("91220101MA0000003")}),
        )
        .await;
    for (roles, customer, sees) in [
        (vec!["integrator_ops"], None, true),
        (vec!["enterprise_admin"], Some(&w.enterprise), true),
        (vec!["safety_officer"], Some(&w.enterprise), true),
        (vec!["owner_rep"], Some(&w.owner), true),
        (vec!["gov_supervisor"], Some(&w.gov), true),
        (vec!["enterprise_admin"], Some(&other), false),
    ] {
        let tok = t.token(&roles, i, customer.map(String::as_str));
        let (s, _) = t.get(&format!("/v1/projects/{}", w.project), &tok).await;
        assert_eq!(s == StatusCode::OK, sees, "{roles:?} {customer:?}: {s}");
        let (s, list) = t.get("/v1/projects", &tok).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            ids(&list).contains(&w.project),
            sees,
            "{roles:?} list: {list}"
        );
    }
    // The platform admin sees every project.
    let (_, all) = t
        .get("/v1/projects", &t.token(&["platform_admin"], None, None))
        .await;
    assert_eq!(ids(&all), vec![w.project.clone()]);
    // Customer users see only their own customer.
    let (_, own) = t
        .get("/v1/customers", &t.token(&["owner_rep"], i, Some(&w.owner)))
        .await;
    assert_eq!(ids(&own), vec![w.owner.clone()]);
    let (s, _) = t
        .get(
            &format!("/v1/customers/{}", w.enterprise),
            &t.token(&["owner_rep"], i, Some(&w.owner)),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, all) = t.get("/v1/customers", &w.admin).await;
    assert_eq!(ids(&all).len(), 4);
    // Read-only roles cannot create.
    let gov_tok = t.token(&["gov_supervisor"], i, Some(&w.gov));
    let (s, _) = t
        .post(
            "/v1/projects",
            &gov_tok,
            project_body(&w.enterprise, None, "220102"),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

pub async fn government_jurisdiction_spans_integrators(t: T) {
    // Integrator A's government customer governs Changchun (220100); integrator B has projects in
    // Chaoyang district (220102, inside) and in Jilin City (220201, outside).
    let a = world(&t, "CT Jilin", "220100", "220104").await;
    let b = world(&t, "CM Jilin", "220200", "220102").await;
    let outside = t
        .create(
            "/v1/projects",
            &b.admin,
            project_body(&b.enterprise, None, "220201"),
        )
        .await;
    let province = t
        .create(
            "/v1/customers",
            &a.admin,
            json!({"kind": "gov_region", "name": "省住建厅", "region_code": "220000"}),
        )
        .await;

    let city = t.token(&["gov_supervisor"], Some(&a.integrator), Some(&a.gov));
    let (_, list) = t.get("/v1/projects", &city).await;
    let mut seen = ids(&list);
    seen.sort();
    let mut want = vec![a.project.clone(), b.project.clone()];
    want.sort();
    assert_eq!(
        seen, want,
        "Changchun sees its own district projects of both integrators"
    );
    assert_eq!(
        t.get(&format!("/v1/projects/{}", b.project), &city).await.0,
        StatusCode::OK
    );
    assert_eq!(
        t.get(&format!("/v1/projects/{outside}"), &city).await.0,
        StatusCode::NOT_FOUND
    );

    let prov = t.token(&["gov_supervisor"], Some(&a.integrator), Some(&province));
    let (_, list) = t.get("/v1/projects", &prov).await;
    assert_eq!(ids(&list).len(), 3, "the province sees all three");
    // B's own government customer (Jilin City, 220200) sees only the project in 220201.
    let jl = t.token(&["gov_supervisor"], Some(&b.integrator), Some(&b.gov));
    assert_eq!(ids(&t.get("/v1/projects", &jl).await.1), vec![outside]);
    // Integrator staff never see across integrators.
    assert_eq!(
        t.get(&format!("/v1/projects/{}", b.project), &a.admin)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

pub async fn invalid_fields_answer_422_naming_the_field(t: T) {
    let w = world(&t, "CT", "220100", "220102").await;
    let cases = [
        (
            "/v1/customers",
            json!({"kind": "enterprise", "name": "x", "region_code": "220100", "uscc": "91220101MA00000014"}),
            "uscc",
        ),
        (
            "/v1/customers",
            json!({"kind": "enterprise", "name": "x", "region_code": "220100"}),
            "uscc",
        ),
        (
            "/v1/customers",
            json!({"kind": "enterprise", "name": "x", "region_code": "2201", "uscc": uscc("91220101MA0000009")}),
            "region_code",
        ),
        (
            "/v1/customers",
            json!({"kind": "bank", "name": "x", "region_code": "220100"}),
            "kind",
        ),
        (
            "/v1/customers",
            json!({"kind": "gov_region", "name": "  ", "region_code": "220100"}),
            "name",
        ),
        (
            "/v1/projects",
            json!({"name": "p"}),
            "contractor_customer_id",
        ),
        (
            "/v1/projects",
            {
                let mut b = project_body(&w.enterprise, None, "220102");
                b["contract_value_fen"] = json!(-5);
                b
            },
            "contract_value_fen",
        ),
        (
            "/v1/projects",
            {
                let mut b = project_body(&w.enterprise, None, "220102");
                b["planned_end_date"] = json!("2026-01-01");
                b
            },
            "planned_end_date",
        ),
        (
            "/v1/projects",
            {
                let mut b = project_body(&w.enterprise, None, "220102");
                b["start_date"] = json!("2026-02-30");
                b
            },
            "start_date",
        ),
        (
            "/v1/projects",
            {
                let mut b = project_body(&w.enterprise, None, "220102");
                b["project_type"] = json!("castle");
                b
            },
            "project_type",
        ),
        // The owner as contractor: not an enterprise.
        (
            "/v1/projects",
            project_body(&w.owner, None, "220102"),
            "contractor_customer_id",
        ),
    ];
    for (path, body, field) in cases {
        let (s, v) = t.post(path, &w.admin, body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_eq!(v["field"], field, "{body}: {v}");
        assert_eq!(v["type"], "https://smartsite.dev/problems/validation");
    }
    let (s, v) = t
        .call(Method::POST, "/v1/customers", Some(&w.admin), None)
        .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");
}

/// Names that would show differently from what is stored (controls, NUL, bidi overrides,
/// invisible characters) and amounts beyond 10^15 fen are refused with 422 naming the field;
/// nothing is created.
pub async fn hostile_names_and_amounts_answer_422(t: T) {
    let w = world(&t, "CT", "220100", "220102").await;
    let platform = t.token(&["platform_admin"], None, None);
    let hostile = [
        "吉林\u{0}建工",
        "吉林\n建工",
        "吉林\r建工",
        "\u{1b}[2J吉林建工",
        "invoice\u{202E}fdp.exe",
        "吉林\u{2066}建工\u{2069}",
        "吉林\u{200B}建工",
        "\u{3164}",
        "吉林\u{85}建工",
    ];
    for name in hostile {
        for (path, token, body) in [
            (
                "/v1/integrators",
                &platform,
                json!({"name": name, "operator": "china_unicom", "province_code": "220000"}),
            ),
            (
                "/v1/customers",
                &w.admin,
                json!({"kind": "gov_region", "name": name, "region_code": "220100"}),
            ),
            ("/v1/projects", &w.admin, {
                let mut b = project_body(&w.enterprise, None, "220102");
                b["name"] = json!(name);
                b
            }),
        ] {
            let (s, v) = t.post(path, token, body).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{path} {name:?}: {v}");
            assert_eq!(v["field"], "name", "{path} {name:?}: {v}");
            assert!(
                v["detail"].as_str().unwrap().contains("must"),
                "{path} {name:?}: {v}"
            );
        }
    }
    let (_, v) = t.get("/v1/projects?limit=200", &w.admin).await;
    assert_eq!(
        v["items"].as_array().unwrap().len(),
        1,
        "only the world's project: {v}"
    );

    // The contract value: up to 10^15 fen (10 trillion yuan), nothing beyond.
    let max = 1_000_000_000_000_000i64;
    for (value, status) in [
        (json!(max), StatusCode::CREATED),
        (json!(max + 1), StatusCode::UNPROCESSABLE_ENTITY),
        (json!(i64::MAX), StatusCode::UNPROCESSABLE_ENTITY),
        (json!(u64::MAX), StatusCode::UNPROCESSABLE_ENTITY),
        (json!(i64::MIN), StatusCode::UNPROCESSABLE_ENTITY),
        (json!(1e300), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let mut b = project_body(&w.enterprise, None, "220102");
        b["contract_value_fen"] = value.clone();
        let (s, v) = t.post("/v1/projects", &w.admin, b).await;
        assert_eq!(s, status, "{value}: {v}");
        if s == StatusCode::UNPROCESSABLE_ENTITY {
            assert_eq!(v["field"], "contract_value_fen", "{value}: {v}");
        } else {
            assert_eq!(v["contract_value_fen"], json!(max));
        }
    }
    // Dates a business record cannot carry.
    for (field, date) in [
        ("contract_signed_date", "1969-12-31"),
        ("start_date", "2201-01-01"),
        ("planned_end_date", "+262142-12-31"),
    ] {
        let mut b = project_body(&w.enterprise, None, "220102");
        b[field] = json!(date);
        if field != "contract_signed_date" {
            b["planned_end_date"] = json!(date);
        }
        let (s, v) = t.post("/v1/projects", &w.admin, b).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{field} {date}: {v}");
        assert_eq!(v["field"], field, "{field} {date}: {v}");
    }
}

pub async fn cross_tenant_access_is_404_like_nonexistent(t: T) {
    let a = world(&t, "A", "220100", "220102").await;
    let b = world(&t, "B", "220200", "220202").await;
    let nonexistent_customer = "cus-0000000000000000000000000000ffff";
    let nonexistent_project = "prj-0000000000000000000000000000ffff";
    for (mine, foreign, ghost) in [
        (
            format!("/v1/customers/{}", b.enterprise),
            format!("/v1/customers/{}", a.enterprise),
            format!("/v1/customers/{nonexistent_customer}"),
        ),
        (
            format!("/v1/projects/{}", b.project),
            format!("/v1/projects/{}", a.project),
            format!("/v1/projects/{nonexistent_project}"),
        ),
        (
            format!("/v1/integrators/{}", b.integrator),
            format!("/v1/integrators/{}", a.integrator),
            "/v1/integrators/int-ffff".to_string(),
        ),
    ] {
        assert_eq!(t.get(&mine, &b.admin).await.0, StatusCode::OK, "{mine}");
        let (fs, fv) = t.get(&foreign, &b.admin).await;
        let (gs, gv) = t.get(&ghost, &b.admin).await;
        assert_eq!(fs, StatusCode::NOT_FOUND, "{foreign}");
        assert_eq!(
            (fs, &fv),
            (gs, &gv),
            "a foreign id answers exactly like a nonexistent one"
        );
    }
    // Writes against A's objects from B: refused the same way.
    for path in ["suspend", "resume", "offboard"] {
        let (s, _) = t
            .call(
                Method::POST,
                &format!("/v1/customers/{}/{path}", a.enterprise),
                Some(&b.admin),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    let (s, v) = t
        .post(
            "/v1/projects",
            &b.admin,
            project_body(&a.enterprise, None, "220102"),
        )
        .await;
    assert_eq!(
        (s, v["field"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("contractor_customer_id")
        )
    );
    let (s, _) = t
        .post("/v1/users", &b.admin, json!({"username": "intruder", "password": "Intrude-2026!", "roles": ["enterprise_admin"], "customer_id": a.enterprise}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = t
        .post("/v1/users", &b.admin, json!({"username": "intruder", "password": "Intrude-2026!", "roles": ["integrator_admin"], "integrator_id": a.integrator}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // A is untouched.
    let (_, customers) = t.get("/v1/customers", &a.admin).await;
    assert!(
        customers["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "active")
    );
    let (_, users) = t.get("/v1/users", &a.admin).await;
    assert!(ids(&users).is_empty());
}

pub async fn suspension_blocks_writes_and_offboarding_exports(t: T) {
    let w = world(&t, "CT", "220100", "220102").await;
    let i = Some(w.integrator.as_str());
    let ent_admin = t.token(&["enterprise_admin"], i, Some(&w.enterprise));
    let new_user = |name: &str| json!({"username": name, "password": "Site-safety-1", "roles": ["safety_officer"], "customer_id": w.enterprise});
    assert_eq!(
        t.post("/v1/users", &ent_admin, new_user("officer-1"))
            .await
            .0,
        StatusCode::CREATED
    );

    // Only the integrator admin suspends.
    let ops = t.token(&["integrator_ops"], i, None);
    let (s, _) = t
        .call(
            Method::POST,
            &format!("/v1/customers/{}/suspend", w.enterprise),
            Some(&ops),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, c) = t
        .call(
            Method::POST,
            &format!("/v1/customers/{}/suspend", w.enterprise),
            Some(&w.admin),
            None,
        )
        .await;
    assert_eq!(
        (s, c["status"].as_str()),
        (StatusCode::OK, Some("suspended"))
    );
    assert!(c["status_changed_at"].is_string() && c["status_changed_by"] == "usr-test");
    let (s, _) = t
        .call(
            Method::POST,
            &format!("/v1/customers/{}/suspend", w.enterprise),
            Some(&w.admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "already suspended");

    // The suspended enterprise's users read but cannot write.
    let (s, v) = t.post("/v1/users", &ent_admin, new_user("officer-2")).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(
        v["type"],
        "https://smartsite.dev/problems/customer-suspended"
    );
    assert_eq!(
        t.get(&format!("/v1/projects/{}", w.project), &ent_admin)
            .await
            .0,
        StatusCode::OK
    );

    let (s, _) = t
        .call(
            Method::POST,
            &format!("/v1/customers/{}/resume", w.enterprise),
            Some(&w.admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        t.post("/v1/users", &ent_admin, new_user("officer-2"))
            .await
            .0,
        StatusCode::CREATED
    );

    // Offboarding answers the export: the customer, its projects and its users.
    let (s, export) = t
        .call(
            Method::POST,
            &format!("/v1/customers/{}/offboard", w.enterprise),
            Some(&w.admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{export}");
    assert_eq!(export["customer"]["status"], "offboarded");
    assert_eq!(
        ids(&json!({"items": export["projects"]})),
        vec![w.project.clone()]
    );
    let mut names: Vec<&str> = export["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["officer-1", "officer-2"]);
    assert!(
        export.to_string().find("password").is_none(),
        "no password hash in an export"
    );
    let (s, _) = t
        .call(
            Method::POST,
            &format!("/v1/customers/{}/resume", w.enterprise),
            Some(&w.admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "offboarding is final");
    let (s, again) = t
        .get(&format!("/v1/customers/{}/export", w.enterprise), &w.admin)
        .await;
    assert_eq!(
        (s, &again["customer"]["id"]),
        (StatusCode::OK, &json!(w.enterprise))
    );
}

pub async fn user_creation_rules(t: T) {
    let w = world(&t, "CT", "220100", "220102").await;
    let i = Some(w.integrator.as_str());
    let platform = t.token(&["platform_admin"], None, None);
    let body = |name: &str, roles: Value, extra: Value| {
        let mut b = json!({"username": name, "password": "Strong-pass-2026", "roles": roles});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    // Platform admin → integrator admin.
    let (s, u) = t
        .post(
            "/v1/users",
            &platform,
            body(
                "ct-admin",
                json!(["integrator_admin"]),
                json!({"integrator_id": w.integrator}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    assert!(u.get("password_hash").is_none() && u.get("password").is_none());
    // Same username again (case-folded) → 409.
    let (s, _) = t
        .post(
            "/v1/users",
            &platform,
            body(
                "CT-Admin",
                json!(["integrator_admin"]),
                json!({"integrator_id": w.integrator}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    // Integrator admin → customer users whose roles fit the customer kind.
    let (s, _) = t
        .post(
            "/v1/users",
            &w.admin,
            body(
                "gov-1",
                json!(["gov_supervisor"]),
                json!({"customer_id": w.gov}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = t
        .post(
            "/v1/users",
            &w.admin,
            body("gov-2", json!(["owner_rep"]), json!({"customer_id": w.gov})),
        )
        .await;
    assert_eq!(
        (s, v["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("roles"))
    );
    let (s, v) = t
        .post(
            "/v1/users",
            &w.admin,
            body("mixed", json!(["integrator_ops", "owner_rep"]), json!({})),
        )
        .await;
    assert_eq!(
        (s, v["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("roles"))
    );
    let (s, v) = t
        .post(
            "/v1/users",
            &w.admin,
            body(
                "weak",
                json!(["integrator_ops"]),
                json!({"password": "short"}),
            ),
        )
        .await;
    assert_eq!(
        (s, v["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("password"))
    );
    // Ops cannot create users; enterprise admins only for their own enterprise.
    let ops = t.token(&["integrator_ops"], i, None);
    let ent = t.token(&["enterprise_admin"], i, Some(&w.enterprise));
    for (who, name, roles, extra, want) in [
        (
            &ops,
            "x-1",
            json!(["integrator_ops"]),
            json!({}),
            StatusCode::FORBIDDEN,
        ),
        (
            &ent,
            "pm-1",
            json!(["project_manager"]),
            json!({"customer_id": w.enterprise}),
            StatusCode::CREATED,
        ),
        (
            &ent,
            "pm-2",
            json!(["owner_rep"]),
            json!({"customer_id": w.owner}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            &ent,
            "boss",
            json!(["integrator_admin"]),
            json!({}),
            StatusCode::FORBIDDEN,
        ),
        (
            &ent,
            "root",
            json!(["platform_admin"]),
            json!({}),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let (s, v) = t.post("/v1/users", who, body(name, roles, extra)).await;
        assert_eq!(s, want, "{name}: {v}");
    }
    // The integrator's user list has everyone created under it.
    let (_, list) = t.get("/v1/users", &w.admin).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
}

pub async fn login_issues_tokens_and_refuses_wrong_passwords(t: T) {
    let w = world(&t, "CT", "220100", "220102").await;
    let platform = t.token(&["platform_admin"], None, None);
    let (s, _) = t
        .post("/v1/users", &platform, json!({"username": "ct-admin", "password": "Strong-pass-2026", "roles": ["integrator_admin"], "integrator_id": w.integrator}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let login = |u: &str, p: &str| json!({"username": u, "password": p});
    let (s, tok) = t
        .call(
            Method::POST,
            "/v1/auth/token",
            None,
            Some(login("CT-ADMIN", "Strong-pass-2026")),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{tok}");
    assert_eq!(
        (tok["token_type"].as_str(), tok["expires_in"].as_i64()),
        (Some("Bearer"), Some(900))
    );
    let (s, me) = t.get("/v1/me", tok["access_token"].as_str().unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["integrator_id"], w.integrator.as_str());
    assert_eq!(me["roles"], json!(["integrator_admin"]));
    for (u, p) in [("ct-admin", "wrong-Pass-1"), ("nobody", "Strong-pass-2026")] {
        let (s, v) = t
            .call(Method::POST, "/v1/auth/token", None, Some(login(u, p)))
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(
            v["detail"], "wrong username or password",
            "no hint which one was wrong"
        );
    }
    let (s, jwks) = t
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    assert_eq!(
        (s, jwks["keys"][0]["alg"].as_str()),
        (StatusCode::OK, Some("ES256"))
    );
}

pub async fn lists_paginate(t: T) {
    let w = world(&t, "CT", "220100", "220102").await;
    for n in 0..7 {
        t.create(
            "/v1/projects",
            &w.admin,
            project_body(&w.enterprise, None, &format!("22010{}", n % 5 + 2)),
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/v1/projects?limit=3&cursor={c}"),
            None => "/v1/projects?limit=3".to_string(),
        };
        let (s, page) = t.get(&q, &w.admin).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        assert!(page["items"].as_array().unwrap().len() <= 3);
        seen.extend(ids(&page));
        match page["next"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 8);
    // The same through the enterprise's access entries.
    let ent = t.token(
        &["project_manager"],
        Some(&w.integrator),
        Some(&w.enterprise),
    );
    let (_, p1) = t.get("/v1/projects?limit=5", &ent).await;
    assert_eq!(p1["items"].as_array().unwrap().len(), 5);
    let c = p1["next"].as_str().unwrap();
    let (_, p2) = t
        .get(&format!("/v1/projects?limit=5&cursor={c}"), &ent)
        .await;
    assert_eq!(p2["items"].as_array().unwrap().len(), 3);
    assert!(p2["next"].is_null());
    let (s, _) = t.get("/v1/projects?cursor=garbage!", &w.admin).await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "a malformed cursor is the client's error"
    );
}

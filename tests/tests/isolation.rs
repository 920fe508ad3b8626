//! The isolation suite (black-box). It reads the served OpenAPI document and, for every protected
//! operation, tries it with: no token, an expired token signed by the server's own key, a token
//! signed by another key, foreign tenants' tokens, and same-tenant tokens of roles the operation
//! does not list in `x-roles`. All must be refused without leaking that tenant A's objects exist.
//! A new route is covered the moment it is added to the router (routes are registered through
//! their OpenAPI description); a route with a path parameter the suite has no fixture for fails
//! the suite instead of being skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;

use serde_json::{Value, json};
use smartsite_shared::auth::{Claims, LocalIssuer};
use smartsite_tests::Server;
use smartsite_tests::world::{World, onboard, provision_crane};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_smartsite-under-test"))
}

/// The id of tenant A's object a path parameter stands for, and an id of the same shape that
/// exists nowhere.
fn fixture_for(
    path: &str,
    a: &World,
    alarm: &str,
    billing: &Billing,
    worker: &str,
) -> (String, String) {
    let segs: Vec<&str> = path.split('/').collect();
    let mut real = path.to_owned();
    let mut ghost = path.to_owned();
    for (i, seg) in segs.iter().enumerate() {
        if !seg.starts_with('{') {
            continue;
        }
        let collection = segs.get(i.wrapping_sub(1)).copied().unwrap_or("");
        let (id, none) = match collection {
            "integrators" => (
                a.integrator.clone(),
                "int-00000000000000000000000000000000".to_owned(),
            ),
            "customers" => (
                a.enterprise.clone(),
                "cus-00000000000000000000000000000000".to_owned(),
            ),
            "projects" => (
                a.project.clone(),
                "prj-00000000000000000000000000000000".to_owned(),
            ),
            "suppliers" => (
                a.supplier.clone(),
                "sup-00000000000000000000000000000000".to_owned(),
            ),
            "device-models" => (
                a.model.clone(),
                "mdl-00000000000000000000000000000000".to_owned(),
            ),
            "blacklist" => (
                a.blacklist.clone(),
                "blk-00000000000000000000000000000000".to_owned(),
            ),
            "devices" => (
                a.device.clone(),
                "dev-00000000000000000000000000000000".to_owned(),
            ),
            "alarms" => (
                alarm.to_owned(),
                "alm-00000000000000000000000000000000".to_owned(),
            ),
            // Enterprise reports are about a customer.
            "enterprises" => (
                a.enterprise.clone(),
                "cus-00000000000000000000000000000000".to_owned(),
            ),
            // `{year}` of an enterprise's year summary and `{seq}` of a ledger entry: not ids;
            // the customer or project before them decides visibility.
            "safety-fund" => ("2026".to_owned(), "2026".to_owned()),
            "entries" => ("1".to_owned(), "1".to_owned()),
            "packages" => (
                billing.package.clone(),
                "pkg-00000000000000000000000000000000".to_owned(),
            ),
            "subscriptions" => (
                billing.subscription.clone(),
                "sub-00000000000000000000000000000000".to_owned(),
            ),
            "invoices" => (
                billing.invoice.clone(),
                "inv-20260100000000000000000000000000000000".to_owned(),
            ),
            // A person enrolled in A's project (workforce).
            "workers" => (
                worker.to_owned(),
                "wkr-00000000000000000000000000000000".to_owned(),
            ),
            // A's government's region; the ghost is a district no one governs.
            "regions" => ("220100".to_owned(), "220199".to_owned()),
            other => panic!(
                "the isolation suite has no fixture for {{…}} after /{other}/ in {path}: add one"
            ),
        };
        real = real.replacen(seg, &id, 1);
        ghost = ghost.replacen(seg, &none, 1);
    }
    (real, ghost)
}

/// Tenant A's billing objects: a package, a subscription of A's project, and the invoice of
/// closing last month.
struct Billing {
    package: String,
    subscription: String,
    invoice: String,
}

async fn billing_of(api: &smartsite_tests::world::Api, a: &World) -> Billing {
    let ia = a.token("integrator_admin");
    let package = api
        .create(
            "/v1/packages",
            ia,
            json!({"name": "基础版", "model": "full_solution", "prices": [{"unit": "project_month", "price_fen": 300_000}]}),
        )
        .await
        .unwrap();
    let last_month = smartsite_shared::calendar::Period::of_date(
        smartsite_shared::calendar::Period::containing(chrono::Utc::now()).first_day()
            - chrono::Days::new(1),
    );
    let subscription = api
        .create(
            "/v1/subscriptions",
            ia,
            json!({"customer_id": a.enterprise, "project_id": a.project, "package_id": package,
                "start_date": last_month.first_day(), "funding_source": "safety_fee"}),
        )
        .await
        .unwrap();
    let (s, v) = api
        .call(
            "POST",
            "/v1/billing/close",
            Some(ia),
            Some(&json!({"period": last_month.to_string()})),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    let invoice = v["items"][0]["id"].as_str().unwrap().to_owned();
    Billing {
        package,
        subscription,
        invoice,
    }
}

/// A person enrolled in A's project (a team first), by A's labour officer; the `worker_id`.
async fn worker_of(api: &smartsite_tests::world::Api, a: &World) -> String {
    let lo = a.token("labour_officer");
    let team = api
        .create(
            &format!("/v1/projects/{}/teams", a.project),
            lo,
            json!({"name": "钢筋班", "subcontractor_name": "宏达劳务",
                "subcontractor_uscc": smartsite_tests::world::uscc("91220101F00000001")}),
        )
        .await
        .unwrap();
    let (s, v) = api
        .call(
            "POST",
            &format!("/v1/projects/{}/workers", a.project),
            Some(lo),
            Some(&json!({"id_number": smartsite_tests::world::resident_id("220102", "19900101", "011"), "name": "张三",
                "phone": "13812345678", "id_valid_until": "long_term", "work_type": "010",
                "work_role": "20", "team_id": team, "entry_date": "2026-05-06"})),
        )
        .await
        .unwrap();
    assert_eq!(s, 201, "{v}");
    v["worker_id"].as_str().unwrap().to_owned()
}

/// Collections that are not tenant data, with the foreign roles that legitimately read tenant A's
/// objects in them. For those (collection, role) pairs the "answers like a nonexistent id" check
/// cannot hold — the object is visible by design — so the suite checks instead that the answer is
/// not a 500 and leaks none of A's tenant ids. Every other check (401 for bad tokens, 403/404 for
/// roles outside `x-roles`, foreign roles not listed here) applies unchanged.
const SHARED_REGISTRIES: &[(&str, &[&str])] = &[
    // The supplier registry is platform-wide public data: a government blacklists a manufacturer
    // across integrators, and every integrator registers and reads the same suppliers.
    (
        "suppliers",
        &["integrator_admin", "integrator_ops", "gov_supervisor"],
    ),
    // Device models likewise (a compliance mark is per integrator and never shown to another).
    (
        "device-models",
        &["integrator_admin", "integrator_ops", "gov_supervisor"],
    ),
    // Blacklist entries are government sanctions every integrator must be able to check before
    // buying or binding a device (issuer's tenant ids withheld). Governments are NOT listed: they
    // see only entries overlapping their jurisdiction, so B's government must get 404 for A's.
    ("blacklist", &["integrator_admin", "integrator_ops"]),
    // A region's alarm rules are published regulation, readable by anyone (writing them stays
    // with the region's government, which the x-roles and jurisdiction checks cover).
    (
        "regions",
        &["integrator_admin", "gov_supervisor", "enterprise_admin"],
    ),
];

/// Whether `role` of another tenant may legitimately read A's objects under `path`.
fn shared_with(path: &str, role: &str) -> bool {
    let collection = path
        .trim_start_matches("/v1/")
        .split('/')
        .next()
        .unwrap_or("");
    SHARED_REGISTRIES
        .iter()
        .any(|(c, roles)| *c == collection && roles.contains(&role))
}

/// The request body of an operation: its schema's example, with every id pointed at tenant A.
fn body_for(doc: &Value, op: &Value, a: &World) -> Option<Value> {
    let schema = &op["requestBody"]["content"]["application/json"]["schema"];
    let reference = schema["$ref"].as_str()?;
    let name = reference.rsplit('/').next()?;
    let mut example = doc["components"]["schemas"][name]["example"].clone();
    if example.is_null() {
        return Some(json!({}));
    }
    if let Some(obj) = example.as_object_mut() {
        for (k, v) in obj.iter_mut() {
            let Some(s) = v.as_str() else { continue };
            *v = match (k.as_str(), s.split('-').next()) {
                ("owner_customer_id", _) => json!(a.owner),
                (_, Some("cus")) => json!(a.enterprise),
                (_, Some("int")) => json!(a.integrator),
                (_, Some("prj")) => json!(a.project),
                (_, Some("sup")) => json!(a.supplier),
                (_, Some("mdl")) => json!(a.model),
                _ => v.clone(),
            };
        }
    }
    Some(example)
}

fn leaks(body: &Value, a: &World) -> Option<String> {
    let text = body.to_string();
    a.ids()
        .iter()
        .find(|id| text.contains(**id))
        .map(|id| id.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protected_operation_refuses_strangers_without_leaking() {
    let (server, api, admin) = Server::spawn_as_admin(bin()).await.unwrap();
    // A governs Changchun; B governs Jilin City and builds there: their jurisdictions do not meet.
    let a = onboard(&api, &admin, "a", "220100", "220102", 1)
        .await
        .unwrap();
    let b = onboard(&api, &admin, "b", "220200", "220202", 2)
        .await
        .unwrap();

    // Tokens that must never work.
    let keys = server.data_dir.join("keys");
    let real_key = LocalIssuer::load_or_create(&keys, smartsite::serve::ISSUER, 900).unwrap();
    let now = smartsite_shared::store::now_epoch();
    let platform_claims = Claims {
        sub: "usr-x".into(),
        integrator_id: None,
        customer_id: None,
        roles: vec!["platform_admin".into()],
    };
    let expired = real_key
        .issue_with_expiry(platform_claims.clone(), now - 7200, now - 3600)
        .unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other_key =
        LocalIssuer::load_or_create(other_dir.path(), smartsite::serve::ISSUER, 900).unwrap();
    let forged = other_key.issue(platform_claims, now).unwrap();

    let before_a = api
        .call(
            "GET",
            &format!("/v1/customers/{}/export", a.enterprise),
            Some(a.token("integrator_admin")),
            None,
        )
        .await
        .unwrap();
    assert_eq!(before_a.0, 200);

    // An alarm of A's: a crane of A's publishes 95 % moment over MQTT (TC-MOMENT warning).
    let creds = smartsite_tests::mqtt::DeviceCreds::from_answer(
        &provision_crane(&api, &a, "a-TC-ISO").await.unwrap(),
    )
    .unwrap();
    let mqtts = server.endpoints["mqtts"].as_str().unwrap();
    let mut dev = smartsite_tests::mqtt::connect(&creds, mqtts, false, &creds.device_id).unwrap();
    dev.connack().await.unwrap().unwrap();
    dev.publish_acked(
        &creds.telemetry,
        &json!({"ts": chrono::Utc::now().to_rfc3339(), "moment_pct": 95.0}),
    )
    .await
    .unwrap();
    let (_, alarms) = api
        .call(
            "GET",
            &format!("/v1/alarms?project_id={}", a.project),
            Some(a.token("safety_officer")),
            None,
        )
        .await
        .unwrap();
    let alarm = alarms["items"][0]["id"].as_str().unwrap().to_owned();

    let billing = billing_of(&api, &a).await;
    let worker = worker_of(&api, &a).await;

    let (_, doc) = api.call("GET", "/openapi.json", None, None).await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let foreigners = [
        (
            "B integrator_admin",
            "integrator_admin",
            b.token("integrator_admin"),
        ),
        (
            "B gov_supervisor",
            "gov_supervisor",
            b.token("gov_supervisor"),
        ),
        (
            "B enterprise_admin",
            "enterprise_admin",
            b.token("enterprise_admin"),
        ),
    ];

    let mut checked = Vec::new();
    let mut open_to_all = Vec::new();
    let mut shared = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op.get("security").is_none() {
                continue; // public: login, JWKS, health
            }
            let what = format!("{} {path}", method.to_uppercase());
            let m = method.to_uppercase();
            let (real, ghost) = fixture_for(path, &a, &alarm, &billing, &worker);
            let body = body_for(&doc, op, &a);
            let has_id = path.contains('{');

            for (label, token) in [
                ("no token", None),
                ("expired token", Some(expired.as_str())),
                ("token of another key", Some(forged.as_str())),
            ] {
                let (s, v) = api.call(&m, &real, token, body.as_ref()).await.unwrap();
                assert_eq!(s, 401, "{what} with {label}: {v}");
                assert!(
                    v["type"].as_str().unwrap_or("").ends_with("/unauthorized"),
                    "{what}: {v}"
                );
            }

            for (label, role, token) in foreigners {
                let (s, v) = api
                    .call(&m, &real, Some(token), body.as_ref())
                    .await
                    .unwrap();
                if has_id && shared_with(path, role) {
                    // Public registry data (see SHARED_REGISTRIES): readable, but nothing of A's
                    // tenant data may come with it.
                    if let Some(id) = leaks(&v, &a) {
                        panic!("{what} as {label} answered {s} with A's id {id}: {v}");
                    }
                    shared.push(format!("{what} as {label}: {s}"));
                } else if has_id {
                    let (gs, gv) = api
                        .call(&m, &ghost, Some(token), body.as_ref())
                        .await
                        .unwrap();
                    assert!(
                        !(200..300).contains(&s),
                        "{what} as {label} succeeded on A's object: {v}"
                    );
                    assert_eq!(
                        (s, &v["type"]),
                        (gs, &gv["type"]),
                        "{what} as {label}: A's id answers unlike a nonexistent one"
                    );
                } else if let Some(id) = leaks(&v, &a) {
                    panic!("{what} as {label} answered {s} with A's id {id}: {v}");
                }
                assert!(s != 500, "{what} as {label}: {v}");
            }

            let allowed: Vec<&str> = op["x-roles"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let wrong: Vec<(&str, &str)> = a
                .tokens
                .iter()
                .map(|(r, t)| (*r, t.as_str()))
                .chain(std::iter::once(("platform_admin", admin.as_str())))
                .filter(|(r, _)| !allowed.contains(r))
                .collect();
            if wrong.is_empty() {
                open_to_all.push(what.clone());
            }
            for (role, token) in wrong {
                let (s, v) = api
                    .call(&m, &real, Some(token), body.as_ref())
                    .await
                    .unwrap();
                assert!(
                    s == 403 || s == 404,
                    "{what} as A's {role} (not in x-roles) answered {s}: {v}"
                );
            }
            checked.push(what);
        }
    }
    // The operations API.md promises must all be among those the document lists and we checked.
    for must in [
        "POST /v1/integrators",
        "POST /v1/customers",
        "POST /v1/customers/{id}/suspend",
        "POST /v1/customers/{id}/resume",
        "POST /v1/projects",
        "GET /v1/projects",
        "GET /v1/projects/{id}",
        "POST /v1/users",
        "POST /v1/suppliers",
        "POST /v1/device-models",
        "POST /v1/blacklist",
        "GET /v1/blacklist/{id}",
        "GET /v1/projects/{id}/safety-fund",
        "POST /v1/projects/{id}/safety-fund/progress",
        "POST /v1/projects/{id}/safety-fund/owner-payments",
        "POST /v1/projects/{id}/safety-fund/expenditures",
        "GET /v1/projects/{id}/safety-fund/statement",
        "GET /v1/enterprises/{customer_id}/safety-fund/{year}",
        "POST /v1/packages",
        "GET /v1/packages/{id}",
        "POST /v1/subscriptions",
        "POST /v1/subscriptions/{id}/suspend",
        "POST /v1/subscriptions/{id}/resume",
        "POST /v1/subscriptions/{id}/change-package",
        "POST /v1/subscriptions/{id}/end",
        "POST /v1/usage",
        "POST /v1/billing/close",
        "GET /v1/invoices",
        "GET /v1/invoices/{id}",
        "POST /v1/invoices/{id}/issue",
        "POST /v1/invoices/{id}/credit-notes",
        "POST /v1/projects/{id}/teams",
        "GET /v1/projects/{id}/teams",
        "POST /v1/projects/{id}/workers",
        "GET /v1/projects/{id}/workers",
        "POST /v1/projects/{id}/workers/{worker_id}/exit",
        "GET /v1/workers/{id}",
        "POST /v1/workers/{id}/training",
        "GET /v1/pii-reveals",
        "GET /v1/projects/{id}/attendance",
        "GET /v1/projects/{id}/headcount",
        "GET /v1/projects/{id}/gate-decisions",
    ] {
        assert!(
            checked.iter().any(|c| c == must),
            "{must} missing from the OpenAPI document"
        );
    }
    eprintln!(
        "isolation: {} protected operations checked; open to every role: {open_to_all:?}; \
         shared registry answers to foreigners: {shared:?}",
        checked.len()
    );
    // B's government (Jilin City) does not overlap A's entry (Changchun): 404, like no entry.
    let (s, _) = api
        .call(
            "GET",
            &format!("/v1/blacklist/{}", a.blacklist),
            Some(b.token("gov_supervisor")),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 404);

    // Nothing of A changed.
    let after_a = api
        .call(
            "GET",
            &format!("/v1/customers/{}/export", a.enterprise),
            Some(a.token("integrator_admin")),
            None,
        )
        .await
        .unwrap();
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("exported_at");
        v
    };
    assert_eq!(strip(before_a.1), strip(after_a.1));
}

/// The whole onboarding over HTTP, as API.md describes it, then the lifecycle of a customer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_visibility_and_lifecycle_over_http() {
    let (server, api, admin) = Server::spawn_as_admin(bin()).await.unwrap();
    let a = onboard(&api, &admin, "ct", "220000", "220102", 3)
        .await
        .unwrap();
    let b = onboard(&api, &admin, "cm", "220200", "220104", 4)
        .await
        .unwrap();

    let list = |token: String| {
        let api = api.clone();
        async move {
            let (s, v) = api
                .call("GET", "/v1/projects", Some(&token), None)
                .await
                .unwrap();
            assert_eq!(s, 200);
            let mut ids: Vec<String> = v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_str().unwrap().to_owned())
                .collect();
            ids.sort();
            ids
        }
    };
    let mut both = vec![a.project.clone(), b.project.clone()];
    both.sort();
    // The province-level government of A sees B's Changchun project too; B's city government
    // (Jilin City) sees neither Changchun project.
    assert_eq!(list(a.token("gov_supervisor").to_owned()).await, both);
    assert!(list(b.token("gov_supervisor").to_owned()).await.is_empty());
    for role in [
        "integrator_admin",
        "integrator_ops",
        "enterprise_admin",
        "project_manager",
        "safety_officer",
        "labour_officer",
        "owner_rep",
    ] {
        assert_eq!(
            list(a.token(role).to_owned()).await,
            vec![a.project.clone()],
            "{role}"
        );
    }
    assert_eq!(
        list(admin.clone()).await,
        both,
        "the platform admin sees all"
    );

    // Suspend the enterprise: its users read, cannot write; resume restores writes.
    let ia = a.token("integrator_admin");
    let new_user = |n: &str| json!({"username": n, "password": "Another-pass-1", "roles": ["labour_officer"], "customer_id": a.enterprise});
    let (s, _) = api
        .call(
            "POST",
            &format!("/v1/customers/{}/suspend", a.enterprise),
            Some(ia),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    let (s, v) = api
        .call(
            "POST",
            "/v1/users",
            Some(a.token("enterprise_admin")),
            Some(&new_user("late-1")),
        )
        .await
        .unwrap();
    assert_eq!(
        (s, v["type"].as_str()),
        (
            403,
            Some("https://smartsite.dev/problems/customer-suspended")
        )
    );
    assert_eq!(
        api.call(
            "GET",
            &format!("/v1/projects/{}", a.project),
            Some(a.token("safety_officer")),
            None
        )
        .await
        .unwrap()
        .0,
        200
    );
    let (s, _) = api
        .call(
            "POST",
            &format!("/v1/customers/{}/resume", a.enterprise),
            Some(ia),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    assert_eq!(
        api.call(
            "POST",
            "/v1/users",
            Some(a.token("enterprise_admin")),
            Some(&new_user("late-1"))
        )
        .await
        .unwrap()
        .0,
        201
    );

    // Offboard the owner: the export comes back, and its users can no longer sign in.
    let (s, export) = api
        .call(
            "POST",
            &format!("/v1/customers/{}/offboard", a.owner),
            Some(ia),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{export}");
    assert_eq!(export["projects"][0]["id"], a.project.as_str());
    assert_eq!(export["users"][0]["username"], "ct-owner-rep");
    assert!(
        api.login("ct-owner-rep", smartsite_tests::world::PASSWORD)
            .await
            .is_err()
    );

    // The documentation page lists the operations.
    let html = reqwest::get(format!("{}/docs", server.http()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("/v1/projects/{id}") && html.contains("integrator_admin"));
}

//! Billing HTTP handlers (API.md, Billing). Roles are checked before bodies are parsed, so a
//! caller without the right learns nothing from body validation; other tenants' objects answer
//! 404 exactly like ids that exist nowhere.

use crate::domain::{Period, shanghai_date};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use smartsite_shared::auth::{Caller, Role, roles_json};
use smartsite_shared::domain::bounds::report_sum;
use smartsite_shared::domain::tenancy::{CustomerId, ProjectId};
use smartsite_shared::export::{self, Cell, Format, Table};
use smartsite_shared::http::{List, ListParams, Problem};
use smartsite_shared::ids::IntegratorId;

use crate::AppState;
use crate::service::{
    API_SOURCE, CloseFailure, CreditNote, Invoice, InvoiceScope, MAX_EVENTS, NewPackage,
    NewSubscription, ServiceError, StoredPackage, Subscription, UsageResult, UsageStatus,
};

/// Who defines packages, manages subscriptions, posts usage, closes periods, issues invoices.
pub const STAFF_ROLES: &[Role] = &[Role::IntegratorAdmin, Role::IntegratorOps];
/// Who reads packages, subscriptions and invoices: the integrator's staff, and an enterprise's
/// administrator for its own (invoices: see [`INVOICE_READ_ROLES`]).
pub const READ_ROLES: &[Role] = &[
    Role::IntegratorAdmin,
    Role::IntegratorOps,
    Role::EnterpriseAdmin,
];

/// Who reads invoices: [`READ_ROLES`], and a project owner's representative (建设单位) for the
/// invoices of the projects its customer owns, whoever they are billed to.
pub const INVOICE_READ_ROLES: &[Role] = &[
    Role::IntegratorAdmin,
    Role::IntegratorOps,
    Role::EnterpriseAdmin,
    Role::OwnerRep,
];

fn err(e: ServiceError) -> Problem {
    match e {
        ServiceError::Store(s) => s.into(),
        ServiceError::Invalid(b) => Problem::validation(&b.field, b.message),
        ServiceError::NotFound => Problem::not_found(),
        ServiceError::Conflict(c) => Problem::conflict(c),
        other => Problem::internal(&other),
    }
}

/// A JSON body, parsed after the rights check: syntax errors 400, field errors 422 naming it.
fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return Problem::malformed(format!("invalid JSON: {inner}"));
        }
        let msg = inner.to_string();
        let msg = msg.split(" at line ").next().unwrap_or_default().to_owned();
        let field = if path == "." {
            msg.split('`').nth(1).unwrap_or("body").to_owned()
        } else {
            path
        };
        Problem::validation(&field, msg)
    })
}

/// The caller's integrator, after the role check.
fn tenant(caller: &Caller, roles: &[Role]) -> Result<IntegratorId, Problem> {
    caller.require(roles)?;
    caller
        .integrator
        .clone()
        .ok_or_else(|| Problem::forbidden("billing belongs to an integrator"))
}

/// Whether the caller sees records of `customer_id`: staff see all, customers their own.
fn owns(caller: &Caller, customer_id: &str) -> bool {
    caller.staff_of().is_some()
        || caller
            .customer
            .as_ref()
            .is_some_and(|c| c.as_str() == customer_id)
}

/// The owner customer the caller reads invoices for: a project owner's representative's own
/// customer (never staff or an enterprise's administrator, who read by what is billed to whom).
fn as_owner(caller: &Caller) -> Option<&CustomerId> {
    if caller.staff_of().is_some() || caller.has(Role::EnterpriseAdmin) {
        return None;
    }
    caller
        .customer
        .as_ref()
        .filter(|_| caller.has(Role::OwnerRep))
}

/// Whether the caller sees an invoice of its integrator: staff all of them, an enterprise's
/// administrator those billed to its customer, an owner's representative those of the projects
/// its customer owns today (`owners` caches the projects' owners across one listing).
async fn sees_invoice(
    state: &AppState,
    caller: &Caller,
    i: &IntegratorId,
    inv: &Invoice,
    owners: &mut std::collections::HashMap<String, Option<CustomerId>>,
) -> Result<bool, Problem> {
    let Some(me) = as_owner(caller) else {
        return Ok(owns(caller, &inv.customer_id));
    };
    if !owners.contains_key(&inv.project_id) {
        let owner = match ProjectId::parse("project_id", &inv.project_id) {
            Ok(pid) => state
                .directory
                .project(i, &pid)
                .await?
                .and_then(|p| p.owner_customer_id),
            Err(_) => None,
        };
        owners.insert(inv.project_id.clone(), owner);
    }
    Ok(owners
        .get(&inv.project_id)
        .is_some_and(|o| o.as_ref() == Some(me)))
}

fn today() -> NaiveDate {
    shanghai_date(Utc::now())
}

fn created<T: serde::Serialize>(v: T) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

fn package_json(p: &StoredPackage) -> serde_json::Value {
    serde_json::to_value(p).unwrap_or_default()
}

// ---- packages

#[utoipa::path(post, path = "/v1/packages", tag = "billing", request_body = NewPackage,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(STAFF_ROLES)))),
    responses((status = 201, body = Object, description = "`{id, version, …}`"), (status = 422, description = "invalid package")))]
pub async fn create_package(
    State(state): State<AppState>,
    caller: Caller,
    bytes: Bytes,
) -> Result<Response, Problem> {
    let i = tenant(&caller, STAFF_ROLES)?;
    let new: NewPackage = body(&bytes)?;
    let p = state
        .billing
        .create_package(&i, new, Utc::now())
        .await
        .map_err(err)?;
    Ok(created(package_json(&p)))
}

#[utoipa::path(post, path = "/v1/packages/{id}/versions", tag = "billing", params(("id" = String, Path)),
    request_body = NewPackage, security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(STAFF_ROLES)))),
    responses((status = 201, body = Object, description = "the new version `{id, version, …}`"), (status = 404, description = "no such package")))]
pub async fn create_version(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, Problem> {
    let i = tenant(&caller, STAFF_ROLES)?;
    if state
        .billing
        .package(&i, &id, None)
        .await
        .map_err(err)?
        .is_none()
    {
        return Err(Problem::not_found());
    }
    let new: NewPackage = body(&bytes)?;
    let p = state
        .billing
        .create_version(&i, &id, new, Utc::now())
        .await
        .map_err(err)?;
    Ok(created(package_json(&p)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct VersionQuery {
    /// A version number; the latest when absent.
    pub version: Option<u32>,
}

#[utoipa::path(get, path = "/v1/packages", tag = "billing", params(ListParams),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = Object, description = "`{items, next}`: the latest version of each package")))]
pub async fn list_packages(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<ListParams>,
) -> Result<Json<serde_json::Value>, Problem> {
    let i = tenant(&caller, READ_ROLES)?;
    let (packages, next) = state
        .billing
        .list_packages(&i, page.limit(), page.cursor.as_deref())
        .await
        .map_err(err)?;
    let items: Vec<serde_json::Value> = packages.iter().map(package_json).collect();
    Ok(Json(serde_json::json!({"items": items, "next": next})))
}

#[utoipa::path(get, path = "/v1/packages/{id}", tag = "billing", params(("id" = String, Path), VersionQuery),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = Object), (status = 404, description = "not found")))]
pub async fn get_package(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    let i = tenant(&caller, READ_ROLES)?;
    let p = state
        .billing
        .package(&i, &id, q.version)
        .await
        .map_err(err)?
        .ok_or_else(Problem::not_found)?;
    Ok(Json(package_json(&p)))
}

// ---- subscriptions

async fn visible_subscription(
    state: &AppState,
    caller: &Caller,
    roles: &[Role],
    id: &str,
) -> Result<(IntegratorId, Subscription), Problem> {
    let i = tenant(caller, roles)?;
    let s = state
        .billing
        .subscription(&i, id)
        .await
        .map_err(err)?
        .filter(|s| owns(caller, &s.customer_id))
        .ok_or_else(Problem::not_found)?;
    Ok((i, s))
}

#[utoipa::path(post, path = "/v1/subscriptions", tag = "billing", request_body = NewSubscription,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(STAFF_ROLES)))),
    responses((status = 201, body = Object, description = "the subscription, `id` among its fields"),
        (status = 404, description = "customer or project not found or not visible"), (status = 422, description = "invalid field")))]
pub async fn create_subscription(
    State(state): State<AppState>,
    caller: Caller,
    bytes: Bytes,
) -> Result<Response, Problem> {
    let i = tenant(&caller, STAFF_ROLES)?;
    let new: NewSubscription = body(&bytes)?;
    let cid = CustomerId::parse("customer_id", &new.customer_id)?;
    let pid = ProjectId::parse("project_id", &new.project_id)?;
    state
        .directory
        .visible_customer(&caller, &cid)
        .await?
        .ok_or_else(Problem::not_found)?;
    let p = state
        .directory
        .visible_project(&caller, &pid)
        .await?
        .filter(|p| p.integrator_id == i)
        .ok_or_else(Problem::not_found)?;
    if p.contractor_customer_id != cid && p.owner_customer_id.as_ref() != Some(&cid) {
        return Err(Problem::validation(
            "customer_id",
            "the customer is neither the project's contractor nor its owner",
        ));
    }
    let s = state
        .billing
        .create_subscription(&i, new, Utc::now())
        .await
        .map_err(err)?;
    Ok(created(s.view(today())))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SubscriptionQuery {
    pub customer_id: Option<String>,
    pub project_id: Option<String>,
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/subscriptions", tag = "billing", params(SubscriptionQuery),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = Object, description = "`{items, next}`")))]
pub async fn list_subscriptions(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<SubscriptionQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    let i = tenant(&caller, READ_ROLES)?;
    let today = today();
    let page = ListParams {
        limit: q.limit,
        cursor: q.cursor.clone(),
    };
    let got = state
        .billing
        .list_subscriptions_page(&i, page.limit(), page.cursor.clone(), |s| {
            owns(&caller, &s.customer_id)
                && q.customer_id.as_ref().is_none_or(|c| *c == s.customer_id)
                && q.project_id.as_ref().is_none_or(|p| *p == s.project_id)
        })
        .await
        .map_err(err)?;
    let items: Vec<serde_json::Value> = got.items.iter().map(|s| s.view(today)).collect();
    Ok(Json(serde_json::json!({"items": items, "next": got.next})))
}

#[utoipa::path(get, path = "/v1/subscriptions/{id}", tag = "billing", params(("id" = String, Path)),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = Object), (status = 404, description = "not found or not visible")))]
pub async fn get_subscription(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    let (_, s) = visible_subscription(&state, &caller, READ_ROLES, &id).await?;
    Ok(Json(s.view(today())))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"from": "2026-11-05", "to": "2026-11-14"}))]
pub struct SuspendBody {
    /// First stopped day (停工), Asia/Shanghai.
    #[schema(value_type = String, format = Date)]
    pub from: NaiveDate,
    /// Last stopped day, if known; otherwise until `/resume`.
    #[schema(value_type = Option<String>, format = Date)]
    pub to: Option<NaiveDate>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"on": "2026-11-15"}))]
pub struct DateBody {
    /// `/resume`: the first working day again; `/end`: the last billed day.
    #[schema(value_type = String, format = Date)]
    pub on: NaiveDate,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"package_id": "pkg-0", "on": "2026-11-21"}))]
pub struct ChangeBody {
    pub package_id: String,
    /// The latest when absent.
    pub package_version: Option<u32>,
    /// The date of the change: an upgrade applies from it, a downgrade from the next month.
    #[schema(value_type = String, format = Date)]
    pub on: NaiveDate,
}

#[utoipa::path(post, path = "/v1/subscriptions/{id}/suspend", operation_id = "suspend_subscription", tag = "billing", params(("id" = String, Path)),
    request_body = SuspendBody, security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(STAFF_ROLES)))),
    responses((status = 200, body = Object), (status = 404, description = "not found"), (status = 409, description = "already suspended")))]
pub async fn suspend(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<serde_json::Value>, Problem> {
    let (i, _) = visible_subscription(&state, &caller, STAFF_ROLES, &id).await?;
    let b: SuspendBody = body(&bytes)?;
    let s = state
        .billing
        .suspend(&i, &id, b.from, b.to)
        .await
        .map_err(err)?;
    Ok(Json(s.view(today())))
}

#[utoipa::path(post, path = "/v1/subscriptions/{id}/resume", operation_id = "resume_subscription", tag = "billing", params(("id" = String, Path)),
    request_body = DateBody, security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(STAFF_ROLES)))),
    responses((status = 200, body = Object), (status = 409, description = "not suspended")))]
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<serde_json::Value>, Problem> {
    let (i, _) = visible_subscription(&state, &caller, STAFF_ROLES, &id).await?;
    let b: DateBody = body(&bytes)?;
    let s = state.billing.resume(&i, &id, b.on).await.map_err(err)?;
    Ok(Json(s.view(today())))
}

#[utoipa::path(post, path = "/v1/subscriptions/{id}/change-package", tag = "billing", params(("id" = String, Path)),
    request_body = ChangeBody, security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(STAFF_ROLES)))),
    responses((status = 200, body = Object, description = "the subscription and `kind` (`upgrade`/`downgrade`)")))]
pub async fn change_package(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<serde_json::Value>, Problem> {
    let (i, _) = visible_subscription(&state, &caller, STAFF_ROLES, &id).await?;
    let b: ChangeBody = body(&bytes)?;
    let (s, kind) = state
        .billing
        .change_package(&i, &id, &b.package_id, b.package_version, b.on)
        .await
        .map_err(err)?;
    let mut v = s.view(today());
    v["kind"] = serde_json::json!(kind);
    Ok(Json(v))
}

#[utoipa::path(post, path = "/v1/subscriptions/{id}/end", tag = "billing", params(("id" = String, Path)),
    request_body = DateBody, security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(STAFF_ROLES)))),
    responses((status = 200, body = Object)))]
pub async fn end(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<serde_json::Value>, Problem> {
    let (i, _) = visible_subscription(&state, &caller, STAFF_ROLES, &id).await?;
    let b: DateBody = body(&bytes)?;
    let s = state.billing.end(&i, &id, b.on).await.map_err(err)?;
    Ok(Json(s.view(today())))
}

// ---- usage

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"events": [{"id": "evt-1", "subscription_id": "sub-0", "metric": "messages",
    "quantity": 1200, "ts": "2026-11-02T08:00:00+08:00", "device_id": "crane-1", "category": "tower_crane"}]}))]
pub struct UsageBody {
    /// `{id, subscription_id, metric, quantity, ts, device_id?, category?}`; `metric` is
    /// `messages`, `device_active`, `device_bound` or `device_unbound`; `id` is the idempotency
    /// key within the source.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<serde_json::Value>,
    /// The sender, part of the idempotency key (default `api`).
    pub source: Option<String>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct UsageAnswer {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub results: Vec<UsageResult>,
}

#[utoipa::path(post, path = "/v1/usage", tag = "billing", request_body = UsageBody,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(STAFF_ROLES)))),
    responses((status = 200, body = UsageAnswer, description = "per event: accepted, duplicate or rejected with the reason"),
        (status = 422, description = "not a usage batch")))]
pub async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    bytes: Bytes,
) -> Result<Json<UsageAnswer>, Problem> {
    let i = tenant(&caller, STAFF_ROLES)?;
    let b: UsageBody = body(&bytes)?;
    if b.events.len() > MAX_EVENTS {
        return Err(Problem::validation(
            "events",
            format!("at most {MAX_EVENTS} events per call"),
        ));
    }
    let source = b.source.as_deref().unwrap_or(API_SOURCE);
    let results = state
        .billing
        .record_usage(&i, source, &b.events, Utc::now())
        .await
        .map_err(err)?;
    let count = |s: UsageStatus| results.iter().filter(|r| r.status == s).count();
    Ok(Json(UsageAnswer {
        accepted: count(UsageStatus::Accepted),
        duplicates: count(UsageStatus::Duplicate),
        rejected: count(UsageStatus::Rejected),
        results,
    }))
}

// ---- close and invoices

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"period": "2026-10"}))]
pub struct CloseBody {
    /// `YYYY-MM`, a month that has ended (Asia/Shanghai).
    pub period: String,
}

/// The answer of a close: the list of the period's invoices (`{items, next}`), and the
/// subscriptions that could not be rated.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CloseAnswer {
    pub items: Vec<Invoice>,
    pub next: Option<String>,
    /// Subscriptions refused by the rating (an amount beyond 10^15 fen): nothing was written
    /// for them; the others are closed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<CloseFailure>,
}

#[utoipa::path(post, path = "/v1/billing/close", tag = "billing", request_body = CloseBody,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(STAFF_ROLES)))),
    responses((status = 200, body = CloseAnswer, description = "the period's invoices; the same on every re-run"),
        (status = 422, description = "bad or unfinished period")))]
pub async fn close(
    State(state): State<AppState>,
    caller: Caller,
    bytes: Bytes,
) -> Result<Json<CloseAnswer>, Problem> {
    let i = tenant(&caller, STAFF_ROLES)?;
    let b: CloseBody = body(&bytes)?;
    let period = Period::parse(&b.period).map_err(|e| Problem::validation("period", e.message))?;
    let closed = state
        .billing
        .close(&i, period, Utc::now())
        .await
        .map_err(err)?;
    Ok(Json(CloseAnswer {
        items: closed.invoices,
        next: None,
        failed: closed.failed,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct InvoiceQuery {
    pub customer_id: Option<String>,
    /// `YYYY-MM`
    pub period: Option<String>,
    /// `json` (default), `csv` or `xlsx`.
    pub format: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct FormatQuery {
    /// `json` (default), `csv` or `xlsx`.
    pub format: Option<String>,
}

/// The export: one row per line (发票号, 客户, 项目, 计费项, 数量, 单价(元), 金额(元)), then 合计.
async fn table(state: &AppState, i: &IntegratorId, invoices: &[Invoice]) -> Result<Table, Problem> {
    let mut t = Table::new(
        "发票",
        &[
            "发票号",
            "客户",
            "项目",
            "计费项",
            "数量",
            "单价(元)",
            "金额(元)",
        ],
    );
    for inv in invoices {
        let customer = match CustomerId::parse("customer_id", &inv.customer_id) {
            Ok(c) => state.directory.customer(i, &c).await?.map(|c| c.name),
            Err(_) => None,
        }
        .unwrap_or_else(|| inv.customer_id.clone());
        let project = match ProjectId::parse("project_id", &inv.project_id) {
            Ok(p) => state.directory.project(i, &p).await?.map(|p| p.name),
            Err(_) => None,
        }
        .unwrap_or_else(|| inv.project_id.clone());
        for l in &inv.lines {
            t.push(vec![
                inv.number.as_str().into(),
                customer.as_str().into(),
                project.as_str().into(),
                l.description.as_str().into(),
                // Milli-units: a number cell (a credit's negative quantity stays a number).
                Cell::Decimal(l.quantity_milli, 3),
                Cell::Fen(l.unit_price_fen),
                Cell::Fen(l.amount_fen),
            ]);
        }
    }
    t.push(vec![
        "合计".into(),
        Cell::Empty,
        Cell::Empty,
        Cell::Empty,
        Cell::Empty,
        Cell::Empty,
        Cell::Fen(report_sum(invoices.iter().map(|inv| inv.total_fen))),
    ]);
    Ok(t)
}

#[utoipa::path(get, path = "/v1/invoices", tag = "billing", params(InvoiceQuery),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(INVOICE_READ_ROLES)))),
    responses((status = 200, body = List<Invoice>, description = "JSON, or a CSV/XLSX attachment with `?format=`"),
        (status = 404, description = "customer not found or not visible")))]
pub async fn list_invoices(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<InvoiceQuery>,
) -> Result<Response, Problem> {
    let i = tenant(&caller, INVOICE_READ_ROLES)?;
    let format = Format::parse(q.format.as_deref())?;
    let period = q
        .period
        .as_deref()
        .map(Period::parse)
        .transpose()
        .map_err(|e| Problem::validation("period", e.message))?;
    // Customers see their own invoices only (an owner's representative: those of its customer's
    // projects); asking for another customer's is a 404.
    let customer = match (&caller.customer, q.customer_id) {
        (Some(mine), Some(asked)) if mine.as_str() != asked => return Err(Problem::not_found()),
        (Some(mine), _) => Some(mine.as_str().to_owned()),
        (None, asked) => asked,
    };
    if let Some(c) = &customer {
        let cid = CustomerId::parse("customer_id", c).map_err(|_| Problem::not_found())?;
        state
            .directory
            .visible_customer(&caller, &cid)
            .await?
            .ok_or_else(Problem::not_found)?;
    }
    let params = ListParams {
        limit: q.limit,
        cursor: q.cursor,
    };
    let (limit, cursor) = match format {
        // An export holds everything asked for.
        Format::Csv | Format::Xlsx => (10_000, None),
        Format::Json => (params.limit(), params.cursor.clone()),
    };
    let scope = match (as_owner(&caller), customer.as_deref()) {
        (Some(owner), _) => InvoiceScope::Owner(owner.as_str()),
        (None, Some(c)) => InvoiceScope::Customer(c),
        (None, None) => InvoiceScope::All,
    };
    let (mut items, next) = state
        .billing
        .list_invoices(&i, scope, period, limit, cursor)
        .await
        .map_err(err)?;
    if let InvoiceScope::Owner(_) = scope {
        // Listed by the owner at close; shown only while the customer still owns the project.
        let mut owners = std::collections::HashMap::new();
        let mut kept = Vec::with_capacity(items.len());
        for inv in items {
            if sees_invoice(&state, &caller, &i, &inv, &mut owners).await? {
                kept.push(inv);
            }
        }
        items = kept;
    }
    match format {
        Format::Json => Ok(Json(List { items, next }).into_response()),
        f => {
            let t = table(&state, &i, &items).await?;
            let stem = format!(
                "invoices-{}",
                period
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "all".into())
            );
            export::attachment(&t, f, &stem)
        }
    }
}

async fn visible_invoice(
    state: &AppState,
    caller: &Caller,
    roles: &[Role],
    id: &str,
) -> Result<(IntegratorId, Invoice), Problem> {
    let i = tenant(caller, roles)?;
    let inv = state
        .billing
        .invoice(&i, id)
        .await
        .map_err(err)?
        .ok_or_else(Problem::not_found)?;
    if !sees_invoice(state, caller, &i, &inv, &mut Default::default()).await? {
        return Err(Problem::not_found());
    }
    Ok((i, inv))
}

#[utoipa::path(get, path = "/v1/invoices/{id}", tag = "billing", params(("id" = String, Path), FormatQuery),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(INVOICE_READ_ROLES)))),
    responses((status = 200, body = Invoice, description = "JSON, or a CSV/XLSX attachment with `?format=`"),
        (status = 404, description = "not found or not visible")))]
pub async fn get_invoice(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<FormatQuery>,
) -> Result<Response, Problem> {
    let (i, inv) = visible_invoice(&state, &caller, INVOICE_READ_ROLES, &id).await?;
    match Format::parse(q.format.as_deref())? {
        Format::Json => {
            let notes = state.billing.credit_notes(&i, &id).await.map_err(err)?;
            let mut v = serde_json::to_value(&inv).map_err(|e| Problem::internal(&e))?;
            v["credit_notes"] = serde_json::to_value(notes).map_err(|e| Problem::internal(&e))?;
            Ok(Json(v).into_response())
        }
        f => {
            let t = table(&state, &i, std::slice::from_ref(&inv)).await?;
            export::attachment(&t, f, &inv.number)
        }
    }
}

macro_rules! transition {
    ($name:ident, $path:literal, $method:ident, $what:literal) => {
        #[doc = $what]
        #[utoipa::path(post, path = $path, operation_id = concat!(stringify!($name), "_invoice"), tag = "billing", params(("id" = String, Path)),
            security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(STAFF_ROLES)))),
            responses((status = 200, body = Invoice), (status = 404, description = "not found"),
                (status = 409, description = "not allowed from the invoice's status")))]
        pub async fn $name(
            State(state): State<AppState>,
            caller: Caller,
            Path(id): Path<String>,
        ) -> Result<Json<Invoice>, Problem> {
            let (i, _) = visible_invoice(&state, &caller, STAFF_ROLES, &id).await?;
            Ok(Json(
                state
                    .billing
                    .$method(&i, &id, Utc::now())
                    .await
                    .map_err(err)?,
            ))
        }
    };
}

transition!(
    issue,
    "/v1/invoices/{id}/issue",
    issue,
    "draft → issued; a subscription funded by civilized_fee or safety_fee hands the invoice to the safety fund."
);
transition!(pay, "/v1/invoices/{id}/pay", pay, "issued → paid.");
transition!(
    void,
    "/v1/invoices/{id}/void",
    void,
    "draft or issued → void."
);

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount_fen": 10000, "reason": "停工期间设备未使用"}))]
pub struct CreditBody {
    pub amount_fen: i64,
    pub reason: String,
}

#[utoipa::path(post, path = "/v1/invoices/{id}/credit-notes", tag = "billing", params(("id" = String, Path)),
    request_body = CreditBody, security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(STAFF_ROLES)))),
    responses((status = 201, body = CreditNote), (status = 409, description = "invoice not issued or paid"),
        (status = 422, description = "amount beyond the invoice total")))]
pub async fn credit_note(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, Problem> {
    let (i, _) = visible_invoice(&state, &caller, STAFF_ROLES, &id).await?;
    let b: CreditBody = body(&bytes)?;
    let (_, note) = state
        .billing
        .credit_note(
            &i,
            &id,
            b.amount_fen,
            &b.reason,
            &caller.user_id,
            Utc::now(),
        )
        .await
        .map_err(err)?;
    Ok(created(note))
}

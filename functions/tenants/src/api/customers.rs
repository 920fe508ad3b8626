//! Customers of an integrator: government regions (主管部门), enterprises (施工企业), project
//! owners (建设单位). Lifecycle: active → suspended → active, and offboarded (final, exportable).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use smartsite_shared::accounts;
use smartsite_shared::auth::{Caller, Role, roles_json};
use smartsite_shared::directory::User;
use smartsite_shared::domain::tenancy::{
    self, Customer, CustomerId, CustomerKind, Project, RegionCode, Status, Uscc,
};
use smartsite_shared::http::{ApiJson, List, ListParams, Problem};

use crate::AppState;
use crate::api::now_rfc3339;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"kind": "enterprise", "name": "吉林建工集团", "region_code": "220100", "uscc": "91220101MA00000013"}))]
pub struct CreateCustomer {
    pub kind: CustomerKind,
    pub name: String,
    /// GB/T 2260; for a government customer, the region it governs.
    #[schema(value_type = String)]
    pub region_code: RegionCode,
    /// Unified social credit code; required for enterprises and project owners.
    #[schema(value_type = Option<String>)]
    pub uscc: Option<Uscc>,
}

pub const WRITE_ROLES: &[Role] = &[Role::IntegratorAdmin, Role::IntegratorOps];
pub const ADMIN_ROLES: &[Role] = &[Role::IntegratorAdmin];
pub const READ_ROLES: &[Role] = &[
    Role::IntegratorAdmin,
    Role::IntegratorOps,
    Role::GovSupervisor,
    Role::EnterpriseAdmin,
    Role::ProjectManager,
    Role::SafetyOfficer,
    Role::LabourOfficer,
    Role::OwnerRep,
];
pub const EXPORT_ROLES: &[Role] = &[Role::IntegratorAdmin, Role::EnterpriseAdmin];

/// Onboards a customer of the caller's integrator.
#[utoipa::path(post, path = "/v1/customers", operation_id = "create_customer", tag = "tenancy", request_body = CreateCustomer,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(WRITE_ROLES)))),
    responses((status = 201, body = Customer), (status = 422, description = "invalid field")))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateCustomer>,
) -> Result<(StatusCode, Json<Customer>), Problem> {
    caller.require(WRITE_ROLES)?;
    let integrator = caller
        .staff_of()
        .ok_or_else(|| Problem::forbidden("integrator staff only"))?;
    if req.kind != CustomerKind::GovRegion && req.uscc.is_none() {
        return Err(Problem::validation(
            "uscc",
            "required for enterprises and project owners",
        ));
    }
    let customer = Customer {
        id: CustomerId::generate(),
        integrator_id: integrator.clone(),
        kind: req.kind,
        name: tenancy::parse_name("name", &req.name)?,
        region_code: req.region_code,
        uscc: req.uscc,
        status: Status::Active,
        created_at: now_rfc3339(),
        status_changed_at: None,
        status_changed_by: None,
    };
    state
        .directory
        .create_customer(&customer)
        .await
        .map_err(Problem::from)?;
    tracing::info!(integrator_id = %integrator, customer_id = %customer.id, "customer created");
    Ok((StatusCode::CREATED, Json(customer)))
}

/// Customers: all of the integrator's for its staff, one's own for customer users.
#[utoipa::path(get, path = "/v1/customers", operation_id = "list_customers", tag = "tenancy", params(ListParams),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = List<Customer>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<ListParams>,
) -> Result<Json<List<Customer>>, Problem> {
    caller.require(READ_ROLES)?;
    if let Some(i) = caller.staff_of() {
        let p = state
            .directory
            .list_customers(i, page.limit(), page.cursor.clone())
            .await
            .map_err(Problem::from)?;
        return Ok(Json(List {
            items: p.items,
            next: p.next,
        }));
    }
    let own = match (&caller.integrator, &caller.customer) {
        (Some(i), Some(c)) => state
            .directory
            .customer(i, c)
            .await
            .map_err(Problem::from)?,
        _ => None,
    };
    Ok(Json(List {
        items: own.into_iter().collect(),
        next: None,
    }))
}

async fn load(state: &AppState, caller: &Caller, id: &str) -> Result<Customer, Problem> {
    let id = CustomerId::parse("id", id).map_err(|_| Problem::not_found())?;
    state
        .directory
        .visible_customer(caller, &id)
        .await
        .map_err(Problem::from)?
        .ok_or_else(Problem::not_found)
}

/// One customer.
#[utoipa::path(get, path = "/v1/customers/{id}", operation_id = "get_customer", tag = "tenancy", params(("id" = String, Path)),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = Customer), (status = 404, description = "not found or not yours")))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Customer>, Problem> {
    Ok(Json(load(&state, &caller, &id).await?))
}

/// The customer `id` if the caller may change its status and it is in one of `from`.
async fn check_transition(
    state: &AppState,
    caller: &Caller,
    id: &str,
    from: &[Status],
) -> Result<Customer, Problem> {
    // Existence first (404 for anything not visible), then the role (403).
    let current = load(state, caller, id).await?;
    caller.require(ADMIN_ROLES)?;
    if caller.staff_of() != Some(&current.integrator_id) {
        return Err(Problem::not_found());
    }
    if !from.contains(&current.status) {
        return Err(Problem::conflict(
            format!("customer is {:?}", current.status).to_lowercase(),
        ));
    }
    Ok(current)
}

/// Stores `current`, as `check_transition` answered it, with status `to` (409 if its status
/// changed in between).
async fn apply_transition(
    state: &AppState,
    caller: &Caller,
    current: &Customer,
    to: Status,
) -> Result<Customer, Problem> {
    let mut next = current.clone();
    next.status = to;
    next.status_changed_at = Some(now_rfc3339());
    next.status_changed_by = Some(caller.user_id.clone());
    state
        .directory
        .update_customer(&next, current)
        .await
        .map_err(Problem::from)?;
    tracing::info!(customer_id = %next.id, status = ?to, by = %caller.user_id, "customer status changed");
    Ok(next)
}

async fn transition(
    state: &AppState,
    caller: &Caller,
    id: &str,
    from: &[Status],
    to: Status,
) -> Result<Customer, Problem> {
    let current = check_transition(state, caller, id, from).await?;
    apply_transition(state, caller, &current, to).await
}

/// Suspends a customer: its users keep read access, their writes are refused; its devices keep
/// reporting and their data is flagged.
#[utoipa::path(post, path = "/v1/customers/{id}/suspend", operation_id = "suspend_customer", tag = "tenancy", params(("id" = String, Path)),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(ADMIN_ROLES)))),
    responses((status = 200, body = Customer), (status = 409, description = "not active")))]
pub async fn suspend(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Customer>, Problem> {
    Ok(Json(
        transition(&state, &caller, &id, &[Status::Active], Status::Suspended).await?,
    ))
}

/// Resumes a suspended customer.
#[utoipa::path(post, path = "/v1/customers/{id}/resume", operation_id = "resume_customer", tag = "tenancy", params(("id" = String, Path)),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(ADMIN_ROLES)))),
    responses((status = 200, body = Customer), (status = 409, description = "not suspended")))]
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Customer>, Problem> {
    Ok(Json(
        transition(&state, &caller, &id, &[Status::Suspended], Status::Active).await?,
    ))
}

/// Everything the platform holds for one customer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CustomerExport {
    pub customer: Customer,
    pub projects: Vec<Project>,
    pub users: Vec<User>,
    pub exported_at: String,
}

async fn build_export(state: &AppState, customer: Customer) -> Result<CustomerExport, Problem> {
    let mut projects = Vec::new();
    let mut users = Vec::new();
    let mut cursor = None;
    loop {
        let p = state
            .directory
            .list_customers_projects(&customer, 200, cursor)
            .await
            .map_err(Problem::from)?;
        projects.extend(p.items);
        match p.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut cursor = None;
    loop {
        let p = state
            .directory
            .list_users(Some(&customer.integrator_id), 200, cursor)
            .await
            .map_err(Problem::from)?;
        users.extend(
            p.items
                .into_iter()
                .filter(|u| u.customer_id.as_ref() == Some(&customer.id)),
        );
        match p.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(CustomerExport {
        customer,
        projects,
        users,
        exported_at: now_rfc3339(),
    })
}

/// Offboards a customer (final): its users' sign-in accounts are disabled and sign-in is refused
/// from then on; the answer is the full export. 503 when some account could not be disabled: the
/// customer is then left as it was, and offboarding it again is safe.
#[utoipa::path(post, path = "/v1/customers/{id}/offboard", tag = "tenancy", params(("id" = String, Path)),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(ADMIN_ROLES)))),
    responses((status = 200, body = CustomerExport), (status = 409, description = "already offboarded"),
        (status = 503, description = "some users could not be disabled; the customer is unchanged: retry")))]
pub async fn offboard(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CustomerExport>, Problem> {
    let current =
        check_transition(&state, &caller, &id, &[Status::Active, Status::Suspended]).await?;
    let mut export = build_export(&state, current.clone()).await?;
    // The users' accounts are disabled BEFORE the status changes. Offboarding is final (a second
    // call answers 409), so were the status changed first, a failed disable could never be
    // finished through the API and those users would keep signing in with Cognito. This way a
    // failure leaves the customer's status unchanged (503) and the operator calls offboard again:
    // disabling an already-disabled user is a no-op. The cost: if the status change itself then
    // fails (store unavailable, or a concurrent suspend or resume: 409), the customer is still
    // active or suspended with its users disabled until offboard is called again.
    // A user created for this customer between the listing above and the status change (it is
    // refused only once the customer is offboarded) is not disabled; that window is a few
    // requests long.
    let failed = accounts::disable_all(state.accounts.as_ref(), &export.users).await;
    if !failed.is_empty() {
        for (user, e) in &failed {
            tracing::error!(
                customer_id = %current.id, user_id = %user.id, username = %user.username,
                error = ?e, "offboarding: cannot disable the user's sign-in account"
            );
        }
        return Err(Problem::unavailable().detail(format!(
            "{} of the customer's {} users could not be disabled; the customer is unchanged: \
             retry",
            failed.len(),
            export.users.len()
        )));
    }
    export.customer = apply_transition(&state, &caller, &current, Status::Offboarded).await?;
    Ok(Json(export))
}

/// Exports a customer's data (its integrator's admin, or its own enterprise admin).
#[utoipa::path(get, path = "/v1/customers/{id}/export", tag = "tenancy", params(("id" = String, Path)),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(EXPORT_ROLES)))),
    responses((status = 200, body = CustomerExport)))]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CustomerExport>, Problem> {
    let c = load(&state, &caller, &id).await?;
    caller.require(EXPORT_ROLES)?;
    Ok(Json(build_export(&state, c).await?))
}

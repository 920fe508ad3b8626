//! Users. Who may create whom:
//! - the platform admin: platform admins, and integrator admins/ops of any integrator;
//! - an integrator admin: its integrator's admins/ops, and users of its customers;
//! - an enterprise admin: users of its own enterprise.
//!
//! A customer user's roles must fit the customer's kind (government: `gov_supervisor`;
//! enterprise: `enterprise_admin`, `project_manager`, `safety_officer`, `labour_officer`;
//! project owner: `owner_rep`).

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use smartsite_shared::auth::{Caller, Role, RoleScope, roles_json};
use smartsite_shared::directory::User;
use smartsite_shared::domain::tenancy::{CustomerId, CustomerKind, Status, UserId, Username};
use smartsite_shared::http::{ApiJson, List, ListParams, Problem};
use smartsite_shared::ids::IntegratorId;
use smartsite_shared::password;

use crate::AppState;
use crate::api::now_rfc3339;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"username": "ct-ops", "password": "Changchun-2026", "roles": ["integrator_ops"], "integrator_id": "int-0"}))]
pub struct CreateUser {
    pub username: String,
    pub password: String,
    pub roles: Vec<Role>,
    #[schema(value_type = Option<String>)]
    pub integrator_id: Option<IntegratorId>,
    #[schema(value_type = Option<String>)]
    pub customer_id: Option<CustomerId>,
}

pub const CREATE_ROLES: &[Role] = &[
    Role::PlatformAdmin,
    Role::IntegratorAdmin,
    Role::EnterpriseAdmin,
];
pub const LIST_ROLES: &[Role] = &[Role::PlatformAdmin, Role::IntegratorAdmin];

fn fits(kind: CustomerKind, role: Role) -> bool {
    match kind {
        CustomerKind::GovRegion => role == Role::GovSupervisor,
        CustomerKind::Enterprise => {
            matches!(
                role,
                Role::EnterpriseAdmin
                    | Role::ProjectManager
                    | Role::SafetyOfficer
                    | Role::LabourOfficer
            )
        }
        CustomerKind::ProjectOwner => role == Role::OwnerRep,
    }
}

/// Creates a user.
#[utoipa::path(post, path = "/v1/users", operation_id = "create_user", tag = "tenancy", request_body = CreateUser,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(CREATE_ROLES)))),
    responses((status = 201, body = User), (status = 409, description = "username taken"),
              (status = 422, description = "invalid field")))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<User>), Problem> {
    caller.require(CREATE_ROLES)?;
    let username = Username::parse("username", &req.username)?;
    password::check_strength(&req.password).map_err(|m| Problem::validation("password", m))?;
    let mut roles = req.roles.clone();
    roles.sort();
    roles.dedup();
    let Some(first) = roles.first().copied() else {
        return Err(Problem::validation("roles", "at least one role"));
    };
    let scope = first.scope();
    if roles.iter().any(|r| r.scope() != scope) {
        return Err(Problem::validation(
            "roles",
            "platform, integrator and customer roles cannot be mixed",
        ));
    }

    // Resolve where the new user belongs, refusing anything outside the caller's own tenant as
    // "not found" so other tenants' ids are never confirmed.
    let not_found =
        |field: &str| Problem::validation(field, "no such integrator or customer of yours");
    let (integrator, customer) = match scope {
        RoleScope::Platform => {
            if !caller.is_platform_admin() {
                return Err(Problem::forbidden(
                    "only the platform admin creates platform admins",
                ));
            }
            if req.integrator_id.is_some() || req.customer_id.is_some() {
                return Err(Problem::validation(
                    "integrator_id",
                    "platform admins belong to no tenant",
                ));
            }
            (None, None)
        }
        RoleScope::Integrator => {
            if req.customer_id.is_some() {
                return Err(Problem::validation(
                    "customer_id",
                    "integrator staff belong to no customer",
                ));
            }
            let i = match (
                caller.is_platform_admin(),
                caller.staff_of(),
                req.integrator_id.clone(),
            ) {
                (true, _, Some(i)) => i,
                (true, _, None) => return Err(Problem::validation("integrator_id", "required")),
                (false, Some(own), None) if caller.has(Role::IntegratorAdmin) => own.clone(),
                (false, Some(own), Some(i)) if caller.has(Role::IntegratorAdmin) && &i == own => i,
                (false, Some(_), Some(_)) if caller.has(Role::IntegratorAdmin) => {
                    return Err(not_found("integrator_id"));
                }
                _ => {
                    return Err(Problem::forbidden(
                        "only integrator admins create integrator staff",
                    ));
                }
            };
            if state
                .directory
                .integrator(&i)
                .await
                .map_err(Problem::from)?
                .is_none()
            {
                return Err(not_found("integrator_id"));
            }
            (Some(i), None)
        }
        RoleScope::Customer => {
            let i = caller
                .integrator
                .clone()
                .ok_or_else(|| Problem::forbidden("no tenant"))?;
            let c = req
                .customer_id
                .clone()
                .ok_or_else(|| Problem::validation("customer_id", "required"))?;
            let allowed = caller.has(Role::IntegratorAdmin)
                || (caller.has(Role::EnterpriseAdmin) && caller.customer.as_ref() == Some(&c));
            if !allowed {
                return Err(
                    if caller.has(Role::EnterpriseAdmin) || caller.has(Role::IntegratorOps) {
                        not_found("customer_id")
                    } else {
                        Problem::forbidden("your roles do not allow this")
                    },
                );
            }
            if req.integrator_id.as_ref().is_some_and(|x| x != &i) {
                return Err(not_found("integrator_id"));
            }
            let cust = state
                .directory
                .customer(&i, &c)
                .await
                .map_err(Problem::from)?
                .ok_or_else(|| not_found("customer_id"))?;
            if cust.status == Status::Offboarded {
                return Err(not_found("customer_id"));
            }
            if let Some(bad) = roles.iter().find(|r| !fits(cust.kind, **r)) {
                return Err(Problem::validation(
                    "roles",
                    format!("{} does not fit a {:?} customer", bad.as_str(), cust.kind),
                ));
            }
            (Some(i), Some(c))
        }
    };

    let user = User {
        id: UserId::generate(),
        username: username.as_str().to_owned(),
        roles,
        integrator_id: integrator,
        customer_id: customer,
        created_at: now_rfc3339(),
    };
    state.accounts.create(&user, &req.password).await?;
    tracing::info!(user_id = %user.id, by = %caller.user_id, "user created");
    Ok((StatusCode::CREATED, Json(user)))
}

/// Users of the caller's integrator (platform admin: the platform admins).
#[utoipa::path(get, path = "/v1/users", operation_id = "list_users", tag = "tenancy", params(ListParams),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(LIST_ROLES)))),
    responses((status = 200, body = List<User>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<ListParams>,
) -> Result<Json<List<User>>, Problem> {
    caller.require(LIST_ROLES)?;
    let scope = if caller.is_platform_admin() {
        None
    } else {
        caller.staff_of()
    };
    if scope.is_none() && !caller.is_platform_admin() {
        return Err(Problem::forbidden("integrator admins only"));
    }
    let p = state
        .directory
        .list_users(scope, page.limit(), page.cursor.clone())
        .await
        .map_err(Problem::from)?;
    Ok(Json(List {
        items: p.items,
        next: p.next,
    }))
}

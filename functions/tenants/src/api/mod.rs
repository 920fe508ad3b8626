//! HTTP handlers of the tenants concern.

pub mod customers;
pub mod identity;
pub mod integrators;
pub mod projects;
pub mod users;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use smartsite_shared::auth::{Caller, Role, roles_json};
use smartsite_shared::http::{self, Problem};

use crate::AppState;

/// The current instant as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Liveness of the concern and its table.
#[utoipa::path(get, path = "/v1/tenants/healthz", operation_id = "tenants_health", tag = "tenants",
    responses((status = 200, body = http::Health)))]
pub async fn health(State(state): State<AppState>) -> Result<Json<http::Health>, Problem> {
    http::check_store(&*state.store, "tenants").await
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    pub user_id: String,
    pub integrator_id: Option<String>,
    pub customer_id: Option<String>,
    pub roles: Vec<Role>,
}

pub const ME_ROLES: &[Role] = &Role::ALL;

/// Who the token says you are.
#[utoipa::path(get, path = "/v1/me", tag = "identity", security(("bearer" = [])),
    extensions(("x-roles" = json!(roles_json(ME_ROLES)))),
    responses((status = 200, body = Me), (status = 401, description = "no valid token")))]
pub async fn me(caller: Caller) -> Json<Me> {
    Json(Me {
        user_id: caller.user_id.clone(),
        integrator_id: caller.integrator.as_ref().map(|i| i.to_string()),
        customer_id: caller.customer.as_ref().map(|c| c.to_string()),
        roles: caller.roles.iter().copied().collect(),
    })
}

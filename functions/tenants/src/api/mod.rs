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
use smartsite_shared::http::Problem;
use smartsite_shared::store::{Key, keys};

use crate::AppState;

/// The current instant as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Maps directory errors at the edge.
pub fn dir_err(e: smartsite_shared::directory::DirectoryError) -> Problem {
    use smartsite_shared::directory::DirectoryError;
    match e {
        DirectoryError::Exists(what) => Problem::conflict(format!("{what} already exists")),
        DirectoryError::Store(s) => s.into(),
        DirectoryError::Corrupt(c) => Problem::internal(&c),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub concern: &'static str,
    pub store: &'static str,
}

/// Liveness of the concern and its table.
#[utoipa::path(get, path = "/v1/tenants/healthz", tag = "tenants",
    responses((status = 200, body = Health)))]
pub async fn health(State(state): State<AppState>) -> Result<Json<Health>, Problem> {
    let (pk, sk) = keys::health_probe();
    state.store.get(&Key::new(pk, sk)).await?;
    Ok(Json(Health {
        status: "ok",
        concern: "tenants",
        store: "ok",
    }))
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

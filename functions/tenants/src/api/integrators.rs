//! Integrators (集成服务商): a telecom operator's provincial branch. Created by the platform.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use smartsite_shared::auth::{Caller, Role, roles_json};
use smartsite_shared::domain::tenancy::{self, Integrator, Operator, RegionCode, Status};
use smartsite_shared::http::{ApiJson, List, ListParams, Problem};
use smartsite_shared::ids::IntegratorId;

use crate::AppState;
use crate::api::now_rfc3339;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"name": "中国电信吉林分公司", "operator": "china_telecom", "province_code": "220000"}))]
pub struct CreateIntegrator {
    pub name: String,
    pub operator: Operator,
    /// The province (GB/T 2260, province level: `xx0000`).
    #[schema(value_type = String)]
    pub province_code: RegionCode,
}

pub const CREATE_ROLES: &[Role] = &[Role::PlatformAdmin];
pub const READ_ROLES: &[Role] = &[
    Role::PlatformAdmin,
    Role::IntegratorAdmin,
    Role::IntegratorOps,
];

/// Onboards an integrator.
#[utoipa::path(post, path = "/v1/integrators", operation_id = "create_integrator", tag = "tenancy", request_body = CreateIntegrator,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(CREATE_ROLES)))),
    responses((status = 201, body = Integrator), (status = 422, description = "invalid field")))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateIntegrator>,
) -> Result<(StatusCode, Json<Integrator>), Problem> {
    caller.require(CREATE_ROLES)?;
    if !req.province_code.is_province() {
        return Err(Problem::validation(
            "province_code",
            "must be a province-level code (xx0000)",
        ));
    }
    let integrator = Integrator {
        id: tenancy::generate_integrator_id(),
        name: tenancy::parse_name("name", &req.name)?,
        operator: req.operator,
        province_code: req.province_code,
        status: Status::Active,
        created_at: now_rfc3339(),
    };
    state
        .directory
        .create_integrator(&integrator)
        .await
        .map_err(Problem::from)?;
    tracing::info!(integrator_id = %integrator.id, "integrator created");
    Ok((StatusCode::CREATED, Json(integrator)))
}

/// Integrators: all of them for the platform, one's own for its staff.
#[utoipa::path(get, path = "/v1/integrators", operation_id = "list_integrators", tag = "tenancy", params(ListParams),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = List<Integrator>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<ListParams>,
) -> Result<Json<List<Integrator>>, Problem> {
    caller.require(READ_ROLES)?;
    if caller.is_platform_admin() {
        let p = state
            .directory
            .list_integrators(page.limit(), page.cursor.clone())
            .await
            .map_err(Problem::from)?;
        return Ok(Json(List {
            items: p.items,
            next: p.next,
        }));
    }
    let own = match caller.staff_of() {
        Some(i) => state.directory.integrator(i).await.map_err(Problem::from)?,
        None => None,
    };
    Ok(Json(List {
        items: own.into_iter().collect(),
        next: None,
    }))
}

/// One integrator.
#[utoipa::path(get, path = "/v1/integrators/{id}", operation_id = "get_integrator", tag = "tenancy", params(("id" = String, Path)),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = Integrator), (status = 404, description = "not found or not yours")))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Integrator>, Problem> {
    let id = IntegratorId::parse(&id).map_err(|_| Problem::not_found())?;
    let allowed = caller.is_platform_admin() || caller.staff_of() == Some(&id);
    if !allowed {
        return Err(Problem::not_found());
    }
    state
        .directory
        .integrator(&id)
        .await
        .map_err(Problem::from)?
        .map(Json)
        .ok_or_else(Problem::not_found)
}

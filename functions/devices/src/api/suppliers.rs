//! Suppliers: the platform-wide registry of device manufacturers, unique by USCC. Public registry
//! data: every integrator and government reads all of it.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use smartsite_shared::auth::{Caller, Role, roles_json};
use smartsite_shared::domain::devices::{Supplier, SupplierId, sees_creator};
use smartsite_shared::domain::tenancy::{self, Uscc};
use smartsite_shared::http::{ApiJson, List, ListParams, Problem};

use crate::AppState;
use crate::api::{READ_ROLES, cat_err, now_rfc3339};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"name": "长沙智塔科技有限公司", "uscc": "91430100MA4L00001J"}))]
pub struct CreateSupplier {
    pub name: String,
    /// Unified social credit code of the manufacturer; unique in the registry.
    #[schema(value_type = String)]
    pub uscc: Uscc,
}

pub const WRITE_ROLES: &[Role] = &[
    Role::IntegratorAdmin,
    Role::IntegratorOps,
    Role::PlatformAdmin,
];

/// Registers a supplier. A second registration of the same USCC answers 409 naming the existing
/// supplier.
#[utoipa::path(post, path = "/v1/suppliers", operation_id = "create_supplier", tag = "devices", request_body = CreateSupplier,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(WRITE_ROLES)))),
    responses((status = 201, body = Supplier), (status = 409, description = "USCC already registered"),
        (status = 422, description = "invalid field")))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateSupplier>,
) -> Result<(StatusCode, Json<Supplier>), Problem> {
    caller.require(WRITE_ROLES)?;
    let supplier = Supplier {
        id: SupplierId::generate(),
        name: tenancy::parse_name("name", &req.name)?,
        uscc: req.uscc,
        created_at: now_rfc3339(),
        created_by: Some(caller.user_id.clone()),
        created_by_integrator_id: caller.integrator.clone(),
    };
    state
        .catalog
        .create_supplier(&supplier)
        .await
        .map_err(cat_err)?;
    tracing::info!(supplier_id = %supplier.id, by = %caller.user_id, "supplier registered");
    Ok((StatusCode::CREATED, Json(shown(&caller, supplier))))
}

/// The supplier registry.
#[utoipa::path(get, path = "/v1/suppliers", operation_id = "list_suppliers", tag = "devices", params(ListParams),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = List<Supplier>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<ListParams>,
) -> Result<Json<List<Supplier>>, Problem> {
    caller.require(READ_ROLES)?;
    let p = state
        .catalog
        .list_suppliers(page.limit(), page.cursor.clone())
        .await
        .map_err(cat_err)?;
    Ok(Json(List {
        items: p.items.into_iter().map(|s| shown(&caller, s)).collect(),
        next: p.next,
    }))
}

/// One supplier.
#[utoipa::path(get, path = "/v1/suppliers/{id}", operation_id = "get_supplier", tag = "devices", params(("id" = String, Path)),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = Supplier), (status = 404, description = "not found")))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Supplier>, Problem> {
    caller.require(READ_ROLES)?;
    let id = SupplierId::parse("id", &id).map_err(|_| Problem::not_found())?;
    state
        .catalog
        .supplier(&id)
        .await
        .map_err(cat_err)?
        .map(|s| Json(shown(&caller, s)))
        .ok_or_else(Problem::not_found)
}

/// The supplier as `caller` may see it: who registered it only for that user's own integrator
/// (and the platform administrator).
fn shown(caller: &Caller, mut s: Supplier) -> Supplier {
    if !sees_creator(
        caller.integrator.as_ref(),
        caller.is_platform_admin(),
        s.created_by_integrator_id.as_ref(),
    ) {
        s.created_by = None;
    }
    s.created_by_integrator_id = None;
    s
}

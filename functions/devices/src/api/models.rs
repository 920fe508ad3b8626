//! Device models: platform-wide, each of a registered supplier, with category, protocol and the
//! access-standard certificate number (接入标准). A model without a certificate is provisioned into
//! an integrator's projects only once that integrator marks it compliant (recorded with who and
//! when); see `Catalog::may_provision_model`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use smartsite_shared::auth::{Caller, Role, roles_json};
use smartsite_shared::domain::devices::{
    Category, ComplianceMark, DeviceModel, ModelId, Protocol, SupplierId, sees_creator,
};
use smartsite_shared::domain::{tenancy, text};
use smartsite_shared::http::{ApiJson, List, ListParams, Problem};

use crate::AppState;
use crate::api::{READ_ROLES, cat_err, now_rfc3339};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"supplier_id": "sup-0", "name": "ZT-TC100 塔机黑匣子", "category": "tower_crane",
    "protocol": "mqtt_json", "access_cert_no": "JL-JR-2026-0001"}))]
pub struct CreateModel {
    #[schema(value_type = String)]
    pub supplier_id: SupplierId,
    pub name: String,
    pub category: Category,
    pub protocol: Protocol,
    /// Access-standard certificate number, if the model has one.
    #[serde(default)]
    pub access_cert_no: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"note": "检测报告 2026-031 已核验"}))]
pub struct MarkCompliant {
    /// Why the integrator considers the model compliant (test report, acceptance record, …).
    pub note: String,
}

/// `?supplier_id=` plus paging.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ModelParams {
    /// Only this supplier's models.
    pub supplier_id: Option<String>,
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
}

/// A model as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelView {
    #[serde(flatten)]
    pub model: DeviceModel,
    /// For integrator staff only: whether your integrator has marked this model compliant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compliant_for_you: Option<bool>,
}

pub const WRITE_ROLES: &[Role] = &[
    Role::IntegratorAdmin,
    Role::IntegratorOps,
    Role::PlatformAdmin,
];
pub const COMPLIANCE_ROLES: &[Role] = &[Role::IntegratorAdmin];

async fn view(
    state: &AppState,
    caller: &Caller,
    mut model: DeviceModel,
) -> Result<ModelView, Problem> {
    if !sees_creator(
        caller.integrator.as_ref(),
        caller.is_platform_admin(),
        model.created_by_integrator_id.as_ref(),
    ) {
        model.created_by = None;
    }
    model.created_by_integrator_id = None;
    let compliant_for_you = match caller.staff_of() {
        Some(i) => Some(
            state
                .catalog
                .compliance(i, &model.id)
                .await
                .map_err(cat_err)?
                .is_some(),
        ),
        None => None,
    };
    Ok(ModelView {
        model,
        compliant_for_you,
    })
}

/// Registers a model of a registered supplier.
#[utoipa::path(post, path = "/v1/device-models", operation_id = "create_device_model", tag = "devices", request_body = CreateModel,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(WRITE_ROLES)))),
    responses((status = 201, body = ModelView), (status = 422, description = "invalid field")))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateModel>,
) -> Result<(StatusCode, Json<ModelView>), Problem> {
    caller.require(WRITE_ROLES)?;
    let name = tenancy::parse_name("name", &req.name)?;
    if req.protocol == Protocol::Hj212 && !req.category.may_use_hj212() {
        return Err(Problem::validation(
            "protocol",
            format!("a {} does not speak HJ 212", req.category.as_str()),
        ));
    }
    let model = DeviceModel {
        id: ModelId::generate(),
        supplier_id: req.supplier_id,
        name,
        category: req.category,
        protocol: req.protocol,
        access_cert_no: text::opt_line("access_cert_no", req.access_cert_no.as_deref(), 64)?,
        created_at: now_rfc3339(),
        created_by: Some(caller.user_id.clone()),
        created_by_integrator_id: caller.integrator.clone(),
    };
    state.catalog.create_model(&model).await.map_err(cat_err)?;
    tracing::info!(model_id = %model.id, supplier_id = %model.supplier_id, by = %caller.user_id,
        "device model registered");
    Ok((
        StatusCode::CREATED,
        Json(view(&state, &caller, model).await?),
    ))
}

/// The model registry, optionally one supplier's.
#[utoipa::path(get, path = "/v1/device-models", operation_id = "list_device_models", tag = "devices", params(ModelParams),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = List<ModelView>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ModelParams>,
) -> Result<Json<List<ModelView>>, Problem> {
    caller.require(READ_ROLES)?;
    let supplier = params
        .supplier_id
        .as_deref()
        .map(|s| SupplierId::parse("supplier_id", s))
        .transpose()?;
    let page = ListParams {
        limit: params.limit,
        cursor: params.cursor,
    };
    let p = state
        .catalog
        .list_models(supplier.as_ref(), page.limit(), page.cursor.clone())
        .await
        .map_err(cat_err)?;
    let items =
        futures::future::try_join_all(p.items.into_iter().map(|m| view(&state, &caller, m)))
            .await?;
    Ok(Json(List {
        items,
        next: p.next,
    }))
}

async fn load(state: &AppState, id: &str) -> Result<DeviceModel, Problem> {
    let id = ModelId::parse("id", id).map_err(|_| Problem::not_found())?;
    state
        .catalog
        .model(&id)
        .await
        .map_err(cat_err)?
        .ok_or_else(Problem::not_found)
}

/// One model.
#[utoipa::path(get, path = "/v1/device-models/{id}", operation_id = "get_device_model", tag = "devices", params(("id" = String, Path)),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = ModelView), (status = 404, description = "not found")))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ModelView>, Problem> {
    caller.require(READ_ROLES)?;
    let model = load(&state, &id).await?;
    Ok(Json(view(&state, &caller, model).await?))
}

/// Marks the model compliant for the caller's integrator (who and when are recorded). Marking
/// again answers the first mark unchanged.
#[utoipa::path(post, path = "/v1/device-models/{id}/compliance", tag = "devices",
    params(("id" = String, Path)), request_body = MarkCompliant,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(COMPLIANCE_ROLES)))),
    responses((status = 200, body = ComplianceMark), (status = 404, description = "not found")))]
pub async fn mark_compliant(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<MarkCompliant>,
) -> Result<Json<ComplianceMark>, Problem> {
    caller.require(COMPLIANCE_ROLES)?;
    let integrator = caller
        .staff_of()
        .ok_or_else(|| Problem::forbidden("integrator staff only"))?
        .clone();
    let model = load(&state, &id).await?;
    let mark = ComplianceMark {
        model_id: model.id,
        integrator_id: integrator.clone(),
        marked_by: caller.user_id.clone(),
        marked_at: now_rfc3339(),
        note: text::note("note", &req.note, 200)?,
    };
    let mark = state.catalog.mark_compliant(&mark).await.map_err(cat_err)?;
    tracing::info!(integrator_id = %integrator, model_id = %mark.model_id, by = %mark.marked_by,
        "model marked compliant");
    Ok(Json(mark))
}

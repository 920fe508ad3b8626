//! Projects: a construction site under a general contractor (GC, an enterprise customer), with an
//! optional owner, in a region, of a type that fixes its safety-fee rate.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::NaiveDate;
use serde::Deserialize;
use smartsite_shared::auth::{Caller, Role, roles_json};
use smartsite_shared::domain::bounds;
use smartsite_shared::domain::tenancy::{
    self, CustomerId, CustomerKind, Project, ProjectId, ProjectType, RegionCode, Status,
};
use smartsite_shared::http::{ApiJson, List, ListParams, Problem};

use crate::AppState;
use crate::api::now_rfc3339;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "name": "长春市朝阳区某住宅项目", "contractor_customer_id": "cus-0", "owner_customer_id": "cus-1",
    "region_code": "220102", "project_type": "building", "contract_value_fen": 12000000000i64,
    "contract_signed_date": "2026-03-01", "tender_completed_date": "2026-02-15",
    "start_date": "2026-04-01", "planned_end_date": "2027-10-31"}))]
pub struct CreateProject {
    pub name: String,
    #[schema(value_type = String)]
    pub contractor_customer_id: CustomerId,
    #[schema(value_type = Option<String>)]
    pub owner_customer_id: Option<CustomerId>,
    #[schema(value_type = String)]
    pub region_code: RegionCode,
    pub project_type: ProjectType,
    /// Construction and installation cost (建安造价) in fen.
    pub contract_value_fen: i64,
    #[schema(value_type = String, format = Date)]
    pub contract_signed_date: NaiveDate,
    #[schema(value_type = Option<String>, format = Date)]
    pub tender_completed_date: Option<NaiveDate>,
    #[schema(value_type = Option<String>, format = Date)]
    pub start_date: Option<NaiveDate>,
    #[schema(value_type = Option<String>, format = Date)]
    pub planned_end_date: Option<NaiveDate>,
}

pub const WRITE_ROLES: &[Role] = &[Role::IntegratorAdmin, Role::IntegratorOps];
pub const READ_ROLES: &[Role] = &Role::ALL;

/// Registers a project for one of the integrator's enterprise customers.
#[utoipa::path(post, path = "/v1/projects", operation_id = "create_project", tag = "tenancy", request_body = CreateProject,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(WRITE_ROLES)))),
    responses((status = 201, body = Project), (status = 422, description = "invalid field")))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateProject>,
) -> Result<(StatusCode, Json<Project>), Problem> {
    caller.require(WRITE_ROLES)?;
    let integrator = caller
        .staff_of()
        .ok_or_else(|| Problem::forbidden("integrator staff only"))?
        .clone();
    let name = tenancy::parse_name("name", &req.name)?;
    let contract_value_fen = tenancy::parse_fen("contract_value_fen", req.contract_value_fen)?;
    bounds::date("contract_signed_date", req.contract_signed_date)?;
    for (field, d) in [
        ("tender_completed_date", req.tender_completed_date),
        ("start_date", req.start_date),
        ("planned_end_date", req.planned_end_date),
    ] {
        d.map(|d| bounds::date(field, d)).transpose()?;
    }
    // The parties must be this integrator's active customers of the right kind; anything else is
    // reported as "no such customer", whether or not it exists elsewhere.
    let party = |field: &'static str, kinds: &'static [CustomerKind], id: CustomerId| {
        let state = state.clone();
        let integrator = integrator.clone();
        async move {
            match state
                .directory
                .customer(&integrator, &id)
                .await
                .map_err(Problem::from)?
            {
                Some(c) if kinds.contains(&c.kind) && c.status == Status::Active => Ok(c),
                _ => Err(Problem::validation(
                    field,
                    "no such active customer of a suitable kind",
                )),
            }
        }
    };
    party(
        "contractor_customer_id",
        &[CustomerKind::Enterprise],
        req.contractor_customer_id.clone(),
    )
    .await?;
    if let Some(o) = &req.owner_customer_id {
        party(
            "owner_customer_id",
            &[CustomerKind::ProjectOwner, CustomerKind::Enterprise],
            o.clone(),
        )
        .await?;
    }
    if let (Some(s), Some(e)) = (req.start_date, req.planned_end_date)
        && e < s
    {
        return Err(Problem::validation("planned_end_date", "before start_date"));
    }
    if let Some(t) = req.tender_completed_date
        && t > req.contract_signed_date
    {
        return Err(Problem::validation(
            "tender_completed_date",
            "after contract_signed_date",
        ));
    }
    let project = Project {
        id: ProjectId::generate(),
        integrator_id: integrator.clone(),
        name,
        contractor_customer_id: req.contractor_customer_id,
        owner_customer_id: req.owner_customer_id,
        region_code: req.region_code,
        project_type: req.project_type,
        contract_value_fen,
        contract_signed_date: req.contract_signed_date,
        tender_completed_date: req.tender_completed_date,
        start_date: req.start_date,
        planned_end_date: req.planned_end_date,
        created_at: now_rfc3339(),
    };
    state
        .directory
        .create_project(&project)
        .await
        .map_err(Problem::from)?;
    tracing::info!(integrator_id = %integrator, project_id = %project.id, "project created");
    Ok((StatusCode::CREATED, Json(project)))
}

/// The projects the caller may see (integrator staff: all of theirs; an enterprise: those it
/// contracts; an owner: its own; a government supervisor: every project in its region, across
/// integrators).
#[utoipa::path(get, path = "/v1/projects", operation_id = "list_projects", tag = "tenancy", params(ListParams),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = List<Project>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<ListParams>,
) -> Result<Json<List<Project>>, Problem> {
    let p = state
        .directory
        .visible_projects(&caller, page.limit(), page.cursor.clone())
        .await
        .map_err(Problem::from)?;
    Ok(Json(List {
        items: p.items,
        next: p.next,
    }))
}

/// One project, if the caller may see it.
#[utoipa::path(get, path = "/v1/projects/{id}", operation_id = "get_project", tag = "tenancy", params(("id" = String, Path)),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = Project), (status = 404, description = "not found or not visible")))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Project>, Problem> {
    let id = ProjectId::parse("id", &id).map_err(|_| Problem::not_found())?;
    state
        .directory
        .visible_project(&caller, &id)
        .await
        .map_err(Problem::from)?
        .map(Json)
        .ok_or_else(Problem::not_found)
}

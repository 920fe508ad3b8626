//! Alarm HTTP handlers (API.md, Device messages).

use crate::domain::{Patch, Tier};
use crate::service::{Alarm, AlarmError, Command, RuleView, Status};
use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use smartsite_shared::auth::{Caller, Role, roles_json};
use smartsite_shared::domain::tenancy::{Project, RegionCode};
use smartsite_shared::domain::text;
use smartsite_shared::fleet::visible_device;
use smartsite_shared::http::{List, ListParams, Problem};

use crate::AppState;

pub const READ_ROLES: &[Role] = &Role::ALL;
/// Who handles alarms: the project's people, the enterprise, the integrator's operators.
pub const HANDLE_ROLES: &[Role] = &[
    Role::ProjectManager,
    Role::SafetyOfficer,
    Role::EnterpriseAdmin,
    Role::IntegratorAdmin,
    Role::IntegratorOps,
    Role::PlatformAdmin,
];
/// Who sets a project's rule overrides.
pub const PROJECT_RULE_ROLES: &[Role] = &[
    Role::ProjectManager,
    Role::SafetyOfficer,
    Role::EnterpriseAdmin,
    Role::IntegratorAdmin,
    Role::IntegratorOps,
];
/// Who sets a region's rules: its government supervisor, or the platform administrator.
pub const REGION_RULE_ROLES: &[Role] = &[Role::GovSupervisor, Role::PlatformAdmin];

pub(crate) fn err(e: AlarmError) -> Problem {
    match e {
        AlarmError::Store(s) => s.into(),
        AlarmError::Conflict => Problem::conflict("the alarm changed concurrently; retry"),
        other => Problem::internal(&other),
    }
}

pub(crate) async fn project(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<Project, Problem> {
    smartsite_shared::directory::visible_project_or_404(&state.directory, caller, id).await
}

/// Government supervisors see the alarms escalated to government; everyone else who sees the
/// project sees all of its alarms.
pub(crate) fn shown_to(caller: &Caller, a: &Alarm) -> bool {
    !caller.has(Role::GovSupervisor)
        || caller.has_any(&[Role::PlatformAdmin])
        || a.escalated_to == Tier::Government
}

async fn alarm(state: &AppState, caller: &Caller, id: &str) -> Result<Alarm, Problem> {
    let a = state
        .alarms
        .get(id)
        .await
        .map_err(err)?
        .ok_or_else(Problem::not_found)?;
    project(state, caller, &a.project_id).await?;
    if !shown_to(caller, &a) {
        return Err(Problem::not_found());
    }
    Ok(a)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AlarmQuery {
    pub project_id: String,
    /// `open`, `acknowledged` or `resolved`.
    pub status: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/alarms", operation_id = "list_alarms", tag = "alarms", params(AlarmQuery),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = List<Alarm>), (status = 404, description = "project not found or not visible")))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<AlarmQuery>,
) -> Result<Json<List<Alarm>>, Problem> {
    caller.require(READ_ROLES)?;
    let p = project(&state, &caller, &q.project_id).await?;
    let status = match q.status.as_deref() {
        None => None,
        Some("open") => Some(Status::Open),
        Some("acknowledged") => Some(Status::Acknowledged),
        Some("resolved") => Some(Status::Resolved),
        Some(other) => {
            return Err(Problem::validation(
                "status",
                format!("expected open, acknowledged or resolved, got {other:?}"),
            ));
        }
    };
    let params = ListParams {
        limit: q.limit,
        cursor: q.cursor,
    };
    let (items, next) = state
        .alarms
        .list(
            p.integrator_id.as_str(),
            p.id.as_str(),
            status,
            params.limit(),
            params.cursor.clone(),
        )
        .await
        .map_err(err)?;
    Ok(Json(List {
        items: items.into_iter().filter(|a| shown_to(&caller, a)).collect(),
        next,
    }))
}

#[utoipa::path(get, path = "/v1/alarms/{id}", operation_id = "get_alarm", tag = "alarms", params(("id" = String, Path)),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = Alarm), (status = 404, description = "not found or not visible")))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Alarm>, Problem> {
    caller.require(READ_ROLES)?;
    Ok(Json(alarm(&state, &caller, &id).await?))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandleBody {
    pub note: Option<String>,
}

/// A rule patch body, parsed after the caller's rights are checked (so a stranger learns
/// nothing from body validation). Unknown parameters are refused, naming them.
fn patch_of(body: &[u8]) -> Result<Patch, Problem> {
    serde_json::from_slice::<Patch>(body).map_err(|e| {
        Problem::validation(
            "body",
            format!("expected {{\"RULE-ID\": {{\"warn\": …}}}}: {e}"),
        )
    })
}

/// The optional `{note}` body; an empty body is no note.
fn note_of(body: &[u8]) -> Result<Option<String>, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice::<HandleBody>(body)
        .map(|b| b.note)
        .map_err(|e| Problem::malformed(format!("expected {{\"note\": \"…\"}}: {e}")))
}

async fn handle(
    state: &AppState,
    caller: &Caller,
    id: &str,
    to: Status,
    note: Option<String>,
) -> Result<Alarm, Problem> {
    alarm(state, caller, id).await?;
    caller.require(HANDLE_ROLES)?;
    // Blank is no note; anything else is a multi-line note of at most 2000 characters.
    let note = note
        .filter(|n| !n.trim().is_empty())
        .map(|n| text::note("note", &n, 2000))
        .transpose()?;
    match state
        .alarms
        .handle(id, to, &caller.user_id, note)
        .await
        .map_err(err)?
    {
        None => Err(Problem::not_found()),
        Some(Ok(a)) => Ok(a),
        Some(Err(from)) => Err(Problem::conflict(format!(
            "the alarm is {} and cannot become {}",
            status_str(from),
            status_str(to)
        ))),
    }
}

fn status_str(s: Status) -> &'static str {
    match s {
        Status::Open => "open",
        Status::Acknowledged => "acknowledged",
        Status::Resolved => "resolved",
    }
}

#[utoipa::path(post, path = "/v1/alarms/{id}/acknowledge", tag = "alarms", params(("id" = String, Path)),
    request_body = HandleBody, security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(HANDLE_ROLES)))),
    responses((status = 200, body = Alarm), (status = 409, description = "not open")))]
pub async fn acknowledge(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Alarm>, Problem> {
    let note = note_of(&body)?;
    Ok(Json(
        handle(&state, &caller, &id, Status::Acknowledged, note).await?,
    ))
}

#[utoipa::path(post, path = "/v1/alarms/{id}/resolve", tag = "alarms", params(("id" = String, Path)),
    request_body = HandleBody, security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(HANDLE_ROLES)))),
    responses((status = 200, body = Alarm), (status = 409, description = "already resolved")))]
pub async fn resolve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Alarm>, Problem> {
    let note = note_of(&body)?;
    Ok(Json(
        handle(&state, &caller, &id, Status::Resolved, note).await?,
    ))
}

#[utoipa::path(get, path = "/v1/projects/{id}/alarm-rules", tag = "alarms", params(("id" = String, Path)),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = RuleView), (status = 404, description = "not found or not visible")))]
pub async fn project_rules(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RuleView>, Problem> {
    caller.require(READ_ROLES)?;
    let p = project(&state, &caller, &id).await?;
    Ok(Json(
        state
            .alarms
            .view(&p.integrator_id, p.id.as_str(), p.region_code.as_str())
            .await
            .map_err(err)?,
    ))
}

/// Replaces the project's overrides: `{"TC-MOMENT": {"warn": 85}, …}`; `null` removes a value.
#[utoipa::path(put, path = "/v1/projects/{id}/alarm-rules", tag = "alarms", params(("id" = String, Path)),
    request_body = Object, security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(PROJECT_RULE_ROLES)))),
    responses((status = 200, body = RuleView), (status = 422, description = "invalid override")))]
pub async fn put_project_rules(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<RuleView>, Problem> {
    let p = project(&state, &caller, &id).await?;
    caller.require(PROJECT_RULE_ROLES)?;
    let patch = patch_of(&body)?;
    if let Some(i) = caller.staff_of()
        && i != &p.integrator_id
    {
        return Err(Problem::not_found());
    }
    state
        .alarms
        .set_project_patch(
            &p.integrator_id,
            p.id.as_str(),
            p.region_code.as_str(),
            &patch,
        )
        .await
        .map_err(err)?
        .map_err(|e| Problem::validation(&e.field, e.message))?;
    Ok(Json(
        state
            .alarms
            .view(&p.integrator_id, p.id.as_str(), p.region_code.as_str())
            .await
            .map_err(err)?,
    ))
}

async fn region_for_write(
    state: &AppState,
    caller: &Caller,
    code: &str,
) -> Result<RegionCode, Problem> {
    let code =
        RegionCode::parse("code", code).map_err(|e| Problem::validation("code", e.to_string()))?;
    caller.require(REGION_RULE_ROLES)?;
    if caller.is_platform_admin() {
        return Ok(code);
    }
    let (Some(i), Some(c)) = (&caller.integrator, &caller.customer) else {
        return Err(Problem::forbidden(
            "only a government supervisor of the region",
        ));
    };
    let governs = state
        .directory
        .jurisdiction(i, c)
        .await
        .map_err(Problem::from)?
        .is_some_and(|r| r.covers(&code));
    if !governs {
        return Err(Problem::forbidden(
            "the region is outside your jurisdiction",
        ));
    }
    Ok(code)
}

#[utoipa::path(get, path = "/v1/regions/{code}/alarm-rules", tag = "alarms", params(("code" = String, Path)),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = Object)))]
pub async fn region_rules(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    caller.require(READ_ROLES)?;
    let code =
        RegionCode::parse("code", &code).map_err(|e| Problem::validation("code", e.to_string()))?;
    let patch = state
        .alarms
        .region_patch(code.as_str())
        .await
        .map_err(err)?;
    Ok(Json(
        serde_json::json!({ "region_code": code.as_str(), "overrides": patch }),
    ))
}

#[utoipa::path(put, path = "/v1/regions/{code}/alarm-rules", tag = "alarms", params(("code" = String, Path)),
    request_body = Object, security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(REGION_RULE_ROLES)))),
    responses((status = 200, body = Object), (status = 403, description = "outside the caller's jurisdiction")))]
pub async fn put_region_rules(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, Problem> {
    let code = region_for_write(&state, &caller, &code).await?;
    let patch = patch_of(&body)?;
    state
        .alarms
        .set_region_patch(code.as_str(), &patch)
        .await
        .map_err(err)?
        .map_err(|e| Problem::validation(&e.field, e.message))?;
    Ok(Json(
        serde_json::json!({ "region_code": code.as_str(), "overrides": patch }),
    ))
}

#[utoipa::path(get, path = "/v1/devices/{id}/commands", tag = "alarms", params(("id" = String, Path), ListParams),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = List<Command>), (status = 404, description = "not found or not visible")))]
pub async fn commands(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<ListParams>,
) -> Result<Json<List<Command>>, Problem> {
    caller.require(READ_ROLES)?;
    let d = visible_device(&state.fleet, &state.directory, &caller, &id)
        .await
        .map_err(|e| Problem::internal(&e))?
        .ok_or_else(Problem::not_found)?;
    let (items, next) = state
        .alarms
        .commands(&d, page.limit(), page.cursor.clone())
        .await
        .map_err(err)?;
    Ok(Json(List { items, next }))
}

//! The blacklist (黑名单制度): entries against a supplier, a model or one device (by serial
//! number), issued for a region by a government supervisor (within its own jurisdiction) or the
//! platform administrator. An entry blocks binding in its region and every region below it
//! (`domain::devices::blocking_entry`). Lifting is recorded; entries are never deleted.
//!
//! Visibility: integrator staff and the platform administrator see every entry (an integrator
//! must know what it may not install); a government supervisor sees the entries whose region
//! overlaps its jurisdiction (one covers the other). Who issued an entry (the government customer
//! and its integrator) is shown only to the platform administrator and the issuing integrator's
//! users: another integrator's customer ids are that integrator's tenant data.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use smartsite_shared::auth::{Caller, Role, roles_json};
use smartsite_shared::domain::devices::{
    BlacklistEntry, BlacklistId, Lifted, ModelId, Scope, SerialNo, SupplierId,
};
use smartsite_shared::domain::tenancy::RegionCode;
use smartsite_shared::domain::text;
use smartsite_shared::http::{ApiJson, List, ListParams, Problem};

use crate::AppState;
use crate::api::{READ_ROLES, cat_err, now_rfc3339};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"scope": "supplier", "target_id": "sup-0", "region_code": "220100",
    "reason": "设备数据造假，见长住建通〔2026〕12号"}))]
pub struct IssueEntry {
    pub scope: Scope,
    /// A supplier id (`scope: supplier`), a model id (`model`) or a serial number (`device`).
    pub target_id: String,
    /// Where the entry applies: this region and every region below it.
    #[schema(value_type = String)]
    pub region_code: RegionCode,
    pub reason: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"reason": "整改完成，复核通过"}))]
pub struct LiftEntry {
    pub reason: String,
}

/// `?active=true` plus paging.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BlacklistParams {
    /// `true`: only entries not lifted; `false`: only lifted ones.
    pub active: Option<bool>,
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
    /// The `next` of the previous page. A page may hold fewer than `limit` entries.
    pub cursor: Option<String>,
}

pub const ISSUE_ROLES: &[Role] = &[Role::GovSupervisor, Role::PlatformAdmin];
pub const LIFT_ROLES: &[Role] = &[Role::GovSupervisor, Role::PlatformAdmin];

/// What part of the blacklist a caller sees.
enum View {
    All,
    /// A government supervisor: entries overlapping this region.
    Overlapping(RegionCode),
    Nothing,
}

async fn view_of(state: &AppState, caller: &Caller) -> Result<View, Problem> {
    if caller.is_platform_admin() || caller.staff_of().is_some() {
        return Ok(View::All);
    }
    if caller.has(Role::GovSupervisor)
        && let (Some(i), Some(c)) = (&caller.integrator, &caller.customer)
        && let Some(region) = state
            .directory
            .jurisdiction(i, c)
            .await
            .map_err(Problem::from)?
    {
        return Ok(View::Overlapping(region));
    }
    Ok(View::Nothing)
}

fn sees(view: &View, e: &BlacklistEntry) -> bool {
    match view {
        View::All => true,
        View::Overlapping(r) => r.covers(&e.region_code) || e.region_code.covers(r),
        View::Nothing => false,
    }
}

/// The entry as `caller` may see it: the issuer's tenant ids withheld from other integrators.
fn shown(caller: &Caller, mut e: BlacklistEntry) -> BlacklistEntry {
    let own = caller.is_platform_admin()
        || (caller.integrator.is_some() && caller.integrator == e.issued_by_integrator_id);
    if !own {
        e.issued_by_customer_id = None;
        e.issued_by_integrator_id = None;
    }
    e
}

/// Issues an entry. A government supervisor issues only within its own region (422 on
/// `region_code` otherwise); the platform administrator anywhere. Supplier and model targets must
/// exist (422 on `target_id`); a device target is a serial number.
#[utoipa::path(post, path = "/v1/blacklist", operation_id = "issue_blacklist_entry", tag = "devices", request_body = IssueEntry,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(ISSUE_ROLES)))),
    responses((status = 201, body = BlacklistEntry), (status = 422, description = "invalid field")))]
pub async fn issue(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<IssueEntry>,
) -> Result<(StatusCode, Json<BlacklistEntry>), Problem> {
    caller.require(ISSUE_ROLES)?;
    let (customer, integrator) = if caller.is_platform_admin() {
        (None, None)
    } else {
        let (Some(i), Some(c)) = (&caller.integrator, &caller.customer) else {
            return Err(Problem::forbidden("government supervisors only"));
        };
        let region = state
            .directory
            .jurisdiction(i, c)
            .await
            .map_err(Problem::from)?
            .ok_or_else(|| Problem::forbidden("government supervisors only"))?;
        if !region.covers(&req.region_code) {
            return Err(Problem::validation(
                "region_code",
                format!("outside your jurisdiction ({region})"),
            ));
        }
        (Some(c.clone()), Some(i.clone()))
    };
    let target_id = match req.scope {
        Scope::Supplier => {
            let id = SupplierId::parse("target_id", &req.target_id)?;
            if state
                .catalog
                .supplier(&id)
                .await
                .map_err(cat_err)?
                .is_none()
            {
                return Err(Problem::validation("target_id", "no such supplier"));
            }
            id.to_string()
        }
        Scope::Model => {
            let id = ModelId::parse("target_id", &req.target_id)?;
            if state.catalog.model(&id).await.map_err(cat_err)?.is_none() {
                return Err(Problem::validation("target_id", "no such device model"));
            }
            id.to_string()
        }
        Scope::Device => SerialNo::parse("target_id", &req.target_id)?
            .as_str()
            .to_owned(),
    };
    let entry = BlacklistEntry {
        id: BlacklistId::generate(),
        scope: req.scope,
        target_id,
        region_code: req.region_code,
        reason: text::note("reason", &req.reason, 200)?,
        issued_by: caller.user_id.clone(),
        issued_by_customer_id: customer,
        issued_by_integrator_id: integrator,
        issued_at: now_rfc3339(),
        lifted: None,
    };
    state
        .catalog
        .issue_blacklist(&entry)
        .await
        .map_err(cat_err)?;
    // Devices already bound in scope stay bound, flagged untrusted.
    let flagged = state
        .fleet
        .flag(&entry, &entry.issued_at)
        .await
        .map_err(crate::api::devices::fleet_err)?;
    tracing::info!(blacklist_id = %entry.id, scope = entry.scope.as_str(), target = %entry.target_id,
        region = %entry.region_code, flagged, by = %caller.user_id, "blacklist entry issued");
    Ok((StatusCode::CREATED, Json(shown(&caller, entry))))
}

/// The entries the caller may see, in issue order; `?active=true` for those still in force.
#[utoipa::path(get, path = "/v1/blacklist", operation_id = "list_blacklist", tag = "devices", params(BlacklistParams),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = List<BlacklistEntry>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<BlacklistParams>,
) -> Result<Json<List<BlacklistEntry>>, Problem> {
    caller.require(READ_ROLES)?;
    let view = view_of(&state, &caller).await?;
    if matches!(view, View::Nothing) {
        return Ok(Json(List {
            items: Vec::new(),
            next: None,
        }));
    }
    let page = ListParams {
        limit: params.limit,
        cursor: params.cursor,
    };
    let p = state
        .catalog
        .list_blacklist(page.limit(), page.cursor.clone(), |e| {
            sees(&view, e) && params.active.is_none_or(|a| a == e.is_active())
        })
        .await
        .map_err(cat_err)?;
    Ok(Json(List {
        items: p.items.into_iter().map(|e| shown(&caller, e)).collect(),
        next: p.next,
    }))
}

async fn load(state: &AppState, caller: &Caller, id: &str) -> Result<BlacklistEntry, Problem> {
    let id = BlacklistId::parse("id", id).map_err(|_| Problem::not_found())?;
    let view = view_of(state, caller).await?;
    state
        .catalog
        .blacklist_entry(&id)
        .await
        .map_err(cat_err)?
        .filter(|e| sees(&view, e))
        .ok_or_else(Problem::not_found)
}

/// One entry, if the caller may see it.
#[utoipa::path(get, path = "/v1/blacklist/{id}", operation_id = "get_blacklist_entry", tag = "devices", params(("id" = String, Path)),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = BlacklistEntry), (status = 404, description = "not found or not visible")))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<BlacklistEntry>, Problem> {
    caller.require(READ_ROLES)?;
    let entry = load(&state, &caller, &id).await?;
    Ok(Json(shown(&caller, entry)))
}

/// Lifts an entry (the issuing government customer's supervisors, or the platform
/// administrator): the lifting is recorded on the entry, which stays listed. Twice: 409.
#[utoipa::path(post, path = "/v1/blacklist/{id}/lift", tag = "devices", params(("id" = String, Path)),
    request_body = LiftEntry,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(LIFT_ROLES)))),
    responses((status = 200, body = BlacklistEntry), (status = 409, description = "already lifted")))]
pub async fn lift(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<BlacklistEntry>, Problem> {
    // The role first, whatever the id (a caller without it gets the same 403 for a real entry and
    // a made-up one), then existence (404 for anything not visible), then the body.
    caller.require(LIFT_ROLES)?;
    let current = load(&state, &caller, &id).await?;
    let req: LiftEntry = smartsite_shared::http::parse_json(&body)?;
    let issuer = current.issued_by_integrator_id.is_some()
        && caller.integrator == current.issued_by_integrator_id
        && caller.customer == current.issued_by_customer_id;
    if !caller.is_platform_admin() && !issuer {
        return Err(Problem::forbidden(
            "only the issuing authority or the platform administrator may lift an entry",
        ));
    }
    if current.lifted.is_some() {
        return Err(Problem::conflict("the blacklist entry is already lifted"));
    }
    let mut lifted = current;
    lifted.lifted = Some(Lifted {
        by: caller.user_id.clone(),
        at: now_rfc3339(),
        reason: text::note("reason", &req.reason, 200)?,
    });
    state
        .catalog
        .lift_blacklist(&lifted)
        .await
        .map_err(cat_err)?;
    state
        .fleet
        .unflag(&lifted)
        .await
        .map_err(crate::api::devices::fleet_err)?;
    tracing::info!(blacklist_id = %lifted.id, by = %caller.user_id, "blacklist entry lifted");
    Ok(Json(shown(&caller, lifted)))
}

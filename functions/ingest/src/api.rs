//! HTTP reads of device data (API.md, Device messages). Visibility is the device's project's:
//! whoever may see the project sees its devices' data; anyone else gets 404.

use axum::Json;
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use smartsite_shared::auth::{Caller, Role, roles_json};
use smartsite_shared::domain::tenancy::ProjectId;
use smartsite_shared::fleet::{Device, visible_device};
use smartsite_shared::http::{List, ListParams, Problem};
use smartsite_shared::ids::IntegratorId;
use smartsite_shared::ingest::{
    DEFAULT_RETENTION_DAYS, DeviceState, IngestSettings, Quarantined, device_state, settings_key,
    stamp, stored_retention,
};
use smartsite_shared::store::keys::{self, EntityKind};
use smartsite_shared::store::records::{decode, record};
use smartsite_shared::store::{Attr, Cursor, Query as StoreQuery, SkCond};

use crate::AppState;

/// Every role may read device data of projects it can see.
pub const READ_ROLES: &[Role] = &Role::ALL;

fn internal(e: impl std::error::Error + 'static) -> Problem {
    Problem::internal(&e)
}

async fn device(state: &AppState, caller: &Caller, id: &str) -> Result<Device, Problem> {
    caller.require(READ_ROLES)?;
    visible_device(&state.fleet, &state.directory, caller, id)
        .await
        .map_err(internal)?
        .ok_or_else(Problem::not_found)
}

#[utoipa::path(get, path = "/v1/devices/{id}/state", tag = "device data", params(("id" = String, Path)),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = DeviceState), (status = 404, description = "not found or not visible")))]
pub async fn state(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeviceState>, Problem> {
    let d = device(&state, &caller, &id).await?;
    Ok(Json(device_state(state.store.as_ref(), &d).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct Range {
    /// Inclusive start (RFC 3339); default: 24 hours before `to`.
    pub from: Option<String>,
    /// Inclusive end (RFC 3339); default: now.
    pub to: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// One stored reading.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Point {
    pub ts: String,
    #[schema(value_type = Object)]
    pub values: Map<String, Value>,
    pub received_at: Option<String>,
    pub untrusted: bool,
}

fn instant(field: &str, s: &str) -> Result<DateTime<Utc>, Problem> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Problem::validation(field, format!("not an RFC 3339 instant: {e}")))
}

/// One page of a device's stored messages under `prefix` (`TS#` telemetry, `EV#` events) in the
/// range, as points: the payload without `ts`, which the key carries.
async fn stored(
    state: &AppState,
    d: &Device,
    range: &Range,
    sk: fn(&str, &str) -> String,
    prefix: &str,
) -> Result<List<Point>, Problem> {
    let to = match &range.to {
        Some(t) => instant("to", t)?,
        None => Utc::now(),
    };
    let from = match &range.from {
        Some(f) => instant("from", f)?,
        None => to - chrono::Duration::hours(24),
    };
    if from > to {
        return Err(Problem::validation("from", "must not be after `to`"));
    }
    let params = ListParams {
        limit: range.limit,
        cursor: range.cursor.clone(),
    };
    let q = StoreQuery::partition(&keys::entity(
        &d.integrator_id,
        EntityKind::Device,
        d.id.as_str(),
    ))
    .sk(SkCond::Between(sk(&stamp(from), ""), sk(&stamp(to), "~")))
    .limit(params.limit())
    .after(params.cursor.clone().map(Cursor::from_client));
    let page = state.store.query(q).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for item in &page.items {
        let ts = item
            .key
            .sk
            .strip_prefix(prefix)
            .and_then(|r| r.split('#').next())
            .unwrap_or_default()
            .to_owned();
        let values = match item.attr("payload") {
            Some(Attr::B(b)) => match serde_json::from_slice::<Map<String, Value>>(b) {
                Ok(mut m) => {
                    m.remove("ts");
                    m
                }
                Err(_) => Map::new(),
            },
            _ => Map::new(),
        };
        items.push(Point {
            ts,
            values,
            received_at: item.s("received_at").map(str::to_owned),
            untrusted: item.attr("untrusted") == Some(&Attr::Bool(true)),
        });
    }
    Ok(List {
        items,
        next: page.next.map(|c| c.as_str().to_owned()),
    })
}

#[utoipa::path(get, path = "/v1/devices/{id}/telemetry", tag = "device data",
    params(("id" = String, Path), Range),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = List<Point>), (status = 404, description = "not found or not visible")))]
pub async fn telemetry(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(range): Query<Range>,
) -> Result<Json<List<Point>>, Problem> {
    let d = device(&state, &caller, &id).await?;
    Ok(Json(
        stored(&state, &d, &range, keys::series_sk, keys::SERIES_PREFIX).await?,
    ))
}

/// The device's events (work cycles, faults, attendance…) in the range; `values` holds the
/// event's `type` and body.
#[utoipa::path(get, path = "/v1/devices/{id}/events", tag = "device data",
    params(("id" = String, Path), Range),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = List<Point>), (status = 404, description = "not found or not visible")))]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(range): Query<Range>,
) -> Result<Json<List<Point>>, Problem> {
    let d = device(&state, &caller, &id).await?;
    Ok(Json(
        stored(&state, &d, &range, keys::event_sk, keys::EVENT_PREFIX).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct QuarantineParams {
    /// The project whose quarantine to list. Without it, the platform administrator gets the
    /// platform quarantine (messages no project could be found for).
    pub project_id: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/quarantine", tag = "device data", params(QuarantineParams),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = List<Quarantined>), (status = 404, description = "project not found or not visible")))]
pub async fn quarantine(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<QuarantineParams>,
) -> Result<Json<List<Quarantined>>, Problem> {
    caller.require(READ_ROLES)?;
    let pk = match &q.project_id {
        Some(p) => {
            let id = ProjectId::parse("project_id", p).map_err(|_| Problem::not_found())?;
            let project = state
                .directory
                .visible_project(&caller, &id)
                .await
                .map_err(Problem::from)?
                .ok_or_else(Problem::not_found)?;
            keys::quarantine(project.integrator_id.as_str(), project.id.as_str())
        }
        None if caller.is_platform_admin() => keys::quarantine(keys::PLATFORM_ID, "_"),
        None => {
            return Err(Problem::validation(
                "project_id",
                "required (only the platform administrator may list the platform quarantine)",
            ));
        }
    };
    let params = ListParams {
        limit: q.limit,
        cursor: q.cursor,
    };
    // Newest first: what an operator looks at is what just went wrong.
    let page = state
        .store
        .query(
            StoreQuery::partition(&pk)
                .backward()
                .limit(params.limit())
                .after(params.cursor.map(Cursor::from_client)),
        )
        .await?;
    let items = page
        .items
        .iter()
        .map(decode)
        .collect::<Result<Vec<Quarantined>, _>>()
        .map_err(internal)?;
    Ok(Json(List {
        items,
        next: page.next.map(|c| c.as_str().to_owned()),
    }))
}

/// Who may read and change an integrator's ingest settings: its administrator, and the platform
/// administrator.
pub const SETTINGS_ROLES: &[Role] = &[Role::IntegratorAdmin, Role::PlatformAdmin];

fn settings_integrator(caller: &Caller, id: &str) -> Result<IntegratorId, Problem> {
    // The role first, whatever the id: a caller without it gets the same 403 for a real id, a
    // made-up one and a malformed one, so the answer says nothing about which exist.
    caller.require(SETTINGS_ROLES)?;
    let id = IntegratorId::parse(id).map_err(|_| Problem::not_found())?;
    let own = caller.staff_of() == Some(&id) && caller.has(Role::IntegratorAdmin);
    if !(own || caller.is_platform_admin()) {
        // Another integrator's settings are none of the caller's business: as if absent.
        return Err(Problem::not_found());
    }
    Ok(id)
}

#[utoipa::path(get, path = "/v1/integrators/{id}/ingest-settings", tag = "device data", params(("id" = String, Path)),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(SETTINGS_ROLES)))),
    responses((status = 200, body = IngestSettings), (status = 404, description = "not found or not yours")))]
pub async fn get_settings(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<IngestSettings>, Problem> {
    let i = settings_integrator(&caller, &id)?;
    state
        .directory
        .integrator(&i)
        .await
        .map_err(Problem::from)?
        .ok_or_else(Problem::not_found)?;
    let days = stored_retention(&*state.store, &i)
        .await
        .map_err(internal)?
        .unwrap_or(DEFAULT_RETENTION_DAYS);
    Ok(Json(IngestSettings {
        telemetry_retention_days: days,
    }))
}

#[utoipa::path(put, path = "/v1/integrators/{id}/ingest-settings", tag = "device data", params(("id" = String, Path)),
    request_body = IngestSettings, security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(SETTINGS_ROLES)))),
    responses((status = 200, body = IngestSettings), (status = 422, description = "out of range")))]
pub async fn put_settings(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<IngestSettings>, Problem> {
    let i = settings_integrator(&caller, &id)?;
    state
        .directory
        .integrator(&i)
        .await
        .map_err(Problem::from)?
        .ok_or_else(Problem::not_found)?;
    let settings: IngestSettings = serde_json::from_slice(&body).map_err(|e| {
        Problem::validation(
            "body",
            format!("expected {{\"telemetry_retention_days\": n}}: {e}"),
        )
    })?;
    if !(1..=3650).contains(&settings.telemetry_retention_days) {
        return Err(Problem::validation(
            "telemetry_retention_days",
            "must lie in 1..=3650",
        ));
    }
    state
        .store
        .put(record(settings_key(&i), &settings).map_err(internal)?, None)
        .await?;
    Ok(Json(settings))
}

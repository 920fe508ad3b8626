//! Devices bound to projects: provisioning (binding checks, then credentials from the
//! `DeviceRegistry` port), reading, decommissioning, credential rotation, and the integrator's
//! list of blacklist-flagged devices.
//!
//! Binding checks, in order, each a problem+json: the model exists (422 `model_id`); the category
//! is the model's (422 `category`); the category configuration parses (422 naming the field);
//! `mn` only for dust/noise monitors (a non-standard MN is accepted with a `warnings` entry); the
//! integrator may provision the model (access certificate or its own compliance mark; 422
//! `model_id`); no active blacklist entry covers the supplier, model or serial in the project's
//! region (409 `blacklisted` with `blacklist_entry_id`); the supplier's serial is not bound
//! already (409). Then the registry issues credentials and the device is stored in one
//! transaction with its serial pointer; if that transaction fails, the credentials just issued
//! are revoked.
//!
//! Credentials (private key, device token) are answered exactly once and never stored in clear.
//!
//! Bulk provisioning (`POST /v1/projects/{id}/devices:bulk`, a CSV of up to 5,000 rows and
//! 10 MiB) runs every row through the same checks and write, a few rows at a time, and answers
//! a result per row: `created` (with its credentials, once), `exists` (the serial is bound to a
//! device of this project already: idempotent re-imports) or `error` (the problem; the other rows
//! go on).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use smartsite_shared::auth::{Caller, Role, roles_json};
use smartsite_shared::catalog::BlacklistVersions;
use smartsite_shared::domain::bulk_csv;
use smartsite_shared::domain::devices::{
    Candidate, Category, DeviceId, Mn, ModelId, SerialNo, SupplierId, blocking_entry, parse_config,
};
use smartsite_shared::domain::tenancy::{Project, ProjectId};
use smartsite_shared::fleet::{Device, DeviceStatus, Flag, FleetError};
use smartsite_shared::http::{ApiJson, List, ListParams, Problem};
use smartsite_shared::iot::{Credentials, DeviceIdentity, RegistryError, TopicKind};

use crate::AppState;
use crate::api::{cat_err, now_rfc3339};

/// Who provisions, decommissions and rotates: the project's integrator staff.
pub const WRITE_ROLES: &[Role] = &[Role::IntegratorAdmin, Role::IntegratorOps];
/// Who reads a device: anyone who may see its project.
pub const READ_ROLES: &[Role] = &Role::ALL;
/// Who lists the integrator's devices (`?flagged=true`).
pub const FLEET_ROLES: &[Role] = &[Role::IntegratorAdmin, Role::IntegratorOps];

/// The provisioning request. The category's configuration fields (e.g. `rated_load_t`,
/// `rated_moment_tm` for a tower crane) sit beside these, flattened into the same object.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"model_id": "mdl-0", "serial_no": "TC-2026-0001", "category": "tower_crane",
    "rated_load_t": 8.0, "rated_moment_tm": 125.0}))]
pub struct ProvisionDevice {
    pub model_id: String,
    pub serial_no: String,
    pub category: Category,
    /// HJ 212 device number, dust/noise monitors only.
    pub mn: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TopicsView {
    pub telemetry: String,
    pub events: String,
    pub cmd: String,
}

/// A device as callers see it: never any credential beyond the certificate id.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceView {
    pub id: String,
    pub project_id: String,
    pub model_id: String,
    pub supplier_id: String,
    pub category: Category,
    pub serial_no: String,
    pub mn: Option<String>,
    pub config: BTreeMap<String, f64>,
    pub status: DeviceStatus,
    pub certificate_id: String,
    pub topics: TopicsView,
    /// Blacklist entries in force against the device.
    pub flags: Vec<Flag>,
    /// Whether its data is untrusted (any flag).
    pub untrusted: bool,
    pub created_by: String,
    pub created_at: String,
    pub decommissioned_by: Option<String>,
    pub decommissioned_at: Option<String>,
}

/// Credentials, answered once (provisioning and rotation).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Provisioned {
    pub device_id: String,
    pub certificate_id: String,
    pub certificate_pem: String,
    pub private_key_pem: String,
    /// Password for plain MQTT (username = device id), where the edition offers it.
    pub device_token: Option<String>,
    pub ca_pem: String,
    pub mqtt_endpoint: String,
    pub topics: TopicsView,
    /// Non-fatal remarks (e.g. a non-standard HJ 212 MN).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"keep_certificate_id": "5d41402abc4b2a76b9719d911017c5925d41402abc4b2a76b9719d911017c592"}))]
pub struct RetireCredentials {
    /// The certificate the device proved it uses; every other credential is revoked.
    pub keep_certificate_id: String,
}

#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FleetParams {
    /// `true`: only devices carrying a blacklist flag.
    pub flagged: Option<bool>,
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
}

fn identity(d: &Device) -> DeviceIdentity {
    DeviceIdentity {
        integrator_id: d.integrator_id.clone(),
        project_id: d.project_id.to_string(),
        device_id: d.id.to_string(),
        category: d.category.as_str().to_owned(),
    }
}

fn topics_of(id: &DeviceIdentity) -> TopicsView {
    let t = id.topics();
    TopicsView {
        telemetry: t.topic(TopicKind::Telemetry),
        events: t.topic(TopicKind::Events),
        cmd: t.topic(TopicKind::Cmd),
    }
}

fn view(d: Device) -> DeviceView {
    let topics = topics_of(&identity(&d));
    DeviceView {
        untrusted: d.untrusted(),
        id: d.id.to_string(),
        project_id: d.project_id.to_string(),
        model_id: d.model_id.to_string(),
        supplier_id: d.supplier_id.to_string(),
        category: d.category,
        serial_no: d.serial_no.as_str().to_owned(),
        mn: d.mn,
        config: d.config,
        status: d.status,
        certificate_id: d.certificate_id,
        topics,
        flags: d.flags,
        created_by: d.created_by,
        created_at: d.created_at,
        decommissioned_by: d.decommissioned_by,
        decommissioned_at: d.decommissioned_at,
    }
}

fn provisioned(state: &AppState, d: &Device, c: Credentials, warnings: Vec<String>) -> Provisioned {
    Provisioned {
        device_id: d.id.to_string(),
        certificate_id: c.certificate_id,
        certificate_pem: c.certificate_pem,
        private_key_pem: c.private_key_pem,
        device_token: c.device_token,
        ca_pem: c.ca_pem,
        mqtt_endpoint: state.mqtt_endpoint.clone(),
        topics: topics_of(&identity(d)),
        warnings,
    }
}

/// Maps fleet errors at the edge.
pub fn fleet_err(e: FleetError) -> Problem {
    match e {
        FleetError::SerialBound(_) => Problem::conflict("serial already bound"),
        FleetError::AlreadyDecommissioned => {
            Problem::conflict("the device is already decommissioned")
        }
        FleetError::Exists(what) => Problem::conflict(format!("{what} already exists")),
        e @ (FleetError::BlacklistChanged | FleetError::Contention) => {
            Problem::conflict(e.to_string())
        }
        FleetError::Store(s) => s.into(),
        FleetError::Corrupt(c) => Problem::internal(&c),
    }
}

/// Maps registry errors at the edge.
pub fn reg_err(e: RegistryError) -> Problem {
    match e {
        RegistryError::Unavailable(_) => {
            tracing::warn!(error = %e, "device registry unavailable");
            Problem::unavailable()
        }
        RegistryError::NotFound => Problem::conflict("the device has no active registration"),
        other => Problem::internal(&other),
    }
}

/// 409 naming the serial's holder only to its own integrator.
fn serial_bound(caller: &Caller, holder: &smartsite_shared::fleet::SerialHolder) -> Problem {
    if caller.integrator.as_ref() == Some(&holder.integrator_id) {
        Problem::conflict(format!(
            "serial already bound to device {} (project {})",
            holder.device_id, holder.project_id
        ))
    } else {
        Problem::conflict("serial already bound to a device of another integrator")
    }
}

fn str_field<'a>(body: &'a Map<String, Value>, name: &str) -> Result<&'a str, Problem> {
    match body.get(name) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(Problem::validation(name, "required")),
        Some(_) => Err(Problem::validation(name, "must be a string")),
    }
}

/// The project, if visible (404 otherwise); then 403 unless the caller is its integrator's staff.
async fn writable_project(state: &AppState, caller: &Caller, id: &str) -> Result<Project, Problem> {
    let id = ProjectId::parse("id", id).map_err(|_| Problem::not_found())?;
    let p = state
        .directory
        .visible_project(caller, &id)
        .await
        .map_err(Problem::from)?
        .ok_or_else(Problem::not_found)?;
    caller.require(WRITE_ROLES)?;
    if caller.staff_of() != Some(&p.integrator_id) {
        return Err(Problem::forbidden("only the project's integrator"));
    }
    Ok(p)
}

/// Why a device was not provisioned: a problem, or its serial is bound already (to a device of
/// this project, the bulk import's "exists", or elsewhere).
/// How often a binding checks the blacklist when entries keep being issued against the device's
/// supplier, model or serial while it binds.
const MAX_BLACKLIST_CHECKS: u32 = 4;

/// The binding check: refused (409 `blacklisted`) if an active entry covers the candidate in the
/// project's region; otherwise the blacklist versions the binding must still find.
async fn unbanned(
    state: &AppState,
    candidate: &Candidate<'_>,
    supplier: &SupplierId,
    model: &ModelId,
    serial: &SerialNo,
) -> Result<BlacklistVersions, Refusal> {
    let (bans, versions) = state
        .catalog
        .active_bans_for(supplier, model, serial)
        .await
        .map_err(cat_err)?;
    if let Some(ban) = blocking_entry(candidate, &bans) {
        return Err(
            Problem::new(StatusCode::CONFLICT, "blacklisted", "Blacklisted")
                .detail(format!(
                    "blacklist entry {} ({} {}) covers region {}",
                    ban.id,
                    ban.scope.as_str(),
                    ban.target,
                    ban.region
                ))
                .extension("blacklist_entry_id", ban.id.clone())
                .into(),
        );
    }
    Ok(versions)
}

enum Refusal {
    Problem(Problem),
    Bound(smartsite_shared::fleet::SerialHolder),
}

impl From<Problem> for Refusal {
    fn from(p: Problem) -> Self {
        Refusal::Problem(p)
    }
}

impl From<smartsite_shared::domain::tenancy::FieldError> for Refusal {
    fn from(e: smartsite_shared::domain::tenancy::FieldError) -> Self {
        Refusal::Problem(e.into())
    }
}

/// The binding checks and the one-transaction write, shared by single and bulk provisioning.
async fn provision_into(
    state: &AppState,
    caller: &Caller,
    project: &Project,
    body: &Map<String, Value>,
) -> Result<(Device, Credentials, Vec<String>), Refusal> {
    let integrator = project.integrator_id.clone();
    let model_id = ModelId::parse("model_id", str_field(body, "model_id")?)?;
    let model = state
        .catalog
        .model(&model_id)
        .await
        .map_err(cat_err)?
        .ok_or_else(|| Problem::validation("model_id", "no such device model"))?;
    let category: Category =
        serde_json::from_value(Value::String(str_field(body, "category")?.to_owned()))
            .map_err(|_| Problem::validation("category", "not a known category"))?;
    if category != model.category {
        return Err(Problem::validation(
            "category",
            format!("the model is a {}", model.category.as_str()),
        )
        .into());
    }
    let serial_no = SerialNo::parse("serial_no", str_field(body, "serial_no")?)?;
    let config = parse_config(category, body)?;
    let mut warnings = Vec::new();
    let mn = match body.get("mn") {
        None | Some(Value::Null) => None,
        Some(v) => {
            if category != Category::DustNoise {
                return Err(
                    Problem::validation("mn", "only dust_noise devices carry an MN").into(),
                );
            }
            let s = v
                .as_str()
                .ok_or_else(|| Problem::validation("mn", "must be a string"))?;
            let mn = Mn::parse("mn", s)?;
            if !mn.is_standard() {
                warnings.push(format!(
                    "mn {} is not HJ 212-2017 standard (24 hex characters); accepted",
                    mn.as_str()
                ));
            }
            Some(mn.as_str().to_owned())
        }
    };
    if !state
        .catalog
        .may_provision_model(&integrator, &model_id)
        .await
        .map_err(cat_err)?
    {
        return Err(Problem::validation(
            "model_id",
            "no access certificate (接入标准) and not marked compliant by your integrator",
        )
        .into());
    }
    let candidate = Candidate {
        supplier_id: model.supplier_id.as_str(),
        model_id: model_id.as_str(),
        serial_no: serial_no.as_str(),
        project_region: &project.region_code,
    };
    let mut versions =
        unbanned(state, &candidate, &model.supplier_id, &model_id, &serial_no).await?;
    // Fail fast before issuing credentials; the transaction below is the guarantee.
    if let Some(holder) = state
        .fleet
        .serial_holder(&model.supplier_id, &serial_no)
        .await
        .map_err(fleet_err)?
    {
        return Err(Refusal::Bound(holder));
    }
    let mut device = Device {
        id: DeviceId::generate(),
        integrator_id: integrator.clone(),
        project_id: project.id.clone(),
        region_code: project.region_code.clone(),
        model_id: model_id.clone(),
        supplier_id: model.supplier_id.clone(),
        category,
        serial_no: serial_no.clone(),
        mn,
        config,
        status: DeviceStatus::Active,
        certificate_id: String::new(),
        created_by: caller.user_id.clone(),
        created_at: now_rfc3339(),
        decommissioned_by: None,
        decommissioned_at: None,
        flags: Vec::new(),
    };
    let ident = identity(&device);
    let creds = state.registry.provision(&ident).await.map_err(reg_err)?;
    device.certificate_id = creds.certificate_id.clone();
    let mut checks = 1;
    let bound = loop {
        match state.fleet.bind(&integrator, &device, &versions).await {
            // An entry was issued since the check: check again (it may now refuse the device).
            Err(FleetError::BlacklistChanged) if checks < MAX_BLACKLIST_CHECKS => {
                checks += 1;
                match unbanned(
                    state,
                    &candidate,
                    &model.supplier_id,
                    &device.model_id,
                    &device.serial_no,
                )
                .await
                {
                    Ok(v) => versions = v,
                    Err(refused) => break Err(refused),
                }
            }
            Err(FleetError::SerialBound(h)) => break Err(Refusal::Bound(h)),
            Err(other) => break Err(fleet_err(other).into()),
            Ok(()) => break Ok(()),
        }
    };
    if let Err(refused) = bound {
        // Compensation: the credentials just issued must not outlive the failed binding.
        if let Err(r) = state.registry.revoke(&ident).await {
            tracing::error!(device_id = %device.id, error = %r, "could not revoke credentials of a failed binding");
        }
        return Err(refused);
    }
    tracing::info!(device_id = %device.id, project_id = %device.project_id, integrator_id = %integrator,
        by = %caller.user_id, "device provisioned");
    Ok((device, creds, warnings))
}

/// Provisions a device into the project and answers its credentials, once.
#[utoipa::path(post, path = "/v1/projects/{id}/devices", tag = "devices",
    params(("id" = String, Path)), request_body = ProvisionDevice,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(WRITE_ROLES)))),
    responses((status = 201, body = Provisioned), (status = 409, description = "blacklisted or serial already bound"),
        (status = 422, description = "invalid field")))]
pub async fn provision(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> Result<(StatusCode, Json<Provisioned>), Problem> {
    let project = writable_project(&state, &caller, &id).await?;
    match provision_into(&state, &caller, &project, &body).await {
        Ok((device, creds, warnings)) => Ok((
            StatusCode::CREATED,
            Json(provisioned(&state, &device, creds, warnings)),
        )),
        Err(Refusal::Problem(p)) => Err(p),
        Err(Refusal::Bound(h)) => Err(serial_bound(&caller, &h)),
    }
}

/// Most data rows one bulk request may carry.
pub const BULK_MAX_ROWS: usize = 5_000;
/// Largest bulk request body.
pub const BULK_MAX_BYTES: usize = 10 * 1024 * 1024;
/// Rows provisioned at once.
const BULK_CONCURRENCY: usize = 8;

/// Credentials of a device created by a bulk import, answered once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RowCredentials {
    pub certificate_id: String,
    pub certificate_pem: String,
    pub private_key_pem: String,
    pub device_token: Option<String>,
}

/// Why a row was refused: the problem the same device would get from `POST /v1/devices` —
/// its stable `type` (for a client to word it in its own language), title, detail and field.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RowError {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blacklist_entry_id: Option<String>,
}

impl From<Problem> for RowError {
    fn from(p: Problem) -> Self {
        let blacklist_entry_id = p
            .extensions
            .as_ref()
            .and_then(|x| x.get("blacklist_entry_id"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        RowError {
            type_uri: p.type_uri,
            title: p.title,
            detail: p.detail,
            field: p.field,
            blacklist_entry_id,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RowStatus {
    Created,
    Exists,
    Error,
}

/// The outcome of one CSV data row.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RowResult {
    /// 1-based data row (the header is not counted).
    pub row: usize,
    pub serial_no: String,
    pub status: RowStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<RowCredentials>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RowError>,
}

/// The answer of a bulk import.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkProvisioned {
    pub project_id: String,
    pub created: usize,
    pub exists: usize,
    pub errors: usize,
    /// The CA of every created device's certificate (once, not per row).
    pub ca_pem: Option<String>,
    pub mqtt_endpoint: String,
    pub results: Vec<RowResult>,
}

/// Provisions every data row of a CSV (header row; columns `serial_no,model_id,category,mn` and
/// the category configuration columns; empty cells are absent) with the checks of single
/// provisioning. Idempotent by serial: a serial bound to a device of this project is `exists`
/// (no new credentials); a refused row is an `error` and does not stop the others.
#[utoipa::path(post, path = "/v1/projects/{id}/devices:bulk", tag = "devices",
    params(("id" = String, Path)), request_body(content = String, content_type = "text/csv"),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(WRITE_ROLES)))),
    responses((status = 200, body = BulkProvisioned), (status = 413, description = "body over 10 MiB"),
        (status = 422, description = "not UTF-8 CSV with a header, or over 5,000 rows")))]
pub async fn provision_bulk(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Body,
) -> Result<Json<BulkProvisioned>, Problem> {
    let project = writable_project(&state, &caller, &id).await?;
    let bytes = axum::body::to_bytes(body, BULK_MAX_BYTES)
        .await
        .map_err(|_| {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Payload too large",
            )
            .detail("the CSV exceeds 10 MiB; split it")
        })?;
    let csv = bulk_csv::parse(&bytes, BULK_MAX_ROWS).map_err(|d| Problem::validation("body", d))?;
    let (state_ref, caller_ref, project_ref) = (&state, &caller, &project);
    let mut ca_pem: Option<String> = None;
    let mut results: Vec<RowResult> = futures::stream::iter(csv.rows.into_iter().enumerate())
        .map(|(i, r)| async move {
            let row = i + 1;
            let mut result = RowResult {
                row,
                serial_no: r.serial_no,
                status: RowStatus::Error,
                device_id: None,
                credentials: None,
                warnings: Vec::new(),
                error: None,
            };
            let outcome = match r.body.map_err(|d| Problem::validation("body", d)) {
                Ok(b) => provision_into(state_ref, caller_ref, project_ref, &b).await,
                Err(p) => Err(Refusal::Problem(p)),
            };
            match outcome {
                Ok((device, creds, warnings)) => {
                    result.status = RowStatus::Created;
                    result.device_id = Some(device.id.to_string());
                    result.warnings = warnings;
                    result.credentials = Some(RowCredentials {
                        certificate_id: creds.certificate_id,
                        certificate_pem: creds.certificate_pem,
                        private_key_pem: creds.private_key_pem,
                        device_token: creds.device_token,
                    });
                    (result, Some(creds.ca_pem))
                }
                Err(Refusal::Bound(h)) if h.project_id == project_ref.id => {
                    result.status = RowStatus::Exists;
                    result.device_id = Some(h.device_id.to_string());
                    (result, None)
                }
                Err(Refusal::Bound(h)) => {
                    result.error = Some(serial_bound(caller_ref, &h).into());
                    (result, None)
                }
                Err(Refusal::Problem(p)) => {
                    result.error = Some(p.into());
                    (result, None)
                }
            }
        })
        .buffer_unordered(BULK_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|(r, ca)| {
            if let Some(ca) = ca {
                ca_pem.get_or_insert(ca);
            }
            r
        })
        .collect();
    results.sort_by_key(|r| r.row);
    let count = |s: RowStatus| results.iter().filter(|r| r.status == s).count();
    tracing::info!(project_id = %project.id, rows = results.len(), by = %caller.user_id, "bulk provisioning");
    Ok(Json(BulkProvisioned {
        project_id: project.id.to_string(),
        created: count(RowStatus::Created),
        exists: count(RowStatus::Exists),
        errors: count(RowStatus::Error),
        ca_pem,
        mqtt_endpoint: state.mqtt_endpoint.clone(),
        results,
    }))
}

/// A page of the project's devices (including decommissioned ones).
#[utoipa::path(get, path = "/v1/projects/{id}/devices", operation_id = "list_project_devices", tag = "devices",
    params(("id" = String, Path), ListParams),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = List<DeviceView>), (status = 404, description = "not found or not visible")))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<ListParams>,
) -> Result<Json<List<DeviceView>>, Problem> {
    let id = ProjectId::parse("id", &id).map_err(|_| Problem::not_found())?;
    let p = state
        .directory
        .visible_project(&caller, &id)
        .await
        .map_err(Problem::from)?
        .ok_or_else(Problem::not_found)?;
    let got = state
        .fleet
        .list_project(&p.integrator_id, &p.id, page.limit(), page.cursor.clone())
        .await
        .map_err(fleet_err)?;
    Ok(Json(List {
        items: got.items.into_iter().map(view).collect(),
        next: got.next,
    }))
}

/// The device, if the caller may see its project; 404 otherwise.
async fn load(state: &AppState, caller: &Caller, id: &str) -> Result<Device, Problem> {
    smartsite_shared::fleet::visible_device(&state.fleet, &state.directory, caller, id)
        .await
        .map_err(fleet_err)?
        .ok_or_else(Problem::not_found)
}

/// Visible (404), then the role and the integrator (403).
async fn load_for_write(state: &AppState, caller: &Caller, id: &str) -> Result<Device, Problem> {
    let d = load(state, caller, id).await?;
    caller.require(WRITE_ROLES)?;
    if caller.staff_of() != Some(&d.integrator_id) {
        return Err(Problem::forbidden("only the project's integrator"));
    }
    Ok(d)
}

/// One device: status, blacklist flags and `untrusted`, never credentials.
#[utoipa::path(get, path = "/v1/devices/{id}", operation_id = "get_device", tag = "devices", params(("id" = String, Path)),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = DeviceView), (status = 404, description = "not found or not visible")))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeviceView>, Problem> {
    Ok(Json(view(load(&state, &caller, &id).await?)))
}

/// Decommissions the device: every credential revoked, the record kept as history, the serial
/// free to be bound again. Twice: 409.
#[utoipa::path(delete, path = "/v1/devices/{id}", tag = "devices", params(("id" = String, Path)),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(WRITE_ROLES)))),
    responses((status = 200, body = DeviceView), (status = 409, description = "already decommissioned")))]
pub async fn decommission(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeviceView>, Problem> {
    let mut d = load_for_write(&state, &caller, &id).await?;
    if d.status == DeviceStatus::Decommissioned {
        return Err(Problem::conflict("the device is already decommissioned"));
    }
    state
        .registry
        .revoke(&identity(&d))
        .await
        .map_err(reg_err)?;
    d.status = DeviceStatus::Decommissioned;
    d.decommissioned_by = Some(caller.user_id.clone());
    d.decommissioned_at = Some(now_rfc3339());
    let integrator = d.integrator_id.clone();
    state
        .fleet
        .decommission(&integrator, &d)
        .await
        .map_err(fleet_err)?;
    tracing::info!(device_id = %d.id, by = %caller.user_id, "device decommissioned");
    Ok(Json(view(d)))
}

/// Issues a new credential set, answered once; the previous ones stay valid until retired.
#[utoipa::path(post, path = "/v1/devices/{id}/rotate", tag = "devices", params(("id" = String, Path)),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(WRITE_ROLES)))),
    responses((status = 200, body = Provisioned), (status = 409, description = "decommissioned")))]
pub async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Provisioned>, Problem> {
    let d = load_for_write(&state, &caller, &id).await?;
    if d.status != DeviceStatus::Active {
        return Err(Problem::conflict("the device is decommissioned"));
    }
    let creds = state
        .registry
        .rotate(&identity(&d))
        .await
        .map_err(reg_err)?;
    let d = state
        .fleet
        .modify(&d.integrator_id, &d.id, |d| {
            d.certificate_id = creds.certificate_id.clone();
            true
        })
        .await
        .map_err(fleet_err)?
        .ok_or_else(Problem::not_found)?;
    tracing::info!(device_id = %d.id, by = %caller.user_id, "device credentials rotated");
    Ok(Json(provisioned(&state, &d, creds, Vec::new())))
}

/// "Revoke the old after use": revokes every credential of the device except the set of
/// `keep_certificate_id`. The broker calls this when a device first connects with the
/// certificate from a rotation; staff may call it too. A certificate that is not one of the
/// device's active ones: 422 (a device is never locked out).
#[utoipa::path(post, path = "/v1/devices/{id}/credentials/retire", tag = "devices",
    params(("id" = String, Path)), request_body = RetireCredentials,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(WRITE_ROLES)))),
    responses((status = 200, body = DeviceView), (status = 422, description = "not an active certificate of the device")))]
pub async fn retire(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RetireCredentials>,
) -> Result<Json<DeviceView>, Problem> {
    let d = load_for_write(&state, &caller, &id).await?;
    if d.status != DeviceStatus::Active {
        return Err(Problem::conflict("the device is decommissioned"));
    }
    match state
        .registry
        .retire_previous(&identity(&d), &req.keep_certificate_id)
        .await
    {
        Ok(()) => {}
        Err(RegistryError::NotFound | RegistryError::Invalid(_)) => {
            return Err(Problem::validation(
                "keep_certificate_id",
                "not an active certificate of this device",
            ));
        }
        Err(e) => return Err(reg_err(e)),
    }
    let d = state
        .fleet
        .modify(&d.integrator_id, &d.id, |d| {
            let changed = d.certificate_id != req.keep_certificate_id;
            d.certificate_id.clone_from(&req.keep_certificate_id);
            changed
        })
        .await
        .map_err(fleet_err)?
        .ok_or_else(Problem::not_found)?;
    tracing::info!(device_id = %d.id, by = %caller.user_id, "previous device credentials retired");
    Ok(Json(view(d)))
}

/// The caller's integrator's devices; `?flagged=true` for those carrying a blacklist flag.
#[utoipa::path(get, path = "/v1/devices", tag = "devices", params(FleetParams),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(FLEET_ROLES)))),
    responses((status = 200, body = List<DeviceView>)))]
pub async fn fleet(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<FleetParams>,
) -> Result<Json<List<DeviceView>>, Problem> {
    caller.require(FLEET_ROLES)?;
    let Some(integrator) = caller.staff_of() else {
        return Err(Problem::forbidden("integrator staff only"));
    };
    let flagged = params.flagged.unwrap_or(false);
    let page = ListParams {
        limit: params.limit,
        cursor: params.cursor,
    };
    let got = state
        .fleet
        .list_devices(integrator, flagged, page.limit(), page.cursor.clone())
        .await
        .map_err(fleet_err)?;
    Ok(Json(List {
        items: got.items.into_iter().map(view).collect(),
        next: got.next,
    }))
}

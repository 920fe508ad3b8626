//! Workforce HTTP handlers (API.md, Workforce).
//!
//! Every handler checks the caller's roles, then the project's (or the person's) visibility,
//! and only then reads the body, so a stranger learns nothing from validation. Personal numbers
//! arrive as [`Secret`]s, leave only masked — in full only through an audited reveal — and never
//! appear in a problem detail or a log field.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use smartsite_shared::auth::{Caller, Role, roles_json};
use smartsite_shared::directory::ListPage;
use smartsite_shared::domain::bounds;
use smartsite_shared::domain::tenancy::Project;
use smartsite_shared::domain::text;
use smartsite_shared::http::{List, ListParams, Problem, parse_json};
use smartsite_shared::ids::FieldError;

use crate::AppState;
use crate::domain::{
    BankCard, Certificate, CertificateKind, Contract, DenyReason, Enrolment, ExitError, IdCardType,
    IdDocument, IdValidUntil, NewTeam, Phone, Secret, Sex, Stint, Team, TeamId, TrainingLevel,
    TrainingRecord, WorkRole, WorkType, Worker, WorkerBan, WorkerId, age_on, decide,
};
use crate::service::gate::{AttendanceLine, GateDecision, Headcount};
use crate::service::pii::{PiiError, PiiField};
use crate::service::vault::VaultError;
use crate::service::{
    Enrol, PersonRecord, Reveal, Status, WorkerLine, WorkforceError, line, today,
};

/// Who sees a project's workers: the project's people, the enterprise, the owner and the
/// integrator's staff. Not government supervisors (they get statistics, never personal data)
/// and not the platform administrator.
pub const VIEW_ROLES: &[Role] = &[
    Role::IntegratorAdmin,
    Role::IntegratorOps,
    Role::EnterpriseAdmin,
    Role::ProjectManager,
    Role::SafetyOfficer,
    Role::LabourOfficer,
    Role::OwnerRep,
];
/// Who enrols people, records exits and keeps teams (API.md: labour officer, project manager,
/// integrator staff).
pub const ENROL_ROLES: &[Role] = &[
    Role::LabourOfficer,
    Role::ProjectManager,
    Role::IntegratorAdmin,
    Role::IntegratorOps,
];
/// Who records training (the training system records through its own path later).
pub const TRAINING_ROLES: &[Role] = &[Role::LabourOfficer];
/// Who may see a full number (`?reveal=`): the labour officer (劳务员), audited.
pub const REVEAL_ROLES: &[Role] = &[Role::LabourOfficer];
/// Who reads the audit of reveals: the integrator running the platform.
pub const AUDIT_ROLES: &[Role] = &[Role::IntegratorAdmin, Role::IntegratorOps];

/// Longest name of a person, and of a certificate number or bank name.
const NAME_CHARS: usize = 64;

fn err(e: WorkforceError) -> Problem {
    use WorkforceError as E;
    match e {
        E::Field(f) => f.into(),
        E::AlreadyEnrolled => {
            Problem::new(StatusCode::CONFLICT, "already-enrolled", "Already enrolled").detail(
                "the worker is already enrolled and active in this project; record the exit first",
            )
        }
        E::IdentityMismatch => Problem::new(
            StatusCode::CONFLICT,
            "identity-mismatch",
            "Identity mismatch",
        )
        .field("name")
        .detail("this ID number is enrolled under another name"),
        E::Exit(ExitError::AlreadyExited(d)) => {
            Problem::new(StatusCode::CONFLICT, "already-exited", "Already exited")
                .detail(format!("the worker exited this project on {d}"))
        }
        E::Exit(other) => Problem::validation("date", other.to_string()),
        E::NotFound => Problem::not_found(),
        E::Store(s) | E::Pii(PiiError::Store(s)) => s.into(),
        E::Pii(PiiError::Vault(VaultError::Unavailable(cause))) => {
            tracing::warn!(error = %cause, "key vault unavailable");
            Problem::unavailable()
        }
        E::Contention => Problem::conflict("the record kept changing; retry"),
        other => Problem::internal(&other),
    }
}

/// Role check, then the project if the caller may see it (404 otherwise, as if it did not
/// exist).
async fn allowed(
    state: &AppState,
    caller: &Caller,
    id: &str,
    roles: &[Role],
) -> Result<Project, Problem> {
    smartsite_shared::directory::allowed_project(&state.directory, caller, id, roles).await
}

/// A page of the service's list as the API answers it.
fn list<T: utoipa::ToSchema>(page: ListPage<T>) -> Json<List<T>> {
    Json(List {
        items: page.items,
        next: page.next,
    })
}

/// A person of the caller's integrator with the projects of theirs the caller sees; 404 when
/// there is none (a malformed id, another integrator's person, or no visible project).
async fn person(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<(PersonRecord, Vec<Project>), Problem> {
    let w = WorkerId::parse("id", id).map_err(|_| Problem::not_found())?;
    let i = caller.integrator.as_ref().ok_or_else(Problem::not_found)?;
    let found = state.service.person(i, &w).await.map_err(err)?;
    let p = found.ok_or_else(Problem::not_found)?;
    let mut projects = Vec::new();
    for pid in state.service.projects_of(i, &w).await.map_err(err)? {
        if let Some(project) = state
            .directory
            .visible_project(caller, &pid)
            .await
            .map_err(Problem::from)?
        {
            projects.push(project);
        }
    }
    if projects.is_empty() {
        return Err(Problem::not_found());
    }
    Ok((p, projects))
}

fn created<T: Serialize>(v: T) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

// ---- teams

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "钢筋一班", "subcontractor_name": "吉林省宏达劳务有限公司",
    "subcontractor_uscc": "91220101MA00000013"}))]
pub struct TeamBody {
    pub name: String,
    pub subcontractor_name: String,
    /// 统一社会信用代码 of the labour subcontractor (劳务分包).
    pub subcontractor_uscc: String,
}

#[utoipa::path(post, path = "/v1/projects/{id}/teams", tag = "workforce",
    params(("id" = String, Path)), request_body = TeamBody,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(ENROL_ROLES)))),
    responses((status = 201, body = Team), (status = 404, description = "project not found or not visible"),
        (status = 422, description = "a field is invalid (e.g. the USCC's check character)")))]
pub async fn create_team(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let p = allowed(&state, &caller, &id, ENROL_ROLES).await?;
    let b: TeamBody = parse_json(&body)?;
    let t = NewTeam::parse(&b.name, &b.subcontractor_name, &b.subcontractor_uscc)?;
    let team = state.service.create_team(&p, t).await.map_err(err)?;
    Ok(created(team))
}

#[utoipa::path(get, path = "/v1/projects/{id}/teams", tag = "workforce",
    params(("id" = String, Path), ListParams),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(VIEW_ROLES)))),
    responses((status = 200, body = List<Team>), (status = 404, description = "project not found or not visible")))]
pub async fn teams(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ListParams>,
) -> Result<Json<List<Team>>, Problem> {
    let p = allowed(&state, &caller, &id, VIEW_ROLES).await?;
    let page = state
        .service
        .teams(&p, q.limit(), q.cursor.clone())
        .await
        .map_err(err)?;
    Ok(list(page))
}

// ---- enrolment

/// A certificate as sent.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateBody {
    pub kind: CertificateKind,
    pub number: String,
    /// The 工种 code the certificate is for.
    pub work_type: String,
    pub valid_until: NaiveDate,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "id_card_type": "01", "id_number": "11010519491231002X", "name": "张三", "phone": "13812345678",
    "id_valid_until": "long_term", "work_type": "010", "work_role": "20", "team_id": "team-0",
    "entry_date": "2026-05-06",
    "contract": {"kind": "labour_contract", "start_date": "2026-05-06", "day_rate_fen": 35000},
    "certificates": []}))]
pub struct EnrolBody {
    /// National `idCardType` code; default `01` (resident identity card).
    pub id_card_type: Option<String>,
    /// Type `01`: 18 characters with the GB 11643 check character; birth date and sex are read
    /// from it. Stored encrypted; answered masked.
    #[schema(value_type = String)]
    pub id_number: Secret,
    pub name: String,
    /// Mainland mobile number. Stored encrypted; answered masked.
    #[schema(value_type = String)]
    pub phone: Secret,
    /// `YYYY-MM-DD` or `"long_term"` (长期).
    #[schema(value_type = String)]
    pub id_valid_until: IdValidUntil,
    /// National 工种 code, e.g. `"130"`.
    pub work_type: String,
    /// `"10"` manager, `"20"` worker.
    pub work_role: String,
    pub team_id: String,
    pub entry_date: NaiveDate,
    /// Labour contract or written agreement (建市〔2022〕59号); without one the gate denies
    /// `no_contract`.
    pub contract: Option<Contract>,
    #[serde(default)]
    pub certificates: Vec<CertificateBody>,
    /// Payroll card number. Stored encrypted; answered masked.
    #[schema(value_type = Option<String>)]
    pub bank_card: Option<Secret>,
    pub bank_name: Option<String>,
    /// Only for documents other than type `01` (whose number tells it): required there.
    pub birth_date: Option<NaiveDate>,
    /// Only for documents other than type `01`: required there.
    pub sex: Option<Sex>,
}

const FIRST_BIRTH_DATE: Option<NaiveDate> = NaiveDate::from_ymd_opt(1900, 1, 1);

/// Birth date and sex: read from a type-01 number (and then not to be sent), else required.
fn birth_and_sex(
    doc: &IdDocument,
    birth_date: Option<NaiveDate>,
    sex: Option<Sex>,
    today: NaiveDate,
) -> Result<(NaiveDate, Sex), FieldError> {
    let derived = "is read from a type 01 id_number; leave it out";
    let required = "is required for documents other than type 01";
    match (doc.derived, birth_date, sex) {
        (Some(_), Some(_), _) => Err(FieldError::new("birth_date", derived)),
        (Some(_), None, Some(_)) => Err(FieldError::new("sex", derived)),
        (Some(d), None, None) => Ok(d),
        (None, None, _) => Err(FieldError::new("birth_date", required)),
        (None, Some(_), None) => Err(FieldError::new("sex", required)),
        (None, Some(b), Some(s)) => {
            if Some(b) < FIRST_BIRTH_DATE || b > today {
                Err(FieldError::new(
                    "birth_date",
                    "must lie between 1900-01-01 and today",
                ))
            } else {
                Ok((b, s))
            }
        }
    }
}

fn parse_enrol(b: EnrolBody, today: NaiveDate) -> Result<Enrol, FieldError> {
    let card_type = IdCardType::parse(
        "id_card_type",
        b.id_card_type
            .as_deref()
            .unwrap_or(crate::domain::id_card::RESIDENT_ID_CARD),
    )?;
    let document = IdDocument::parse(card_type, "id_number", &b.id_number, today)?;
    let (birth_date, sex) = birth_and_sex(&document, b.birth_date, b.sex, today)?;
    if let IdValidUntil::Date(d) = b.id_valid_until {
        bounds::date("id_valid_until", d)?;
    }
    let work_role = match b.work_role.as_str() {
        "10" => WorkRole::Manager,
        "20" => WorkRole::Worker,
        _ => {
            return Err(FieldError::new(
                "work_role",
                "expected \"10\" (manager) or \"20\" (worker)",
            ));
        }
    };
    let mut certificates = Vec::with_capacity(b.certificates.len());
    for (n, c) in b.certificates.into_iter().enumerate() {
        let f = |name: &str| format!("certificates[{n}].{name}");
        certificates.push(Certificate {
            kind: c.kind,
            number: text::line(&f("number"), &c.number, NAME_CHARS)?,
            work_type: WorkType::parse(&f("work_type"), &c.work_type)?,
            valid_until: bounds::date(&f("valid_until"), c.valid_until)?,
        });
    }
    Ok(Enrol {
        document,
        name: text::line("name", &b.name, NAME_CHARS)?,
        birth_date,
        sex,
        phone: Phone::parse("phone", &b.phone)?,
        bank_card: b
            .bank_card
            .as_ref()
            .map(|s| BankCard::parse("bank_card", s))
            .transpose()?,
        bank_name: text::opt_line("bank_name", b.bank_name.as_deref(), NAME_CHARS)?,
        id_valid_until: b.id_valid_until,
        team_id: TeamId::parse("team_id", &b.team_id)?,
        work_type: WorkType::parse("work_type", &b.work_type)?,
        work_role,
        entry_date: bounds::date("entry_date", b.entry_date)?,
        contract: b.contract.map(Contract::check).transpose()?,
        certificates,
    })
}

/// The answer to an enrolment.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EnrolAnswer {
    #[serde(flatten)]
    pub worker: WorkerLine,
    /// The person was new to the integrator: a new `worker_id`. `false`: the person's existing
    /// `worker_id` from another (or an earlier) enrolment.
    pub new_person: bool,
}

#[utoipa::path(post, path = "/v1/projects/{id}/workers", tag = "workforce",
    params(("id" = String, Path)), request_body = EnrolBody,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(ENROL_ROLES)))),
    responses((status = 201, body = EnrolAnswer), (status = 404, description = "project not found or not visible"),
        (status = 409, description = "already enrolled and active in this project, or the number is enrolled under another name"),
        (status = 422, description = "a field is invalid (never echoing a personal number)")))]
pub async fn enrol(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let p = allowed(&state, &caller, &id, ENROL_ROLES).await?;
    let day = today();
    let e = parse_enrol(parse_json(&body)?, day)?;
    let out = state.service.enrol(&p, e, day).await.map_err(err)?;
    tracing::info!(project_id = %p.id, worker_id = %out.worker.id, new_person = out.new_person, "worker enrolled");
    let rules = state.service.gate_rules(&p, day).map_err(err)?;
    Ok(created(EnrolAnswer {
        worker: line(&out.worker, &out.enrolment, day, &rules),
        new_person: out.new_person,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorkersQuery {
    /// `active` or `exited`; default both.
    pub status: Option<String>,
}

#[utoipa::path(get, path = "/v1/projects/{id}/workers", tag = "workforce",
    params(("id" = String, Path), WorkersQuery, ListParams),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(VIEW_ROLES)))),
    responses((status = 200, body = List<WorkerLine>), (status = 404, description = "project not found or not visible")))]
pub async fn workers(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<WorkersQuery>,
    Query(page): Query<ListParams>,
) -> Result<Json<List<WorkerLine>>, Problem> {
    let p = allowed(&state, &caller, &id, VIEW_ROLES).await?;
    let status = match q.status.as_deref() {
        None => None,
        Some("active") => Some(Status::Active),
        Some("exited") => Some(Status::Exited),
        Some(_) => return Err(Problem::validation("status", "expected active or exited")),
    };
    let found = state
        .service
        .list(&p, status, page.limit(), page.cursor.clone(), today())
        .await
        .map_err(err)?;
    Ok(list(found))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"date": "2026-06-30"}))]
pub struct ExitBody {
    /// The exit day (退场): not before the entry, not after today (Asia/Shanghai).
    pub date: NaiveDate,
}

#[utoipa::path(post, path = "/v1/projects/{id}/workers/{worker_id}/exit", tag = "workforce",
    params(("id" = String, Path), ("worker_id" = String, Path)), request_body = ExitBody,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(ENROL_ROLES)))),
    responses((status = 200, body = WorkerLine), (status = 404, description = "project not visible or worker not enrolled in it"),
        (status = 409, description = "already exited"), (status = 422, description = "date before the entry or in the future")))]
pub async fn exit(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, worker_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<WorkerLine>, Problem> {
    let p = allowed(&state, &caller, &id, ENROL_ROLES).await?;
    let w = WorkerId::parse("worker_id", &worker_id).map_err(|_| Problem::not_found())?;
    let person = state
        .service
        .person(&p.integrator_id, &w)
        .await
        .map_err(err)?
        .ok_or_else(Problem::not_found)?;
    let b: ExitBody = parse_json(&body)?;
    let day = today();
    let e = state.service.exit(&p, &w, b.date, day).await.map_err(err)?;
    tracing::info!(project_id = %p.id, worker_id = %w, "worker exited");
    let rules = state.service.gate_rules(&p, day).map_err(err)?;
    Ok(Json(line(&person.worker, &e, day, &rules)))
}

// ---- a person

/// A person's enrolment in one project the caller sees.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EnrolmentView {
    pub project_id: String,
    #[schema(value_type = String)]
    pub team_id: TeamId,
    #[schema(value_type = String)]
    pub work_type: WorkType,
    pub work_role: WorkRole,
    pub status: Status,
    pub entry_date: NaiveDate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_date: Option<NaiveDate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contract: Option<Contract>,
    /// Earlier stints in the project.
    pub previous: Vec<Stint>,
    /// What the project's gate would deny today.
    pub blockers: Vec<DenyReason>,
}

/// `GET /v1/workers/{id}`: never a full number unless revealed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkerView {
    #[schema(value_type = String)]
    pub worker_id: WorkerId,
    pub name: String,
    #[schema(value_type = String)]
    pub id_card_type: IdCardType,
    pub id_number_masked: String,
    pub phone_masked: Option<String>,
    pub bank_card_masked: Option<String>,
    pub bank_name: Option<String>,
    pub sex: Sex,
    pub age: Option<u32>,
    /// `YYYY-MM-DD` or `long_term`.
    #[schema(value_type = String)]
    pub id_valid_until: IdValidUntil,
    pub certificates: Vec<Certificate>,
    pub training: Vec<TrainingRecord>,
    pub blacklist: Vec<WorkerBan>,
    pub enrolments: Vec<EnrolmentView>,
    /// The full ID number, only when asked for with `?reveal=id_number` by a labour officer
    /// (audited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_number: Option<String>,
    /// The full phone number, only with `?reveal=phone` (audited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The full bank card number, only with `?reveal=bank_card` (audited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bank_card: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct WorkerQuery {
    /// `id_number` (also `phone`, `bank_card`): answer that number in full. Only for
    /// `labour_officer` (403 otherwise); every reveal is audited (`GET /v1/pii-reveals`).
    pub reveal: Option<String>,
}

async fn view(
    state: &AppState,
    worker: &Worker,
    projects: &[Project],
    day: NaiveDate,
) -> Result<WorkerView, Problem> {
    let mut enrolments = Vec::new();
    for p in projects {
        let Some(e) = state.service.enrolment(p, &worker.id).await.map_err(err)? else {
            continue;
        };
        let rules = state.service.gate_rules(p, day).map_err(err)?;
        enrolments.push(enrolment_view(worker, e, day, &rules));
    }
    Ok(WorkerView {
        worker_id: worker.id.clone(),
        name: worker.name.clone(),
        id_card_type: worker.id_card_type.clone(),
        id_number_masked: worker.id_number_masked.clone(),
        phone_masked: worker.phone_masked.clone(),
        bank_card_masked: worker.bank_card_masked.clone(),
        bank_name: worker.bank_name.clone(),
        sex: worker.sex,
        age: age_on(worker.birth_date, day),
        id_valid_until: worker.id_valid_until,
        certificates: worker.certificates.clone(),
        training: worker.training.clone(),
        blacklist: worker.blacklist.clone(),
        enrolments,
        id_number: None,
        phone: None,
        bank_card: None,
    })
}

fn enrolment_view(
    worker: &Worker,
    e: Enrolment,
    day: NaiveDate,
    rules: &crate::domain::GateRules,
) -> EnrolmentView {
    let blockers = decide(worker, Some(&e), day, rules).reasons;
    EnrolmentView {
        project_id: e.project_id.to_string(),
        status: Status::of(&e),
        team_id: e.team_id,
        work_type: e.work_type,
        work_role: e.work_role,
        entry_date: e.entry_date,
        exit_date: e.exit_date,
        contract: e.contract,
        previous: e.previous,
        blockers,
    }
}

#[utoipa::path(get, path = "/v1/workers/{id}", tag = "workforce",
    params(("id" = String, Path), WorkerQuery),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(VIEW_ROLES)))),
    responses((status = 200, body = WorkerView), (status = 403, description = "`reveal` asked by a role other than labour_officer"),
        (status = 404, description = "no such person in a project the caller sees")))]
pub async fn worker(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<WorkerQuery>,
) -> Result<Json<WorkerView>, Problem> {
    caller.require(VIEW_ROLES)?;
    let (p, projects) = person(&state, &caller, &id).await?;
    let field = match q.reveal.as_deref() {
        None => None,
        Some(s) => Some(PiiField::parse(s).ok_or_else(|| {
            Problem::validation("reveal", "expected id_number, phone or bank_card")
        })?),
    };
    let mut v = view(&state, &p.worker, &projects, today()).await?;
    if let Some(field) = field {
        caller.require(REVEAL_ROLES)?;
        let i = &projects[0].integrator_id;
        if let Some(clear) = state
            .service
            .reveal(i, &p, field, &caller.user_id)
            .await
            .map_err(err)?
        {
            let slot = match field {
                PiiField::IdNumber => &mut v.id_number,
                PiiField::Phone => &mut v.phone,
                PiiField::BankCard => &mut v.bank_card,
            };
            *slot = Some(clear);
        }
    }
    Ok(Json(v))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"level": "company", "hours": 15, "completed_on": "2026-05-06", "passed": true}))]
pub struct TrainingBody {
    /// `company`, `project` or `team` (三级安全教育).
    pub level: TrainingLevel,
    /// 学时, 0 to 1000.
    pub hours: u32,
    pub completed_on: NaiveDate,
    pub passed: bool,
}

/// Most 学时 one record may state.
const MAX_TRAINING_HOURS: u32 = 1000;

#[utoipa::path(post, path = "/v1/workers/{id}/training", tag = "workforce",
    params(("id" = String, Path)), request_body = TrainingBody,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(TRAINING_ROLES)))),
    responses((status = 201, body = TrainingRecord), (status = 404, description = "no such person in a project the caller sees")))]
pub async fn training(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    caller.require(TRAINING_ROLES)?;
    let (p, projects) = person(&state, &caller, &id).await?;
    let b: TrainingBody = parse_json(&body)?;
    if b.hours > MAX_TRAINING_HOURS {
        return Err(Problem::validation(
            "hours",
            format!("must be 0 to {MAX_TRAINING_HOURS}"),
        ));
    }
    let day = today();
    bounds::date("completed_on", b.completed_on)?;
    if b.completed_on > day {
        return Err(Problem::validation(
            "completed_on",
            "cannot lie in the future",
        ));
    }
    let record = TrainingRecord {
        level: b.level,
        hours: b.hours,
        completed_on: b.completed_on,
        passed: b.passed,
        recorded_at: chrono::Utc::now().to_rfc3339(),
        recorded_by: caller.user_id.clone(),
    };
    let i = &projects[0].integrator_id;
    state
        .service
        .add_training(i, &p.worker.id, record.clone())
        .await
        .map_err(err)?;
    Ok(created(record))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RevealsQuery {
    /// Only the reveals of this worker.
    pub worker_id: Option<String>,
}

#[utoipa::path(get, path = "/v1/pii-reveals", tag = "workforce", params(RevealsQuery, ListParams),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(AUDIT_ROLES)))),
    responses((status = 200, body = List<Reveal>, description = "the integrator's reveals of personal numbers, newest first")))]
pub async fn reveals(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<RevealsQuery>,
    Query(page): Query<ListParams>,
) -> Result<Json<List<Reveal>>, Problem> {
    caller.require(AUDIT_ROLES)?;
    let i = caller.staff_of().ok_or_else(Problem::not_found)?;
    let worker = q
        .worker_id
        .as_deref()
        .map(|w| WorkerId::parse("worker_id", w))
        .transpose()?;
    let found = state
        .service
        .reveals(i, worker.as_ref(), page.limit(), page.cursor.clone())
        .await
        .map_err(err)?;
    Ok(list(found))
}

// ---- gate decisions, attendance, headcount

/// Who reads a project's headcount: its viewers, and government supervisors of its region
/// (numbers only: the answer names nobody).
pub const HEADCOUNT_ROLES: &[Role] = &[
    Role::IntegratorAdmin,
    Role::IntegratorOps,
    Role::EnterpriseAdmin,
    Role::ProjectManager,
    Role::SafetyOfficer,
    Role::LabourOfficer,
    Role::OwnerRep,
    Role::GovSupervisor,
];

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DayQuery {
    /// `YYYY-MM-DD`, a calendar day in Asia/Shanghai (default: today there).
    pub date: Option<String>,
}

impl DayQuery {
    fn day(&self) -> Result<NaiveDate, Problem> {
        match self.date.as_deref() {
            None => Ok(today()),
            Some(s) => {
                let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map_err(|_| Problem::validation("date", "expected YYYY-MM-DD"))?;
                bounds::date("date", d)?;
                Ok(d)
            }
        }
    }
}

/// A day's attendance at a project.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttendanceAnswer {
    pub date: NaiveDate,
    /// One line per person with an allowed pass that day, in the order of their first pass.
    pub items: Vec<AttendanceLine>,
}

#[utoipa::path(get, path = "/v1/projects/{id}/attendance", tag = "workforce",
    params(("id" = String, Path), DayQuery),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(VIEW_ROLES)))),
    responses((status = 200, body = AttendanceAnswer, description = "per person: first in, last out, hours, punches, valid day; only allowed passes count"),
        (status = 404, description = "project not found or not visible"),
        (status = 422, description = "`date` is not YYYY-MM-DD")))]
pub async fn attendance(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<DayQuery>,
) -> Result<Json<AttendanceAnswer>, Problem> {
    let p = allowed(&state, &caller, &id, VIEW_ROLES).await?;
    let date = q.day()?;
    let items = state.service.attendance(&p, date).await.map_err(err)?;
    Ok(Json(AttendanceAnswer { date, items }))
}

#[utoipa::path(get, path = "/v1/projects/{id}/headcount", tag = "workforce",
    params(("id" = String, Path), DayQuery),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(HEADCOUNT_ROLES)))),
    responses((status = 200, body = Headcount, description = "numbers only: on site now, attended, by team and by work type"),
        (status = 404, description = "project not found or not visible"),
        (status = 422, description = "`date` is not YYYY-MM-DD")))]
pub async fn headcount(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<DayQuery>,
) -> Result<Json<Headcount>, Problem> {
    let p = allowed(&state, &caller, &id, HEADCOUNT_ROLES).await?;
    let date = q.day()?;
    Ok(Json(state.service.headcount(&p, date).await.map_err(err)?))
}

#[utoipa::path(get, path = "/v1/projects/{id}/gate-decisions", tag = "workforce",
    params(("id" = String, Path), DayQuery, ListParams),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(VIEW_ROLES)))),
    responses((status = 200, body = List<GateDecision>, description = "every decision of the day, allowed or denied, in `ts` order"),
        (status = 404, description = "project not found or not visible"),
        (status = 422, description = "`date` is not YYYY-MM-DD")))]
pub async fn gate_decisions(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<DayQuery>,
    Query(page): Query<ListParams>,
) -> Result<Json<List<GateDecision>>, Problem> {
    let p = allowed(&state, &caller, &id, VIEW_ROLES).await?;
    let date = q.day()?;
    let found = state
        .service
        .gate_decisions(&p, date, page.limit(), page.cursor.clone())
        .await
        .map_err(err)?;
    Ok(list(found))
}

//! Safety-fund HTTP handlers (API.md, Safety fund; issue 7).
//!
//! Request bodies are parsed only after the caller's rights and the project's visibility are
//! checked, so a stranger learns nothing from body validation.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use smartsite_shared::auth::{Caller, Role, roles_json};
use smartsite_shared::domain::bounds::{self, report_sum};
use smartsite_shared::domain::safety_fund::{
    self as sf, CivPrepayRule, CivilizedTerms, ContractVariation, CostPlan, Entry, Expenditure,
    Links, PlanLine, PlanVsActual, STATEMENT_HEADERS, SafetyFundError, Settlement, StatementRow,
    Subcontract, YearMonth,
};
use smartsite_shared::domain::tenancy::{CustomerId, Project, RegionCode};
use smartsite_shared::domain::text;
use smartsite_shared::export::{self, Cell, Format, Table};
use smartsite_shared::funds::{
    AccountView, ChainReport, DrainReport, EnterpriseYear, Fund, FundsError, ProjectUse, today,
};
use smartsite_shared::http::{Problem, parse_json};

use crate::AppState;

pub const READ_ROLES: &[Role] = &Role::ALL;
/// Who reports progress, records variations, subcontracts and allocations: the contractor's
/// project and enterprise people, and the integrator operating the platform for them.
pub const BOOK_ROLES: &[Role] = &[
    Role::ProjectManager,
    Role::SafetyOfficer,
    Role::EnterpriseAdmin,
    Role::IntegratorAdmin,
    Role::IntegratorOps,
];
/// Who records owner payments: the owner's representative, or the contractor receiving them.
pub const PAYMENT_ROLES: &[Role] = &[
    Role::OwnerRep,
    Role::ProjectManager,
    Role::SafetyOfficer,
    Role::EnterpriseAdmin,
    Role::IntegratorAdmin,
];
/// Who approves the smart-site cost plan: the owner's representative (建设单位代表).
pub const APPROVE_ROLES: &[Role] = &[Role::OwnerRep];
/// Who settles the account at completion.
pub const SETTLE_ROLES: &[Role] = &[Role::EnterpriseAdmin, Role::IntegratorAdmin];
/// Who reads an enterprise's year summary.
pub const ENTERPRISE_ROLES: &[Role] = &[
    Role::EnterpriseAdmin,
    Role::IntegratorAdmin,
    Role::IntegratorOps,
];
/// Who reads a region's utilization summary: its government, or the platform administrator.
pub const REGION_ROLES: &[Role] = &[Role::GovSupervisor, Role::PlatformAdmin];
/// Who drains the billing hand-off on demand (it also runs on a schedule): platform-wide work.
pub const OPERATOR_ROLES: &[Role] = &[Role::PlatformAdmin];

pub(crate) fn err(e: FundsError) -> Problem {
    match e {
        FundsError::Rule(r) | FundsError::Terms(r) => rule_err(r),
        FundsError::Broken(b) => Problem::new(
            StatusCode::CONFLICT,
            "ledger-broken",
            "Ledger integrity broken",
        )
        .detail(b.to_string())
        .extension("seq", b.seq),
        FundsError::Store(s) => s.into(),
        FundsError::Directory(d) => d.into(),
        FundsError::Contention => Problem::conflict("the account kept changing; retry"),
        other => Problem::internal(&other),
    }
}

fn rule_err(e: SafetyFundError) -> Problem {
    use SafetyFundError as E;
    let detail = e.to_string();
    match e {
        E::Diversion { .. } | E::CivilizedDiversion { .. } => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "diversion",
            "Not an allowed use of the fund",
        )
        .field("category")
        .detail(detail),
        E::ProgressBeyondContract { .. } => Problem::new(
            StatusCode::CONFLICT,
            "progress-beyond-contract",
            "Progress beyond the contract value",
        )
        .detail(detail),
        E::InvalidAmount { field, .. } => Problem::validation(field, detail),
        E::Missing { field } => Problem::validation(field, detail),
        E::InvalidMonth(_) => Problem::validation("month", detail),
        E::UnknownEntry { .. } => Problem::not_found().detail(detail),
        E::UnknownSubcontract(_) => Problem::validation("subcontract_id", detail),
        E::Closed => {
            Problem::new(StatusCode::CONFLICT, "ledger-closed", "Ledger closed").detail(detail)
        }
        E::AlreadyReversed { .. }
        | E::NotReversible { .. }
        | E::InvoiceAlreadyPosted { .. }
        | E::DuplicateSubcontract(_)
        | E::VariationBelowProgress { .. }
        | E::PlanApproved
        | E::DuplicatePlanLine(_)
        | E::EmptyPlan => Problem::conflict(detail),
        E::NoStartDate | E::DateOutOfRange => Problem::validation("date", detail),
        E::Overflow => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount-out-of-range",
            "Amount out of range",
        )
        .detail(detail),
        other => Problem::internal(&other),
    }
}

/// The project if the caller sees it; 404 otherwise (as if it did not exist).
async fn project(state: &AppState, caller: &Caller, id: &str) -> Result<Project, Problem> {
    smartsite_shared::directory::visible_project_or_404(&state.directory, caller, id).await
}

/// Role check, then visibility: what every write handler does first.
async fn writable(
    state: &AppState,
    caller: &Caller,
    id: &str,
    roles: &[Role],
) -> Result<Project, Problem> {
    caller.require(roles)?;
    project(state, caller, id).await
}

/// A fee year of a summary: 2000 to 2200 (the years the civilized terms may plan).
fn fee_year(y: Option<i32>) -> Result<i32, Problem> {
    y.filter(|y| (2000..=2200).contains(y)).ok_or_else(|| {
        Problem::validation("year", "expected a calendar year 2000 to 2200, e.g. 2026")
    })
}

/// References (evidence, variation, link ids) and summaries: single-line, at most this long.
const REF_CHARS: usize = 200;
/// Ids a person chooses (subcontracts, plan lines): single-line, at most this long.
const ID_CHARS: usize = 64;

/// An optional single-line field; blank counts as absent.
fn opt_text(field: &str, s: Option<&str>) -> Result<Option<String>, Problem> {
    Ok(text::opt_line(
        field,
        s.filter(|s| !s.trim().is_empty()),
        REF_CHARS,
    )?)
}

fn fund_of(s: Option<&str>) -> Result<Fund, Problem> {
    Fund::parse(s).ok_or_else(|| Problem::validation("fund", "expected safety or civilized"))
}

fn created<T: Serialize>(v: T) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AsOf {
    /// Evaluate the flags on this date (default: today in Asia/Shanghai).
    pub as_of: Option<NaiveDate>,
}

#[utoipa::path(get, path = "/v1/projects/{id}/safety-fund", tag = "safety-fund",
    params(("id" = String, Path), AsOf),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = AccountView), (status = 404, description = "project not found or not visible")))]
pub async fn account(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<AsOf>,
) -> Result<Json<AccountView>, Problem> {
    caller.require(READ_ROLES)?;
    let p = project(&state, &caller, &id).await?;
    let view = state
        .funds
        .view(&p, q.as_of.unwrap_or_else(today))
        .await
        .map_err(err)?;
    Ok(Json(view))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"month": "2026-03", "progress_value_fen": 1_000_000_000}))]
pub struct ProgressBody {
    /// `YYYY-MM`.
    #[schema(value_type = String)]
    pub month: YearMonth,
    /// The month's completed 建安工作量 (the month's total; a second report corrects it).
    pub progress_value_fen: i64,
    /// Booking date (default: today).
    pub date: Option<NaiveDate>,
}

/// The answer to a progress report.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccrualAnswer {
    pub month: String,
    /// What this report booked: the accrual of a first report, the delta of a correction, 0
    /// when the report repeats what the month holds.
    pub accrued_fen: i64,
    /// The month's accrual after the report.
    pub month_accrued_fen: i64,
    pub month_progress_fen: i64,
    /// The enterprise 3× rule paused the month's accrual.
    pub paused: bool,
    #[schema(value_type = Option<Object>)]
    pub entry: Option<Entry>,
}

#[utoipa::path(post, path = "/v1/projects/{id}/safety-fund/progress", tag = "safety-fund",
    params(("id" = String, Path)), request_body = ProgressBody,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(BOOK_ROLES)))),
    responses((status = 201, body = AccrualAnswer), (status = 200, body = AccrualAnswer, description = "nothing changed"),
        (status = 409, description = "progress beyond the contract value")))]
pub async fn progress(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let p = writable(&state, &caller, &id, BOOK_ROLES).await?;
    let b: ProgressBody = parse_json(&body)?;
    b.date.map(|d| bounds::date("date", d)).transpose()?;
    let out = state
        .funds
        .report_progress(
            &p,
            b.month,
            b.progress_value_fen,
            b.date.unwrap_or_else(today),
        )
        .await
        .map_err(err)?;
    let answer = AccrualAnswer {
        month: b.month.to_string(),
        accrued_fen: out.entry.as_ref().map_or(0, |e| e.accrued_fen),
        month_accrued_fen: out.month.accrued_fen,
        month_progress_fen: out.month.progress_fen,
        paused: out.month.paused,
        entry: out.entry.clone(),
    };
    Ok(if out.entry.is_some() {
        created(answer)
    } else {
        Json(answer).into_response()
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"date": "2026-03-05", "amount_fen": 1_500_000, "evidence_ref": "BANK-20260305-01"}))]
pub struct PaymentBody {
    pub date: NaiveDate,
    pub amount_fen: i64,
    /// `safety` (default, 安全生产费) or `civilized` (安全文明施工费).
    pub fund: Option<String>,
    pub evidence_ref: Option<String>,
}

#[utoipa::path(post, path = "/v1/projects/{id}/safety-fund/owner-payments", tag = "safety-fund",
    params(("id" = String, Path)), request_body = PaymentBody,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(PAYMENT_ROLES)))),
    responses((status = 201, description = "the ledger entry", body = Object)))]
pub async fn owner_payment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let p = writable(&state, &caller, &id, PAYMENT_ROLES).await?;
    let mut b: PaymentBody = parse_json(&body)?;
    let fund = fund_of(b.fund.as_deref())?;
    bounds::date("date", b.date)?;
    b.evidence_ref = opt_text("evidence_ref", b.evidence_ref.as_deref())?;
    let entry = state
        .funds
        .change(&p, Vec::new(), |a, _| {
            let e = match fund {
                Fund::Safety => {
                    a.safety
                        .record_owner_payment(b.date, b.amount_fen, b.evidence_ref.clone())?
                }
                Fund::Civilized => {
                    a.civilized
                        .record_payment(b.date, b.amount_fen, b.evidence_ref.clone())?
                }
            };
            Ok(e.clone())
        })
        .await
        .map_err(err)?;
    Ok(created(entry))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"date": "2026-03-20", "amount_fen": 250_000, "category": "ppe", "evidence_ref": "VCH-2026-031"}))]
pub struct ExpenditureBody {
    pub date: NaiveDate,
    pub amount_fen: i64,
    /// snake_case category of the regime's list (DOMAIN.md §8.4), or of the civilized list.
    pub category: String,
    /// Voucher, invoice or contract reference (required).
    pub evidence_ref: String,
    pub summary: Option<String>,
    /// `safety` (default) or `civilized`.
    pub fund: Option<String>,
    pub device_id: Option<String>,
    pub subscription_id: Option<String>,
    pub invoice_id: Option<String>,
    /// The smart-site cost-plan line this spending realises.
    pub plan_line_id: Option<String>,
}

/// The answer to an expenditure.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExpenditureAnswer {
    #[schema(value_type = Object)]
    pub entry: Entry,
    /// Spending went beyond the accrued (or received) amount: allowed, flagged.
    pub overspent: bool,
    pub balance_fen: i64,
}

#[utoipa::path(post, path = "/v1/projects/{id}/safety-fund/expenditures", tag = "safety-fund",
    params(("id" = String, Path)), request_body = ExpenditureBody,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(BOOK_ROLES)))),
    responses((status = 201, body = ExpenditureAnswer), (status = 422, description = "diversion to a category not allowed, or invalid fields")))]
pub async fn expenditure(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let p = writable(&state, &caller, &id, BOOK_ROLES).await?;
    let b: ExpenditureBody = parse_json(&body)?;
    let fund = fund_of(b.fund.as_deref())?;
    let exp = Expenditure {
        date: bounds::date("date", b.date)?,
        amount_fen: b.amount_fen,
        category: text::line("category", &b.category, ID_CHARS)?,
        summary: opt_text("summary", b.summary.as_deref())?.unwrap_or_default(),
        evidence_ref: text::line("evidence_ref", &b.evidence_ref, REF_CHARS)?,
        links: Links {
            device_id: opt_text("device_id", b.device_id.as_deref())?,
            subscription_id: opt_text("subscription_id", b.subscription_id.as_deref())?,
            invoice_id: opt_text("invoice_id", b.invoice_id.as_deref())?,
            subcontract_id: None,
            plan_line_id: opt_text("plan_line_id", b.plan_line_id.as_deref())?,
        },
    };
    let out = state
        .funds
        .change(&p, Vec::new(), |a, rules| {
            Ok(match fund {
                Fund::Safety => a.safety.record_expenditure(exp.clone(), rules)?,
                Fund::Civilized => a.civilized.record_expenditure(exp.clone(), rules)?,
            })
        })
        .await
        .map_err(err)?;
    Ok(created(ExpenditureAnswer {
        entry: out.entry,
        overspent: out.overspent,
        balance_fen: out.balance_fen,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"date": "2026-06-01", "amount_fen": 5_000_000_000i64, "reference": "BG-2026-007"}))]
pub struct VariationBody {
    pub date: NaiveDate,
    /// Change of the contract value (negative for a reduction).
    pub amount_fen: i64,
    pub reference: String,
}

#[utoipa::path(post, path = "/v1/projects/{id}/safety-fund/variations", tag = "safety-fund",
    params(("id" = String, Path)), request_body = VariationBody,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(BOOK_ROLES)))),
    responses((status = 201, body = AccountView)))]
pub async fn variation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let p = writable(&state, &caller, &id, BOOK_ROLES).await?;
    let b: VariationBody = parse_json(&body)?;
    let v = ContractVariation {
        date: bounds::date("date", b.date)?,
        amount_fen: b.amount_fen,
        reference: text::line("reference", &b.reference, REF_CHARS)?,
    };
    state
        .funds
        .change(&p, Vec::new(), |a, _| {
            a.safety.record_variation(v.clone())?;
            Ok(())
        })
        .await
        .map_err(err)?;
    let view = state.funds.view(&p, today()).await.map_err(err)?;
    Ok(created(view))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "sub-steel", "share_fen": 30_000_000, "start_date": "2026-04-01"}))]
pub struct SubcontractBody {
    pub id: String,
    /// The subcontract's share of the fee.
    pub share_fen: i64,
    pub start_date: NaiveDate,
}

#[utoipa::path(post, path = "/v1/projects/{id}/safety-fund/subcontracts", tag = "safety-fund",
    params(("id" = String, Path)), request_body = SubcontractBody,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(BOOK_ROLES)))),
    responses((status = 201, body = AccountView)))]
pub async fn subcontract(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let p = writable(&state, &caller, &id, BOOK_ROLES).await?;
    let b: SubcontractBody = parse_json(&body)?;
    let s = Subcontract {
        id: text::line("id", &b.id, ID_CHARS)?,
        share_fen: b.share_fen,
        start_date: bounds::date("start_date", b.start_date)?,
    };
    state
        .funds
        .change(&p, Vec::new(), |a, _| {
            a.safety.add_subcontract(s.clone())?;
            Ok(())
        })
        .await
        .map_err(err)?;
    Ok(created(state.funds.view(&p, today()).await.map_err(err)?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"date": "2026-04-10", "subcontract_id": "sub-steel", "amount_fen": 15_000_000, "evidence_ref": "TR-0410"}))]
pub struct AllocationBody {
    pub date: NaiveDate,
    pub subcontract_id: String,
    pub amount_fen: i64,
    pub evidence_ref: Option<String>,
}

#[utoipa::path(post, path = "/v1/projects/{id}/safety-fund/allocations", tag = "safety-fund",
    params(("id" = String, Path)), request_body = AllocationBody,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(BOOK_ROLES)))),
    responses((status = 201, description = "the ledger entry", body = Object)))]
pub async fn allocation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let p = writable(&state, &caller, &id, BOOK_ROLES).await?;
    let mut b: AllocationBody = parse_json(&body)?;
    bounds::date("date", b.date)?;
    b.subcontract_id = text::line("subcontract_id", &b.subcontract_id, ID_CHARS)?;
    b.evidence_ref = opt_text("evidence_ref", b.evidence_ref.as_deref())?;
    let entry = state
        .funds
        .change(&p, Vec::new(), |a, _| {
            Ok(a.safety
                .allocate(
                    b.date,
                    &b.subcontract_id,
                    b.amount_fen,
                    b.evidence_ref.clone(),
                )?
                .clone())
        })
        .await
        .map_err(err)?;
    Ok(created(entry))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"date": "2026-04-02", "reason": "booked twice"}))]
pub struct ReverseBody {
    pub date: NaiveDate,
    pub reason: String,
    /// `safety` (default) or `civilized`.
    pub fund: Option<String>,
}

#[utoipa::path(post, path = "/v1/projects/{id}/safety-fund/entries/{seq}/reverse", tag = "safety-fund",
    params(("id" = String, Path), ("seq" = u64, Path)), request_body = ReverseBody,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(BOOK_ROLES)))),
    responses((status = 201, description = "the reversal entry", body = Object)))]
pub async fn reverse(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, seq)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Problem> {
    let p = writable(&state, &caller, &id, BOOK_ROLES).await?;
    let seq: u64 = seq.parse().map_err(|_| Problem::not_found())?;
    let mut b: ReverseBody = parse_json(&body)?;
    let fund = fund_of(b.fund.as_deref())?;
    bounds::date("date", b.date)?;
    // The reason becomes part of the reversal's one-line summary (摘要).
    b.reason = text::line("reason", &b.reason, REF_CHARS)?;
    let entry = state
        .funds
        .change(&p, Vec::new(), |a, _| {
            Ok(match fund {
                Fund::Safety => a.safety.reverse(seq, b.date, &b.reason)?.clone(),
                Fund::Civilized => a.civilized.reverse(seq, b.date, &b.reason)?.clone(),
            })
        })
        .await
        .map_err(err)?;
    Ok(created(entry))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"date": "2027-12-31"}))]
pub struct SettleBody {
    pub date: NaiveDate,
}

#[utoipa::path(post, path = "/v1/projects/{id}/safety-fund/settlement", tag = "safety-fund",
    params(("id" = String, Path)), request_body = SettleBody,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(SETTLE_ROLES)))),
    responses((status = 201, description = "surplus returned to the owner, or deficit borne by the enterprise", body = Object)))]
pub async fn settle(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let p = writable(&state, &caller, &id, SETTLE_ROLES).await?;
    let b: SettleBody = parse_json(&body)?;
    bounds::date("date", b.date)?;
    let s: Settlement = state.funds.settle(&p, b.date).await.map_err(err)?;
    Ok(created(s))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"year_planned_fen": {"2026": 100_000_000}, "prepay_rule": {"rule": "gb50500"}}))]
pub struct CivilizedBody {
    /// The year's planned 安全文明施工费 per calendar year.
    pub year_planned_fen: BTreeMap<i32, i64>,
    /// `{"rule": "gb50500"}` or `{"rule": "contract", "min_share_bp": …, "within_days": …}`.
    #[schema(value_type = Object)]
    pub prepay_rule: Option<CivPrepayRule>,
}

#[utoipa::path(put, path = "/v1/projects/{id}/safety-fund/civilized", tag = "safety-fund",
    params(("id" = String, Path)), request_body = CivilizedBody,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(BOOK_ROLES)))),
    responses((status = 200, body = AccountView)))]
pub async fn put_civilized(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<AccountView>, Problem> {
    let p = writable(&state, &caller, &id, BOOK_ROLES).await?;
    let b: CivilizedBody = parse_json(&body)?;
    let terms = CivilizedTerms {
        year_planned_fen: b.year_planned_fen,
        prepay_rule: b.prepay_rule.unwrap_or(CivPrepayRule::Gb50500),
    };
    terms.validate().map_err(rule_err)?;
    state
        .funds
        .change(&p, Vec::new(), |a, _| {
            a.civilized.terms = terms.clone();
            Ok(())
        })
        .await
        .map_err(err)?;
    Ok(Json(state.funds.view(&p, today()).await.map_err(err)?))
}

/// A cost plan with plan versus actual.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlanAnswer {
    #[schema(value_type = Object)]
    pub plan: CostPlan,
    pub planned_total_fen: i64,
    #[schema(value_type = Object)]
    pub vs_actual: PlanVsActual,
}

fn plan_answer(plan: CostPlan, entries: &[Entry], civ: &[Entry]) -> Result<PlanAnswer, Problem> {
    let all: Vec<Entry> = entries.iter().chain(civ).cloned().collect();
    Ok(PlanAnswer {
        planned_total_fen: plan.total_fen().map_err(rule_err)?,
        vs_actual: plan.plan_vs_actual(&all).map_err(rule_err)?,
        plan,
    })
}

#[utoipa::path(get, path = "/v1/projects/{id}/safety-fund/cost-plan", tag = "safety-fund",
    params(("id" = String, Path)),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = PlanAnswer)))]
pub async fn cost_plan(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<PlanAnswer>, Problem> {
    caller.require(READ_ROLES)?;
    let p = project(&state, &caller, &id).await?;
    let a = state.funds.load(&p).await.map_err(err)?;
    Ok(Json(plan_answer(
        a.plan.clone(),
        a.safety.entries(),
        a.civilized.entries(),
    )?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"lines": [{"id": "L1", "item": "塔吊安全监控", "quantity": 2, "unit_price_fen": 3_000_000}]}))]
pub struct PlanBody {
    #[schema(value_type = Vec<Object>)]
    pub lines: Vec<PlanLine>,
}

/// The plan's text parsed at the edge, so a refusal names the line (`lines[2].item`); the
/// amounts are the plan's own rules (`CostPlan::add_line`).
fn plan_lines(lines: Vec<PlanLine>) -> Result<Vec<PlanLine>, Problem> {
    lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            Ok(PlanLine {
                id: text::line(&format!("lines[{i}].id"), &l.id, ID_CHARS)?,
                item: text::line(&format!("lines[{i}].item"), &l.item, REF_CHARS)?,
                ..l
            })
        })
        .collect()
}

#[utoipa::path(put, path = "/v1/projects/{id}/safety-fund/cost-plan", tag = "safety-fund",
    params(("id" = String, Path)), request_body = PlanBody,
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(BOOK_ROLES)))),
    responses((status = 200, body = PlanAnswer), (status = 409, description = "the plan is approved")))]
pub async fn put_cost_plan(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<PlanAnswer>, Problem> {
    let p = writable(&state, &caller, &id, BOOK_ROLES).await?;
    let b: PlanBody = parse_json(&body)?;
    let lines = plan_lines(b.lines)?;
    state.funds.put_plan(&p, lines).await.map_err(err)?;
    let a = state.funds.load(&p).await.map_err(err)?;
    Ok(Json(plan_answer(
        a.plan.clone(),
        a.safety.entries(),
        a.civilized.entries(),
    )?))
}

#[utoipa::path(post, path = "/v1/projects/{id}/safety-fund/cost-plan/approve", tag = "safety-fund",
    params(("id" = String, Path)),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(APPROVE_ROLES)))),
    responses((status = 200, body = PlanAnswer), (status = 409, description = "already approved or empty")))]
pub async fn approve_cost_plan(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<PlanAnswer>, Problem> {
    let p = writable(&state, &caller, &id, APPROVE_ROLES).await?;
    let by = caller.user_id.clone();
    state
        .funds
        .change(&p, Vec::new(), |a, _| {
            a.plan.approve(&by, chrono::Utc::now())?;
            Ok(())
        })
        .await
        .map_err(err)?;
    let a = state.funds.load(&p).await.map_err(err)?;
    Ok(Json(plan_answer(
        a.plan.clone(),
        a.safety.entries(),
        a.civilized.entries(),
    )?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct StatementQuery {
    /// `safety` (default) or `civilized`.
    pub fund: Option<String>,
    /// `json` (default), `csv` or `xlsx`.
    pub format: Option<String>,
}

/// A ledger statement (对账单).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Statement {
    pub project_id: String,
    #[schema(value_type = String)]
    pub fund: Fund,
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<StatementRow>,
    pub accrued_fen: i64,
    /// Spent plus allocated.
    pub spent_fen: i64,
    pub balance_fen: i64,
    /// Every entry, in order, with its hash.
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<Entry>,
}

#[utoipa::path(get, path = "/v1/projects/{id}/safety-fund/statement", tag = "safety-fund",
    params(("id" = String, Path), StatementQuery),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = Statement, description = "JSON, or CSV/XLSX with the headers 日期, 摘要, 类别, 计提(元), 支出(元), 余额(元)")))]
pub async fn statement(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<StatementQuery>,
) -> Result<Response, Problem> {
    caller.require(READ_ROLES)?;
    let p = project(&state, &caller, &id).await?;
    let fund = fund_of(q.fund.as_deref())?;
    let format = Format::parse(q.format.as_deref())?;
    let a = state.funds.load(&p).await.map_err(err)?;
    let entries = a.ledger(fund).to_vec();
    let rows = sf::statement_rows(&entries);
    let accrued = rows
        .iter()
        .fold(0i64, |s, r| s.saturating_add(r.accrued_fen));
    let spent = rows.iter().fold(0i64, |s, r| s.saturating_add(r.spent_fen));
    let balance = rows.last().map_or(0, |r| r.balance_fen);
    if format == Format::Json {
        return Ok(Json(Statement {
            project_id: p.id.as_str().to_owned(),
            fund,
            rows,
            accrued_fen: accrued,
            spent_fen: spent,
            balance_fen: balance,
            entries,
        })
        .into_response());
    }
    let rules = state.funds.rules_on(today()).map_err(err)?;
    let label = |name: &str| -> String {
        rules
            .categories
            .r2022
            .iter()
            .chain(&rules.categories.r2012)
            .chain(&rules.civilized_categories)
            .find(|c| c.name == name)
            .map_or_else(|| name.to_owned(), |c| c.label.clone())
    };
    let mut t = Table::new(format!("{}{}", fund.label(), "对账单"), &STATEMENT_HEADERS);
    for r in &rows {
        t.push(vec![
            Cell::Text(r.date.format("%Y-%m-%d").to_string()),
            Cell::Text(r.summary.clone()),
            Cell::Text(label(&r.category)),
            Cell::Fen(r.accrued_fen),
            Cell::Fen(r.spent_fen),
            Cell::Fen(r.balance_fen),
        ]);
    }
    t.push(vec![
        "合计".into(),
        Cell::Empty,
        Cell::Empty,
        Cell::Fen(accrued),
        Cell::Fen(spent),
        Cell::Fen(balance),
    ]);
    export::attachment(
        &t,
        format,
        &format!("statement-{}-{}", p.id.as_str(), fund_str(fund)),
    )
}

fn fund_str(f: Fund) -> &'static str {
    match f {
        Fund::Safety => "safety",
        Fund::Civilized => "civilized",
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VerifyAnswer {
    pub ok: bool,
    pub ledgers: Vec<ChainReport>,
}

#[utoipa::path(get, path = "/v1/projects/{id}/safety-fund/verify", tag = "safety-fund",
    params(("id" = String, Path)),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses((status = 200, body = VerifyAnswer, description = "each ledger's hash chain, with the first broken link")))]
pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<VerifyAnswer>, Problem> {
    caller.require(READ_ROLES)?;
    let p = project(&state, &caller, &id).await?;
    let ledgers = state.funds.verify(&p).await.map_err(err)?;
    Ok(Json(VerifyAnswer {
        ok: ledgers.iter().all(|l| l.ok),
        ledgers,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ReportQuery {
    /// `json` (default), `csv` or `xlsx`.
    pub format: Option<String>,
    pub as_of: Option<NaiveDate>,
}

const USE_HEADERS: [&str; 9] = [
    "项目",
    "地区",
    "费率(‱)",
    "计划总额(元)",
    "应计提(元)",
    "已计提(元)",
    "已使用(元)",
    "使用比例(%)",
    "余额(元)",
];

/// A use ratio in percent (bp ÷ 100) as a number cell; a negative one (reversals of earlier
/// years' spending) stays a number.
fn ratio_cell(bp: Option<i64>) -> Cell {
    match bp {
        Some(bp) => Cell::Decimal(bp, 2),
        None => Cell::Empty,
    }
}

fn use_table(sheet: String, projects: &[ProjectUse]) -> Table {
    let mut t = Table::new(sheet, &USE_HEADERS);
    for u in projects {
        t.push(vec![
            Cell::Text(u.name.clone()),
            Cell::Text(u.region_code.clone()),
            Cell::Int(u.rate_bp),
            Cell::Fen(u.planned_total_fen),
            Cell::Fen(u.required_accrual_fen),
            Cell::Fen(u.accrued_fen),
            Cell::Fen(u.used_fen),
            ratio_cell(u.use_ratio_bp),
            Cell::Fen(u.balance_fen),
        ]);
    }
    let total = |f: fn(&ProjectUse) -> i64| Cell::Fen(report_sum(projects.iter().map(f)));
    t.push(vec![
        "合计".into(),
        Cell::Empty,
        Cell::Empty,
        total(|u| u.planned_total_fen),
        total(|u| u.required_accrual_fen),
        total(|u| u.accrued_fen),
        total(|u| u.used_fen),
        Cell::Empty,
        total(|u| u.balance_fen),
    ]);
    t
}

#[utoipa::path(get, path = "/v1/enterprises/{customer_id}/safety-fund/{year}", tag = "safety-fund",
    params(("customer_id" = String, Path), ("year" = i32, Path), ReportQuery),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(ENTERPRISE_ROLES)))),
    responses((status = 200, body = EnterpriseYear, description = "required accrual, used, use ratio, pause and under-use flags; CSV/XLSX with Chinese headers")))]
pub async fn enterprise_year(
    State(state): State<AppState>,
    caller: Caller,
    Path((customer_id, year)): Path<(String, String)>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, Problem> {
    caller.require(ENTERPRISE_ROLES)?;
    let cid = CustomerId::parse("customer_id", &customer_id).map_err(|_| Problem::not_found())?;
    let customer = state
        .directory
        .visible_customer(&caller, &cid)
        .await
        .map_err(Problem::from)?
        .ok_or_else(Problem::not_found)?;
    let year = fee_year(year.parse().ok())?;
    let format = Format::parse(q.format.as_deref())?;
    let y = state
        .funds
        .enterprise_year(
            &customer.integrator_id,
            &customer.id,
            year,
            q.as_of.unwrap_or_else(today),
        )
        .await
        .map_err(err)?;
    if format == Format::Json {
        return Ok(Json(y).into_response());
    }
    let t = use_table(format!("{year}年安全生产费使用情况"), &y.projects);
    export::attachment(
        &t,
        format,
        &format!("safety-fund-{}-{year}", customer.id.as_str()),
    )
}

/// A region's utilization summary (read-only, for government supervision).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RegionSummary {
    pub region_code: String,
    pub year: i32,
    pub projects: Vec<ProjectUse>,
    pub required_accrual_fen: i64,
    pub accrued_fen: i64,
    pub used_fen: i64,
    pub use_ratio_bp: Option<i64>,
    /// Projects with at least one standing flag.
    pub flagged_projects: usize,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct RegionQuery {
    /// The fee year (default: the current year).
    pub year: Option<i32>,
    pub format: Option<String>,
    pub as_of: Option<NaiveDate>,
}

#[utoipa::path(get, path = "/v1/regions/{code}/safety-fund", tag = "safety-fund",
    params(("code" = String, Path), RegionQuery),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(REGION_ROLES)))),
    responses((status = 200, body = RegionSummary), (status = 404, description = "not the caller's jurisdiction")))]
pub async fn region_summary(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    Query(q): Query<RegionQuery>,
) -> Result<Response, Problem> {
    caller.require(REGION_ROLES)?;
    let code = RegionCode::parse("code", &code).map_err(|_| Problem::not_found())?;
    if !caller.is_platform_admin() {
        let (Some(i), Some(c)) = (&caller.integrator, &caller.customer) else {
            return Err(Problem::not_found());
        };
        let governs = state
            .directory
            .jurisdiction(i, c)
            .await
            .map_err(Problem::from)?
            .is_some_and(|j| j.covers(&code));
        if !governs {
            return Err(Problem::not_found());
        }
    }
    let format = Format::parse(q.format.as_deref())?;
    let as_of = q.as_of.unwrap_or_else(today);
    let year = fee_year(Some(q.year.unwrap_or_else(|| as_of.year())))?;
    let mut projects = Vec::new();
    let mut cursor = None;
    loop {
        let page = state
            .directory
            .visible_projects(&caller, 200, cursor)
            .await
            .map_err(Problem::from)?;
        for p in page.items.iter().filter(|p| code.covers(&p.region_code)) {
            if let Some(a) = state.funds.load_for_summary(p).await.map_err(err)? {
                projects.push(state.funds.project_use(p, &a, year, as_of).map_err(err)?);
            }
        }
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    // Across integrators: sums that cannot fail or wrap, whatever one tenant stored.
    let required = report_sum(projects.iter().map(|u| u.required_accrual_fen));
    let used = report_sum(projects.iter().map(|u| u.used_fen));
    let summary = RegionSummary {
        region_code: code.as_str().to_owned(),
        year,
        required_accrual_fen: required,
        accrued_fen: report_sum(projects.iter().map(|u| u.accrued_fen)),
        used_fen: used,
        use_ratio_bp: (required > 0).then(|| {
            let r =
                (i128::from(used) * 10_000 * 2 + i128::from(required)) / (2 * i128::from(required));
            i64::try_from(r).unwrap_or(i64::MAX)
        }),
        flagged_projects: projects.iter().filter(|u| !u.flags.is_empty()).count(),
        projects,
    };
    if format == Format::Json {
        return Ok(Json(summary).into_response());
    }
    let t = use_table(format!("{year}年辖区安全生产费使用情况"), &summary.projects);
    export::attachment(
        &t,
        format,
        &format!("safety-fund-region-{}-{year}", code.as_str()),
    )
}

#[utoipa::path(post, path = "/v1/safety-fund/handoffs/drain", tag = "safety-fund",
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(OPERATOR_ROLES)))),
    responses((status = 200, description = "invoices posted from the billing hand-off", body = Object)))]
pub async fn drain(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<DrainReport>, Problem> {
    caller.require(OPERATOR_ROLES)?;
    Ok(Json(state.funds.drain_handoffs().await.map_err(err)?))
}

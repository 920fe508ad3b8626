//! The `safety-fund` concern's data access (issue 7): per project, the 安全生产费 account
//! ([`FundAccount`]) and the 安全文明施工费 account ([`CivilizedAccount`]), each an append-only
//! hash-chained ledger; the smart-site cost plan; enterprise year summaries; the billing
//! hand-off consumer. The rules are the pure [`crate::domain::safety_fund`]; this module stores
//! them.
//!
//! Storage, in the project's partition `I#{i}#P#{p}#`:
//! - `SF#ACCOUNT`: the account header (terms, regime, rate, rules version, variations,
//!   subcontracts, civilized terms, cost plan, ledger lengths) with a `rev` counter;
//! - `SF#S#{seq:010}` / `SF#C#{seq:010}`: one item per ledger entry (安全生产费 / 安全文明施工费).
//!
//! Every change is one transaction: the header put conditioned on the `rev` it was read at, and
//! each new entry put conditioned on not existing. Two concurrent writers cannot both append
//! seq n; the loser reloads and retries, so the chain never forks. Entries are never updated or
//! deleted by this code; a tampered entry is found by [`Funds::verify`], and a ledger whose chain
//! is broken refuses further appends.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::alarming::{AlarmError, Alarms, LedgerFinding, LedgerProject};
use crate::directory::{Directory, DirectoryError};
use crate::domain::alarms::Level;
use crate::domain::safety_fund::{
    self as sf, BrokenLink, CivilizedAccount, CivilizedTerms, ContractVariation, CostPlan,
    EnterpriseYearSummary, Entry, Expenditure, FeeRules, FeeRulesSet, Flag, FlagLevel, FundAccount,
    Links, PlanLine, ProjectLedger, ProjectTerms, Regime, SafetyFundError, Settlement, Subcontract,
    TakeBack, YearMonth,
};
use crate::domain::tenancy::{CustomerId, Project};
use crate::handoff::{self, HandoffEvent, InvoiceChange};
use crate::ids::IntegratorId;
use crate::store::keys::{self, EntityKind};
use crate::store::records::{DATA, decode, record};
use crate::store::{Condition, Item, Key, Pk, Query, SkCond, Store, StoreError, TxOp};

/// Flag code of a ledger whose balance went negative (spending beyond the accrued amount).
pub const FEE_OVERSPENT: &str = "FEE-OVERSPENT";

/// How often a change is retried after losing a race on the account header.
const MAX_ATTEMPTS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum FundsError {
    #[error(transparent)]
    Rule(#[from] SafetyFundError),
    #[error(transparent)]
    Broken(#[from] BrokenLink),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error("stored record is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the account kept changing concurrently; retry")]
    Contention,
    #[error("the account's rules version `{0}` is not configured")]
    UnknownRulesVersion(String),
    /// The project's terms cannot open an account (a contract value beyond the bounds, stored
    /// before they were enforced at the edge): it has no ledger, and never gets one.
    #[error("the project's terms cannot open a safety-fund account: {0}")]
    Terms(SafetyFundError),
}

/// The two ledgers of a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Fund {
    /// 安全生产费 (enterprise safety production fee, 财资〔2022〕136号).
    Safety,
    /// 安全文明施工费 (safety and civilized construction measures fee, GB 50500).
    Civilized,
}

impl Fund {
    pub fn parse(s: Option<&str>) -> Option<Fund> {
        match s {
            None | Some("safety") => Some(Fund::Safety),
            Some("civilized") => Some(Fund::Civilized),
            Some(_) => None,
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Fund::Safety => "S",
            Fund::Civilized => "C",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Fund::Safety => "安全生产费",
            Fund::Civilized => "安全文明施工费",
        }
    }
}

/// The header of a project's fund account.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    integrator_id: String,
    project_id: String,
    account: FundAccountHead,
    civilized: CivilizedTerms,
    plan: CostPlan,
    safety_len: u64,
    civilized_len: u64,
}

/// [`FundAccount`] without its ledger.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FundAccountHead {
    terms: ProjectTerms,
    regime: Regime,
    rate_bp: i64,
    rules_version: String,
    variations: Vec<ContractVariation>,
    subcontracts: Vec<Subcontract>,
}

/// A project's accounts as loaded: what the pure rules work on.
#[derive(Debug, Clone)]
pub struct Accounts {
    pub safety: FundAccount,
    pub civilized: CivilizedAccount,
    pub plan: CostPlan,
    rev: i64,
    stored: (u64, u64),
    exists: bool,
}

impl Accounts {
    pub fn ledger(&self, fund: Fund) -> &[Entry] {
        match fund {
            Fund::Safety => self.safety.entries(),
            Fund::Civilized => self.civilized.entries(),
        }
    }
}

/// Totals of the 安全文明施工费 account.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CivilizedView {
    pub year_planned_fen: BTreeMap<i32, i64>,
    #[schema(value_type = Object)]
    pub prepay_rule: sf::CivPrepayRule,
    pub received_fen: i64,
    pub spent_fen: i64,
    pub balance_fen: i64,
}

/// `GET /v1/projects/{id}/safety-fund` (API.md, Safety fund).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountView {
    pub project_id: String,
    /// `r2012` (财企〔2012〕16号 legacy rates) or `r2022` (财资〔2022〕136号).
    #[schema(value_type = String)]
    pub regime: Regime,
    pub rate_bp: i64,
    pub rules_version: String,
    pub contract_value_fen: i64,
    /// Contract value plus recorded variations: the ceiling of cumulative progress.
    pub contract_limit_fen: i64,
    pub planned_total_fen: i64,
    pub cumulative_progress_fen: i64,
    pub accrued_fen: i64,
    pub spent_fen: i64,
    pub allocated_fen: i64,
    /// `accrued − spent − allocated`.
    pub balance_fen: i64,
    pub owner_paid_fen: i64,
    pub settled: bool,
    #[schema(value_type = Vec<Object>)]
    pub flags: Vec<Flag>,
    #[schema(value_type = Vec<Object>)]
    pub subcontracts: Vec<Subcontract>,
    #[schema(value_type = Vec<Object>)]
    pub variations: Vec<ContractVariation>,
    pub civilized: CivilizedView,
    pub entries: u64,
}

/// The verify answer of one ledger.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChainReport {
    #[schema(value_type = String)]
    pub fund: Fund,
    pub entries: u64,
    pub ok: bool,
    /// The first broken link, if any.
    #[schema(value_type = Option<Object>)]
    pub first_broken: Option<BrokenLink>,
}

/// One project's line of an enterprise or region summary.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProjectUse {
    pub project_id: String,
    pub name: String,
    pub region_code: String,
    #[schema(value_type = String)]
    pub regime: Regime,
    pub rate_bp: i64,
    pub planned_total_fen: i64,
    /// 应计提 for the year: the year's months' progress × rate.
    pub required_accrual_fen: i64,
    pub accrued_fen: i64,
    /// Expenditures plus allocations dated in the year.
    pub used_fen: i64,
    pub balance_fen: i64,
    pub owner_paid_fen: i64,
    pub use_ratio_bp: Option<i64>,
    /// Codes of the flags standing on the evaluation date.
    pub flags: Vec<String>,
}

/// `GET /v1/enterprises/{customer_id}/safety-fund/{year}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EnterpriseYear {
    pub customer_id: String,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub summary: EnterpriseYearSummary,
    pub projects: Vec<ProjectUse>,
}

/// A hand-off event that could not be posted (kept, never dropped).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedHandoff {
    pub event: HandoffEvent,
    pub reason: String,
    pub at: String,
}

/// What one drain of the hand-off outbox did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainReport {
    pub posted: usize,
    pub already_posted: usize,
    pub failed: usize,
}

fn project_pk(p: &Project) -> Pk {
    keys::entity(&p.integrator_id, EntityKind::Project, p.id.as_str())
}

fn project_type_name(p: &Project) -> String {
    serde_json::to_value(p.project_type)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn terms_of(p: &Project) -> ProjectTerms {
    ProjectTerms {
        project_type: project_type_name(p),
        contract_value_fen: p.contract_value_fen,
        contract_signed: p.contract_signed_date,
        tender_completed: p.tender_completed_date,
        start_date: p.start_date,
    }
}

/// Today in Asia/Shanghai (the date flags are evaluated on).
pub fn today() -> NaiveDate {
    crate::domain::billing::shanghai_date(Utc::now())
}

/// The safety-fund service over the storage port.
#[derive(Clone)]
pub struct Funds {
    store: Arc<dyn Store>,
    directory: Directory,
    rules: Arc<FeeRulesSet>,
    alarms: Option<Alarms>,
}

impl Funds {
    pub fn new(store: Arc<dyn Store>, rules: Arc<FeeRulesSet>) -> Self {
        Funds {
            directory: Directory::new(Arc::clone(&store)),
            store,
            rules,
            alarms: None,
        }
    }

    /// Raises the findings (flags) as ledger alarms of the alarms concern after every change and
    /// on [`Funds::sweep_flags`].
    pub fn with_alarms(mut self, alarms: Alarms) -> Self {
        self.alarms = Some(alarms);
        self
    }

    /// The service with the rules shipped in `shared/config/safety-fund.json`.
    pub fn with_default_rules(store: Arc<dyn Store>) -> Result<Self, SafetyFundError> {
        Ok(Funds::new(store, Arc::new(FeeRulesSet::default_rules()?)))
    }

    pub fn rules(&self) -> &FeeRulesSet {
        &self.rules
    }

    /// The rules an account applies on `date`: the version in force then.
    pub fn rules_on(&self, date: NaiveDate) -> Result<&FeeRules, FundsError> {
        Ok(self.rules.in_force(date)?)
    }

    async fn entries(&self, pk: &Pk, fund: Fund) -> Result<Vec<Entry>, FundsError> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .store
                .query(
                    Query::partition(pk)
                        .sk(SkCond::BeginsWith(keys::fund_entries_prefix(fund.tag())))
                        .after(cursor),
                )
                .await?;
            for item in &page.items {
                out.push(decode(item)?);
            }
            match page.next {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// The project's accounts; opened (in memory) from the project record when none is stored:
    /// regime by its dates, rate by its type, under the rules version in force today.
    pub async fn load(&self, p: &Project) -> Result<Accounts, FundsError> {
        let pk = project_pk(p);
        let key = Key::new(pk.clone(), keys::SK_FUND_ACCOUNT);
        let Some(item) = self.store.get(&key).await? else {
            let rules = self.rules_on(today())?;
            return Ok(Accounts {
                safety: FundAccount::open(terms_of(p), rules).map_err(FundsError::Terms)?,
                civilized: CivilizedAccount::default(),
                plan: CostPlan::new(),
                rev: 0,
                stored: (0, 0),
                exists: false,
            });
        };
        let h: Header = decode(&item)?;
        let rev = item.n("rev").unwrap_or(0);
        let mut safety_entries = self.entries(&pk, Fund::Safety).await?;
        let mut civ_entries = self.entries(&pk, Fund::Civilized).await?;
        // Entries beyond the header's length belong to no committed change (cannot happen with
        // transactions, but never let them shift the chain).
        safety_entries.truncate(usize::try_from(h.safety_len).unwrap_or(usize::MAX));
        civ_entries.truncate(usize::try_from(h.civilized_len).unwrap_or(usize::MAX));
        let mut terms = h.account.terms;
        // The start date may be set on the project after the account opened.
        terms.start_date = p.start_date.or(terms.start_date);
        let safety = FundAccount::restore(
            terms,
            h.account.regime,
            h.account.rate_bp,
            h.account.rules_version,
            h.account.variations,
            h.account.subcontracts,
            safety_entries,
        )?;
        let civilized = CivilizedAccount::restore(h.civilized, civ_entries)?;
        Ok(Accounts {
            safety,
            civilized,
            plan: h.plan,
            rev,
            stored: (h.safety_len, h.civilized_len),
            exists: true,
        })
    }

    /// The accounts for a summary over many projects (an enterprise's, a region's, the flag
    /// sweep): `None` for a project whose terms cannot open an account ([`FundsError::Terms`]).
    /// Such a project has no ledger, so leaving it out loses nothing, and it cannot break the
    /// summaries of every other project.
    pub async fn load_for_summary(&self, p: &Project) -> Result<Option<Accounts>, FundsError> {
        match self.load(p).await {
            Ok(a) => Ok(Some(a)),
            Err(FundsError::Terms(e)) => {
                tracing::error!(project = %p.id, error = %e, "project left out of fund summaries");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The rules version the account was opened under (an account keeps it).
    fn account_rules<'a>(&'a self, a: &Accounts) -> Result<&'a FeeRules, FundsError> {
        self.rules
            .by_version(&a.safety.rules_version)
            .ok_or_else(|| FundsError::UnknownRulesVersion(a.safety.rules_version.clone()))
    }

    fn write_ops(
        &self,
        p: &Project,
        a: &Accounts,
        extra: Vec<TxOp>,
    ) -> Result<Vec<TxOp>, FundsError> {
        let pk = project_pk(p);
        let head = Header {
            integrator_id: p.integrator_id.as_str().to_owned(),
            project_id: p.id.as_str().to_owned(),
            account: FundAccountHead {
                terms: a.safety.terms.clone(),
                regime: a.safety.regime,
                rate_bp: a.safety.rate_bp,
                rules_version: a.safety.rules_version.clone(),
                variations: a.safety.variations.clone(),
                subcontracts: a.safety.subcontracts.clone(),
            },
            civilized: a.civilized.terms.clone(),
            plan: a.plan.clone(),
            safety_len: a.safety.entries().len() as u64,
            civilized_len: a.civilized.entries().len() as u64,
        };
        let item =
            record(Key::new(pk.clone(), keys::SK_FUND_ACCOUNT), &head)?.with("rev", a.rev + 1);
        let cond = if a.exists {
            Condition::equals("rev", a.rev)
        } else {
            Condition::NotExists
        };
        let mut ops = vec![TxOp::Put {
            item,
            cond: Some(cond),
        }];
        for (fund, entries, stored) in [
            (Fund::Safety, a.safety.entries(), a.stored.0),
            (Fund::Civilized, a.civilized.entries(), a.stored.1),
        ] {
            for e in entries
                .iter()
                .skip(usize::try_from(stored).unwrap_or(usize::MAX))
            {
                ops.push(TxOp::Put {
                    item: record(
                        Key::new(pk.clone(), keys::fund_entry_sk(fund.tag(), e.seq)),
                        e,
                    )?,
                    cond: Some(Condition::NotExists),
                });
            }
        }
        ops.extend(extra);
        Ok(ops)
    }

    /// Loads the accounts, applies `change` (pure rules), and commits the header and the new
    /// entries in one transaction; on a lost race reloads and retries. `extra` adds operations
    /// to the same transaction.
    pub async fn change<T, F>(
        &self,
        p: &Project,
        extra: Vec<TxOp>,
        change: F,
    ) -> Result<T, FundsError>
    where
        F: Fn(&mut Accounts, &FeeRules) -> Result<T, FundsError>,
    {
        for _ in 0..MAX_ATTEMPTS {
            let mut a = self.load(p).await?;
            let rules = self.account_rules(&a)?.clone();
            let out = change(&mut a, &rules)?;
            let ops = self.write_ops(p, &a, extra.clone())?;
            if ops.len() > crate::store::MAX_TRANSACT_ITEMS {
                return Err(FundsError::Store(StoreError::Invalid(
                    "one change appends too many entries".into(),
                )));
            }
            match self.store.transact(ops).await {
                Ok(()) => {
                    if let Err(e) = self.sync_alarms(p, &a, &rules, today()).await {
                        // The change is committed; the next sweep brings the alarms in line.
                        tracing::warn!(project = %p.id, error = %e, "ledger alarms not synced");
                    }
                    return Ok(out);
                }
                Err(
                    StoreError::TransactionConditionFailed { .. } | StoreError::ConditionFailed,
                ) => {
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(FundsError::Contention)
    }

    /// Mirrors the flags standing on `as_of` as ledger alarms (visible to owner, contractor and
    /// government through the alarms concern).
    async fn sync_alarms(
        &self,
        p: &Project,
        a: &Accounts,
        rules: &FeeRules,
        as_of: NaiveDate,
    ) -> Result<(), FundsError> {
        let Some(alarms) = &self.alarms else {
            return Ok(());
        };
        let findings: Vec<LedgerFinding> = flags(a, as_of, rules)?
            .into_iter()
            .map(|f| LedgerFinding {
                rule: f.code,
                subject: f.subject.unwrap_or_default(),
                level: match f.level {
                    FlagLevel::Warning => Level::Warning,
                    FlagLevel::Breach => Level::Alarm,
                },
                value: f.paid_fen as f64 / 100.0,
                threshold: f.required_fen as f64 / 100.0,
            })
            .collect();
        alarms
            .sync_ledger(
                &LedgerProject {
                    integrator_id: &p.integrator_id,
                    project_id: p.id.as_str(),
                    region_code: p.region_code.as_str(),
                },
                &findings,
                Utc::now(),
            )
            .await
            .map_err(|e| match e {
                AlarmError::Store(s) => FundsError::Store(s),
                AlarmError::Json(j) => FundsError::Json(j),
                AlarmError::Conflict => FundsError::Contention,
            })
    }

    /// Evaluates every project's flags on `as_of` and brings its ledger alarms in line: flags
    /// appear with the calendar (a due date passing), not only with writes. Run by the
    /// scheduler; returns how many projects have a standing flag.
    pub async fn sweep_flags(&self, as_of: NaiveDate) -> Result<usize, FundsError> {
        let mut flagged = 0;
        let mut cursor = None;
        loop {
            let page = self.directory.all_projects(100, cursor).await?;
            for p in &page.items {
                let a = match self.load_for_summary(p).await {
                    Ok(Some(a)) => a,
                    Ok(None) => continue,
                    Err(FundsError::Broken(b)) => {
                        tracing::error!(project = %p.id, broken = %b, "ledger chain broken");
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                // An account exists once anything was booked; projects that never used the
                // fund are not judged by it.
                if !a.exists {
                    continue;
                }
                let rules = self.account_rules(&a)?;
                if !flags(&a, as_of, rules)?.is_empty() {
                    flagged += 1;
                }
                self.sync_alarms(p, &a, rules, as_of).await?;
            }
            match page.next {
                Some(n) => cursor = Some(n),
                None => return Ok(flagged),
            }
        }
    }

    /// The account view with the flags standing on `as_of`.
    pub async fn view(&self, p: &Project, as_of: NaiveDate) -> Result<AccountView, FundsError> {
        let a = self.load(p).await?;
        self.view_of(p, &a, as_of)
    }

    pub fn view_of(
        &self,
        p: &Project,
        a: &Accounts,
        as_of: NaiveDate,
    ) -> Result<AccountView, FundsError> {
        let rules = self.account_rules(a)?;
        let t = a.safety.totals();
        let c = a.civilized.ledger.totals();
        Ok(AccountView {
            project_id: p.id.as_str().to_owned(),
            regime: a.safety.regime,
            rate_bp: a.safety.rate_bp,
            rules_version: a.safety.rules_version.clone(),
            contract_value_fen: a.safety.terms.contract_value_fen,
            contract_limit_fen: a.safety.contract_limit_fen(),
            planned_total_fen: a.safety.planned_total_fen()?,
            cumulative_progress_fen: a.safety.cumulative_progress_fen(),
            accrued_fen: t.accrued_fen,
            spent_fen: t.spent_fen,
            allocated_fen: t.allocated_fen,
            balance_fen: t.balance_fen,
            owner_paid_fen: a
                .safety
                .owner_payments()
                .iter()
                .fold(0i64, |s, (_, f)| s.saturating_add(*f)),
            settled: a.safety.is_settled(),
            flags: flags(a, as_of, rules)?,
            subcontracts: a.safety.subcontracts.clone(),
            variations: a.safety.variations.clone(),
            civilized: CivilizedView {
                year_planned_fen: a.civilized.terms.year_planned_fen.clone(),
                prepay_rule: a.civilized.terms.prepay_rule,
                received_fen: c.accrued_fen,
                spent_fen: c.spent_fen,
                balance_fen: c.balance_fen,
            },
            entries: (a.safety.entries().len() + a.civilized.entries().len()) as u64,
        })
    }

    /// Records the month's progress. The enterprise 3× pause rule is evaluated here, at the
    /// month's first report, over the contractor's projects.
    pub async fn report_progress(
        &self,
        p: &Project,
        month: YearMonth,
        progress_fen: i64,
        date: NaiveDate,
    ) -> Result<sf::AccrualOutcome, FundsError> {
        let paused = self.pause_applies(p, month).await?;
        self.change(p, Vec::new(), |a, _| {
            Ok(a.safety
                .report_progress(month, progress_fen, date, paused)?)
        })
        .await
    }

    /// Whether the contractor's month-start balance is ≥ the multiple × last year's required
    /// accrual (第五十条).
    async fn pause_applies(&self, p: &Project, month: YearMonth) -> Result<bool, FundsError> {
        let first = month.first_day()?;
        let rules = self.rules_on(first)?;
        let ledgers = self
            .enterprise_ledgers(&p.integrator_id, &p.contractor_customer_id)
            .await?;
        let balance = ledgers.iter().fold(0i64, |s, (_, a)| {
            s.saturating_add(sf::balance_before(a.safety.entries(), first))
        });
        let prior: Vec<ProjectLedger<'_>> = ledgers
            .iter()
            .map(|(_, a)| ProjectLedger {
                rate_bp: a.safety.rate_bp,
                entries: a.safety.entries(),
            })
            .collect();
        let prior_required =
            sf::enterprise_year_summary(month.year() - 1, 0, &prior, rules)?.required_accrual_fen;
        Ok(sf::enterprise_pause_applies(balance, prior_required, rules))
    }

    /// The projects a construction enterprise is the general contractor of, with their accounts.
    pub async fn enterprise_ledgers(
        &self,
        i: &IntegratorId,
        c: &CustomerId,
    ) -> Result<Vec<(Project, Accounts)>, FundsError> {
        let Some(customer) = self.directory.customer(i, c).await? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .directory
                .list_customers_projects(&customer, 200, cursor)
                .await?;
            for p in page.items {
                if &p.contractor_customer_id == c
                    && let Some(a) = self.load_for_summary(&p).await?
                {
                    out.push((p, a));
                }
            }
            match page.next {
                Some(n) => cursor = Some(n),
                None => return Ok(out),
            }
        }
    }

    /// The enterprise's fee year over its projects (opening balance = the balances before
    /// 1 January), with a per-project breakdown.
    pub async fn enterprise_year(
        &self,
        i: &IntegratorId,
        c: &CustomerId,
        year: i32,
        as_of: NaiveDate,
    ) -> Result<EnterpriseYear, FundsError> {
        let ledgers = self.enterprise_ledgers(i, c).await?;
        let jan1 = NaiveDate::from_ymd_opt(year, 1, 1)
            .ok_or(FundsError::Rule(SafetyFundError::DateOutOfRange))?;
        let rules = self.rules_on(
            jan1.max(
                self.rules
                    .versions()
                    .first()
                    .map_or(jan1, |v| v.effective_from),
            ),
        )?;
        let opening = ledgers.iter().fold(0i64, |s, (_, a)| {
            s.saturating_add(sf::balance_before(a.safety.entries(), jan1))
        });
        let all: Vec<ProjectLedger<'_>> = ledgers
            .iter()
            .map(|(_, a)| ProjectLedger {
                rate_bp: a.safety.rate_bp,
                entries: a.safety.entries(),
            })
            .collect();
        let summary = sf::enterprise_year_summary(year, opening, &all, rules)?;
        let mut projects = Vec::with_capacity(ledgers.len());
        for (p, a) in &ledgers {
            projects.push(self.project_use(p, a, year, as_of)?);
        }
        Ok(EnterpriseYear {
            customer_id: c.as_str().to_owned(),
            summary,
            projects,
        })
    }

    /// One project's year: its own required accrual, use and flags.
    pub fn project_use(
        &self,
        p: &Project,
        a: &Accounts,
        year: i32,
        as_of: NaiveDate,
    ) -> Result<ProjectUse, FundsError> {
        let rules = self.account_rules(a)?;
        let one = [ProjectLedger {
            rate_bp: a.safety.rate_bp,
            entries: a.safety.entries(),
        }];
        let jan1 = NaiveDate::from_ymd_opt(year, 1, 1)
            .ok_or(FundsError::Rule(SafetyFundError::DateOutOfRange))?;
        let s = sf::enterprise_year_summary(
            year,
            sf::balance_before(a.safety.entries(), jan1),
            &one,
            rules,
        )?;
        let view = self.view_of(p, a, as_of)?;
        Ok(ProjectUse {
            project_id: p.id.as_str().to_owned(),
            name: p.name.clone(),
            region_code: p.region_code.as_str().to_owned(),
            regime: a.safety.regime,
            rate_bp: a.safety.rate_bp,
            planned_total_fen: view.planned_total_fen,
            required_accrual_fen: s.required_accrual_fen,
            accrued_fen: s.accrued_fen,
            used_fen: s.used_fen,
            balance_fen: view.balance_fen,
            owner_paid_fen: view.owner_paid_fen,
            use_ratio_bp: s.use_ratio_bp,
            flags: view.flags.iter().map(|f| f.code.clone()).collect(),
        })
    }

    /// Checks both chains as stored, without trusting the header: the first broken link of each.
    pub async fn verify(&self, p: &Project) -> Result<Vec<ChainReport>, FundsError> {
        let pk = project_pk(p);
        let mut out = Vec::new();
        for fund in [Fund::Safety, Fund::Civilized] {
            let entries = self.entries(&pk, fund).await?;
            let broken = sf::verify(&entries).err();
            out.push(ChainReport {
                fund,
                entries: entries.len() as u64,
                ok: broken.is_none(),
                first_broken: broken,
            });
        }
        Ok(out)
    }

    /// Replaces the unapproved cost plan's lines.
    pub async fn put_plan(
        &self,
        p: &Project,
        lines: Vec<PlanLine>,
    ) -> Result<CostPlan, FundsError> {
        self.change(p, Vec::new(), |a, _| {
            if a.plan.approval.is_some() {
                return Err(SafetyFundError::PlanApproved.into());
            }
            let mut plan = CostPlan::new();
            for l in lines.clone() {
                plan.add_line(l)?;
            }
            a.plan = plan.clone();
            Ok(plan)
        })
        .await
    }

    /// Posts every pending hand-off event (what happened to billing's invoices funded by safety
    /// money): an issue as one expenditure, a credit note or a void as the entry that takes it
    /// back. The ledger append and the removal of the event commit together; an event that
    /// cannot be posted is moved, with its reason, to `HANDOFF_FAILED#…`.
    pub async fn drain_handoffs(&self) -> Result<DrainReport, FundsError> {
        let mut report = DrainReport::default();
        let mut cursor = None;
        loop {
            let (batch, next) = handoff::pending(self.store.as_ref(), 50, cursor).await?;
            for e in batch {
                match self.post_event(&e).await {
                    Ok(true) => report.posted += 1,
                    Ok(false) => report.already_posted += 1,
                    Err(FundsError::Store(s)) => return Err(FundsError::Store(s)),
                    Err(reason) => {
                        tracing::error!(invoice = %e.invoice.invoice_id, error = %reason, "hand-off event not posted");
                        self.fail_handoff(&e, &reason.to_string()).await?;
                        report.failed += 1;
                    }
                }
            }
            // Posted events are gone; the cursor still marks where the next page starts.
            match next {
                Some(c) => cursor = Some(c),
                None => return Ok(report),
            }
        }
    }

    /// Posts one event; `false` when it was already posted or leaves nothing to book (the event
    /// is then removed).
    async fn post_event(&self, e: &HandoffEvent) -> Result<bool, FundsError> {
        let inv = &e.invoice;
        let i = IntegratorId::parse(&inv.integrator_id)
            .map_err(|x| SafetyFundError::Config(x.to_string()))?;
        let pid = crate::domain::tenancy::ProjectId::parse("project_id", &inv.project_id)
            .map_err(|x| SafetyFundError::Config(x.message))?;
        let Some(p) = self.directory.project(&i, &pid).await? else {
            return Err(
                SafetyFundError::Config(format!("unknown project {}", inv.project_id)).into(),
            );
        };
        let fund = if inv.funding_source == "civilized_fee" {
            Fund::Civilized
        } else {
            Fund::Safety
        };
        if inv.total_fen <= 0 {
            // Nothing was spent, so nothing is taken back either: consumed without an entry.
            self.store.transact(vec![handoff::done_op(e)]).await?;
            return Ok(false);
        }
        let res = match &e.change {
            InvoiceChange::Issued => {
                let exp = |category: String| Expenditure {
                    date: inv.issued_on,
                    amount_fen: inv.total_fen,
                    category,
                    summary: format!("智慧工地服务费（发票 {}，{}）", inv.invoice_no, inv.period),
                    evidence_ref: inv.invoice_no.clone(),
                    links: Links {
                        invoice_id: Some(inv.invoice_id.clone()),
                        subscription_id: Some(inv.subscription_id.clone()),
                        ..Links::default()
                    },
                };
                self.change(&p, vec![handoff::done_op(e)], |a, rules| {
                    match fund {
                        Fund::Safety => {
                            let cat = rules.invoice_category.get(a.safety.regime).clone();
                            a.safety.record_expenditure(exp(cat), rules)?;
                        }
                        Fund::Civilized => {
                            let cat = rules.civilized_invoice_category.clone();
                            a.civilized.record_expenditure(exp(cat), rules)?;
                        }
                    }
                    Ok(())
                })
                .await
            }
            InvoiceChange::Credited {
                credit_note_id,
                amount_fen,
                on,
            } => {
                let take = TakeBack::Credit {
                    note_id: credit_note_id.clone(),
                    amount_fen: *amount_fen,
                };
                self.take_back(&p, e, fund, &take, *on).await
            }
            InvoiceChange::Voided { on } => self.take_back(&p, e, fund, &TakeBack::Void, *on).await,
        };
        match res {
            Ok(()) => Ok(true),
            Err(FundsError::Rule(
                SafetyFundError::InvoiceAlreadyPosted { .. }
                | SafetyFundError::CreditNoteAlreadyPosted { .. }
                | SafetyFundError::NothingToTakeBack { .. },
            )) => {
                self.store.transact(vec![handoff::done_op(e)]).await?;
                Ok(false)
            }
            Err(other) => Err(other),
        }
    }

    /// Books a credit note or a void of invoice `e` in `fund`'s ledger, consuming the event in
    /// the same transaction.
    async fn take_back(
        &self,
        p: &Project,
        e: &HandoffEvent,
        fund: Fund,
        take: &TakeBack,
        on: NaiveDate,
    ) -> Result<(), FundsError> {
        let invoice_id = e.invoice.invoice_id.as_str();
        self.change(p, vec![handoff::done_op(e)], |a, _| {
            match fund {
                Fund::Safety => a.safety.take_back(invoice_id, take, on)?,
                Fund::Civilized => a.civilized.ledger.take_back(invoice_id, take, on)?,
            };
            Ok(())
        })
        .await
    }

    async fn fail_handoff(&self, e: &HandoffEvent, reason: &str) -> Result<(), FundsError> {
        let failed = FailedHandoff {
            event: e.clone(),
            reason: reason.to_owned(),
            at: Utc::now().to_rfc3339(),
        };
        let key = Key::new(
            keys::platform(),
            keys::handoff_failed_sk(&e.invoice.integrator_id, &e.id()),
        );
        self.store
            .transact(vec![
                handoff::done_op(e),
                TxOp::Put {
                    item: record(key, &failed)?,
                    cond: None,
                },
            ])
            .await?;
        Ok(())
    }

    /// The settlement of the 安全生产费 account (竣工决算): the surplus returned to the owner.
    pub async fn settle(&self, p: &Project, date: NaiveDate) -> Result<Settlement, FundsError> {
        self.change(p, Vec::new(), |a, _| Ok(a.safety.settle(date)?))
            .await
    }

    /// Hand-off events that could not be posted.
    pub async fn failed_handoffs(&self) -> Result<Vec<FailedHandoff>, FundsError> {
        let page = self
            .store
            .query(
                Query::partition(&keys::platform())
                    .sk(SkCond::BeginsWith(keys::HANDOFF_FAILED_PREFIX.to_owned())),
            )
            .await?;
        Ok(page
            .items
            .iter()
            .map(|i: &Item| i.json(DATA))
            .collect::<Result<_, _>>()?)
    }
}

/// Every flag standing on `as_of`: owner payment and subcontract shares (安全生产费), the
/// 安全文明施工费 prepayment per year, and overspending of either ledger.
pub fn flags(a: &Accounts, as_of: NaiveDate, rules: &FeeRules) -> Result<Vec<Flag>, FundsError> {
    let mut out = a.safety.flags(as_of, rules)?;
    out.extend(a.civilized.flags(a.safety.terms.start_date, as_of, rules)?);
    for (fund, t) in [
        (Fund::Safety, a.safety.totals()),
        (Fund::Civilized, a.civilized.ledger.totals()),
    ] {
        if t.balance_fen < 0 {
            out.push(Flag {
                code: FEE_OVERSPENT.to_owned(),
                level: FlagLevel::Warning,
                due_date: as_of,
                required_fen: t.accrued_fen,
                paid_fen: t.spent_fen.saturating_add(t.allocated_fen),
                subject: Some(
                    match fund {
                        Fund::Safety => "safety",
                        Fund::Civilized => "civilized",
                    }
                    .to_owned(),
                ),
            });
        }
    }
    Ok(out)
}

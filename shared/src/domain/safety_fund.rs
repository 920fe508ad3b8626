//! Safety-fund ledger (DOMAIN.md §1, §8.4, §11.1): the pure rules of the enterprise safety
//! production fee (企业安全生产费用, 财资〔2022〕136号 / 财企〔2012〕16号) and the prepayment check of the
//! safety and civilized construction measures fee (安全文明施工费, GB 50500-2013).
//!
//! Nothing here does I/O. Every rule value (rates, cut-off date, shares, windows, category lists,
//! pause multiple, under-use threshold) comes from the versioned [`FeeRules`] configuration
//! (`shared/config/safety-fund.json`); [`FeeRulesSet::in_force`] picks the version in force at a date.
//!
//! Money is integer fen (分) throughout; products with basis points are computed in `i128` and
//! rounded half-up (away from zero) to the fen.
//!
//! The per-project ledger is an append-only, hash-chained list of [`Entry`]s: each entry carries the
//! hash of the previous one, corrections are new entries (delta or reversal), and
//! `balance = accrued − spent − allocated`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// The default, national rules shipped with the code (`shared/config/safety-fund.json`).
pub const DEFAULT_RULES_JSON: &str = include_str!("../../config/safety-fund.json");

/// Basis points in one whole (100 % = 10 000 bp).
pub const BP_PER_WHOLE: i64 = 10_000;

/// Largest single amount (fen) accepted from input, and the bound of a ledger's column totals:
/// 10¹⁵ fen = 10 trillion yuan ([`super::bounds`]).
pub use super::bounds::MAX_AMOUNT_FEN;

/// `prev_hash` of the first entry of every ledger.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Flag code: owner paid < the required share of the planned fee by start + 1 month (DOMAIN.md §8.5).
pub const FEE_OWNER_50: &str = "FEE-OWNER-50";
/// Flag code: general contractor allocated < the required share of a subcontract's fee by the
/// subcontract's start + 1 month (第十八条).
pub const FEE_SUB_50: &str = "FEE-SUB-50";
/// Flag code: 安全文明施工费 prepayment below the required share by start + 28 days (DOMAIN.md §8.5).
pub const FEE_CIV_PREPAY: &str = "FEE-CIV-PREPAY";

/// Column headers of the project statement (reports in JSON, CSV and XLSX use them verbatim).
pub const STATEMENT_HEADERS: [&str; 6] =
    ["日期", "摘要", "类别", "计提(元)", "支出(元)", "余额(元)"];

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// A refused operation or an invalid configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SafetyFundError {
    #[error("safety-fund rules: {0}")]
    Config(String),
    #[error("no safety-fund rules version is in force on {date}")]
    NoRulesInForce { date: NaiveDate },
    #[error("project type `{project_type}` has no {regime} safety-fee rate")]
    UnknownProjectType {
        project_type: String,
        regime: Regime,
    },
    #[error(
        "category `{category}` is not an allowed use of the safety fund under {regime} (diversion, 挪用, is refused)"
    )]
    Diversion { category: String, regime: Regime },
    #[error(
        "cumulative progress {cumulative_fen} fen after {month} exceeds the contract value {limit_fen} fen; record a contract variation first"
    )]
    ProgressBeyondContract {
        month: YearMonth,
        cumulative_fen: i64,
        limit_fen: i64,
    },
    #[error("{field}: amount {amount_fen} fen is out of range ({expected})")]
    InvalidAmount {
        field: &'static str,
        amount_fen: i64,
        expected: &'static str,
    },
    #[error("{field} is required")]
    Missing { field: &'static str },
    #[error("invalid month `{0}` (expected YYYY-MM)")]
    InvalidMonth(String),
    #[error("amount arithmetic overflowed")]
    Overflow,
    #[error("date arithmetic left the calendar")]
    DateOutOfRange,
    #[error("no ledger entry with seq {seq}")]
    UnknownEntry { seq: u64 },
    #[error("entry {seq} is already reversed by entry {by}")]
    AlreadyReversed { seq: u64, by: u64 },
    #[error("entry {seq} ({kind:?}) cannot be reversed")]
    NotReversible { seq: u64, kind: EntryKind },
    #[error("invoice {invoice_id} is already posted as entry {seq}")]
    InvoiceAlreadyPosted { invoice_id: String, seq: u64 },
    #[error("invoice {invoice_id} has no expenditure in this ledger to take back from")]
    InvoiceNotPosted { invoice_id: String },
    #[error("credit note {note_id} is already posted as entry {seq}")]
    CreditNoteAlreadyPosted { note_id: String, seq: u64 },
    #[error("invoice {invoice_id} holds nothing more in this ledger (already voided or credited)")]
    NothingToTakeBack { invoice_id: String },
    #[error(
        "category `{category}` is not an allowed use of the 安全文明施工费 (diversion, 挪用, is refused)"
    )]
    CivilizedDiversion { category: String },
    #[error("the fund account is settled; the ledger is closed")]
    Closed,
    #[error("the project has no start date")]
    NoStartDate,
    #[error("unknown subcontract `{0}`")]
    UnknownSubcontract(String),
    #[error("subcontract `{0}` already exists")]
    DuplicateSubcontract(String),
    #[error(
        "contract variation would put the contract value {limit_fen} fen below the progress already reported ({cumulative_fen} fen)"
    )]
    VariationBelowProgress { limit_fen: i64, cumulative_fen: i64 },
    #[error("the cost plan is approved and can no longer change")]
    PlanApproved,
    #[error("cost plan line `{0}` already exists")]
    DuplicatePlanLine(String),
    #[error("the cost plan has no lines")]
    EmptyPlan,
}

type Result<T, E = SafetyFundError> = std::result::Result<T, E>;

fn config_err(msg: impl Into<String>) -> SafetyFundError {
    SafetyFundError::Config(msg.into())
}

// ---------------------------------------------------------------------------------------------
// Money
// ---------------------------------------------------------------------------------------------

/// `n / d` rounded half-up (half away from zero); `d > 0`.
fn div_round_half_up(n: i128, d: i128) -> i128 {
    let q = n / d;
    let r = n % d;
    if 2 * r.abs() >= d { q + n.signum() } else { q }
}

/// `amount × bp / 10 000`, rounded half-up (away from zero) to the fen.
pub fn mul_bp_half_up(amount_fen: i64, bp: i64) -> Result<i64> {
    let v = div_round_half_up(
        i128::from(amount_fen) * i128::from(bp),
        i128::from(BP_PER_WHOLE),
    );
    i64::try_from(v).map_err(|_| SafetyFundError::Overflow)
}

/// `amount × bp / 10 000` rounded up to the fen (for non-negative amounts): the smallest whole-fen
/// amount that is at least the share, so `paid ≥ required` ⇔ `paid ≥ share` exactly.
pub fn mul_bp_ceil(amount_fen: i64, bp: i64) -> Result<i64> {
    let n = i128::from(amount_fen.max(0)) * i128::from(bp.max(0));
    let d = i128::from(BP_PER_WHOLE);
    let q = n / d + i128::from(n % d != 0);
    i64::try_from(q).map_err(|_| SafetyFundError::Overflow)
}

/// Planned fee of a project: `round_half_up(contract_value × rate_bp / 10 000)`.
pub fn planned_total_fen(contract_value_fen: i64, rate_bp: i64) -> Result<i64> {
    mul_bp_half_up(contract_value_fen, rate_bp)
}

/// A month's accrual (计提): `round_half_up(progress × rate_bp / 10 000)`.
pub fn accrual_fen(progress_fen: i64, rate_bp: i64) -> Result<i64> {
    mul_bp_half_up(progress_fen, rate_bp)
}

/// Fen as yuan with two decimals: `123456 → "1234.56"`, `-5 → "-0.05"`.
pub fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let abs = fen.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

fn check_amount(field: &'static str, amount_fen: i64, allow_zero: bool) -> Result<()> {
    let ok = if allow_zero {
        (0..=MAX_AMOUNT_FEN).contains(&amount_fen)
    } else {
        (1..=MAX_AMOUNT_FEN).contains(&amount_fen)
    };
    if ok {
        Ok(())
    } else {
        Err(SafetyFundError::InvalidAmount {
            field,
            amount_fen,
            expected: if allow_zero {
                "0 ..= 10^15 fen"
            } else {
                "1 ..= 10^15 fen"
            },
        })
    }
}

fn add(a: i64, b: i64) -> Result<i64> {
    a.checked_add(b).ok_or(SafetyFundError::Overflow)
}

fn sub(a: i64, b: i64) -> Result<i64> {
    a.checked_sub(b).ok_or(SafetyFundError::Overflow)
}

// ---------------------------------------------------------------------------------------------
// Calendar helpers
// ---------------------------------------------------------------------------------------------

/// A calendar month, serialised as `"YYYY-MM"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct YearMonth {
    year: i32,
    month: u32,
}

impl YearMonth {
    pub fn new(year: i32, month: u32) -> Result<Self> {
        if (1..=9999).contains(&year) && (1..=12).contains(&month) {
            Ok(YearMonth { year, month })
        } else {
            Err(SafetyFundError::InvalidMonth(format!("{year}-{month}")))
        }
    }

    /// The month containing `date` (years outside 1..=9999 are refused).
    pub fn of(date: NaiveDate) -> Result<Self> {
        YearMonth::new(date.year(), date.month())
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> u32 {
        self.month
    }

    pub fn first_day(self) -> Result<NaiveDate> {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).ok_or(SafetyFundError::DateOutOfRange)
    }

    /// The month end (月末), when accruals are due.
    pub fn last_day(self) -> Result<NaiveDate> {
        self.first_day()?
            .checked_add_months(Months::new(1))
            .and_then(|d| d.pred_opt())
            .ok_or(SafetyFundError::DateOutOfRange)
    }
}

impl fmt::Display for YearMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for YearMonth {
    type Err = SafetyFundError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || SafetyFundError::InvalidMonth(s.to_owned());
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 || !(y.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u32 = m.parse().map_err(|_| bad())?;
        YearMonth::new(year, month).map_err(|_| bad())
    }
}

impl Serialize for YearMonth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for YearMonth {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A configured window: whole months first (clamped to the month end, so Jan 31 + 1 month =
/// Feb 28/29), then days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    #[serde(default)]
    pub months: u32,
    #[serde(default)]
    pub days: u32,
}

impl Period {
    pub fn after(self, date: NaiveDate) -> Result<NaiveDate> {
        date.checked_add_months(Months::new(self.months))
            .and_then(|d| d.checked_add_days(Days::new(u64::from(self.days))))
            .ok_or(SafetyFundError::DateOutOfRange)
    }
}

/// A day of the year (month, day), e.g. the under-use report deadline April 30.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonthDay {
    pub month: u32,
    pub day: u32,
}

impl MonthDay {
    pub fn in_year(self, year: i32) -> Result<NaiveDate> {
        NaiveDate::from_ymd_opt(year, self.month, self.day).ok_or(SafetyFundError::DateOutOfRange)
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// The fee regime of a project: the legacy 财企〔2012〕16号 rates or the 财资〔2022〕136号 rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Regime {
    R2012,
    R2022,
}

impl fmt::Display for Regime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Regime::R2012 => "r2012",
            Regime::R2022 => "r2022",
        })
    }
}

/// One value per regime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerRegime<T> {
    pub r2012: T,
    pub r2022: T,
}

impl<T> PerRegime<T> {
    pub fn get(&self, regime: Regime) -> &T {
        match regime {
            Regime::R2012 => &self.r2012,
            Regime::R2022 => &self.r2022,
        }
    }
}

/// An allowed use of the fund: the snake_case `name` used by the API and the Chinese `label` of
/// the rule text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryDef {
    pub name: String,
    pub label: String,
}

/// "At least `min_share_bp` of the base paid within `due_after` of the start"; an optional earlier
/// warning point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareRule {
    pub min_share_bp: i64,
    pub due_after: Period,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_after: Option<Period>,
}

/// Enterprise-level rules (第五十条, 第五十一条).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnterpriseRules {
    /// Accrual pauses while the month-start balance ≥ this multiple × last year's required accrual.
    pub pause_multiple: i64,
    /// Under-use when the year's use is below this share of the year's required accrual.
    pub under_use_threshold_bp: i64,
    /// The under-use report is due on this day of the following year.
    pub under_use_report_due: MonthDay,
}

/// One version of the fee rules (rates, regime cut-off, categories, payment windows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeRules {
    pub version: String,
    pub effective_from: NaiveDate,
    #[serde(default)]
    pub notes: String,
    /// Legacy-rate cut-off: 财资〔2022〕136号 in force from this date (DOMAIN.md §11.0 C1).
    pub r2022_effective_date: NaiveDate,
    /// Rate per project type (snake_case `ProjectType` names), in basis points.
    pub rates_bp: PerRegime<BTreeMap<String, i64>>,
    pub categories: PerRegime<Vec<CategoryDef>>,
    pub owner_payment: ShareRule,
    pub sub_allocation: ShareRule,
    pub civilized_prepay_gb50500: ShareRule,
    pub enterprise: EnterpriseRules,
    /// The category a safety-fee-funded invoice (billing hand-off) is posted under, per regime.
    pub invoice_category: PerRegime<String>,
    /// Allowed uses of the 安全文明施工费 (safety and civilized construction measures fee).
    pub civilized_categories: Vec<CategoryDef>,
    /// The category a civilized-fee-funded invoice is posted under.
    pub civilized_invoice_category: String,
}

fn check_bp(what: &str, bp: i64, allow_zero: bool) -> Result<()> {
    let lo = if allow_zero { 0 } else { 1 };
    if (lo..=BP_PER_WHOLE).contains(&bp) {
        Ok(())
    } else {
        Err(config_err(format!(
            "{what}: {bp} bp is outside {lo}..={BP_PER_WHOLE}"
        )))
    }
}

fn is_snake(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && s.as_bytes()[0].is_ascii_lowercase()
}

impl FeeRules {
    /// Checks the ranges and the internal consistency of one version.
    pub fn validate(&self) -> Result<()> {
        let v = &self.version;
        if v.trim().is_empty() {
            return Err(config_err("version is empty"));
        }
        for regime in [Regime::R2012, Regime::R2022] {
            let rates = self.rates_bp.get(regime);
            if rates.is_empty() {
                return Err(config_err(format!("{v}: no {regime} rates")));
            }
            for (ty, bp) in rates {
                if !is_snake(ty) {
                    return Err(config_err(format!(
                        "{v}: project type `{ty}` is not snake_case"
                    )));
                }
                check_bp(&format!("{v}: {regime} rate of {ty}"), *bp, false)?;
            }
            let cats = self.categories.get(regime);
            if cats.is_empty() {
                return Err(config_err(format!("{v}: no {regime} categories")));
            }
            let mut seen = BTreeSet::new();
            for c in cats {
                if !is_snake(&c.name) || !seen.insert(c.name.as_str()) {
                    return Err(config_err(format!(
                        "{v}: {regime} category `{}` is not snake_case or is repeated",
                        c.name
                    )));
                }
            }
        }
        for regime in [Regime::R2012, Regime::R2022] {
            let c = self.invoice_category.get(regime);
            if !self.categories.get(regime).iter().any(|d| &d.name == c) {
                return Err(config_err(format!(
                    "{v}: invoice_category `{c}` is not a {regime} category"
                )));
            }
        }
        let mut seen = BTreeSet::new();
        for c in &self.civilized_categories {
            if !is_snake(&c.name) || !seen.insert(c.name.as_str()) {
                return Err(config_err(format!(
                    "{v}: civilized category `{}` is not snake_case or is repeated",
                    c.name
                )));
            }
        }
        if !seen.contains(self.civilized_invoice_category.as_str()) {
            return Err(config_err(format!(
                "{v}: civilized_invoice_category `{}` is not a civilized category",
                self.civilized_invoice_category
            )));
        }
        let k12: Vec<_> = self.rates_bp.r2012.keys().collect();
        let k22: Vec<_> = self.rates_bp.r2022.keys().collect();
        if k12 != k22 {
            return Err(config_err(format!(
                "{v}: r2012 and r2022 rate tables list different project types"
            )));
        }
        for (what, rule) in [
            ("owner_payment", &self.owner_payment),
            ("sub_allocation", &self.sub_allocation),
            ("civilized_prepay_gb50500", &self.civilized_prepay_gb50500),
        ] {
            check_bp(
                &format!("{v}: {what}.min_share_bp"),
                rule.min_share_bp,
                false,
            )?;
            if rule.due_after == Period::default() {
                return Err(config_err(format!("{v}: {what}.due_after is empty")));
            }
        }
        let e = &self.enterprise;
        if e.pause_multiple < 1 {
            return Err(config_err(format!(
                "{v}: enterprise.pause_multiple must be ≥ 1"
            )));
        }
        check_bp(
            &format!("{v}: enterprise.under_use_threshold_bp"),
            e.under_use_threshold_bp,
            false,
        )?;
        // 2000 is a leap year, so Feb 29 is accepted here and clamped by the caller's year.
        if NaiveDate::from_ymd_opt(
            2000,
            e.under_use_report_due.month,
            e.under_use_report_due.day,
        )
        .is_none()
        {
            return Err(config_err(format!(
                "{v}: enterprise.under_use_report_due is not a day of the year"
            )));
        }
        Ok(())
    }

    /// The project types this version knows.
    pub fn project_types(&self) -> impl Iterator<Item = &str> {
        self.rates_bp.r2022.keys().map(String::as_str)
    }
}

/// All versions of the fee rules, ordered by `effective_from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeRulesSet {
    versions: Vec<FeeRules>,
}

impl FeeRulesSet {
    /// Parses and validates a configuration document (`{"versions": [...]}`).
    pub fn from_json(json: &str) -> Result<Self> {
        let set: FeeRulesSet = serde_json::from_str(json).map_err(|e| config_err(e.to_string()))?;
        FeeRulesSet::new(set.versions)
    }

    /// The national rules shipped with the code.
    pub fn default_rules() -> Result<Self> {
        FeeRulesSet::from_json(DEFAULT_RULES_JSON)
    }

    /// Validates every version; versions are sorted by `effective_from`, which must be distinct,
    /// as must the version names.
    pub fn new(mut versions: Vec<FeeRules>) -> Result<Self> {
        if versions.is_empty() {
            return Err(config_err("no versions"));
        }
        for v in &versions {
            v.validate()?;
        }
        versions.sort_by_key(|v| v.effective_from);
        let mut names = BTreeSet::new();
        for w in versions.windows(2) {
            if w[0].effective_from == w[1].effective_from {
                return Err(config_err(format!(
                    "versions {} and {} share effective_from {}",
                    w[0].version, w[1].version, w[0].effective_from
                )));
            }
        }
        for v in &versions {
            if !names.insert(v.version.as_str()) {
                return Err(config_err(format!("version {} is repeated", v.version)));
            }
        }
        Ok(FeeRulesSet { versions })
    }

    pub fn versions(&self) -> &[FeeRules] {
        &self.versions
    }

    /// The version in force on `date`: the latest with `effective_from ≤ date`.
    pub fn in_force(&self, date: NaiveDate) -> Result<&FeeRules> {
        self.versions
            .iter()
            .rev()
            .find(|v| v.effective_from <= date)
            .ok_or(SafetyFundError::NoRulesInForce { date })
    }

    /// A version by name (an account keeps the version it was opened under).
    pub fn by_version(&self, version: &str) -> Option<&FeeRules> {
        self.versions.iter().find(|v| v.version == version)
    }
}

// ---------------------------------------------------------------------------------------------
// Regime, rate, categories
// ---------------------------------------------------------------------------------------------

/// The regime of a project (第十七条 transition, DOMAIN.md §11.0 C2): legacy (`R2012`) iff
/// tendering was completed *and* the contract signed before the cut-off; a project without a
/// tender-completed date is judged by its contract-signed date alone.
pub fn regime(
    tender_completed: Option<NaiveDate>,
    contract_signed: NaiveDate,
    rules: &FeeRules,
) -> Regime {
    let cut_off = rules.r2022_effective_date;
    if tender_completed.is_none_or(|d| d < cut_off) && contract_signed < cut_off {
        Regime::R2012
    } else {
        Regime::R2022
    }
}

/// The accrual rate (bp) of a project type (snake_case `ProjectType` name) under a regime.
pub fn rate_bp(regime: Regime, project_type: &str, rules: &FeeRules) -> Result<i64> {
    rules
        .rates_bp
        .get(regime)
        .get(project_type)
        .copied()
        .ok_or_else(|| SafetyFundError::UnknownProjectType {
            project_type: project_type.to_owned(),
            regime,
        })
}

/// The allowed-use categories of a regime (2012 list or 2022 第十九条 list).
pub fn allowed_categories(regime: Regime, rules: &FeeRules) -> &[CategoryDef] {
    rules.categories.get(regime)
}

/// The category definition, or [`SafetyFundError::Diversion`] naming the refused category.
pub fn check_category<'r>(
    regime: Regime,
    category: &str,
    rules: &'r FeeRules,
) -> Result<&'r CategoryDef> {
    allowed_categories(regime, rules)
        .iter()
        .find(|c| c.name == category)
        .ok_or_else(|| SafetyFundError::Diversion {
            category: category.to_owned(),
            regime,
        })
}

// ---------------------------------------------------------------------------------------------
// Ledger
// ---------------------------------------------------------------------------------------------

/// What a ledger entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A month's first progress report (计提).
    Accrual,
    /// A later report for the same month: the delta against what the month already holds.
    Correction,
    /// Money received from the owner (建设单位).
    OwnerPayment,
    /// Money passed to a subcontractor (分包单位).
    Allocation,
    /// A use of the fund (支出).
    Expenditure,
    /// Cancels an earlier entry by negating its amounts.
    Reversal,
    /// Completion settlement (竣工决算): the surplus returned to the owner.
    Settlement,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Accrual => "accrual",
            EntryKind::Correction => "correction",
            EntryKind::OwnerPayment => "owner_payment",
            EntryKind::Allocation => "allocation",
            EntryKind::Expenditure => "expenditure",
            EntryKind::Reversal => "reversal",
            EntryKind::Settlement => "settlement",
        }
    }
}

/// Optional links of an entry to other concerns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Links {
    #[serde(default)]
    pub device_id: Option<String>,
    #[serde(default)]
    pub subscription_id: Option<String>,
    #[serde(default)]
    pub invoice_id: Option<String>,
    /// The subcontract an allocation goes to.
    #[serde(default)]
    pub subcontract_id: Option<String>,
    /// The smart-site cost-plan line an expenditure realises.
    #[serde(default)]
    pub plan_line_id: Option<String>,
}

/// One ledger entry. Amount columns are signed fen; reversals and corrections carry negative
/// amounts where they take something back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// 1-based position in the ledger.
    pub seq: u64,
    pub date: NaiveDate,
    pub kind: EntryKind,
    /// 摘要.
    pub summary: String,
    #[serde(default)]
    pub category: Option<String>,
    /// The progress month of accrual and correction entries (and of their reversals).
    #[serde(default)]
    pub month: Option<YearMonth>,
    /// The month's progress (建安工作量) this entry adds (a delta for corrections).
    #[serde(default)]
    pub progress_fen: Option<i64>,
    /// Accrual paused by the enterprise 3× rule (第五十条).
    #[serde(default)]
    pub paused: bool,
    /// The balance was negative after this expenditure or allocation (allowed, flagged).
    #[serde(default)]
    pub overspent: bool,
    pub accrued_fen: i64,
    pub spent_fen: i64,
    pub allocated_fen: i64,
    pub paid_fen: i64,
    #[serde(default)]
    pub links: Links,
    #[serde(default)]
    pub evidence_ref: Option<String>,
    /// The seq a reversal cancels.
    #[serde(default)]
    pub reverses: Option<u64>,
    pub prev_hash: String,
    /// Lower-case hex SHA-256 of `prev_hash ‖ canonical(entry without hash)`.
    pub hash: String,
}

/// Appends `s` as a JSON string literal (the escaping serde_json uses).
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_opt_str(out: &mut String, v: Option<&str>) {
    match v {
        Some(s) => push_json_str(out, s),
        None => out.push_str("null"),
    }
}

fn push_opt_num<T: fmt::Display>(out: &mut String, v: Option<T>) {
    match v {
        Some(n) => out.push_str(&n.to_string()),
        None => out.push_str("null"),
    }
}

impl Entry {
    /// A blank entry to fill and hand to [`Ledger::append`] (which sets seq, prev_hash, hash).
    pub fn draft(date: NaiveDate, kind: EntryKind, summary: impl Into<String>) -> Entry {
        Entry {
            seq: 0,
            date,
            kind,
            summary: summary.into(),
            category: None,
            month: None,
            progress_fen: None,
            paused: false,
            overspent: false,
            accrued_fen: 0,
            spent_fen: 0,
            allocated_fen: 0,
            paid_fen: 0,
            links: Links::default(),
            evidence_ref: None,
            reverses: None,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    /// The canonical serialisation hashed into the chain: compact JSON of every field except
    /// `hash`, in declaration order, absent options as `null` (byte-identical to serde_json's
    /// output for the same fields).
    pub fn canonical(&self) -> String {
        let mut o = String::with_capacity(512);
        o.push_str("{\"seq\":");
        o.push_str(&self.seq.to_string());
        o.push_str(",\"date\":\"");
        o.push_str(&self.date.format("%Y-%m-%d").to_string());
        o.push_str("\",\"kind\":\"");
        o.push_str(self.kind.as_str());
        o.push_str("\",\"summary\":");
        push_json_str(&mut o, &self.summary);
        o.push_str(",\"category\":");
        push_opt_str(&mut o, self.category.as_deref());
        o.push_str(",\"month\":");
        match self.month {
            Some(m) => push_json_str(&mut o, &m.to_string()),
            None => o.push_str("null"),
        }
        o.push_str(",\"progress_fen\":");
        push_opt_num(&mut o, self.progress_fen);
        o.push_str(&format!(
            ",\"paused\":{},\"overspent\":{},\"accrued_fen\":{},\"spent_fen\":{},\"allocated_fen\":{},\"paid_fen\":{}",
            self.paused,
            self.overspent,
            self.accrued_fen,
            self.spent_fen,
            self.allocated_fen,
            self.paid_fen
        ));
        let l = &self.links;
        o.push_str(",\"links\":{\"device_id\":");
        push_opt_str(&mut o, l.device_id.as_deref());
        o.push_str(",\"subscription_id\":");
        push_opt_str(&mut o, l.subscription_id.as_deref());
        o.push_str(",\"invoice_id\":");
        push_opt_str(&mut o, l.invoice_id.as_deref());
        o.push_str(",\"subcontract_id\":");
        push_opt_str(&mut o, l.subcontract_id.as_deref());
        o.push_str(",\"plan_line_id\":");
        push_opt_str(&mut o, l.plan_line_id.as_deref());
        o.push_str("},\"evidence_ref\":");
        push_opt_str(&mut o, self.evidence_ref.as_deref());
        o.push_str(",\"reverses\":");
        push_opt_num(&mut o, self.reverses);
        o.push_str(",\"prev_hash\":");
        push_json_str(&mut o, &self.prev_hash);
        o.push('}');
        o
    }

    /// `hex(SHA-256(prev_hash ‖ canonical))`.
    pub fn compute_hash(&self) -> String {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(self.prev_hash.as_bytes());
        ctx.update(self.canonical().as_bytes());
        let digest = ctx.finish();
        let mut hex = String::with_capacity(64);
        for b in digest.as_ref() {
            hex.push_str(&format!("{b:02x}"));
        }
        hex
    }

    /// The balance effect of this entry: `accrued − spent − allocated`.
    pub fn balance_effect_fen(&self) -> i64 {
        self.accrued_fen
            .saturating_sub(self.spent_fen)
            .saturating_sub(self.allocated_fen)
    }
}

/// The first broken link of a chain: at `seq`, `expected` (recomputed or required) differs from
/// `found` (stored). A mismatch of the entry's own hash means the entry was edited; a mismatch of
/// `prev_hash` means an earlier entry was replaced, removed or re-hashed; a seq mismatch means
/// entries were dropped or reordered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("ledger chain broken at seq {seq}: expected {expected}, found {found}")]
pub struct BrokenLink {
    pub seq: u64,
    pub expected: String,
    pub found: String,
}

/// Checks the chain from the genesis hash; reports the first broken link.
pub fn verify(entries: &[Entry]) -> Result<(), BrokenLink> {
    let mut prev = GENESIS_HASH;
    for (i, e) in entries.iter().enumerate() {
        let want_seq = i as u64 + 1;
        if e.seq != want_seq {
            return Err(BrokenLink {
                seq: e.seq,
                expected: format!("seq {want_seq}"),
                found: format!("seq {}", e.seq),
            });
        }
        if e.prev_hash != prev {
            return Err(BrokenLink {
                seq: e.seq,
                expected: prev.to_owned(),
                found: e.prev_hash.clone(),
            });
        }
        let h = e.compute_hash();
        if h != e.hash {
            return Err(BrokenLink {
                seq: e.seq,
                expected: h,
                found: e.hash.clone(),
            });
        }
        prev = &e.hash;
    }
    Ok(())
}

/// Column totals of a ledger; `balance = accrued − spent − allocated` (owner payments are cash
/// received and do not change the balance).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub accrued_fen: i64,
    pub spent_fen: i64,
    pub allocated_fen: i64,
    pub paid_fen: i64,
    pub balance_fen: i64,
}

/// Sums the columns (saturating; input amounts are capped at [`MAX_AMOUNT_FEN`], so realistic
/// ledgers never come near `i64`).
pub fn totals(entries: &[Entry]) -> Totals {
    let mut t = Totals::default();
    for e in entries {
        t.accrued_fen = t.accrued_fen.saturating_add(e.accrued_fen);
        t.spent_fen = t.spent_fen.saturating_add(e.spent_fen);
        t.allocated_fen = t.allocated_fen.saturating_add(e.allocated_fen);
        t.paid_fen = t.paid_fen.saturating_add(e.paid_fen);
    }
    t.balance_fen = t
        .accrued_fen
        .saturating_sub(t.spent_fen)
        .saturating_sub(t.allocated_fen);
    t
}

/// The balance of the entries dated before `date` (e.g. the balance at a month start).
pub fn balance_before(entries: &[Entry], date: NaiveDate) -> i64 {
    entries
        .iter()
        .filter(|e| e.date < date)
        .fold(0i64, |acc, e| acc.saturating_add(e.balance_effect_fen()))
}

/// An append-only, hash-chained ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Entry>", into = "Vec<Entry>")]
pub struct Ledger {
    entries: Vec<Entry>,
}

impl TryFrom<Vec<Entry>> for Ledger {
    type Error = BrokenLink;

    fn try_from(entries: Vec<Entry>) -> Result<Self, BrokenLink> {
        Ledger::from_entries(entries)
    }
}

impl From<Ledger> for Vec<Entry> {
    fn from(l: Ledger) -> Self {
        l.entries
    }
}

impl Ledger {
    pub fn new() -> Self {
        Ledger::default()
    }

    /// Rebuilds a stored ledger, refusing a broken chain.
    pub fn from_entries(entries: Vec<Entry>) -> Result<Self, BrokenLink> {
        verify(&entries)?;
        Ok(Ledger { entries })
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn get(&self, seq: u64) -> Option<&Entry> {
        let i = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.entries.get(i)
    }

    /// The hash the next entry links to.
    pub fn last_hash(&self) -> &str {
        self.entries
            .last()
            .map_or(GENESIS_HASH, |e| e.hash.as_str())
    }

    /// Appends `draft`, setting its seq, prev_hash and hash; returns the stored entry.
    ///
    /// Every column total of the ledger (accrued, spent, allocated, paid) stays within
    /// ±[`MAX_AMOUNT_FEN`]: an entry that would take one beyond is refused as an
    /// [`SafetyFundError::InvalidAmount`] of `field` (the input that brought the amount), and
    /// nothing is appended. So the sums of a stored ledger are exact and its balance is far from
    /// `i64` overflow, however many entries it holds.
    pub fn append(&mut self, mut draft: Entry, field: &'static str) -> Result<&Entry> {
        let t = self.totals();
        for (total, amount) in [
            (t.accrued_fen, draft.accrued_fen),
            (t.spent_fen, draft.spent_fen),
            (t.allocated_fen, draft.allocated_fen),
            (t.paid_fen, draft.paid_fen),
        ] {
            if super::bounds::sum_within([total, amount], MAX_AMOUNT_FEN).is_none() {
                return Err(SafetyFundError::InvalidAmount {
                    field,
                    amount_fen: amount,
                    expected: "a ledger's totals within ±10^15 fen",
                });
            }
        }
        draft.seq = self.entries.len() as u64 + 1;
        draft.prev_hash = self.last_hash().to_owned();
        draft.hash = draft.compute_hash();
        self.entries.push(draft);
        let i = self.entries.len() - 1;
        Ok(&self.entries[i])
    }

    pub fn totals(&self) -> Totals {
        totals(&self.entries)
    }

    pub fn verify(&self) -> Result<(), BrokenLink> {
        verify(&self.entries)
    }

    /// Appends an expenditure whose amount and category the account already checked: evidence
    /// required, an invoice posted at most once, spending beyond the balance allowed and flagged
    /// `overspent`; `default_summary` when the expenditure has none.
    fn append_expenditure(
        &mut self,
        exp: Expenditure,
        default_summary: &str,
    ) -> Result<ExpenditureOutcome> {
        if exp.evidence_ref.trim().is_empty() {
            return Err(SafetyFundError::Missing {
                field: "evidence_ref",
            });
        }
        self.check_invoice_unposted(&exp.links)?;
        let balance = sub(self.totals().balance_fen, exp.amount_fen)?;
        let summary = if exp.summary.trim().is_empty() {
            default_summary.to_owned()
        } else {
            exp.summary
        };
        let mut e = Entry::draft(exp.date, EntryKind::Expenditure, summary);
        e.category = Some(exp.category);
        e.spent_fen = exp.amount_fen;
        e.overspent = balance < 0;
        e.links = exp.links;
        e.evidence_ref = Some(exp.evidence_ref);
        let entry = self.append(e, "amount_fen")?.clone();
        Ok(ExpenditureOutcome {
            overspent: entry.overspent,
            entry,
            balance_fen: balance,
        })
    }

    /// The reversal entry that cancels `seq`, if any.
    pub fn reversed_by(&self, seq: u64) -> Option<u64> {
        self.entries
            .iter()
            .find(|e| e.kind == EntryKind::Reversal && e.reverses == Some(seq))
            .map(|e| e.seq)
    }

    /// Refuses a second posting of an invoice (unless the first was reversed).
    fn check_invoice_unposted(&self, links: &Links) -> Result<()> {
        let Some(inv) = &links.invoice_id else {
            return Ok(());
        };
        match self.entries.iter().find(|e| {
            e.kind == EntryKind::Expenditure
                && e.links.invoice_id.as_ref() == Some(inv)
                && self.reversed_by(e.seq).is_none()
        }) {
            Some(p) => Err(SafetyFundError::InvoiceAlreadyPosted {
                invoice_id: inv.clone(),
                seq: p.seq,
            }),
            None => Ok(()),
        }
    }

    /// What the entries booked for invoice `invoice_id` still spend: its expenditure less what
    /// credit notes, voids and reversals took back.
    pub fn invoice_net_fen(&self, invoice_id: &str) -> i64 {
        self.entries
            .iter()
            .filter(|e| e.links.invoice_id.as_deref() == Some(invoice_id))
            .fold(0i64, |acc, e| acc.saturating_add(e.spent_fen))
    }

    /// The draft that takes back (part of) what invoice `invoice_id` booked, after billing
    /// credited or voided it (see [`TakeBack`]). Never edits the expenditure: a credit note is a
    /// `correction` entry of minus its amount; a void is the `reversal` of the expenditure when
    /// nothing was credited yet, else a `correction` of minus what the invoice still holds. Both
    /// keep the expenditure's category and links. Each credit note and the void are taken at
    /// most once ([`SafetyFundError::CreditNoteAlreadyPosted`],
    /// [`SafetyFundError::NothingToTakeBack`]).
    fn take_back_draft(&self, invoice_id: &str, take: &TakeBack, date: NaiveDate) -> Result<Entry> {
        let booked = self.entries.iter().rev().find(|e| {
            e.kind == EntryKind::Expenditure
                && e.links.invoice_id.as_deref() == Some(invoice_id)
                && self.reversed_by(e.seq).is_none()
        });
        let linked = || {
            self.entries
                .iter()
                .filter(|e| e.links.invoice_id.as_deref() == Some(invoice_id))
        };
        let Some(booked) = booked else {
            // A void booked as the expenditure's reversal leaves no expenditure standing.
            if linked().any(|e| e.kind == EntryKind::Expenditure) {
                return Err(SafetyFundError::NothingToTakeBack {
                    invoice_id: invoice_id.to_owned(),
                });
            }
            return Err(SafetyFundError::InvoiceNotPosted {
                invoice_id: invoice_id.to_owned(),
            });
        };
        let invoice_no = booked.evidence_ref.clone().unwrap_or_default();
        let net = self.invoice_net_fen(invoice_id);
        let (amount, summary, evidence) = match take {
            TakeBack::Credit {
                note_id,
                amount_fen,
            } => {
                if let Some(e) = linked().find(|e| {
                    e.kind == EntryKind::Correction && e.evidence_ref.as_ref() == Some(note_id)
                }) {
                    return Err(SafetyFundError::CreditNoteAlreadyPosted {
                        note_id: note_id.clone(),
                        seq: e.seq,
                    });
                }
                check_amount("amount_fen", *amount_fen, false)?;
                if *amount_fen > net {
                    return Err(SafetyFundError::InvalidAmount {
                        field: "amount_fen",
                        amount_fen: *amount_fen,
                        expected: "at most what the invoice still holds in the ledger",
                    });
                }
                (
                    *amount_fen,
                    format!("红字冲减：发票 {invoice_no}，红字发票 {note_id}"),
                    note_id.clone(),
                )
            }
            TakeBack::Void => {
                if net <= 0 {
                    return Err(SafetyFundError::NothingToTakeBack {
                        invoice_id: invoice_id.to_owned(),
                    });
                }
                if net == booked.spent_fen && linked().count() == 1 {
                    return self.reversal_draft(
                        booked.seq,
                        date,
                        &format!("发票 {invoice_no} 作废"),
                    );
                }
                (
                    net,
                    format!("发票 {invoice_no} 作废：冲减未红冲余额"),
                    invoice_no.clone(),
                )
            }
        };
        let mut e = Entry::draft(date, EntryKind::Correction, summary);
        e.category = booked.category.clone();
        e.spent_fen = -amount;
        e.links = booked.links.clone();
        e.evidence_ref = Some(evidence);
        Ok(e)
    }

    /// Appends the entry that takes back (part of) invoice `invoice_id` (see
    /// [`Ledger::take_back_draft`]).
    pub fn take_back(
        &mut self,
        invoice_id: &str,
        take: &TakeBack,
        date: NaiveDate,
    ) -> Result<&Entry> {
        let e = self.take_back_draft(invoice_id, take, date)?;
        self.append(e, "amount_fen")
    }

    /// The reversal draft of entry `seq`: its amounts negated, its month, progress, category and
    /// links kept (so per-month and per-line sums stay right). Reversals and settlements cannot
    /// be reversed; an entry is reversed at most once.
    fn reversal_draft(&self, seq: u64, date: NaiveDate, reason: &str) -> Result<Entry> {
        let orig = self.get(seq).ok_or(SafetyFundError::UnknownEntry { seq })?;
        if matches!(orig.kind, EntryKind::Reversal | EntryKind::Settlement) {
            return Err(SafetyFundError::NotReversible {
                seq,
                kind: orig.kind,
            });
        }
        if let Some(by) = self.reversed_by(seq) {
            return Err(SafetyFundError::AlreadyReversed { seq, by });
        }
        if reason.trim().is_empty() {
            return Err(SafetyFundError::Missing { field: "reason" });
        }
        let mut e = Entry::draft(
            date,
            EntryKind::Reversal,
            format!("冲销第{seq}笔：{reason}"),
        );
        e.category = orig.category.clone();
        e.month = orig.month;
        e.progress_fen = orig.progress_fen.map(|p| -p);
        e.paused = orig.paused;
        e.accrued_fen = -orig.accrued_fen;
        e.spent_fen = -orig.spent_fen;
        e.allocated_fen = -orig.allocated_fen;
        e.paid_fen = -orig.paid_fen;
        e.links = orig.links.clone();
        e.evidence_ref = orig.evidence_ref.clone();
        e.reverses = Some(seq);
        Ok(e)
    }
}

// ---------------------------------------------------------------------------------------------
// Payment-share flags (第十八条, GB 50500)
// ---------------------------------------------------------------------------------------------

/// Flag severity: 预警 (warning) or 报警 (breach).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagLevel {
    Warning,
    Breach,
}

/// A payment-share rule not (yet) met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    /// [`FEE_OWNER_50`], [`FEE_SUB_50`] or [`FEE_CIV_PREPAY`].
    pub code: String,
    pub level: FlagLevel,
    /// Last day on which a payment still counts as on time.
    pub due_date: NaiveDate,
    pub required_fen: i64,
    /// Paid by the evaluation date (by the due date for a breach).
    pub paid_fen: i64,
    /// The subcontract of a [`FEE_SUB_50`] flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// Evaluates "≥ `min_share_bp` of `base_fen` paid within `due_after` of `start`" on `as_of`.
///
/// `required = ceil(base × share)`. From the due date on (`as_of ≥ start + due_after`) payments
/// dated up to the due date are counted and a shortfall is a breach; late payments do not cure it.
/// Before that, from the warning point on, payments dated up to `as_of` are counted and a
/// shortfall is a warning. Payments are `(date, amount)`; negative amounts (reversals) count.
pub fn share_flag(
    code: &str,
    rule: &ShareRule,
    base_fen: i64,
    start: NaiveDate,
    payments: &[(NaiveDate, i64)],
    as_of: NaiveDate,
) -> Result<Option<Flag>> {
    let due = rule.due_after.after(start)?;
    let required = mul_bp_ceil(base_fen, rule.min_share_bp)?;
    if required == 0 {
        return Ok(None);
    }
    let paid_until = |until: NaiveDate| {
        payments
            .iter()
            .filter(|(d, _)| *d <= until)
            .fold(0i64, |acc, (_, a)| acc.saturating_add(*a))
    };
    let flag = |level, paid_fen| Flag {
        code: code.to_owned(),
        level,
        due_date: due,
        required_fen: required,
        paid_fen,
        subject: None,
    };
    if as_of >= due {
        let paid = paid_until(due);
        return Ok((paid < required).then(|| flag(FlagLevel::Breach, paid)));
    }
    if let Some(w) = rule.warn_after
        && as_of >= w.after(start)?
    {
        let paid = paid_until(as_of);
        return Ok((paid < required).then(|| flag(FlagLevel::Warning, paid)));
    }
    Ok(None)
}

/// FEE-OWNER-50 (第十八条): the owner pays ≥ 50 % of the planned fee within one month of the start
/// date; warning at start + 3 weeks (shares and windows from `rules.owner_payment`).
pub fn owner_payment_flag(
    planned_total_fen: i64,
    start: NaiveDate,
    payments: &[(NaiveDate, i64)],
    as_of: NaiveDate,
    rules: &FeeRules,
) -> Result<Option<Flag>> {
    share_flag(
        FEE_OWNER_50,
        &rules.owner_payment,
        planned_total_fen,
        start,
        payments,
        as_of,
    )
}

/// FEE-SUB-50 (第十八条): the general contractor passes ≥ 50 % of the subcontract's share of the
/// fee to the subcontractor within one month of the subcontract's start.
pub fn sub_allocation_flag(
    sub: &Subcontract,
    allocations: &[(NaiveDate, i64)],
    as_of: NaiveDate,
    rules: &FeeRules,
) -> Result<Option<Flag>> {
    Ok(share_flag(
        FEE_SUB_50,
        &rules.sub_allocation,
        sub.share_fen,
        sub.start_date,
        allocations,
        as_of,
    )?
    .map(|f| Flag {
        subject: Some(sub.id.clone()),
        ..f
    }))
}

/// The longest prepayment window a contract may set (ten years).
pub const MAX_PREPAY_DAYS: u32 = 3660;

/// The prepayment rule of a project's 安全文明施工费.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum CivPrepayRule {
    /// GB 50500-2013: ≥ 60 % of the year's planned amount within 28 days of the start
    /// (`rules.civilized_prepay_gb50500`).
    Gb50500,
    /// The contract's own rule.
    Contract { min_share_bp: i64, within_days: u32 },
}

/// FEE-CIV-PREPAY: the owner's 安全文明施工费 prepayment against the applicable rule. No warning
/// stage (DOMAIN.md §8.5); a shortfall at the due date is a breach.
pub fn civ_prepay_flag(
    rule: &CivPrepayRule,
    year_planned_fen: i64,
    start: NaiveDate,
    payments: &[(NaiveDate, i64)],
    as_of: NaiveDate,
    rules: &FeeRules,
) -> Result<Option<Flag>> {
    let share = match *rule {
        CivPrepayRule::Gb50500 => rules.civilized_prepay_gb50500,
        CivPrepayRule::Contract {
            min_share_bp,
            within_days,
        } => {
            check_bp("contract prepayment share", min_share_bp, false)?;
            ShareRule {
                min_share_bp,
                due_after: Period {
                    months: 0,
                    days: within_days,
                },
                warn_after: None,
            }
        }
    };
    share_flag(
        FEE_CIV_PREPAY,
        &share,
        year_planned_fen,
        start,
        payments,
        as_of,
    )
}

// ---------------------------------------------------------------------------------------------
// Project fund account
// ---------------------------------------------------------------------------------------------

/// The project facts the fund depends on (from tenancy's project record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectTerms {
    /// snake_case `ProjectType` name (e.g. `building`).
    pub project_type: String,
    pub contract_value_fen: i64,
    pub contract_signed: NaiveDate,
    #[serde(default)]
    pub tender_completed: Option<NaiveDate>,
    /// 开工日.
    #[serde(default)]
    pub start_date: Option<NaiveDate>,
}

/// A recorded contract variation (change of the contract value; negative for a reduction).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractVariation {
    pub date: NaiveDate,
    pub amount_fen: i64,
    pub reference: String,
}

/// A subcontract and its share of the fee (分包工程安全生产费).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subcontract {
    pub id: String,
    pub share_fen: i64,
    pub start_date: NaiveDate,
}

/// What a month holds in the ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonthState {
    pub progress_fen: i64,
    pub accrued_fen: i64,
    pub paused: bool,
    /// Entries (accrual, corrections, reversals) the month has.
    pub entries: usize,
}

/// The result of a progress report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccrualOutcome {
    /// The appended entry; `None` when the report repeats what the month already holds.
    pub entry: Option<Entry>,
    /// The month after the report.
    pub month: MonthState,
}

/// An expenditure to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expenditure {
    pub date: NaiveDate,
    pub amount_fen: i64,
    pub category: String,
    pub summary: String,
    /// Voucher, invoice or contract reference (支出有据); required.
    pub evidence_ref: String,
    #[serde(default)]
    pub links: Links,
}

/// What billing takes back of an invoice it booked as an expenditure (the hand-off of credit
/// notes and voids, see `crate::handoff`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TakeBack {
    /// A credit note (红字发票) of `amount_fen` against the invoice.
    Credit { note_id: String, amount_fen: i64 },
    /// The invoice's void: whatever it still holds.
    Void,
}

/// The result of recording an expenditure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpenditureOutcome {
    pub entry: Entry,
    /// Spending went beyond the accrued amount (balance < 0): allowed, flagged.
    pub overspent: bool,
    pub balance_fen: i64,
}

/// Completion settlement (竣工决算, 第十八条): a positive balance is the surplus returned to the
/// owner; a negative balance (overspend) is a deficit the enterprise bears through ordinary cost
/// channels (DOMAIN.md §11.1.5) and is not claimed from the owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    pub date: NaiveDate,
    /// The balance before settlement.
    pub balance_fen: i64,
    /// Returned to the owner (建设单位): `max(balance, 0)`.
    pub surplus_fen: i64,
    /// Borne by the enterprise: `max(−balance, 0)`.
    pub deficit_fen: i64,
    pub entry: Entry,
}

/// The safety production fee account of one project, with its ledger.
///
/// Pure state: the caller persists `terms`, `variations`, `subcontracts` and the ledger entries
/// and rebuilds the account with [`FundAccount::restore`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FundAccount {
    pub terms: ProjectTerms,
    pub regime: Regime,
    pub rate_bp: i64,
    /// The rules version the account was opened under.
    pub rules_version: String,
    pub variations: Vec<ContractVariation>,
    pub subcontracts: Vec<Subcontract>,
    pub ledger: Ledger,
}

impl FundAccount {
    /// Opens the account with the project: regime by dates, rate by project type.
    pub fn open(terms: ProjectTerms, rules: &FeeRules) -> Result<Self> {
        check_amount("contract_value_fen", terms.contract_value_fen, true)?;
        let regime = regime(terms.tender_completed, terms.contract_signed, rules);
        let rate_bp = rate_bp(regime, &terms.project_type, rules)?;
        Ok(FundAccount {
            terms,
            regime,
            rate_bp,
            rules_version: rules.version.clone(),
            variations: Vec::new(),
            subcontracts: Vec::new(),
            ledger: Ledger::new(),
        })
    }

    /// Rebuilds a stored account; the ledger chain is verified.
    pub fn restore(
        terms: ProjectTerms,
        regime: Regime,
        rate_bp: i64,
        rules_version: String,
        variations: Vec<ContractVariation>,
        subcontracts: Vec<Subcontract>,
        entries: Vec<Entry>,
    ) -> Result<Self, BrokenLink> {
        Ok(FundAccount {
            terms,
            regime,
            rate_bp,
            rules_version,
            variations,
            subcontracts,
            ledger: Ledger::from_entries(entries)?,
        })
    }

    pub fn entries(&self) -> &[Entry] {
        self.ledger.entries()
    }

    pub fn totals(&self) -> Totals {
        self.ledger.totals()
    }

    /// Settled accounts are closed to further entries.
    pub fn is_settled(&self) -> bool {
        self.entries()
            .iter()
            .any(|e| e.kind == EntryKind::Settlement)
    }

    fn ensure_open(&self) -> Result<()> {
        if self.is_settled() {
            Err(SafetyFundError::Closed)
        } else {
            Ok(())
        }
    }

    /// Contract value plus recorded variations: the ceiling of cumulative progress.
    pub fn contract_limit_fen(&self) -> i64 {
        self.variations
            .iter()
            .fold(self.terms.contract_value_fen, |acc, v| {
                acc.saturating_add(v.amount_fen)
            })
    }

    /// Planned fee on the current contract value (contract + variations).
    pub fn planned_total_fen(&self) -> Result<i64> {
        planned_total_fen(self.contract_limit_fen(), self.rate_bp)
    }

    /// Cumulative progress over all months.
    pub fn cumulative_progress_fen(&self) -> i64 {
        self.entries()
            .iter()
            .filter_map(|e| e.progress_fen)
            .fold(0i64, i64::saturating_add)
    }

    /// Records a contract variation (变更); the new contract value may not fall below the
    /// progress already reported.
    pub fn record_variation(&mut self, variation: ContractVariation) -> Result<()> {
        self.ensure_open()?;
        if variation.amount_fen.unsigned_abs() > MAX_AMOUNT_FEN.unsigned_abs() {
            return Err(SafetyFundError::InvalidAmount {
                field: "amount_fen",
                amount_fen: variation.amount_fen,
                expected: "|amount| ≤ 10^15 fen",
            });
        }
        if variation.reference.trim().is_empty() {
            return Err(SafetyFundError::Missing { field: "reference" });
        }
        let limit = add(self.contract_limit_fen(), variation.amount_fen)?;
        if limit > MAX_AMOUNT_FEN {
            return Err(SafetyFundError::InvalidAmount {
                field: "amount_fen",
                amount_fen: variation.amount_fen,
                expected: "a contract value after the variation ≤ 10^15 fen",
            });
        }
        let cumulative = self.cumulative_progress_fen();
        if limit < cumulative {
            return Err(SafetyFundError::VariationBelowProgress {
                limit_fen: limit,
                cumulative_fen: cumulative,
            });
        }
        self.variations.push(variation);
        Ok(())
    }

    /// What the ledger holds for `month`.
    pub fn month_state(&self, month: YearMonth) -> MonthState {
        let mut s = MonthState::default();
        for e in self.entries().iter().filter(|e| e.month == Some(month)) {
            if s.entries == 0 {
                s.paused = e.paused;
            }
            s.entries += 1;
            s.progress_fen = s.progress_fen.saturating_add(e.progress_fen.unwrap_or(0));
            s.accrued_fen = s.accrued_fen.saturating_add(e.accrued_fen);
        }
        s
    }

    /// Records the month's completed 建安工作量 (`progress_fen`, the month's total, not a delta).
    ///
    /// The first report of a month appends an `accrual` entry with
    /// `accrued = round_half_up(progress × rate_bp / 10 000)`, or 0 with `paused: true` when
    /// `paused` (the enterprise 3× rule, see [`enterprise_pause_applies`]). A later report of the
    /// same month appends a `correction` entry with the deltas (new − held) of progress and
    /// accrual; the month keeps the pause decision of its first entry (the test is at month
    /// start). A report that changes nothing appends nothing. Cumulative progress beyond the
    /// contract value plus recorded variations is refused.
    pub fn report_progress(
        &mut self,
        month: YearMonth,
        progress_fen: i64,
        date: NaiveDate,
        paused: bool,
    ) -> Result<AccrualOutcome> {
        self.ensure_open()?;
        check_amount("progress_value_fen", progress_fen, true)?;
        let held = self.month_state(month);
        let paused = if held.entries > 0 {
            held.paused
        } else {
            paused
        };
        let cumulative = add(
            sub(self.cumulative_progress_fen(), held.progress_fen)?,
            progress_fen,
        )?;
        let limit = self.contract_limit_fen();
        if cumulative > limit {
            return Err(SafetyFundError::ProgressBeyondContract {
                month,
                cumulative_fen: cumulative,
                limit_fen: limit,
            });
        }
        let accrued = if paused {
            0
        } else {
            accrual_fen(progress_fen, self.rate_bp)?
        };
        let d_progress = sub(progress_fen, held.progress_fen)?;
        let d_accrued = sub(accrued, held.accrued_fen)?;
        if held.entries > 0 && d_progress == 0 && d_accrued == 0 {
            return Ok(AccrualOutcome {
                entry: None,
                month: held,
            });
        }
        let (kind, summary) = match (held.entries > 0, paused) {
            (false, false) => (
                EntryKind::Accrual,
                format!("{month} 按进度计提（完成 {} 元）", yuan(progress_fen)),
            ),
            (false, true) => (
                EntryKind::Accrual,
                format!(
                    "{month} 暂停计提（企业月初结余达上年应计提额倍数）（完成 {} 元）",
                    yuan(progress_fen)
                ),
            ),
            (true, _) => (
                EntryKind::Correction,
                format!(
                    "{month} 进度更正（{} 元 → {} 元）",
                    yuan(held.progress_fen),
                    yuan(progress_fen)
                ),
            ),
        };
        let mut e = Entry::draft(date, kind, summary);
        e.month = Some(month);
        e.progress_fen = Some(d_progress);
        e.paused = paused;
        e.accrued_fen = d_accrued;
        let entry = self.ledger.append(e, "progress_value_fen")?.clone();
        Ok(AccrualOutcome {
            entry: Some(entry),
            month: self.month_state(month),
        })
    }

    /// Records money received from the owner.
    pub fn record_owner_payment(
        &mut self,
        date: NaiveDate,
        amount_fen: i64,
        evidence_ref: Option<String>,
    ) -> Result<&Entry> {
        self.ensure_open()?;
        check_amount("amount_fen", amount_fen, false)?;
        let mut e = Entry::draft(date, EntryKind::OwnerPayment, "建设单位支付安全生产费");
        e.paid_fen = amount_fen;
        e.evidence_ref = evidence_ref;
        self.ledger.append(e, "amount_fen")
    }

    /// Registers a subcontract and its share of the fee.
    pub fn add_subcontract(&mut self, sub: Subcontract) -> Result<()> {
        self.ensure_open()?;
        check_amount("share_fen", sub.share_fen, true)?;
        if sub.id.trim().is_empty() {
            return Err(SafetyFundError::Missing {
                field: "subcontract id",
            });
        }
        if self.subcontracts.iter().any(|s| s.id == sub.id) {
            return Err(SafetyFundError::DuplicateSubcontract(sub.id));
        }
        self.subcontracts.push(sub);
        Ok(())
    }

    /// Passes fee money to a registered subcontractor (the subcontractor does not accrue again).
    /// Allowed beyond the balance, and then flagged `overspent` like an expenditure.
    pub fn allocate(
        &mut self,
        date: NaiveDate,
        subcontract_id: &str,
        amount_fen: i64,
        evidence_ref: Option<String>,
    ) -> Result<&Entry> {
        self.ensure_open()?;
        check_amount("amount_fen", amount_fen, false)?;
        if !self.subcontracts.iter().any(|s| s.id == subcontract_id) {
            return Err(SafetyFundError::UnknownSubcontract(
                subcontract_id.to_owned(),
            ));
        }
        let balance = sub(self.totals().balance_fen, amount_fen)?;
        let mut e = Entry::draft(
            date,
            EntryKind::Allocation,
            format!("拨付分包单位安全生产费（{subcontract_id}）"),
        );
        e.allocated_fen = amount_fen;
        e.overspent = balance < 0;
        e.links.subcontract_id = Some(subcontract_id.to_owned());
        e.evidence_ref = evidence_ref;
        self.ledger.append(e, "amount_fen")
    }

    /// Records a use of the fund. The category must be allowed under the account's regime by
    /// `rules` (the version in force at the expenditure date); anything else is refused as
    /// diversion (挪用). Spending beyond the accrued amount is allowed and flagged `overspent`.
    /// An invoice is posted at most once (unless its entry was reversed).
    pub fn record_expenditure(
        &mut self,
        exp: Expenditure,
        rules: &FeeRules,
    ) -> Result<ExpenditureOutcome> {
        self.ensure_open()?;
        check_amount("amount_fen", exp.amount_fen, false)?;
        check_category(self.regime, &exp.category, rules)?;
        self.ledger.append_expenditure(exp, "安全生产费支出")
    }

    /// The reversal entry that cancels `seq`, if any.
    pub fn reversed_by(&self, seq: u64) -> Option<u64> {
        self.ledger.reversed_by(seq)
    }

    /// Takes back (part of) an invoice's expenditure after a credit note or its void (see
    /// [`Ledger::take_back_draft`]); a settled account takes nothing more.
    pub fn take_back(
        &mut self,
        invoice_id: &str,
        take: &TakeBack,
        date: NaiveDate,
    ) -> Result<&Entry> {
        self.ensure_open()?;
        self.ledger.take_back(invoice_id, take, date)
    }

    /// Cancels entry `seq` with a reversal entry carrying its amounts negated (see
    /// [`Ledger::reversal_draft`]); a reversed progress report keeps the month's progress ≥ 0 and
    /// the cumulative progress within the contract.
    pub fn reverse(&mut self, seq: u64, date: NaiveDate, reason: &str) -> Result<&Entry> {
        self.ensure_open()?;
        let e = self.ledger.reversal_draft(seq, date, reason)?;
        if let (Some(month), Some(neg)) = (e.month, e.progress_fen) {
            // The month's progress stays ≥ 0 and the cumulative progress within the contract
            // (reversing a downward correction adds progress back).
            let held = self.month_state(month);
            if held.progress_fen < -neg {
                return Err(SafetyFundError::InvalidAmount {
                    field: "progress_fen",
                    amount_fen: held.progress_fen.saturating_add(neg),
                    expected: "a month's progress ≥ 0",
                });
            }
            let cumulative = add(self.cumulative_progress_fen(), neg)?;
            let limit = self.contract_limit_fen();
            if cumulative > limit {
                return Err(SafetyFundError::ProgressBeyondContract {
                    month,
                    cumulative_fen: cumulative,
                    limit_fen: limit,
                });
            }
        }
        self.ledger.append(e, "seq")
    }

    /// Completion settlement: appends the `settlement` entry and closes the ledger. A surplus is
    /// released from the accrual and returned to the owner (`accrued_fen = paid_fen = −surplus`,
    /// so the balance ends at 0); a deficit is recorded in the summary only.
    pub fn settle(&mut self, date: NaiveDate) -> Result<Settlement> {
        self.ensure_open()?;
        let balance = self.totals().balance_fen;
        let surplus = balance.max(0);
        let deficit = (-balance).max(0);
        let summary = if deficit > 0 {
            format!("竣工决算：超支 {} 元由企业承担", yuan(deficit))
        } else {
            format!("竣工决算：结余 {} 元退回建设单位", yuan(surplus))
        };
        let mut e = Entry::draft(date, EntryKind::Settlement, summary);
        e.accrued_fen = -surplus;
        e.paid_fen = -surplus;
        let entry = self.ledger.append(e, "date")?.clone();
        Ok(Settlement {
            date,
            balance_fen: balance,
            surplus_fen: surplus,
            deficit_fen: deficit,
            entry,
        })
    }

    /// Owner payments as `(date, amount)` (reversals included, settlement refunds excluded).
    pub fn owner_payments(&self) -> Vec<(NaiveDate, i64)> {
        self.entries()
            .iter()
            .filter(|e| e.paid_fen != 0 && e.kind != EntryKind::Settlement)
            .map(|e| (e.date, e.paid_fen))
            .collect()
    }

    /// Allocations to one subcontract as `(date, amount)` (reversals included).
    pub fn allocations_to(&self, subcontract_id: &str) -> Vec<(NaiveDate, i64)> {
        self.entries()
            .iter()
            .filter(|e| {
                e.allocated_fen != 0 && e.links.subcontract_id.as_deref() == Some(subcontract_id)
            })
            .map(|e| (e.date, e.allocated_fen))
            .collect()
    }

    /// FEE-OWNER-50 and FEE-SUB-50 flags on `as_of` (owner flag only once a start date is known).
    pub fn flags(&self, as_of: NaiveDate, rules: &FeeRules) -> Result<Vec<Flag>> {
        let mut flags = Vec::new();
        if let Some(start) = self.terms.start_date {
            flags.extend(owner_payment_flag(
                self.planned_total_fen()?,
                start,
                &self.owner_payments(),
                as_of,
                rules,
            )?);
        }
        for s in &self.subcontracts {
            flags.extend(sub_allocation_flag(
                s,
                &self.allocations_to(&s.id),
                as_of,
                rules,
            )?);
        }
        Ok(flags)
    }
}

// ---------------------------------------------------------------------------------------------
// 安全文明施工费 (safety and civilized construction measures fee)
// ---------------------------------------------------------------------------------------------

/// A project's 安全文明施工费 terms, from its contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CivilizedTerms {
    /// The year's planned amount (当年施工进度计划的安全文明施工费总额) per calendar year.
    pub year_planned_fen: BTreeMap<i32, i64>,
    /// GB 50500 unless the contract has its own rule.
    pub prepay_rule: CivPrepayRule,
}

impl Default for CivilizedTerms {
    fn default() -> Self {
        CivilizedTerms {
            year_planned_fen: BTreeMap::new(),
            prepay_rule: CivPrepayRule::Gb50500,
        }
    }
}

impl CivilizedTerms {
    pub fn validate(&self) -> Result<()> {
        for (year, fen) in &self.year_planned_fen {
            if !(2000..=2200).contains(year) {
                return Err(SafetyFundError::InvalidAmount {
                    field: "year",
                    amount_fen: i64::from(*year),
                    expected: "a calendar year 2000–2200",
                });
            }
            check_amount("year_planned_fen", *fen, true)?;
        }
        if let CivPrepayRule::Contract {
            min_share_bp,
            within_days,
        } = self.prepay_rule
        {
            check_bp("prepay_rule.min_share_bp", min_share_bp, false).map_err(|_| {
                SafetyFundError::InvalidAmount {
                    field: "min_share_bp",
                    amount_fen: min_share_bp,
                    expected: "1..=10000 bp",
                }
            })?;
            // A window beyond the calendar would fail every later evaluation of the flags.
            if !(1..=MAX_PREPAY_DAYS).contains(&within_days) {
                return Err(SafetyFundError::InvalidAmount {
                    field: "within_days",
                    amount_fen: i64::from(within_days),
                    expected: "1..=3660 days",
                });
            }
        }
        Ok(())
    }
}

/// The 安全文明施工费 ledger of one project: the owner's payments are the money the fund
/// receives (booked in the 计提 column, so `balance = received − spent`), expenditures use the
/// civilized categories of the rules, corrections are reversals. Same hash chain as the safety
/// production fee ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CivilizedAccount {
    pub terms: CivilizedTerms,
    pub ledger: Ledger,
}

impl CivilizedAccount {
    /// Rebuilds a stored account; the ledger chain is verified.
    pub fn restore(terms: CivilizedTerms, entries: Vec<Entry>) -> Result<Self, BrokenLink> {
        Ok(CivilizedAccount {
            terms,
            ledger: Ledger::from_entries(entries)?,
        })
    }

    pub fn entries(&self) -> &[Entry] {
        self.ledger.entries()
    }

    /// Money received from the owner.
    pub fn record_payment(
        &mut self,
        date: NaiveDate,
        amount_fen: i64,
        evidence_ref: Option<String>,
    ) -> Result<&Entry> {
        check_amount("amount_fen", amount_fen, false)?;
        let mut e = Entry::draft(date, EntryKind::OwnerPayment, "收到建设单位安全文明施工费");
        e.paid_fen = amount_fen;
        e.accrued_fen = amount_fen;
        e.evidence_ref = evidence_ref;
        self.ledger.append(e, "amount_fen")
    }

    /// A use of the fee; the category must be one of `rules.civilized_categories`. Spending
    /// beyond what was received is allowed and flagged `overspent`.
    pub fn record_expenditure(
        &mut self,
        exp: Expenditure,
        rules: &FeeRules,
    ) -> Result<ExpenditureOutcome> {
        check_amount("amount_fen", exp.amount_fen, false)?;
        if !rules
            .civilized_categories
            .iter()
            .any(|c| c.name == exp.category)
        {
            return Err(SafetyFundError::CivilizedDiversion {
                category: exp.category,
            });
        }
        self.ledger.append_expenditure(exp, "安全文明施工费支出")
    }

    /// Cancels entry `seq` with a reversal.
    pub fn reverse(&mut self, seq: u64, date: NaiveDate, reason: &str) -> Result<&Entry> {
        let e = self.ledger.reversal_draft(seq, date, reason)?;
        self.ledger.append(e, "seq")
    }

    /// FEE-CIV-PREPAY for every planned year that has begun by `as_of`. The clock of the start
    /// year runs from the project's start date, of later years from 1 January [I]; payments
    /// dated from that start on count.
    pub fn flags(
        &self,
        project_start: Option<NaiveDate>,
        as_of: NaiveDate,
        rules: &FeeRules,
    ) -> Result<Vec<Flag>> {
        let Some(project_start) = project_start else {
            return Ok(Vec::new());
        };
        let mut flags = Vec::new();
        for (year, planned) in &self.terms.year_planned_fen {
            let jan1 =
                NaiveDate::from_ymd_opt(*year, 1, 1).ok_or(SafetyFundError::DateOutOfRange)?;
            let start = project_start.max(jan1);
            if start.year() != *year || start > as_of {
                continue;
            }
            let payments: Vec<(NaiveDate, i64)> = self
                .entries()
                .iter()
                .filter(|e| e.paid_fen != 0 && e.date >= start)
                .map(|e| (e.date, e.paid_fen))
                .collect();
            if let Some(f) = civ_prepay_flag(
                &self.terms.prepay_rule,
                *planned,
                start,
                &payments,
                as_of,
                rules,
            )? {
                flags.push(Flag {
                    subject: Some(year.to_string()),
                    ..f
                });
            }
        }
        Ok(flags)
    }
}

// ---------------------------------------------------------------------------------------------
// Enterprise year summary (第五十条, 第五十一条)
// ---------------------------------------------------------------------------------------------

/// The 3× pause test (第五十条): accrual pauses for the month when the enterprise's fee balance at
/// the month start is ≥ `pause_multiple` × last year's required accrual. An enterprise without a
/// prior-year requirement (≤ 0) never pauses [I].
pub fn enterprise_pause_applies(
    balance_at_month_start_fen: i64,
    prior_year_required_fen: i64,
    rules: &FeeRules,
) -> bool {
    prior_year_required_fen > 0
        && i128::from(balance_at_month_start_fen)
            >= i128::from(rules.enterprise.pause_multiple) * i128::from(prior_year_required_fen)
}

/// One project ledger of an enterprise, with its rate.
#[derive(Debug, Clone, Copy)]
pub struct ProjectLedger<'a> {
    pub rate_bp: i64,
    pub entries: &'a [Entry],
}

/// The under-use finding (第五十一条): use < 60 % of the year's required accrual; a written
/// explanation is due to the supervising department by `report_due`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnderUse {
    pub threshold_bp: i64,
    pub report_due: NaiveDate,
}

/// An enterprise's fee year.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnterpriseYearSummary {
    pub year: i32,
    pub opening_balance_fen: i64,
    /// 应计提金额: `Σ round_half_up(month progress × rate)` over the year's months, paused months
    /// included (the pause suspends the booking, not the requirement) [I].
    pub required_accrual_fen: i64,
    /// Actually accrued (accrual, correction and reversal entries of the year's months, plus
    /// settlement releases dated in the year).
    pub accrued_fen: i64,
    /// Used: expenditures plus allocations to subcontractors dated in the year [I].
    pub used_fen: i64,
    /// `opening + accrued − used`.
    pub closing_balance_fen: i64,
    /// `round_half_up(used × 10 000 / required)`; `None` when nothing was required.
    pub use_ratio_bp: Option<i64>,
    pub under_use: Option<UnderUse>,
    /// Months of the year with a paused accrual (in any project).
    pub paused_months: Vec<YearMonth>,
    /// The closing balance is ≥ `pause_multiple` × this year's required accrual, so accrual is
    /// paused from January of the next year.
    pub pause_at_next_year_start: bool,
}

/// Summarises an enterprise's year over its project ledgers.
pub fn enterprise_year_summary(
    year: i32,
    opening_balance_fen: i64,
    projects: &[ProjectLedger<'_>],
    rules: &FeeRules,
) -> Result<EnterpriseYearSummary> {
    let mut required: i64 = 0;
    let mut accrued: i64 = 0;
    let mut used: i64 = 0;
    let mut paused_months = BTreeSet::new();
    for p in projects {
        let mut month_progress: BTreeMap<YearMonth, i64> = BTreeMap::new();
        for e in p.entries {
            match e.month {
                Some(m) => {
                    if m.year() == year {
                        let held = month_progress.entry(m).or_default();
                        *held = add(*held, e.progress_fen.unwrap_or(0))?;
                        accrued = add(accrued, e.accrued_fen)?;
                        if e.paused {
                            paused_months.insert(m);
                        }
                    }
                }
                None => {
                    if e.date.year() == year {
                        accrued = add(accrued, e.accrued_fen)?;
                    }
                }
            }
            if e.date.year() == year {
                used = add(used, add(e.spent_fen, e.allocated_fen)?)?;
            }
        }
        for progress in month_progress.values() {
            required = add(required, accrual_fen(*progress, p.rate_bp)?)?;
        }
    }
    let closing = sub(add(opening_balance_fen, accrued)?, used)?;
    let e = &rules.enterprise;
    let (use_ratio_bp, under_use) = if required > 0 {
        let ratio = div_round_half_up(
            i128::from(used) * i128::from(BP_PER_WHOLE),
            i128::from(required),
        );
        let ratio = i64::try_from(ratio).map_err(|_| SafetyFundError::Overflow)?;
        // Exact comparison: used / required < threshold ⇔ used × 10 000 < required × threshold.
        let under = i128::from(used) * i128::from(BP_PER_WHOLE)
            < i128::from(required) * i128::from(e.under_use_threshold_bp);
        let under_use = if under {
            Some(UnderUse {
                threshold_bp: e.under_use_threshold_bp,
                report_due: e.under_use_report_due.in_year(year + 1)?,
            })
        } else {
            None
        };
        (Some(ratio), under_use)
    } else {
        (None, None)
    };
    Ok(EnterpriseYearSummary {
        year,
        opening_balance_fen,
        required_accrual_fen: required,
        accrued_fen: accrued,
        used_fen: used,
        closing_balance_fen: closing,
        use_ratio_bp,
        under_use,
        paused_months: paused_months.into_iter().collect(),
        pause_at_next_year_start: enterprise_pause_applies(closing, required, rules),
    })
}

// ---------------------------------------------------------------------------------------------
// Smart-site cost plan (智慧工地费用计划)
// ---------------------------------------------------------------------------------------------

/// One planned item: quantity × unit price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanLine {
    pub id: String,
    pub item: String,
    pub quantity: i64,
    pub unit_price_fen: i64,
}

impl PlanLine {
    pub fn total_fen(&self) -> Result<i64> {
        self.quantity
            .checked_mul(self.unit_price_fen)
            .ok_or(SafetyFundError::Overflow)
    }
}

/// The owner representative's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub by: String,
    pub at: DateTime<Utc>,
}

/// A project's smart-site cost plan. Once approved it is frozen; a revision is a new plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostPlan {
    pub lines: Vec<PlanLine>,
    #[serde(default)]
    pub approval: Option<Approval>,
}

/// Plan versus actual of one line (`variance = actual − planned`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineActual {
    pub line_id: String,
    pub item: String,
    pub planned_fen: i64,
    pub actual_fen: i64,
    pub variance_fen: i64,
}

/// Plan versus actual of a whole plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanVsActual {
    pub lines: Vec<LineActual>,
    pub planned_total_fen: i64,
    /// Actual of the plan's lines.
    pub actual_total_fen: i64,
    /// Spending linked to line ids the plan does not have.
    pub unplanned_fen: i64,
}

impl CostPlan {
    pub fn new() -> Self {
        CostPlan::default()
    }

    pub fn add_line(&mut self, line: PlanLine) -> Result<()> {
        if self.approval.is_some() {
            return Err(SafetyFundError::PlanApproved);
        }
        if line.id.trim().is_empty() {
            return Err(SafetyFundError::Missing { field: "line id" });
        }
        if line.item.trim().is_empty() {
            return Err(SafetyFundError::Missing { field: "item" });
        }
        if !(1..=super::bounds::MAX_COUNT).contains(&line.quantity) {
            return Err(SafetyFundError::InvalidAmount {
                field: "quantity",
                amount_fen: line.quantity,
                expected: "1..=10^12",
            });
        }
        check_amount("unit_price_fen", line.unit_price_fen, true)?;
        let total = line.total_fen()?;
        check_amount("line total", total, true)?;
        check_amount("plan total", add(self.total_fen()?, total)?, true)?;
        if self.lines.iter().any(|l| l.id == line.id) {
            return Err(SafetyFundError::DuplicatePlanLine(line.id));
        }
        self.lines.push(line);
        Ok(())
    }

    pub fn total_fen(&self) -> Result<i64> {
        self.lines
            .iter()
            .try_fold(0i64, |acc, l| add(acc, l.total_fen()?))
    }

    /// Approval by the owner representative (建设单位代表); freezes the plan.
    pub fn approve(&mut self, by: &str, at: DateTime<Utc>) -> Result<()> {
        if self.approval.is_some() {
            return Err(SafetyFundError::PlanApproved);
        }
        if self.lines.is_empty() {
            return Err(SafetyFundError::EmptyPlan);
        }
        if by.trim().is_empty() {
            return Err(SafetyFundError::Missing { field: "approver" });
        }
        self.approval = Some(Approval {
            by: by.to_owned(),
            at,
        });
        Ok(())
    }

    /// Plan versus actual from the ledger entries linked to plan lines (`links.plan_line_id`);
    /// reversals carry the link, so a reversed expenditure drops out.
    pub fn plan_vs_actual(&self, entries: &[Entry]) -> Result<PlanVsActual> {
        let mut actual: BTreeMap<&str, i64> = BTreeMap::new();
        for e in entries {
            if let Some(id) = e.links.plan_line_id.as_deref() {
                let v = actual.entry(id).or_default();
                *v = add(*v, e.spent_fen)?;
            }
        }
        let mut lines = Vec::with_capacity(self.lines.len());
        let (mut planned_total, mut actual_total) = (0i64, 0i64);
        for l in &self.lines {
            let planned = l.total_fen()?;
            let act = actual.remove(l.id.as_str()).unwrap_or(0);
            planned_total = add(planned_total, planned)?;
            actual_total = add(actual_total, act)?;
            lines.push(LineActual {
                line_id: l.id.clone(),
                item: l.item.clone(),
                planned_fen: planned,
                actual_fen: act,
                variance_fen: sub(act, planned)?,
            });
        }
        let unplanned = actual.values().try_fold(0i64, |acc, v| add(acc, *v))?;
        Ok(PlanVsActual {
            lines,
            planned_total_fen: planned_total,
            actual_total_fen: actual_total,
            unplanned_fen: unplanned,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Statement
// ---------------------------------------------------------------------------------------------

/// One statement row under [`STATEMENT_HEADERS`]: 日期, 摘要, 类别, 计提(元), 支出(元), 余额(元).
/// 支出 is spent + allocated; 余额 is the running balance after the entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementRow {
    pub seq: u64,
    pub date: NaiveDate,
    pub summary: String,
    /// The category name (snake_case) of expenditures, empty otherwise.
    pub category: String,
    pub accrued_fen: i64,
    pub spent_fen: i64,
    pub balance_fen: i64,
}

impl StatementRow {
    /// The six cells in header order, amounts in yuan.
    pub fn cells(&self) -> [String; 6] {
        [
            self.date.format("%Y-%m-%d").to_string(),
            self.summary.clone(),
            self.category.clone(),
            yuan(self.accrued_fen),
            yuan(self.spent_fen),
            yuan(self.balance_fen),
        ]
    }
}

/// The statement of a ledger, in seq order, with the running balance.
pub fn statement_rows(entries: &[Entry]) -> Vec<StatementRow> {
    let mut balance: i64 = 0;
    entries
        .iter()
        .map(|e| {
            balance = balance.saturating_add(e.balance_effect_fen());
            StatementRow {
                seq: e.seq,
                date: e.date,
                summary: e.summary.clone(),
                category: e.category.clone().unwrap_or_default(),
                accrued_fen: e.accrued_fen,
                spent_fen: e.spent_fen.saturating_add(e.allocated_fen),
                balance_fen: balance,
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn ym(s: &str) -> YearMonth {
        s.parse().unwrap()
    }

    fn rules() -> FeeRules {
        FeeRulesSet::default_rules()
            .unwrap()
            .in_force(d("2024-01-01"))
            .unwrap()
            .clone()
    }

    fn terms(project_type: &str, contract_value_fen: i64, signed: &str) -> ProjectTerms {
        ProjectTerms {
            project_type: project_type.to_owned(),
            contract_value_fen,
            contract_signed: d(signed),
            tender_completed: None,
            start_date: None,
        }
    }

    /// A building project under the 2022 rules (300 bp).
    fn building(contract_value_fen: i64) -> FundAccount {
        FundAccount::open(
            terms("building", contract_value_fen, "2024-01-05"),
            &rules(),
        )
        .unwrap()
    }

    fn spend(date: &str, amount_fen: i64, category: &str) -> Expenditure {
        Expenditure {
            date: d(date),
            amount_fen,
            category: category.to_owned(),
            summary: format!("{category} 支出"),
            evidence_ref: format!("voucher-{date}-{amount_fen}"),
            links: Links::default(),
        }
    }

    // --- configuration ---------------------------------------------------------------------

    #[test]
    fn default_rules_cover_exactly_the_tenancy_project_types() {
        // The serde names of tenancy::ProjectType.
        let want = [
            "building",
            "chem_petro",
            "highway",
            "mech_elec_install",
            "mining",
            "municipal",
            "port_waterway",
            "power",
            "railway",
            "smelting",
            "telecom",
            "urban_rail",
            "water_hydro",
        ];
        let r = rules();
        assert_eq!(r.project_types().collect::<Vec<_>>(), want);
        assert_eq!(r.r2022_effective_date, d("2022-11-21"));
    }

    #[test]
    fn rules_version_in_force_and_validation() {
        let base = rules();
        let mut later = base.clone();
        later.version = "jl-2025.1".into();
        later.effective_from = d("2025-01-01");
        later.owner_payment.min_share_bp = 6000;
        let set = FeeRulesSet::new(vec![later, base]).unwrap();
        assert_eq!(set.in_force(d("2024-12-31")).unwrap().version, "cn-2022.1");
        assert_eq!(set.in_force(d("2025-01-01")).unwrap().version, "jl-2025.1");
        assert_eq!(
            set.in_force(d("2012-02-13")).unwrap_err(),
            SafetyFundError::NoRulesInForce {
                date: d("2012-02-13")
            }
        );
        assert!(set.by_version("jl-2025.1").is_some());

        let mut bad = rules();
        bad.rates_bp.r2022.insert("building".into(), 10_001);
        assert!(matches!(
            FeeRulesSet::new(vec![bad]),
            Err(SafetyFundError::Config(_))
        ));
        let mut bad = rules();
        bad.rates_bp.r2012.remove("mining");
        assert!(FeeRulesSet::new(vec![bad]).is_err());
        let mut bad = rules();
        bad.enterprise.pause_multiple = 0;
        assert!(FeeRulesSet::new(vec![bad]).is_err());
        assert!(FeeRulesSet::new(vec![rules(), rules()]).is_err());
        assert!(FeeRulesSet::from_json("{\"versions\": []}").is_err());
    }

    // --- regime and rate -------------------------------------------------------------------

    #[test]
    fn regime_at_the_cut_off() {
        let r = rules();
        // DOMAIN.md §11.1.7: tendering 2022-11-10, contract 2022-11-20 ⇒ legacy.
        assert_eq!(
            regime(Some(d("2022-11-10")), d("2022-11-20"), &r),
            Regime::R2012
        );
        // Contract signed on the cut-off day ⇒ 2022 rules.
        assert_eq!(
            regime(Some(d("2022-11-10")), d("2022-11-21"), &r),
            Regime::R2022
        );
        // Tendering done before, contract after ⇒ 2022 rules.
        assert_eq!(
            regime(Some(d("2022-11-15")), d("2022-11-25"), &r),
            Regime::R2022
        );
        // Contract before but tendering completed on the cut-off day ⇒ not both before ⇒ 2022.
        assert_eq!(
            regime(Some(d("2022-11-21")), d("2022-11-20"), &r),
            Regime::R2022
        );
        // No tender date: judged by the contract date alone.
        assert_eq!(regime(None, d("2022-11-20"), &r), Regime::R2012);
        assert_eq!(regime(None, d("2022-11-21"), &r), Regime::R2022);
        assert_eq!(serde_json::to_string(&Regime::R2012).unwrap(), "\"r2012\"");
        assert_eq!(serde_json::to_string(&Regime::R2022).unwrap(), "\"r2022\"");
    }

    #[test]
    fn rates_by_type_under_both_regimes() {
        let r = rules();
        // (type, 2012 bp, 2022 bp): 第十七条 and 财企〔2012〕16号 (DOMAIN.md §1.1; mining 2012 [M]).
        let table = [
            ("mining", 250, 350),
            ("railway", 200, 300),
            ("building", 200, 300),
            ("urban_rail", 200, 300),
            ("water_hydro", 200, 250),
            ("power", 200, 250),
            ("smelting", 150, 200),
            ("mech_elec_install", 150, 200),
            ("chem_petro", 150, 200),
            ("telecom", 150, 200),
            ("municipal", 150, 150),
            ("port_waterway", 150, 150),
            ("highway", 150, 150),
        ];
        for (ty, old, new) in table {
            assert_eq!(rate_bp(Regime::R2012, ty, &r).unwrap(), old, "{ty} r2012");
            assert_eq!(rate_bp(Regime::R2022, ty, &r).unwrap(), new, "{ty} r2022");
        }
        assert_eq!(
            rate_bp(Regime::R2022, "castle", &r).unwrap_err(),
            SafetyFundError::UnknownProjectType {
                project_type: "castle".into(),
                regime: Regime::R2022
            }
        );
        // Account opening: building signed 2022-06-01 ⇒ r2012, 200 bp; planned total on
        // 12 345 678 fen = 12 345 678 × 200 / 10 000 = 246 913.56 ⇒ 246 914 fen.
        let acc = FundAccount::open(terms("building", 12_345_678, "2022-06-01"), &r).unwrap();
        assert_eq!((acc.regime, acc.rate_bp), (Regime::R2012, 200));
        assert_eq!(acc.planned_total_fen().unwrap(), 246_914);
        // Same under r2022: × 300 / 10 000 = 370 370.34 ⇒ 370 370 fen.
        assert_eq!(planned_total_fen(12_345_678, 300).unwrap(), 370_370);
    }

    // --- accrual ---------------------------------------------------------------------------

    #[test]
    fn accrual_rounds_half_up_at_the_fen() {
        // 150 × 300 / 10 000 = 4.5 ⇒ 5; 149 × 300 / 10 000 = 4.47 ⇒ 4.
        assert_eq!(accrual_fen(150, 300).unwrap(), 5);
        assert_eq!(accrual_fen(149, 300).unwrap(), 4);
        // 1 666 650 × 300 / 10 000 = 49 999.5 ⇒ 50 000.
        assert_eq!(accrual_fen(1_666_650, 300).unwrap(), 50_000);
        // 1 000 050 × 150 / 10 000 = 15 000.75 ⇒ 15 001; 1 000 030 × 150 = 15 000.45 ⇒ 15 000.
        assert_eq!(accrual_fen(1_000_050, 150).unwrap(), 15_001);
        assert_eq!(accrual_fen(1_000_030, 150).unwrap(), 15_000);
        // Negative amounts round half away from zero: −4.5 ⇒ −5.
        assert_eq!(mul_bp_half_up(-150, 300).unwrap(), -5);
        // Required shares round up: 3 000 001 × 5 000 / 10 000 = 1 500 000.5 ⇒ 1 500 001.
        assert_eq!(mul_bp_ceil(3_000_001, 5000).unwrap(), 1_500_001);
        assert_eq!(mul_bp_ceil(3_000_000, 5000).unwrap(), 1_500_000);
        // No overflow on i64::MAX × 10 000 bp (i128 arithmetic).
        assert_eq!(mul_bp_half_up(i64::MAX, 10_000).unwrap(), i64::MAX);
    }

    #[test]
    fn second_report_for_a_month_is_a_delta_correction() {
        let mut acc = building(1_000_000_000);
        // March: 1 666 650 × 3 % = 49 999.5 ⇒ 50 000.
        let out = acc
            .report_progress(ym("2024-03"), 1_666_650, d("2024-03-31"), false)
            .unwrap();
        let e = out.entry.unwrap();
        assert_eq!(e.kind, EntryKind::Accrual);
        assert_eq!((e.progress_fen, e.accrued_fen), (Some(1_666_650), 50_000));
        // Corrected to 2 000 000 ⇒ 60 000; delta +333 350 progress, +10 000 accrual.
        let out = acc
            .report_progress(ym("2024-03"), 2_000_000, d("2024-04-03"), false)
            .unwrap();
        let e = out.entry.unwrap();
        assert_eq!(e.kind, EntryKind::Correction);
        assert_eq!((e.progress_fen, e.accrued_fen), (Some(333_350), 10_000));
        assert_eq!(out.month.progress_fen, 2_000_000);
        assert_eq!(out.month.accrued_fen, 60_000);
        // The same report again changes nothing and appends nothing.
        let out = acc
            .report_progress(ym("2024-03"), 2_000_000, d("2024-04-04"), false)
            .unwrap();
        assert!(out.entry.is_none());
        // Corrected down to 1 000 000 ⇒ 30 000; delta −1 000 000 / −30 000.
        let e = acc
            .report_progress(ym("2024-03"), 1_000_000, d("2024-04-05"), false)
            .unwrap()
            .entry
            .unwrap();
        assert_eq!((e.progress_fen, e.accrued_fen), (Some(-1_000_000), -30_000));
        assert_eq!(acc.entries().len(), 3);
        assert_eq!(acc.totals().accrued_fen, 30_000);
        // Rounding is on the month's total, not on deltas: 150 ⇒ 4.5 ⇒ 5; 300 ⇒ 9.0 ⇒ 9, so
        // the correction is +4 (a rounded delta would have been round(4.5) = 5).
        acc.report_progress(ym("2024-04"), 150, d("2024-04-30"), false)
            .unwrap();
        let e = acc
            .report_progress(ym("2024-04"), 300, d("2024-05-02"), false)
            .unwrap()
            .entry
            .unwrap();
        assert_eq!(e.accrued_fen, 4);
        assert_eq!(acc.month_state(ym("2024-04")).accrued_fen, 9);
        assert!(acc.ledger.verify().is_ok());
    }

    #[test]
    fn progress_beyond_the_contract_is_refused_until_a_variation() {
        let mut acc = building(1_000_000);
        acc.report_progress(ym("2024-01"), 600_000, d("2024-01-31"), false)
            .unwrap();
        // 600 000 + 400 001 = 1 000 001 > 1 000 000.
        let err = acc
            .report_progress(ym("2024-02"), 400_001, d("2024-02-29"), false)
            .unwrap_err();
        assert_eq!(
            err,
            SafetyFundError::ProgressBeyondContract {
                month: ym("2024-02"),
                cumulative_fen: 1_000_001,
                limit_fen: 1_000_000
            }
        );
        assert!(err.to_string().contains("contract variation"), "{err}");
        assert_eq!(acc.entries().len(), 1);
        // Exactly the contract value is fine.
        acc.report_progress(ym("2024-02"), 400_000, d("2024-02-29"), false)
            .unwrap();
        // A correction counts the month's new total: Jan 600 001 ⇒ 1 000 001 > 1 000 000.
        assert!(
            acc.report_progress(ym("2024-01"), 600_001, d("2024-03-01"), false)
                .is_err()
        );
        // Variation +100 000 ⇒ limit 1 100 000; March 100 000 fits.
        acc.record_variation(ContractVariation {
            date: d("2024-03-10"),
            amount_fen: 100_000,
            reference: "变更单 BG-001".into(),
        })
        .unwrap();
        acc.report_progress(ym("2024-03"), 100_000, d("2024-03-31"), false)
            .unwrap();
        // Planned total on 1 100 000 × 300 / 10 000 = 33 000.
        assert_eq!(acc.planned_total_fen().unwrap(), 33_000);
        // A reduction below the 1 100 000 already reported is refused.
        assert_eq!(
            acc.record_variation(ContractVariation {
                date: d("2024-04-01"),
                amount_fen: -200_000,
                reference: "变更单 BG-002".into(),
            })
            .unwrap_err(),
            SafetyFundError::VariationBelowProgress {
                limit_fen: 900_000,
                cumulative_fen: 1_100_000
            }
        );
        assert!(
            acc.report_progress(ym("2024-04"), -1, d("2024-04-30"), false)
                .is_err()
        );
    }

    #[test]
    fn enterprise_three_times_pause() {
        let r = rules();
        // Last year's required accrual 1 000 000; 3 × = 3 000 000.
        assert!(enterprise_pause_applies(3_000_000, 1_000_000, &r));
        assert!(enterprise_pause_applies(3_500_000, 1_000_000, &r));
        assert!(!enterprise_pause_applies(2_999_999, 1_000_000, &r));
        // No prior-year requirement ⇒ never paused.
        assert!(!enterprise_pause_applies(0, 0, &r));
        assert!(!enterprise_pause_applies(5, 0, &r));

        let mut acc = building(100_000_000);
        let e = acc
            .report_progress(ym("2024-05"), 1_000_000, d("2024-05-31"), true)
            .unwrap()
            .entry
            .unwrap();
        assert!(e.paused);
        assert_eq!((e.accrued_fen, e.progress_fen), (0, Some(1_000_000)));
        // A correction of a paused month stays paused (the test is at month start), even if the
        // caller now says otherwise.
        let e = acc
            .report_progress(ym("2024-05"), 2_000_000, d("2024-06-02"), false)
            .unwrap()
            .entry
            .unwrap();
        assert!(e.paused);
        assert_eq!(e.accrued_fen, 0);
        // The next month, no longer paused: 1 000 000 × 3 % = 30 000.
        let e = acc
            .report_progress(ym("2024-06"), 1_000_000, d("2024-06-30"), false)
            .unwrap()
            .entry
            .unwrap();
        assert_eq!(e.accrued_fen, 30_000);
    }

    // --- payment shares --------------------------------------------------------------------

    #[test]
    fn owner_fifty_percent_warning_and_breach_dates() {
        let r = rules();
        let mut acc = building(100_000_000);
        acc.terms.start_date = Some(d("2024-03-10"));
        // Planned 100 000 000 × 3 % = 3 000 000; required 50 % = 1 500 000.
        // Warning from 03-10 + 21 d = 03-31; due 03-10 + 1 month = 04-10.
        acc.record_owner_payment(d("2024-03-20"), 1_000_000, Some("回单-1".into()))
            .unwrap();
        assert!(acc.flags(d("2024-03-30"), &r).unwrap().is_empty());
        let warn = acc.flags(d("2024-03-31"), &r).unwrap();
        assert_eq!(
            warn,
            vec![Flag {
                code: FEE_OWNER_50.into(),
                level: FlagLevel::Warning,
                due_date: d("2024-04-10"),
                required_fen: 1_500_000,
                paid_fen: 1_000_000,
                subject: None,
            }]
        );
        // Unpaid on the due date ⇒ breach.
        let breach = acc.flags(d("2024-04-10"), &r).unwrap();
        assert_eq!(breach[0].level, FlagLevel::Breach);
        assert_eq!(breach[0].paid_fen, 1_000_000);
        // A late payment (04-11) does not cure the breach: paid by the due date stays 1 000 000.
        let mut late = acc.clone();
        late.record_owner_payment(d("2024-04-11"), 500_000, None)
            .unwrap();
        assert_eq!(
            late.flags(d("2024-04-12"), &r).unwrap()[0].paid_fen,
            1_000_000
        );
        // Paying the rest on the due date itself is on time ⇒ no flag.
        acc.record_owner_payment(d("2024-04-10"), 500_000, None)
            .unwrap();
        assert!(acc.flags(d("2024-04-10"), &r).unwrap().is_empty());
        assert!(acc.flags(d("2024-06-01"), &r).unwrap().is_empty());
        // Month arithmetic clamps: start 2024-01-31 ⇒ due 2024-02-29.
        let f = owner_payment_flag(3_000_000, d("2024-01-31"), &[], d("2024-02-29"), &r)
            .unwrap()
            .unwrap();
        assert_eq!((f.level, f.due_date), (FlagLevel::Breach, d("2024-02-29")));
    }

    #[test]
    fn subcontract_fifty_percent_within_a_month_of_its_start() {
        let r = rules();
        let mut acc = building(100_000_000);
        // Share 400 001 ⇒ required ceil(200 000.5) = 200 001; warn 05-20 + 21 d = 06-10;
        // due 06-20.
        acc.add_subcontract(Subcontract {
            id: "sub-steel".into(),
            share_fen: 400_001,
            start_date: d("2024-05-20"),
        })
        .unwrap();
        acc.allocate(d("2024-06-01"), "sub-steel", 200_000, Some("转账-7".into()))
            .unwrap();
        assert!(acc.flags(d("2024-06-09"), &r).unwrap().is_empty());
        let f = acc.flags(d("2024-06-10"), &r).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].code.as_str(), f[0].level, f[0].subject.as_deref()),
            (FEE_SUB_50, FlagLevel::Warning, Some("sub-steel"))
        );
        assert_eq!((f[0].required_fen, f[0].paid_fen), (200_001, 200_000));
        assert_eq!(
            acc.flags(d("2024-06-20"), &r).unwrap()[0].level,
            FlagLevel::Breach
        );
        acc.allocate(d("2024-06-20"), "sub-steel", 1, None).unwrap();
        assert!(acc.flags(d("2024-06-20"), &r).unwrap().is_empty());
        assert_eq!(
            acc.allocate(d("2024-06-20"), "sub-nobody", 1, None)
                .unwrap_err(),
            SafetyFundError::UnknownSubcontract("sub-nobody".into())
        );
    }

    #[test]
    fn civilized_fee_prepayment_gb50500_and_contract_rule() {
        let r = rules();
        // GB 50500: year planned 1 000 000 ⇒ required 60 % = 600 000 by 03-01 + 28 d = 03-29.
        let start = d("2024-03-01");
        let paid = [(d("2024-03-05"), 599_999)];
        let rule = CivPrepayRule::Gb50500;
        // No warning stage.
        assert!(
            civ_prepay_flag(&rule, 1_000_000, start, &paid, d("2024-03-28"), &r)
                .unwrap()
                .is_none()
        );
        let f = civ_prepay_flag(&rule, 1_000_000, start, &paid, d("2024-03-29"), &r)
            .unwrap()
            .unwrap();
        assert_eq!(
            f,
            Flag {
                code: FEE_CIV_PREPAY.into(),
                level: FlagLevel::Breach,
                due_date: d("2024-03-29"),
                required_fen: 600_000,
                paid_fen: 599_999,
                subject: None,
            }
        );
        let paid = [(d("2024-03-05"), 599_999), (d("2024-03-29"), 1)];
        assert!(
            civ_prepay_flag(&rule, 1_000_000, start, &paid, d("2024-03-29"), &r)
                .unwrap()
                .is_none()
        );
        // Contract rule 30 % within 14 days: 300 000 by 03-15.
        let rule = CivPrepayRule::Contract {
            min_share_bp: 3000,
            within_days: 14,
        };
        let f = civ_prepay_flag(&rule, 1_000_000, start, &[], d("2024-03-15"), &r)
            .unwrap()
            .unwrap();
        assert_eq!((f.required_fen, f.due_date), (300_000, d("2024-03-15")));
        let bad = CivPrepayRule::Contract {
            min_share_bp: 0,
            within_days: 14,
        };
        assert!(civ_prepay_flag(&bad, 1_000_000, start, &[], d("2024-03-15"), &r).is_err());
    }

    // --- expenditures ----------------------------------------------------------------------

    #[test]
    fn diversion_is_refused_naming_the_category() {
        let r = rules();
        // Legacy account (signed 2022-06-01): informatisation is not on the 2012 list.
        let mut old = FundAccount::open(terms("building", 1_000_000, "2022-06-01"), &r).unwrap();
        assert_eq!(old.regime, Regime::R2012);
        let err = old
            .record_expenditure(spend("2024-01-10", 100, "safety_informatisation"), &r)
            .unwrap_err();
        assert_eq!(
            err,
            SafetyFundError::Diversion {
                category: "safety_informatisation".into(),
                regime: Regime::R2012
            }
        );
        assert!(err.to_string().contains("safety_informatisation"));
        assert!(old.entries().is_empty());
        // 2022 account: informatisation and insurance allowed, fines never.
        let mut new = building(1_000_000);
        for c in [
            "safety_informatisation",
            "safety_liability_insurance",
            "ppe",
        ] {
            new.record_expenditure(spend("2024-01-10", 100, c), &r)
                .unwrap();
        }
        assert!(matches!(
            new.record_expenditure(spend("2024-01-10", 100, "administrative_fines"), &r),
            Err(SafetyFundError::Diversion { .. })
        ));
        assert_eq!(allowed_categories(Regime::R2012, &r).len(), 9);
        assert_eq!(allowed_categories(Regime::R2022, &r).len(), 11);
        // Evidence is required (支出有据).
        let mut e = spend("2024-01-10", 100, "ppe");
        e.evidence_ref = " ".into();
        assert_eq!(
            new.record_expenditure(e, &r).unwrap_err(),
            SafetyFundError::Missing {
                field: "evidence_ref"
            }
        );
    }

    #[test]
    fn overspend_is_allowed_but_flagged_and_invoices_post_once() {
        let r = rules();
        let mut acc = building(10_000_000);
        // 1 000 000 × 3 % = 30 000 accrued.
        acc.report_progress(ym("2024-01"), 1_000_000, d("2024-01-31"), false)
            .unwrap();
        // 30 000 − 20 000 = 10 000 ⇒ fine.
        let o = acc
            .record_expenditure(spend("2024-02-01", 20_000, "ppe"), &r)
            .unwrap();
        assert!(!o.overspent);
        assert_eq!(o.balance_fen, 10_000);
        // 10 000 − 15 000 = −5 000 ⇒ recorded, flagged.
        let mut e = spend("2024-02-02", 15_000, "safety_informatisation");
        e.links.invoice_id = Some("inv-001".into());
        e.links.subscription_id = Some("sub-2024".into());
        let o = acc.record_expenditure(e.clone(), &r).unwrap();
        assert!(o.overspent && o.entry.overspent);
        assert_eq!(o.balance_fen, -5_000);
        assert_eq!(acc.totals().balance_fen, -5_000);
        // The billing hand-off posts an invoice once.
        assert_eq!(
            acc.record_expenditure(e.clone(), &r).unwrap_err(),
            SafetyFundError::InvoiceAlreadyPosted {
                invoice_id: "inv-001".into(),
                seq: 3
            }
        );
        // After a reversal it can be posted again.
        acc.reverse(3, d("2024-02-03"), "发票作废").unwrap();
        assert_eq!(acc.totals().balance_fen, 10_000);
        assert!(acc.record_expenditure(e, &r).is_ok());
    }

    fn invoice_spend(date: &str, amount_fen: i64, invoice: &str) -> Expenditure {
        let mut e = spend(date, amount_fen, "safety_informatisation");
        e.evidence_ref = format!("NO-{invoice}");
        e.links.invoice_id = Some(invoice.into());
        e.links.subscription_id = Some("sub-1".into());
        e
    }

    #[test]
    fn credit_notes_and_a_void_take_an_invoice_back_once_each() {
        let r = rules();
        let mut acc = building(10_000_000);
        acc.report_progress(ym("2024-01"), 1_000_000, d("2024-01-31"), false)
            .unwrap(); // 30 000 accrued
        acc.record_expenditure(invoice_spend("2024-02-01", 10_000, "inv-7"), &r)
            .unwrap();
        let credit = |note: &str, amount_fen| TakeBack::Credit {
            note_id: note.into(),
            amount_fen,
        };
        // A partial credit note: a correction of minus its amount, the expenditure untouched.
        let e = acc
            .take_back("inv-7", &credit("cn-1", 3_000), d("2024-02-05"))
            .unwrap()
            .clone();
        assert_eq!(
            (e.kind, e.spent_fen, e.category.as_deref(), e.reverses),
            (
                EntryKind::Correction,
                -3_000,
                Some("safety_informatisation"),
                None
            )
        );
        assert_eq!(e.links.invoice_id.as_deref(), Some("inv-7"));
        assert_eq!(e.evidence_ref.as_deref(), Some("cn-1"));
        assert_eq!(acc.entries()[1].spent_fen, 10_000);
        assert_eq!(acc.ledger.invoice_net_fen("inv-7"), 7_000);
        assert_eq!(acc.totals().balance_fen, 23_000);
        // The same note again, or more than the invoice still holds, is refused.
        assert_eq!(
            acc.take_back("inv-7", &credit("cn-1", 3_000), d("2024-02-06"))
                .unwrap_err(),
            SafetyFundError::CreditNoteAlreadyPosted {
                note_id: "cn-1".into(),
                seq: 3
            }
        );
        assert!(matches!(
            acc.take_back("inv-7", &credit("cn-2", 7_001), d("2024-02-06")),
            Err(SafetyFundError::InvalidAmount { .. })
        ));
        // The void takes back the 7 000 left, as a correction (the expenditure was partly
        // credited, so a reversal of all of it would take too much).
        let e = acc
            .take_back("inv-7", &TakeBack::Void, d("2024-02-07"))
            .unwrap()
            .clone();
        assert_eq!((e.kind, e.spent_fen), (EntryKind::Correction, -7_000));
        assert_eq!(acc.ledger.invoice_net_fen("inv-7"), 0);
        assert_eq!(acc.totals().balance_fen, 30_000);
        assert_eq!(
            acc.take_back("inv-7", &TakeBack::Void, d("2024-02-08"))
                .unwrap_err(),
            SafetyFundError::NothingToTakeBack {
                invoice_id: "inv-7".into()
            }
        );
        assert!(matches!(
            acc.take_back("inv-7", &credit("cn-3", 1), d("2024-02-08")),
            Err(SafetyFundError::InvalidAmount { .. })
        ));

        // An invoice voided with nothing credited: the expenditure's reversal, once.
        acc.record_expenditure(invoice_spend("2024-03-01", 4_000, "inv-8"), &r)
            .unwrap();
        let e = acc
            .take_back("inv-8", &TakeBack::Void, d("2024-03-02"))
            .unwrap()
            .clone();
        assert_eq!(
            (e.kind, e.spent_fen, e.reverses),
            (EntryKind::Reversal, -4_000, Some(5))
        );
        for take in [TakeBack::Void, credit("cn-4", 1)] {
            assert_eq!(
                acc.take_back("inv-8", &take, d("2024-03-03")).unwrap_err(),
                SafetyFundError::NothingToTakeBack {
                    invoice_id: "inv-8".into()
                }
            );
        }
        assert_eq!(
            acc.take_back("inv-9", &TakeBack::Void, d("2024-03-03"))
                .unwrap_err(),
            SafetyFundError::InvoiceNotPosted {
                invoice_id: "inv-9".into()
            }
        );
        assert_eq!(acc.totals().balance_fen, 30_000);
        acc.ledger.verify().unwrap();
    }

    #[test]
    fn reversals_negate_once_and_cannot_be_reversed() {
        let r = rules();
        let mut acc = building(10_000_000);
        acc.report_progress(ym("2024-01"), 1_000_000, d("2024-01-31"), false)
            .unwrap();
        acc.record_expenditure(spend("2024-02-01", 7_000, "ppe"), &r)
            .unwrap();
        let rev = acc.reverse(2, d("2024-02-02"), "录入错误").unwrap().clone();
        assert_eq!(
            (rev.kind, rev.spent_fen, rev.reverses),
            (EntryKind::Reversal, -7_000, Some(2))
        );
        assert_eq!(rev.category.as_deref(), Some("ppe"));
        assert_eq!(
            acc.reverse(2, d("2024-02-02"), "again").unwrap_err(),
            SafetyFundError::AlreadyReversed { seq: 2, by: 3 }
        );
        assert!(matches!(
            acc.reverse(3, d("2024-02-02"), "x"),
            Err(SafetyFundError::NotReversible { .. })
        ));
        assert_eq!(
            acc.reverse(9, d("2024-02-02"), "x").unwrap_err(),
            SafetyFundError::UnknownEntry { seq: 9 }
        );
        // Reversing the January accrual empties the month; a new report is then a correction.
        acc.reverse(1, d("2024-02-05"), "进度报错").unwrap();
        assert_eq!(acc.month_state(ym("2024-01")).progress_fen, 0);
        assert_eq!(acc.totals().balance_fen, 0);
        let e = acc
            .report_progress(ym("2024-01"), 500_000, d("2024-02-06"), false)
            .unwrap()
            .entry
            .unwrap();
        assert_eq!((e.kind, e.accrued_fen), (EntryKind::Correction, 15_000));
    }

    // --- enterprise year -------------------------------------------------------------------

    #[test]
    fn enterprise_year_summary_with_under_use_and_pause() {
        let r = rules();
        let mut a = building(100_000_000); // 300 bp
        let mut b = FundAccount::open(terms("municipal", 100_000_000, "2024-01-05"), &r).unwrap(); // 150 bp
        // Outside the year: ignored.
        a.report_progress(ym("2023-12"), 1_000_000, d("2023-12-31"), false)
            .unwrap();
        // A: Jan 1 000 000 × 3 % = 30 000; Feb 2 000 000 × 3 % = 60 000.
        a.report_progress(ym("2024-01"), 1_000_000, d("2024-01-31"), false)
            .unwrap();
        a.report_progress(ym("2024-02"), 2_000_000, d("2024-02-29"), false)
            .unwrap();
        a.record_expenditure(spend("2024-03-01", 20_000, "ppe"), &r)
            .unwrap();
        // B: Jan 1 000 000 × 1.5 % = 15 000; Mar paused (required 15 000, accrued 0).
        b.report_progress(ym("2024-01"), 1_000_000, d("2024-01-31"), false)
            .unwrap();
        b.report_progress(ym("2024-03"), 1_000_000, d("2024-03-31"), true)
            .unwrap();
        b.add_subcontract(Subcontract {
            id: "sub-1".into(),
            share_fen: 20_000,
            start_date: d("2024-02-01"),
        })
        .unwrap();
        b.allocate(d("2024-02-10"), "sub-1", 10_000, None).unwrap();
        let projects = [
            ProjectLedger {
                rate_bp: a.rate_bp,
                entries: a.entries(),
            },
            ProjectLedger {
                rate_bp: b.rate_bp,
                entries: b.entries(),
            },
        ];
        // required = 30 000 + 60 000 + 15 000 + 15 000 = 120 000; accrued = 105 000;
        // used = 20 000 + 10 000 = 30 000; ratio = 30 000 × 10 000 / 120 000 = 2 500 bp < 6 000.
        // closing = 100 000 + 105 000 − 30 000 = 175 000 < 3 × 120 000 = 360 000.
        let s = enterprise_year_summary(2024, 100_000, &projects, &r).unwrap();
        assert_eq!(
            s,
            EnterpriseYearSummary {
                year: 2024,
                opening_balance_fen: 100_000,
                required_accrual_fen: 120_000,
                accrued_fen: 105_000,
                used_fen: 30_000,
                closing_balance_fen: 175_000,
                use_ratio_bp: Some(2_500),
                under_use: Some(UnderUse {
                    threshold_bp: 6_000,
                    report_due: d("2025-04-30"),
                }),
                paused_months: vec![ym("2024-03")],
                pause_at_next_year_start: false,
            }
        );
        // Opening 300 000 ⇒ closing 375 000 ≥ 360 000 ⇒ pause from January 2025.
        let s = enterprise_year_summary(2024, 300_000, &projects, &r).unwrap();
        assert!(s.pause_at_next_year_start);
        // Exactly 60 % is not under-use: required 30 000 (A Jan 2025 1 000 000 × 3 %),
        // used 18 000 ⇒ 6 000 bp.
        let mut c = building(100_000_000);
        c.report_progress(ym("2025-01"), 1_000_000, d("2025-01-31"), false)
            .unwrap();
        c.record_expenditure(spend("2025-02-01", 18_000, "ppe"), &r)
            .unwrap();
        let one = [ProjectLedger {
            rate_bp: 300,
            entries: c.entries(),
        }];
        let s = enterprise_year_summary(2025, 0, &one, &r).unwrap();
        assert_eq!((s.use_ratio_bp, s.under_use), (Some(6_000), None));
        // 17 999 ⇒ 5 999.67 ⇒ ratio 6 000 bp when rounded, but under-use compares exactly.
        c.reverse(2, d("2025-02-02"), "金额错误").unwrap();
        c.record_expenditure(spend("2025-02-03", 17_999, "ppe"), &r)
            .unwrap();
        let one = [ProjectLedger {
            rate_bp: 300,
            entries: c.entries(),
        }];
        let s = enterprise_year_summary(2025, 0, &one, &r).unwrap();
        assert_eq!(s.use_ratio_bp, Some(6_000));
        assert_eq!(s.under_use.unwrap().report_due, d("2026-04-30"));
        // Nothing required ⇒ no ratio, no flag.
        let s = enterprise_year_summary(2030, 0, &one, &r).unwrap();
        assert_eq!((s.use_ratio_bp, s.under_use), (None, None));
    }

    // --- settlement ------------------------------------------------------------------------

    #[test]
    fn completion_returns_the_surplus_to_the_owner() {
        let r = rules();
        let mut acc = building(10_000_000);
        // 3 000 000 × 3 % = 90 000 accrued; spent 20 000; allocated 10 000 ⇒ balance 60 000.
        acc.report_progress(ym("2024-01"), 3_000_000, d("2024-01-31"), false)
            .unwrap();
        acc.record_owner_payment(d("2024-01-15"), 90_000, None)
            .unwrap();
        acc.record_expenditure(spend("2024-02-01", 20_000, "ppe"), &r)
            .unwrap();
        acc.add_subcontract(Subcontract {
            id: "sub-1".into(),
            share_fen: 10_000,
            start_date: d("2024-01-20"),
        })
        .unwrap();
        acc.allocate(d("2024-02-05"), "sub-1", 10_000, None)
            .unwrap();
        let s = acc.settle(d("2024-12-31")).unwrap();
        assert_eq!(
            (s.balance_fen, s.surplus_fen, s.deficit_fen),
            (60_000, 60_000, 0)
        );
        assert_eq!((s.entry.accrued_fen, s.entry.paid_fen), (-60_000, -60_000));
        let t = acc.totals();
        // Balance 0; owner net paid 90 000 − 60 000 = 30 000 = spent + allocated.
        assert_eq!((t.balance_fen, t.paid_fen), (0, 30_000));
        // The ledger is closed.
        assert_eq!(
            acc.record_owner_payment(d("2025-01-01"), 1, None)
                .unwrap_err(),
            SafetyFundError::Closed
        );
        assert_eq!(
            acc.settle(d("2025-01-01")).unwrap_err(),
            SafetyFundError::Closed
        );

        // Overspent project: accrued 30 000, spent 35 000 ⇒ deficit 5 000, nothing returned.
        let mut over = building(10_000_000);
        over.report_progress(ym("2024-01"), 1_000_000, d("2024-01-31"), false)
            .unwrap();
        over.record_expenditure(spend("2024-02-01", 35_000, "ppe"), &r)
            .unwrap();
        let s = over.settle(d("2024-12-31")).unwrap();
        assert_eq!(
            (s.balance_fen, s.surplus_fen, s.deficit_fen),
            (-5_000, 0, 5_000)
        );
        assert_eq!(s.entry.accrued_fen, 0);
        assert!(s.entry.summary.contains("50.00"));
    }

    // --- cost plan -------------------------------------------------------------------------

    #[test]
    fn smart_site_cost_plan_versus_actual() {
        let r = rules();
        let mut plan = CostPlan::new();
        // 10 cameras × 1 500.00 = 15 000.00 yuan; 12 months × 200.00 = 2 400.00 yuan.
        plan.add_line(PlanLine {
            id: "L1".into(),
            item: "塔吊监控摄像机".into(),
            quantity: 10,
            unit_price_fen: 150_000,
        })
        .unwrap();
        plan.add_line(PlanLine {
            id: "L2".into(),
            item: "平台服务（月）".into(),
            quantity: 12,
            unit_price_fen: 20_000,
        })
        .unwrap();
        assert_eq!(plan.total_fen().unwrap(), 1_740_000);
        assert!(matches!(
            plan.add_line(PlanLine {
                id: "L1".into(),
                item: "dup".into(),
                quantity: 1,
                unit_price_fen: 1
            }),
            Err(SafetyFundError::DuplicatePlanLine(_))
        ));
        let at: DateTime<Utc> = "2024-02-01T08:00:00Z".parse().unwrap();
        plan.approve("usr-owner-rep", at).unwrap();
        assert_eq!(plan.approval.as_ref().unwrap().by, "usr-owner-rep");
        assert_eq!(
            plan.add_line(PlanLine {
                id: "L3".into(),
                item: "x".into(),
                quantity: 1,
                unit_price_fen: 1
            })
            .unwrap_err(),
            SafetyFundError::PlanApproved
        );

        let mut acc = building(1_000_000_000);
        acc.report_progress(ym("2024-01"), 100_000_000, d("2024-01-31"), false)
            .unwrap();
        let mut post = |date: &str, amount: i64, line: &str| {
            let mut e = spend(date, amount, "safety_informatisation");
            e.links.plan_line_id = Some(line.into());
            acc.record_expenditure(e, &r).unwrap().entry.seq
        };
        post("2024-02-10", 1_200_000, "L1");
        post("2024-03-10", 400_000, "L1");
        post("2024-03-11", 20_000, "L2");
        let wrong = post("2024-03-12", 5_000, "L2");
        post("2024-03-13", 3_000, "L9");
        acc.reverse(wrong, d("2024-03-14"), "重复入账").unwrap();
        // L1: 1 200 000 + 400 000 = 1 600 000 vs 1 500 000 ⇒ +100 000.
        // L2: 20 000 + 5 000 − 5 000 = 20 000 vs 240 000 ⇒ −220 000. L9 unplanned 3 000.
        let pva = plan.plan_vs_actual(acc.entries()).unwrap();
        assert_eq!(pva.lines[0].actual_fen, 1_600_000);
        assert_eq!(pva.lines[0].variance_fen, 100_000);
        assert_eq!(pva.lines[1].actual_fen, 20_000);
        assert_eq!(pva.lines[1].variance_fen, -220_000);
        assert_eq!(pva.planned_total_fen, 1_740_000);
        assert_eq!(pva.actual_total_fen, 1_620_000);
        assert_eq!(pva.unplanned_fen, 3_000);
    }

    // --- statement -------------------------------------------------------------------------

    #[test]
    fn amounts_and_ledger_totals_are_bounded_however_many_entries() {
        // The contract value: 10^15 fen opens an account, anything beyond does not.
        assert!(
            FundAccount::open(
                terms("building", MAX_AMOUNT_FEN + 1, "2024-01-05"),
                &rules()
            )
            .is_err()
        );
        assert!(FundAccount::open(terms("building", i64::MAX, "2024-01-05"), &rules()).is_err());
        let mut a = building(MAX_AMOUNT_FEN);
        let refused = |r: Result<&Entry>| {
            matches!(
                r,
                Err(SafetyFundError::InvalidAmount {
                    field: "amount_fen",
                    ..
                })
            )
        };
        for bad in [i64::MAX, MAX_AMOUNT_FEN + 1, i64::MIN, -1, 0] {
            assert!(
                refused(a.record_owner_payment(d("2024-02-01"), bad, None)),
                "{bad}"
            );
        }
        // Sums that would overflow i64 over many entries: every entry that keeps the column
        // within 10^15 is booked, every later one refused, and the totals stay exact.
        let step = MAX_AMOUNT_FEN / 1000;
        for _ in 0..1000 {
            a.record_owner_payment(d("2024-02-01"), step, None).unwrap();
        }
        for amount in [1, step, MAX_AMOUNT_FEN] {
            for _ in 0..10_000 {
                assert!(refused(a.record_owner_payment(
                    d("2024-02-02"),
                    amount,
                    None
                )));
            }
        }
        assert_eq!(a.entries().len(), 1000);
        assert_eq!(a.totals().paid_fen, MAX_AMOUNT_FEN);
        // Spending too, and its refusal appends nothing.
        a.record_expenditure(spend("2024-03-01", MAX_AMOUNT_FEN, "ppe"), &rules())
            .unwrap();
        let e = a
            .record_expenditure(spend("2024-03-02", 1, "ppe"), &rules())
            .unwrap_err();
        assert!(
            matches!(
                e,
                SafetyFundError::InvalidAmount {
                    field: "amount_fen",
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(a.entries().len(), 1001);
        assert_eq!(a.totals().balance_fen, -MAX_AMOUNT_FEN);
        // A reversal brings the column back down, and room for one more.
        a.reverse(1001, d("2024-03-03"), "录错").unwrap();
        a.record_expenditure(spend("2024-03-04", MAX_AMOUNT_FEN, "ppe"), &rules())
            .unwrap();
        assert!(a.ledger.verify().is_ok());
        // Progress up to the contract (10^15), then no variation may lift it beyond 10^15.
        a.report_progress(ym("2024-03"), MAX_AMOUNT_FEN, d("2024-03-31"), false)
            .unwrap();
        let v = |amount_fen: i64| ContractVariation {
            date: d("2024-04-01"),
            amount_fen,
            reference: "BG-1".into(),
        };
        for bad in [1, MAX_AMOUNT_FEN, i64::MAX, i64::MIN] {
            assert!(
                matches!(
                    a.record_variation(v(bad)),
                    Err(SafetyFundError::InvalidAmount { .. })
                ),
                "{bad}"
            );
        }
        assert!(a.variations.is_empty());
    }

    #[test]
    fn plan_lines_and_prepayment_windows_are_bounded() {
        let line = |quantity: i64, unit_price_fen: i64| PlanLine {
            id: format!("L{quantity}-{unit_price_fen}"),
            item: "摄像机".into(),
            quantity,
            unit_price_fen,
        };
        let mut plan = CostPlan::new();
        for (q, p) in [
            (i64::MAX, 2),
            (2, i64::MAX),
            (1_000_000_000_001, 1),
            (1, MAX_AMOUNT_FEN + 1),
        ] {
            assert!(
                matches!(
                    plan.add_line(line(q, p)),
                    Err(SafetyFundError::InvalidAmount { .. })
                ),
                "{q} × {p}"
            );
        }
        // i64 overflow of quantity × price is refused, not wrapped.
        assert!(
            plan.add_line(line(1_000_000_000_000, 1_000_000_000))
                .is_err()
        );
        plan.add_line(line(1, MAX_AMOUNT_FEN)).unwrap();
        // The plan's total is bounded like any amount.
        assert!(plan.add_line(line(1, 1)).is_err());
        assert_eq!(plan.total_fen().unwrap(), MAX_AMOUNT_FEN);

        let terms = |within_days: u32| CivilizedTerms {
            year_planned_fen: BTreeMap::from([(2026, 100)]),
            prepay_rule: CivPrepayRule::Contract {
                min_share_bp: 6000,
                within_days,
            },
        };
        assert!(terms(MAX_PREPAY_DAYS).validate().is_ok());
        for bad in [0, MAX_PREPAY_DAYS + 1, u32::MAX] {
            assert!(
                matches!(
                    terms(bad).validate(),
                    Err(SafetyFundError::InvalidAmount {
                        field: "within_days",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn yuan_formatting() {
        assert_eq!(yuan(123_456), "1234.56");
        assert_eq!(yuan(-5), "-0.05");
        assert_eq!(yuan(0), "0.00");
        assert_eq!(yuan(100), "1.00");
        assert_eq!(yuan(-123_400), "-1234.00");
        assert_eq!(yuan(i64::MIN), "-92233720368547758.08");
    }

    #[test]
    fn statement_rows_carry_the_running_balance() {
        let r = rules();
        let mut acc = building(10_000_000);
        acc.report_progress(ym("2024-01"), 1_234_567, d("2024-01-31"), false)
            .unwrap(); // 1 234 567 × 3 % = 37 037.01 ⇒ 37 037
        acc.record_owner_payment(d("2024-02-01"), 50_000, None)
            .unwrap();
        acc.record_expenditure(spend("2024-02-03", 12_345, "ppe"), &r)
            .unwrap();
        acc.add_subcontract(Subcontract {
            id: "sub-1".into(),
            share_fen: 10_000,
            start_date: d("2024-02-01"),
        })
        .unwrap();
        acc.allocate(d("2024-02-04"), "sub-1", 5_000, None).unwrap();
        let rows = statement_rows(acc.entries());
        assert_eq!(
            STATEMENT_HEADERS,
            ["日期", "摘要", "类别", "计提(元)", "支出(元)", "余额(元)"]
        );
        let cells: Vec<[String; 6]> = rows.iter().map(StatementRow::cells).collect();
        assert_eq!(cells[0][0], "2024-01-31");
        assert!(cells[0][1].starts_with("2024-01 按进度计提"));
        assert_eq!(&cells[0][3..], ["370.37", "0.00", "370.37"]);
        // Owner payment: no balance effect.
        assert_eq!(&cells[1][3..], ["0.00", "0.00", "370.37"]);
        // 37 037 − 12 345 = 24 692.
        assert_eq!(&cells[2][2..], ["ppe", "0.00", "123.45", "246.92"]);
        // Allocation shows under 支出: 24 692 − 5 000 = 19 692.
        assert_eq!(&cells[3][3..], ["0.00", "50.00", "196.92"]);
        assert_eq!(rows.last().unwrap().balance_fen, acc.totals().balance_fen);
    }

    // --- hash chain ------------------------------------------------------------------------

    fn sample_ledger() -> FundAccount {
        let r = rules();
        let mut acc = building(100_000_000);
        acc.report_progress(ym("2024-01"), 1_000_000, d("2024-01-31"), false)
            .unwrap();
        acc.record_owner_payment(d("2024-02-01"), 50_000, Some("回单 \"A\"\n".into()))
            .unwrap();
        acc.record_expenditure(spend("2024-02-03", 12_345, "ppe"), &r)
            .unwrap();
        acc.report_progress(ym("2024-01"), 1_100_000, d("2024-02-05"), false)
            .unwrap();
        acc.reverse(3, d("2024-02-06"), "录入错误").unwrap();
        acc
    }

    #[test]
    fn hash_chain_detects_edits_at_the_edited_entry() {
        let acc = sample_ledger();
        let entries = acc.entries().to_vec();
        assert_eq!(entries.len(), 5);
        assert_eq!(entries[0].prev_hash, GENESIS_HASH);
        for w in entries.windows(2) {
            assert_eq!(w[1].prev_hash, w[0].hash);
        }
        assert!(verify(&entries).is_ok());

        // Editing entry 3's amount: its own hash no longer matches ⇒ broken at seq 3.
        let mut tampered = entries.clone();
        tampered[2].spent_fen = 1;
        let err = verify(&tampered).unwrap_err();
        assert_eq!(err.seq, 3);
        assert_eq!(err.found, entries[2].hash);
        assert_eq!(err.expected, tampered[2].compute_hash());
        // Editing and re-hashing entry 3 ⇒ entry 4's link breaks.
        tampered[2].hash = tampered[2].compute_hash();
        let err = verify(&tampered).unwrap_err();
        assert_eq!(
            (err.seq, err.expected.as_str()),
            (4, tampered[2].hash.as_str())
        );
        // Dropping entry 2 ⇒ the seq gap shows at the next entry.
        let mut dropped = entries.clone();
        dropped.remove(1);
        assert_eq!(verify(&dropped).unwrap_err().seq, 3);
        // A stored ledger with a broken chain is refused on load.
        let json = serde_json::to_string(&tampered).unwrap();
        assert!(serde_json::from_str::<Ledger>(&json).is_err());
        let json = serde_json::to_string(&entries).unwrap();
        assert_eq!(
            serde_json::from_str::<Ledger>(&json).unwrap().entries(),
            &entries[..]
        );
    }

    #[test]
    fn canonical_form_is_serde_json_without_the_hash() {
        for e in sample_ledger().entries() {
            let mut v = serde_json::to_value(e).unwrap();
            v.as_object_mut().unwrap().remove("hash");
            let canonical: serde_json::Value = serde_json::from_str(&e.canonical()).unwrap();
            assert_eq!(canonical, v);
            // Byte-identical too (serde_json keeps field order for structs).
            assert_eq!(
                serde_json::to_string(&v).unwrap().len(),
                e.canonical().len()
            );
        }
    }

    /// A small LCG (Numerical Recipes constants), so the sequence is the same on every run.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }

        fn below(&mut self, n: u64) -> i64 {
            (self.next() % n) as i64
        }
    }

    #[test]
    fn invariant_over_a_long_pseudo_random_sequence() {
        let r = rules();
        let categories: Vec<String> = allowed_categories(Regime::R2022, &r)
            .iter()
            .map(|c| c.name.clone())
            .collect();
        let mut acc = building(10_000_000_000);
        acc.add_subcontract(Subcontract {
            id: "sub-1".into(),
            share_fen: 1_000_000,
            start_date: d("2024-01-01"),
        })
        .unwrap();
        let mut rng = Lcg(20_240_101);
        // Independently kept sums.
        let (mut accrued, mut spent, mut allocated, mut paid) = (0i64, 0i64, 0i64, 0i64);
        let mut month_progress: BTreeMap<YearMonth, i64> = BTreeMap::new();
        let mut day = d("2024-01-01");
        for _ in 0..600 {
            day = day.succ_opt().unwrap();
            let before = acc.entries().len();
            match rng.below(10) {
                0..=2 => {
                    // Report (or correct) one of the last few months.
                    let m = YearMonth::of(day - Days::new(rng.below(90) as u64)).unwrap();
                    let progress = rng.below(5_000_000);
                    let paused = rng.below(8) == 0;
                    let held = acc.month_state(m);
                    acc.report_progress(m, progress, day, paused).unwrap();
                    let paused = if held.entries > 0 {
                        held.paused
                    } else {
                        paused
                    };
                    let want = if paused {
                        0
                    } else {
                        accrual_fen(progress, 300).unwrap()
                    };
                    accrued += want - held.accrued_fen;
                    month_progress.insert(m, progress);
                    assert_eq!(acc.month_state(m).accrued_fen, want);
                }
                3..=5 => {
                    let amount = 1 + rng.below(100_000);
                    let c = &categories[rng.below(categories.len() as u64) as usize];
                    acc.record_expenditure(spend(&day.to_string(), amount, c), &r)
                        .unwrap();
                    spent += amount;
                }
                6 => {
                    let amount = 1 + rng.below(50_000);
                    acc.allocate(day, "sub-1", amount, None).unwrap();
                    allocated += amount;
                }
                7 => {
                    let amount = 1 + rng.below(200_000);
                    acc.record_owner_payment(day, amount, None).unwrap();
                    paid += amount;
                }
                _ => {
                    // Reverse a random reversible, not yet reversed entry.
                    let n = acc.entries().len() as u64;
                    if n == 0 {
                        continue;
                    }
                    let seq = 1 + rng.below(n) as u64;
                    let e = acc.ledger.get(seq).unwrap().clone();
                    if let Ok(rev) = acc.reverse(seq, day, "随机冲销") {
                        assert_eq!(rev.reverses, Some(seq));
                        accrued -= e.accrued_fen;
                        spent -= e.spent_fen;
                        allocated -= e.allocated_fen;
                        paid -= e.paid_fen;
                        if let (Some(m), Some(p)) = (e.month, e.progress_fen) {
                            *month_progress.get_mut(&m).unwrap() -= p;
                        }
                    }
                }
            }
            // Running balance = formula after every step.
            let t = acc.totals();
            assert_eq!(
                (t.accrued_fen, t.spent_fen, t.allocated_fen, t.paid_fen),
                (accrued, spent, allocated, paid)
            );
            assert_eq!(t.balance_fen, accrued - spent - allocated);
            if acc.entries().len() > before {
                let last = acc.entries().last().unwrap();
                assert_eq!(last.seq as usize, acc.entries().len());
            }
        }
        for (m, p) in &month_progress {
            assert_eq!(acc.month_state(*m).progress_fen, *p, "{m}");
        }
        let entries = acc.entries().to_vec();
        assert!(entries.len() > 400, "{}", entries.len());
        assert!(entries.iter().any(|e| e.kind == EntryKind::Correction));
        assert!(entries.iter().any(|e| e.kind == EntryKind::Reversal));
        assert!(entries.iter().any(|e| e.paused));
        assert!(verify(&entries).is_ok());
        let rows = statement_rows(&entries);
        assert_eq!(
            rows.last().unwrap().balance_fen,
            accrued - spent - allocated
        );
        // Editing any single entry's amount is detected at exactly that seq.
        for i in 0..entries.len() {
            let mut t = entries.clone();
            match rng.below(4) {
                0 => t[i].accrued_fen += 1,
                1 => t[i].spent_fen -= 1,
                2 => t[i].allocated_fen += 100,
                _ => t[i].paid_fen += 7,
            }
            assert_eq!(verify(&t).unwrap_err().seq, i as u64 + 1);
        }
    }

    fn civ_exp(date: &str, fen: i64, category: &str, invoice: Option<&str>) -> Expenditure {
        Expenditure {
            date: d(date),
            amount_fen: fen,
            category: category.into(),
            summary: String::new(),
            evidence_ref: "voucher-1".into(),
            links: Links {
                invoice_id: invoice.map(str::to_owned),
                ..Links::default()
            },
        }
    }

    #[test]
    fn civilized_prepayment_per_year() {
        let r = rules();
        // 2026 planned ¥1,000,000.00 = 100 000 000 fen; GB 50500: ≥ 60 % within 28 days of the
        // start 2026-03-10 → due 2026-04-07, required ceil(100 000 000 × 6000 / 10 000)
        // = 60 000 000. 2027 planned 80 000 000 from 2027-01-01 → due 2027-01-29, required
        // 48 000 000.
        let mut acc = CivilizedAccount {
            terms: CivilizedTerms {
                year_planned_fen: BTreeMap::from([(2026, 100_000_000), (2027, 80_000_000)]),
                prepay_rule: CivPrepayRule::Gb50500,
            },
            ledger: Ledger::new(),
        };
        let start = Some(d("2026-03-10"));
        acc.record_payment(d("2026-03-20"), 50_000_000, None)
            .unwrap();
        // Before the due date: no warning stage for this rule.
        assert!(acc.flags(start, d("2026-04-06"), &r).unwrap().is_empty());
        let f = acc.flags(start, d("2026-04-07"), &r).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].code, FEE_CIV_PREPAY);
        assert_eq!(f[0].level, FlagLevel::Breach);
        assert_eq!(f[0].due_date, d("2026-04-07"));
        assert_eq!((f[0].required_fen, f[0].paid_fen), (60_000_000, 50_000_000));
        assert_eq!(f[0].subject.as_deref(), Some("2026"));
        // A late payment does not cure the breach.
        acc.record_payment(d("2026-04-10"), 10_000_000, None)
            .unwrap();
        assert_eq!(acc.flags(start, d("2026-05-01"), &r).unwrap().len(), 1);
        // 2027: 2026 payments do not count; 48 000 000 paid on 2027-01-15 meets the rule.
        let f = acc.flags(start, d("2027-01-29"), &r).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!((f[1].required_fen, f[1].paid_fen), (48_000_000, 0));
        acc.record_payment(d("2027-01-15"), 48_000_000, None)
            .unwrap();
        let f = acc.flags(start, d("2027-02-01"), &r).unwrap();
        assert_eq!(f.len(), 1, "{f:?}");
        // Contract rule instead: 50 % within 14 days of 2026-03-10 → due 2026-03-24,
        // required 50 000 000, paid 50 000 000 on 2026-03-20: met.
        acc.terms.prepay_rule = CivPrepayRule::Contract {
            min_share_bp: 5000,
            within_days: 14,
        };
        assert!(acc.flags(start, d("2026-12-31"), &r).unwrap().is_empty());
        // Without a start date there is no clock.
        assert!(acc.flags(None, d("2027-12-31"), &r).unwrap().is_empty());
    }

    #[test]
    fn civilized_ledger_balance_categories_and_invoices() {
        let r = rules();
        let mut acc = CivilizedAccount::default();
        acc.record_payment(d("2026-03-20"), 100_000, None).unwrap();
        // A safety-production category is not a civilized one.
        assert!(matches!(
            acc.record_expenditure(civ_exp("2026-03-21", 100, "ppe", None), &r),
            Err(SafetyFundError::CivilizedDiversion { .. })
        ));
        let out = acc
            .record_expenditure(
                civ_exp("2026-03-22", 60_000, "smart_site", Some("inv-1")),
                &r,
            )
            .unwrap();
        // balance 100 000 − 60 000 = 40 000 fen.
        assert_eq!((out.balance_fen, out.overspent), (40_000, false));
        assert!(matches!(
            acc.record_expenditure(
                civ_exp("2026-03-23", 60_000, "smart_site", Some("inv-1")),
                &r
            ),
            Err(SafetyFundError::InvoiceAlreadyPosted { seq: 2, .. })
        ));
        acc.reverse(2, d("2026-03-24"), "wrong project").unwrap();
        // After the reversal the invoice may be posted again; 100 000 − 60 000 − 60 000 + 60 000.
        let out = acc
            .record_expenditure(
                civ_exp("2026-03-25", 60_000, "smart_site", Some("inv-1")),
                &r,
            )
            .unwrap();
        assert_eq!(out.balance_fen, 40_000);
        let over = acc
            .record_expenditure(
                civ_exp("2026-03-26", 50_000, "safety_construction", None),
                &r,
            )
            .unwrap();
        // 40 000 − 50 000 = −10 000: allowed, flagged.
        assert_eq!((over.balance_fen, over.overspent), (-10_000, true));
        let t = acc.ledger.totals();
        assert_eq!(t.balance_fen, t.accrued_fen - t.spent_fen - t.allocated_fen);
        assert_eq!(t.paid_fen, 100_000);
        assert!(acc.ledger.verify().is_ok());
        let rows = statement_rows(acc.entries());
        assert_eq!(rows.last().unwrap().balance_fen, -10_000);
    }

    #[test]
    fn invoice_categories_are_validated_against_the_lists() {
        let mut r = rules();
        assert_eq!(
            r.invoice_category.get(Regime::R2022),
            "safety_informatisation"
        );
        assert!(check_category(Regime::R2012, r.invoice_category.get(Regime::R2012), &r).is_ok());
        r.invoice_category.r2012 = "safety_informatisation".into();
        assert!(r.validate().is_err(), "not in the 2012 list");
        let mut r = rules();
        r.civilized_invoice_category = "ppe".into();
        assert!(r.validate().is_err());
    }
}

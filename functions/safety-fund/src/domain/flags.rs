//! Payment-share flags (第十八条, GB 50500).

use super::*;

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

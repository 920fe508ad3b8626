//! Enterprise year summary (第五十条, 第五十一条).

use super::*;

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
        let ratio = round_half_up(
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

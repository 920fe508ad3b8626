//! Regime, rate, categories.

use super::*;

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

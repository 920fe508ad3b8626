//! Configuration.

use super::*;

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

pub(super) fn check_bp(what: &str, bp: i64, allow_zero: bool) -> Result<()> {
    let lo = if allow_zero { 0 } else { 1 };
    if (lo..=BP_PER_WHOLE).contains(&bp) {
        Ok(())
    } else {
        Err(config_err(format!(
            "{what}: {bp} bp is outside {lo}..={BP_PER_WHOLE}"
        )))
    }
}

pub(super) fn is_snake(s: &str) -> bool {
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

//! 安全文明施工费 (safety and civilized construction measures fee).

use super::*;

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

//! Project fund account.

use super::*;

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
/// notes and voids, see `smartsite_shared::handoff`).
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

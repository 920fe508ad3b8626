//! Errors.

use super::*;

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

pub(super) type Result<T, E = SafetyFundError> = std::result::Result<T, E>;

pub(super) fn config_err(msg: impl Into<String>) -> SafetyFundError {
    SafetyFundError::Config(msg.into())
}

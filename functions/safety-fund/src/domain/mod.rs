//! Safety-fund ledger (DOMAIN.md §1, §8.4, §11.1): the pure rules of the enterprise safety
//! production fee (企业安全生产费用, 财资〔2022〕136号 / 财企〔2012〕16号) and the prepayment check of the
//! safety and civilized construction measures fee (安全文明施工费, GB 50500-2013).
//!
//! Nothing here does I/O. Every rule value (rates, cut-off date, shares, windows, category lists,
//! pause multiple, under-use threshold) comes from the versioned [`FeeRules`] configuration
//! (`functions/safety-fund/config/safety-fund.json`); [`FeeRulesSet::in_force`] picks the version in force at a date.
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

/// The default, national rules shipped with the code (`functions/safety-fund/config/safety-fund.json`).
pub const DEFAULT_RULES_JSON: &str = include_str!("../../config/safety-fund.json");

/// Basis points in one whole (100 % = 10 000 bp).
pub const BP_PER_WHOLE: i64 = 10_000;

/// Largest single amount (fen) accepted from input, and the bound of a ledger's column totals:
/// 10¹⁵ fen = 10 trillion yuan ([`smartsite_shared::domain::bounds`]).
pub use smartsite_shared::domain::bounds::MAX_AMOUNT_FEN;
use smartsite_shared::money::round_half_up;
pub use smartsite_shared::money::yuan;

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

mod account;
mod calendar;
mod civilized;
mod config;
mod cost_plan;
mod enterprise_year;
mod error;
mod flags;
mod ledger;
mod money;
mod regime;
mod statement;

pub use account::*;
pub use calendar::*;
pub use civilized::*;
pub use config::*;
pub use cost_plan::*;
pub use enterprise_year::*;
pub use error::*;
pub use flags::*;
pub use ledger::*;
pub use money::*;
pub use regime::*;
pub use statement::*;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

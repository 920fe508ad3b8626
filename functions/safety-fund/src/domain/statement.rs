//! Statement.

use super::*;

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

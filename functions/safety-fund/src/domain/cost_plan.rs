//! Smart-site cost plan (智慧工地费用计划).

use super::*;

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
        if !(1..=smartsite_shared::domain::bounds::MAX_COUNT).contains(&line.quantity) {
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

//! Attendance from gate passes (API.md, Workforce: attendance and headcount; DOMAIN.md §12.1).
//!
//! Only allowed passes count. A day is the Asia/Shanghai calendar day of the pass's own `ts`
//! (a gate that was offline sends late events stamped when the person passed), and passes are
//! ordered by `ts`, never by arrival.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::WorkerId;
use super::rules::ValidDayPreset;

/// Which way a person passed the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn parse(s: &str) -> Option<Direction> {
        match s {
            "in" => Some(Direction::In),
            "out" => Some(Direction::Out),
            _ => None,
        }
    }
}

/// The Asia/Shanghai day a pass at `ts` belongs to.
pub fn day_of(ts: DateTime<Utc>) -> NaiveDate {
    smartsite_shared::calendar::shanghai_date(ts)
}

/// An allowed pass of the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    pub worker_id: WorkerId,
    pub direction: Direction,
    pub ts: DateTime<Utc>,
}

/// One person's attendance on one day.
#[derive(Debug, Clone, PartialEq)]
pub struct DayAttendance {
    pub worker_id: WorkerId,
    /// The earliest pass `in`.
    pub first_in: Option<DateTime<Utc>>,
    /// The latest pass `out`.
    pub last_out: Option<DateTime<Utc>>,
    /// From `first_in` to `last_out` in hours (two decimals); 0 without both, or when the
    /// last way out precedes the first way in.
    pub hours: f64,
    /// Allowed passes, either way.
    pub punches: u32,
    /// Whether the day counts under the region's valid-day rule.
    pub valid: bool,
    /// Whether the last pass of the day was `in`.
    pub inside: bool,
}

/// Each person's attendance from the allowed passes of one day (any order), in the order of
/// their first pass, under the region's valid-day rule.
pub fn attendance(passes: &[Pass], rule: &ValidDayPreset) -> Vec<DayAttendance> {
    let mut sorted: Vec<&Pass> = passes.iter().collect();
    sorted.sort_by_key(|p| p.ts);
    let mut order: Vec<WorkerId> = Vec::new();
    let mut per: BTreeMap<WorkerId, Vec<&Pass>> = BTreeMap::new();
    for p in sorted {
        let e = per.entry(p.worker_id.clone()).or_default();
        if e.is_empty() {
            order.push(p.worker_id.clone());
        }
        e.push(p);
    }
    order
        .into_iter()
        .filter_map(|w| {
            let ps = per.remove(&w)?;
            let first_in = ps
                .iter()
                .find(|p| p.direction == Direction::In)
                .map(|p| p.ts);
            let last_out = ps
                .iter()
                .rev()
                .find(|p| p.direction == Direction::Out)
                .map(|p| p.ts);
            let hours = match (first_in, last_out) {
                (Some(a), Some(b)) if b > a => {
                    ((b - a).num_seconds() as f64 / 36.0).round() / 100.0
                }
                _ => 0.0,
            };
            let stamps: Vec<DateTime<Utc>> = ps.iter().map(|p| p.ts).collect();
            Some(DayAttendance {
                worker_id: w,
                first_in,
                last_out,
                hours,
                punches: u32::try_from(ps.len()).unwrap_or(u32::MAX),
                valid: rule.is_valid(&stamps),
                inside: ps.last().is_some_and(|p| p.direction == Direction::In),
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::domain::rules::WorkforceRulesSet;
    use smartsite_shared::domain::tenancy::RegionCode;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn w(id: &str) -> WorkerId {
        WorkerId::parse("w", id).unwrap()
    }

    fn pass(id: &str, d: Direction, ts: &str) -> Pass {
        Pass {
            worker_id: w(id),
            direction: d,
            ts: t(ts),
        }
    }

    fn rule(region: &str) -> ValidDayPreset {
        WorkforceRulesSet::default_rules()
            .unwrap()
            .for_region(
                &RegionCode::parse("r", region).unwrap(),
                NaiveDate::from_ymd_opt(2026, 6, 15).unwrap(),
            )
            .unwrap()
            .valid_day
    }

    #[test]
    fn the_day_turns_at_shanghai_midnight() {
        // 15:59:59 UTC is 23:59:59 in Shanghai; a second later is the next day there.
        assert_eq!(
            day_of(t("2026-06-15T15:59:59Z")),
            NaiveDate::from_ymd_opt(2026, 6, 15).unwrap()
        );
        assert_eq!(
            day_of(t("2026-06-15T16:00:00Z")),
            NaiveDate::from_ymd_opt(2026, 6, 16).unwrap()
        );
        // Shanghai's early morning is still the previous UTC day.
        assert_eq!(
            day_of(t("2026-06-14T23:30:00Z")),
            NaiveDate::from_ymd_opt(2026, 6, 15).unwrap()
        );
    }

    #[test]
    fn passes_count_in_ts_order_whatever_the_arrival() {
        use Direction::{In, Out};
        // Arrival order: the out first (a gate that was offline sent its in late).
        let passes = [
            pass("wkr-a", Out, "2026-06-15T09:30:00Z"),
            pass("wkr-b", In, "2026-06-15T01:00:00Z"),
            pass("wkr-a", In, "2026-06-15T00:30:00Z"),
            pass("wkr-a", Out, "2026-06-15T04:00:00Z"),
            pass("wkr-a", In, "2026-06-15T05:00:00Z"),
        ];
        let a = attendance(&passes, &rule("110101"));
        assert_eq!(
            a.iter().map(|d| d.worker_id.as_str()).collect::<Vec<_>>(),
            ["wkr-a", "wkr-b"]
        );
        assert_eq!(a[0].first_in, Some(t("2026-06-15T00:30:00Z")));
        assert_eq!(a[0].last_out, Some(t("2026-06-15T09:30:00Z")));
        assert_eq!(a[0].hours, 9.0);
        assert_eq!(a[0].punches, 4);
        assert!(!a[0].inside);
        assert!(a[1].inside);
        assert_eq!((a[1].hours, a[1].last_out), (0.0, None));
        // The national rule: one punch makes a valid day.
        assert!(a[1].valid);
    }

    #[test]
    fn jilin_needs_two_punches_four_hours_apart() {
        use Direction::{In, Out};
        let jilin = rule("220102");
        let day = |out: &str| {
            attendance(
                &[
                    pass("wkr-a", In, "2026-06-15T00:00:00Z"),
                    pass("wkr-a", Out, out),
                ],
                &jilin,
            )
            .remove(0)
        };
        let exactly = day("2026-06-15T04:00:00Z");
        assert!(exactly.valid);
        assert_eq!(exactly.hours, 4.0);
        let short = day("2026-06-15T03:59:00Z");
        assert!(!short.valid);
        assert_eq!(short.hours, 3.98);
        let one = attendance(&[pass("wkr-a", In, "2026-06-15T00:00:00Z")], &jilin);
        assert!(!one[0].valid);
        // The same two punches are a valid day where no region rule applies.
        assert!(
            attendance(
                &[
                    pass("wkr-a", In, "2026-06-15T00:00:00Z"),
                    pass("wkr-a", Out, "2026-06-15T00:01:00Z")
                ],
                &rule("110101")
            )[0]
            .valid
        );
    }
}

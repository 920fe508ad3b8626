//! Billing (issue 5; METERING.md; DOMAIN.md §8.2; API.md "Billing"): the pure rating rules.
//!
//! Service packages with price lines, calendar-month periods in Asia/Shanghai, the subscription
//! timeline inside a period (start, end, stop-work suspensions 停工, package changes), usage
//! aggregation (an order-independent fold of usage events) and rating into invoice lines in
//! integer fen. No I/O: persistence, HTTP and idempotent ingest live elsewhere.
//!
//! # Conventions
//!
//! - Money is integer fen (分). Every invoice line is rounded once, half-up (halves away from zero)
//!   on the exact fraction; totals are sums of rounded lines.
//! - A period is a calendar month in Asia/Shanghai (fixed UTC+8, no daylight saving). The period
//!   of an event is the Shanghai-local month of its timestamp. Subscription dates (start, end,
//!   suspensions, package changes) are Shanghai-local calendar dates; all ranges are inclusive.
//! - Invoice quantities are integer **milli-units** (`quantity_milli`, 1 unit = 1000) of the
//!   line's unit: months for `project_month`, devices for `device_month`, device-days for
//!   `device_day`, thousands of messages for `messages_overage` (so 1 message = 1 milli-unit), and
//!   1000 for a one-off. A prorated month's quantity is rounded half-up to the milli-unit and is
//!   informational: the amount is computed from the exact fraction, never from quantity × price.
//! - Lines with a zero quantity are not emitted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::bounds::{MAX_AMOUNT_FEN, MAX_COUNT, MAX_EVENT_QUANTITY};
use super::tenancy::FieldError;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// A rejected input, naming the offending field (for example `prices[1].tiers[0].up_to`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct BillingError {
    pub field: String,
    pub message: String,
}

impl BillingError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        BillingError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The amount of `field` left the bounds every amount keeps (±10^15 fen).
    fn out_of_bounds(field: impl Into<String>) -> Self {
        BillingError::new(
            field,
            "the amount would exceed 10^15 fen (10 trillion yuan); nothing was billed",
        )
    }

    /// The same error under an enclosing field, e.g. `changes[0].package` + `prices[1]`.
    fn within(self, prefix: &str) -> Self {
        BillingError {
            field: format!("{prefix}.{}", self.field),
            message: self.message,
        }
    }
}

impl From<FieldError> for BillingError {
    fn from(e: FieldError) -> Self {
        BillingError::new(e.field, e.message)
    }
}

// ---------------------------------------------------------------------------------------------
// Packages
// ---------------------------------------------------------------------------------------------

/// The three ways an integrator sells (Jilin guidance): 总体解决方案, 单纯技术服务, 租赁服务.
/// The model classifies a package; it does not restrict which price units it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    FullSolution,
    TechService,
    Leasing,
}

/// What a price line charges for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Unit {
    /// A flat fee per project per month, prorated by day.
    #[serde(rename = "project_month")]
    ProjectMonth,
    /// Per active device (any message or active flag in the period) per month.
    #[serde(rename = "device_month")]
    DeviceMonth,
    /// Per bound device per Shanghai calendar day (the leasing clock).
    #[serde(rename = "device_day")]
    DeviceDay,
    /// Once per subscription (installation, hardware), in the period of its start date.
    #[serde(rename = "one_off")]
    OneOff,
    /// Per 1,000 messages beyond `included` in the period.
    #[serde(rename = "message_overage_per_1k")]
    MessageOveragePer1k,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::ProjectMonth => "project_month",
            Unit::DeviceMonth => "device_month",
            Unit::DeviceDay => "device_day",
            Unit::OneOff => "one_off",
            Unit::MessageOveragePer1k => "message_overage_per_1k",
        }
    }

    /// Whether the unit counts devices (and so may carry a device `category`).
    pub fn is_device(self) -> bool {
        matches!(self, Unit::DeviceMonth | Unit::DeviceDay)
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One band of a graduated price: the units above the previous band's `up_to` and up to and
/// including this `up_to` cost `price_fen` each. Only the last band is open-ended (`up_to` absent).
/// For `message_overage_per_1k` the bands count overage messages and `price_fen` is per 1,000.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up_to: Option<i64>,
    pub price_fen: i64,
}

/// A price line of a package.
///
/// - `category` (device units only) restricts the line to devices of that category; a device
///   line without a category prices every device whose category has no line of its own.
/// - `included` (messages only) is the number of messages in the period that cost nothing.
/// - `tiers` (device units and messages) replace `price_fen`, which must then be 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceLine {
    pub unit: Unit,
    #[serde(default)]
    pub price_fen: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub included: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiers: Option<Vec<Tier>>,
}

impl PriceLine {
    /// A flat line without category, inclusion or tiers.
    pub fn flat(unit: Unit, price_fen: i64) -> Self {
        PriceLine {
            unit,
            price_fen,
            category: None,
            included: None,
            tiers: None,
        }
    }
}

/// What a stop-work suspension (停工) pauses. Both default to `true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PausePolicy {
    /// Suspended days are not charged for `project_month`.
    pub project_month: bool,
    /// Suspended days are not counted as `device_day`s (the leasing clock stops).
    pub leasing_clock: bool,
}

impl Default for PausePolicy {
    fn default() -> Self {
        PausePolicy {
            project_month: true,
            leasing_clock: true,
        }
    }
}

/// A service package, one immutable version of it (a subscription keeps the version it bought).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    pub id: String,
    pub version: u32,
    pub name: String,
    pub model: Model,
    pub prices: Vec<PriceLine>,
    #[serde(default)]
    pub pause_on_suspend: PausePolicy,
}

impl Package {
    /// Checks the package; the error names the first offending field.
    pub fn validate(&self) -> Result<(), BillingError> {
        if self.id.trim().is_empty() {
            return Err(BillingError::new("id", "must not be empty"));
        }
        if self.version == 0 {
            return Err(BillingError::new("version", "must be at least 1"));
        }
        if self.name.trim().is_empty() {
            return Err(BillingError::new("name", "must not be empty"));
        }
        if self.prices.is_empty() {
            return Err(BillingError::new(
                "prices",
                "at least one price line is required",
            ));
        }
        let mut seen: BTreeMap<(Unit, Option<&str>), usize> = BTreeMap::new();
        for (i, line) in self.prices.iter().enumerate() {
            validate_line(i, line)?;
            if line.unit != Unit::OneOff {
                let key = (line.unit, line.category.as_deref());
                if let Some(first) = seen.insert(key, i) {
                    return Err(BillingError::new(
                        format!("prices[{i}]"),
                        format!(
                            "duplicate price line for {} (already in prices[{first}])",
                            item_base(line.unit, line.category.as_deref())
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The checks of a package being created (on top of [`Package::validate`], which every
    /// rating repeats on stored packages): the name is single-line text
    /// ([`super::text::line`]) and every price, tier bound and inclusion within the bounds
    /// ([`super::bounds`]).
    pub fn validate_new(&self) -> Result<(), BillingError> {
        super::text::line("name", &self.name, 200)?;
        self.validate()?;
        for (i, line) in self.prices.iter().enumerate() {
            let f = |name: &str| format!("prices[{i}].{name}");
            super::bounds::amount(&f("price_fen"), line.price_fen)?;
            if let Some(n) = line.included {
                super::bounds::count(&f("included"), n, MAX_COUNT)?;
            }
            for (j, tier) in line.tiers.iter().flatten().enumerate() {
                let tf = |name: &str| format!("prices[{i}].tiers[{j}].{name}");
                super::bounds::amount(&tf("price_fen"), tier.price_fen)?;
                if let Some(u) = tier.up_to {
                    super::bounds::count(&tf("up_to"), u, MAX_COUNT)?;
                }
            }
        }
        Ok(())
    }

    /// The monthly `project_month` fee, if the package has one.
    pub fn project_month_fee(&self) -> Option<i64> {
        self.line(Unit::ProjectMonth).map(|l| l.price_fen)
    }

    fn line(&self, unit: Unit) -> Option<&PriceLine> {
        self.prices.iter().find(|l| l.unit == unit)
    }

    /// The line of `unit` that prices a device of `category`: the line of that category, else
    /// the line without a category.
    fn device_line(&self, unit: Unit, category: Option<&str>) -> Option<&PriceLine> {
        let exact = category.and_then(|c| {
            self.prices
                .iter()
                .find(|l| l.unit == unit && l.category.as_deref() == Some(c))
        });
        exact.or_else(|| {
            self.prices
                .iter()
                .find(|l| l.unit == unit && l.category.is_none())
        })
    }
}

fn validate_line(i: usize, line: &PriceLine) -> Result<(), BillingError> {
    let f = |name: &str| format!("prices[{i}].{name}");
    if line.price_fen < 0 {
        return Err(BillingError::new(f("price_fen"), "must not be negative"));
    }
    if let Some(c) = &line.category {
        if !line.unit.is_device() {
            return Err(BillingError::new(
                f("category"),
                format!(
                    "only allowed with device_month or device_day, not {}",
                    line.unit
                ),
            ));
        }
        if !valid_category(c) {
            return Err(BillingError::new(
                f("category"),
                "must be 1 to 64 of lower-case letters, digits and _",
            ));
        }
    }
    if let Some(n) = line.included {
        if line.unit != Unit::MessageOveragePer1k {
            return Err(BillingError::new(
                f("included"),
                format!(
                    "only allowed with message_overage_per_1k, not {}",
                    line.unit
                ),
            ));
        }
        if n < 0 {
            return Err(BillingError::new(f("included"), "must not be negative"));
        }
    }
    if let Some(tiers) = &line.tiers {
        if !(line.unit.is_device() || line.unit == Unit::MessageOveragePer1k) {
            return Err(BillingError::new(
                f("tiers"),
                format!(
                    "only allowed with device_month, device_day or message_overage_per_1k, not {}",
                    line.unit
                ),
            ));
        }
        if tiers.is_empty() {
            return Err(BillingError::new(
                f("tiers"),
                "must not be empty when given",
            ));
        }
        if line.price_fen != 0 {
            return Err(BillingError::new(
                f("price_fen"),
                "must be 0 when tiers are given (the tiers set the price)",
            ));
        }
        let mut prev = 0i64;
        for (j, tier) in tiers.iter().enumerate() {
            let tf = |name: &str| format!("prices[{i}].tiers[{j}].{name}");
            if tier.price_fen < 0 {
                return Err(BillingError::new(tf("price_fen"), "must not be negative"));
            }
            let last = j + 1 == tiers.len();
            match (tier.up_to, last) {
                (Some(_), true) => {
                    return Err(BillingError::new(
                        tf("up_to"),
                        "the last tier must be open-ended (no up_to)",
                    ));
                }
                (None, false) => {
                    return Err(BillingError::new(
                        tf("up_to"),
                        "only the last tier may be open-ended",
                    ));
                }
                (Some(up_to), false) => {
                    if up_to <= prev {
                        return Err(BillingError::new(
                            tf("up_to"),
                            format!(
                                "tiers must be sorted by up_to without overlap: {up_to} must exceed {prev}"
                            ),
                        ));
                    }
                    prev = up_to;
                }
                (None, true) => {}
            }
        }
    }
    Ok(())
}

fn valid_category(c: &str) -> bool {
    (1..=64).contains(&c.len())
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// How `units` split over graduated tiers: `(tier index, units in that band)` for every band
/// holding at least one unit, in tier order. Non-positive `units` give nothing. Tiers are assumed
/// valid (see [`Package::validate`]).
pub fn graduate(tiers: &[Tier], units: i64) -> Vec<(usize, i64)> {
    let mut out = Vec::new();
    let mut lower = 0i64;
    for (j, tier) in tiers.iter().enumerate() {
        if units <= lower {
            break;
        }
        let upper = tier.up_to.map_or(units, |u| u.min(units));
        if upper > lower {
            out.push((j, upper - lower));
        }
        lower = tier.up_to.unwrap_or(i64::MAX);
    }
    out
}

/// Whether a package change is applied at once (upgrade) or from the next period (downgrade).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Upgrade,
    Downgrade,
}

/// Classifies a change by the daily value of the `project_month` fee (METERING.md #6): strictly
/// more per day is an upgrade, anything else (less, equal, or neither package has a project fee)
/// is a downgrade. Both daily values are taken in the month of the change, so they share the
/// divisor and the comparison reduces to the monthly fees.
pub fn classify_change(old: &Package, new: &Package) -> ChangeKind {
    if new.project_month_fee().unwrap_or(0) > old.project_month_fee().unwrap_or(0) {
        ChangeKind::Upgrade
    } else {
        ChangeKind::Downgrade
    }
}

// ---------------------------------------------------------------------------------------------
// Periods
// ---------------------------------------------------------------------------------------------

/// Asia/Shanghai is UTC+8 all year.
pub const SHANGHAI_OFFSET_SECS: i32 = 8 * 3600;
const OFFSET_MS: i64 = SHANGHAI_OFFSET_SECS as i64 * 1000;
const DAY_MS: i64 = 86_400_000;

/// The Shanghai-local calendar date of an instant.
pub fn shanghai_date(ts: DateTime<Utc>) -> NaiveDate {
    let day = (ts.timestamp_millis() + OFFSET_MS).div_euclid(DAY_MS);
    let (y, m, d) = civil_from_days(day);
    date(y, m, d)
}

/// A billing period: a calendar month in Asia/Shanghai, `YYYY-MM` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Period {
    year: i32,
    month: u32,
}

impl Period {
    /// A period of year 1970..=9999 and month 1..=12.
    pub fn new(year: i32, month: u32) -> Result<Period, BillingError> {
        if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) {
            return Err(BillingError::new(
                "period",
                "must be a month YYYY-MM of year 1970..=9999",
            ));
        }
        Ok(Period { year, month })
    }

    /// Parses `YYYY-MM` (exactly four and two digits).
    pub fn parse(s: &str) -> Result<Period, BillingError> {
        let bad = || BillingError::new("period", format!("expected YYYY-MM, got {s:?}"));
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        if b.len() != 7 || b[4] != b'-' || !digits(0..4) || !digits(5..7) {
            return Err(bad());
        }
        let year = s[0..4].parse::<i32>().map_err(|_| bad())?;
        let month = s[5..7].parse::<u32>().map_err(|_| bad())?;
        Period::new(year, month)
    }

    /// The period holding an instant (its Shanghai-local month).
    pub fn containing(ts: DateTime<Utc>) -> Period {
        Period::of_date(shanghai_date(ts))
    }

    /// The period holding a Shanghai-local date.
    pub fn of_date(d: NaiveDate) -> Period {
        Period {
            year: d.year(),
            month: d.month(),
        }
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> u32 {
        self.month
    }

    pub fn next(self) -> Period {
        if self.month == 12 {
            Period {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Period {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    pub fn days_in_month(self) -> u32 {
        match self.month {
            2 if is_leap(self.year) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    pub fn first_day(self) -> NaiveDate {
        date(i64::from(self.year), self.month, 1)
    }

    pub fn last_day(self) -> NaiveDate {
        date(i64::from(self.year), self.month, self.days_in_month())
    }

    pub fn contains_date(self, d: NaiveDate) -> bool {
        d.year() == self.year && d.month() == self.month
    }

    /// The first instant of the period (Shanghai midnight of day 1), inclusive.
    pub fn start(self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.start_ms()).unwrap_or_default()
    }

    /// The first instant after the period (the next period's start), exclusive.
    pub fn end(self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.end_ms()).unwrap_or_default()
    }

    fn start_ms(self) -> i64 {
        days_from_civil(i64::from(self.year), self.month, 1) * DAY_MS - OFFSET_MS
    }

    fn end_ms(self) -> i64 {
        self.start_ms() + i64::from(self.days_in_month()) * DAY_MS
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Period {
    type Err = BillingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Period::parse(s)
    }
}

impl Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Period::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

// Days since 1970-01-01 of a proleptic Gregorian date, and back (H. Hinnant's algorithms).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

// A calendar date known to exist (all callers pass valid components); chrono's own range is
// ±262,000 years, so the fallback is unreachable for periods and instants we handle.
fn date(y: i64, m: u32, d: u32) -> NaiveDate {
    i32::try_from(y)
        .ok()
        .and_then(|y| NaiveDate::from_ymd_opt(y, m, d))
        .unwrap_or(NaiveDate::MIN)
}

// ---------------------------------------------------------------------------------------------
// Subscription timeline
// ---------------------------------------------------------------------------------------------

/// A stop-work suspension (停工): the days `from` through `to` (inclusive, Shanghai dates) are
/// paused; `to` absent means still suspended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suspension {
    pub from: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<NaiveDate>,
}

/// A change of package requested on date `on`. An upgrade (see [`classify_change`]) applies
/// from `on`; a downgrade applies from the first day of the next period. A later request
/// replaces a pending (not yet effective) one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageChange {
    pub on: NaiveDate,
    pub package: Package,
}

/// What happened to a subscription, in Shanghai-local dates (all inclusive): billed from
/// `start` through `end` (absent: open-ended), minus suspensions where the package's pause policy
/// says so, under the package bought and then the changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeline {
    pub start: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suspensions: Vec<Suspension>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<PackageChange>,
}

/// One entry of the package schedule: `package` is in force from `from` until the next entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduledPackage<'a> {
    pub from: NaiveDate,
    pub package: &'a Package,
    /// `None` for the package bought at the start.
    pub via: Option<ChangeKind>,
}

impl Timeline {
    /// An open-ended subscription starting on `start`.
    pub fn starting(start: NaiveDate) -> Self {
        Timeline {
            start,
            end: None,
            suspensions: Vec::new(),
            changes: Vec::new(),
        }
    }

    /// Checks the dates and the packages changed to.
    pub fn validate(&self) -> Result<(), BillingError> {
        if let Some(end) = self.end
            && end < self.start
        {
            return Err(BillingError::new("end", "must not be before start"));
        }
        for (i, s) in self.suspensions.iter().enumerate() {
            if let Some(to) = s.to
                && to < s.from
            {
                return Err(BillingError::new(
                    format!("suspensions[{i}].to"),
                    "must not be before from",
                ));
            }
        }
        for (i, c) in self.changes.iter().enumerate() {
            if c.on < self.start || self.end.is_some_and(|end| c.on > end) {
                return Err(BillingError::new(
                    format!("changes[{i}].on"),
                    "must lie within the subscription (start..=end)",
                ));
            }
            c.package
                .validate()
                .map_err(|e| e.within(&format!("changes[{i}].package")))?;
        }
        Ok(())
    }

    /// Which package is in force when: the package bought from `start`, then the changes in date
    /// order (requests of the same date in their given order), upgrades from their date and
    /// downgrades from the next period start. The entries' `from` dates never decrease.
    pub fn schedule<'a>(&'a self, initial: &'a Package) -> Vec<ScheduledPackage<'a>> {
        let mut changes: Vec<&PackageChange> = self.changes.iter().collect();
        changes.sort_by_key(|c| c.on); // stable: same-day requests keep their order
        let mut out = vec![ScheduledPackage {
            from: self.start,
            package: initial,
            via: None,
        }];
        let mut pending: Option<ScheduledPackage<'a>> = None;
        for c in changes {
            if let Some(p) = pending.take_if(|p| p.from <= c.on) {
                out.push(p);
            }
            let current = out.last().map_or(initial, |e| e.package);
            match classify_change(current, &c.package) {
                ChangeKind::Upgrade => {
                    pending = None;
                    out.push(ScheduledPackage {
                        from: c.on,
                        package: &c.package,
                        via: Some(ChangeKind::Upgrade),
                    });
                }
                ChangeKind::Downgrade => {
                    pending = Some(ScheduledPackage {
                        from: Period::of_date(c.on).next().first_day(),
                        package: &c.package,
                        via: Some(ChangeKind::Downgrade),
                    });
                }
            }
        }
        out.extend(pending);
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Usage events and aggregates
// ---------------------------------------------------------------------------------------------

/// What a usage event measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// `quantity` messages (≥ 0), of a device if `device_id` is given (COUNT and SUM).
    Messages,
    /// The device was active (UNIQUE COUNT of devices); `quantity` is ignored.
    DeviceActive,
    /// The device was bound to the subscription's project at `ts`; `quantity` is ignored.
    DeviceBound,
    /// The device was unbound at `ts`; `quantity` is ignored.
    DeviceUnbound,
}

/// A usage event. `id` is the idempotency key; deduplication is the store's job, not the
/// aggregator's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageEvent {
    pub id: String,
    pub subscription_id: String,
    pub metric: Metric,
    #[serde(default)]
    pub quantity: i64,
    pub ts: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

impl UsageEvent {
    /// What the fold requires: a subscription, a non-negative message count, and a device for
    /// the device metrics.
    pub fn check(&self) -> Result<(), BillingError> {
        if self.subscription_id.is_empty() {
            return Err(BillingError::new("subscription_id", "must not be empty"));
        }
        if self.metric == Metric::Messages && self.quantity < 0 {
            return Err(BillingError::new("quantity", "must not be negative"));
        }
        if self.metric == Metric::Messages && self.quantity > MAX_EVENT_QUANTITY {
            return Err(BillingError::new(
                "quantity",
                format!("at most {MAX_EVENT_QUANTITY} messages per event"),
            ));
        }
        match self.device_id.as_deref() {
            Some("") => Err(BillingError::new("device_id", "must not be empty")),
            None if self.metric != Metric::Messages => Err(BillingError::new(
                "device_id",
                format!("required for metric {:?}", self.metric),
            )),
            _ => Ok(()),
        }
    }
}

/// A binding transition of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingChange {
    Bound,
    Unbound,
}

/// A binding transition at an instant (UTC epoch milliseconds). Ordered by time, then bound
/// before unbound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Binding {
    pub at_ms: i64,
    pub change: BindingChange,
}

/// One device's usage in a (subscription, period).
///
/// `category` is the smallest category any of the device's events carried (a device has one
/// category per period; absent if no event carried one). `active` is set by a `device_active`
/// event or a `messages` event with a positive quantity. `bindings` is the sorted multiset of
/// binding transitions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceUsage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    pub messages: i64,
    pub message_events: u64,
    pub active: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bindings: Vec<Binding>,
}

impl DeviceUsage {
    fn note_category(&mut self, category: Option<&str>) {
        if let Some(c) = category
            && self.category.as_deref().is_none_or(|cur| c < cur)
        {
            self.category = Some(c.to_owned());
        }
    }

    fn merge(&mut self, other: &DeviceUsage) {
        self.note_category(other.category.as_deref());
        self.messages = self.messages.saturating_add(other.messages);
        self.message_events = self.message_events.saturating_add(other.message_events);
        self.active |= other.active;
        if !other.bindings.is_empty() {
            self.bindings.extend_from_slice(&other.bindings);
            self.bindings.sort_unstable();
        }
    }

    /// The Shanghai calendar days of `period` on which the device was bound, as a bit set (bit
    /// `d - 1` for day `d`).
    ///
    /// Rule: a device bound for any positive duration of a day counts that day. Transitions are
    /// replayed in time order: a bound interval runs from a `bound` to the next `unbound`; a
    /// device whose first transition in the period is `unbound` was bound since the period
    /// start; a device still bound at the end stays bound to the period end. Repeated `bound` or
    /// `unbound` are no-ops, and a bind and unbind at the same instant count nothing. A device
    /// bound across the whole period needs a `device_bound` event in it (the platform emits one
    /// at each period start for every bound device).
    pub fn bound_days(&self, period: Period) -> u32 {
        let start = period.start_ms();
        let end = period.end_ms();
        let sorted;
        let bindings: &[Binding] = if self.bindings.is_sorted() {
            &self.bindings
        } else {
            sorted = {
                let mut v = self.bindings.clone();
                v.sort_unstable();
                v
            };
            &sorted
        };
        let mut mask = 0u32;
        let mut bound_since: Option<i64> = None;
        for (i, b) in bindings.iter().enumerate() {
            match b.change {
                BindingChange::Bound => {
                    bound_since.get_or_insert(b.at_ms);
                }
                BindingChange::Unbound => {
                    if let Some(since) = bound_since.take() {
                        mask |= interval_days(start, end, since, b.at_ms);
                    } else if i == 0 {
                        mask |= interval_days(start, end, start, b.at_ms);
                    }
                }
            }
        }
        if let Some(since) = bound_since {
            mask |= interval_days(start, end, since, end);
        }
        mask
    }
}

// The days (bit set) of the period [start, end) touched by the interval [a, b) of positive length.
fn interval_days(start: i64, end: i64, a: i64, b: i64) -> u32 {
    let a = a.max(start);
    let b = b.min(end);
    if a >= b {
        return 0;
    }
    let first = (a - start) / DAY_MS + 1;
    let last = (b - 1 - start) / DAY_MS + 1;
    day_bits(first as u32, last as u32)
}

// Transitions that bind exactly the days of `mask` (see `DeviceUsage::bound_days`): one bound
// interval per run of consecutive days, from the first day's start to the last day's end.
fn bindings_of_days(start: i64, mask: u32) -> Vec<Binding> {
    let mut out = Vec::new();
    let mut day = 0i64;
    let mut rest = mask;
    while rest != 0 {
        let skip = i64::from(rest.trailing_zeros());
        rest >>= skip;
        day += skip;
        let run = i64::from(rest.trailing_ones());
        out.push(Binding {
            at_ms: start + day * DAY_MS,
            change: BindingChange::Bound,
        });
        out.push(Binding {
            at_ms: start + (day + run) * DAY_MS,
            change: BindingChange::Unbound,
        });
        rest = rest.checked_shr(run as u32).unwrap_or(0);
        day += run;
    }
    out
}

// Bits of days first..=last (1-based, at most 31).
fn day_bits(first: u32, last: u32) -> u32 {
    if first > last || first == 0 {
        return 0;
    }
    let hi = (1u64 << last.min(32)) - 1;
    let lo = (1u64 << (first - 1)) - 1;
    (hi & !lo) as u32
}

/// The usage of one (subscription, period): messages (COUNT of events and SUM of quantities,
/// including messages without a device) and per-device usage. Built by [`Aggregator`]; merging
/// is associative and commutative.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aggregates {
    pub messages: i64,
    pub message_events: u64,
    pub devices: BTreeMap<String, DeviceUsage>,
}

impl Aggregates {
    /// Folds one event in, ignoring its period (the [`Aggregator`] routes by period).
    pub fn add(&mut self, e: &UsageEvent) -> Result<(), BillingError> {
        e.check()?;
        self.fold(e);
        Ok(())
    }

    // Folds an event that passed `check()`.
    fn fold(&mut self, e: &UsageEvent) {
        if e.metric == Metric::Messages {
            self.messages = self.messages.saturating_add(e.quantity);
            self.message_events = self.message_events.saturating_add(1);
        }
        let Some(device_id) = e.device_id.as_deref() else {
            return; // messages without a device (check() rejects the other metrics)
        };
        let dev = match self.devices.get_mut(device_id) {
            Some(dev) => dev,
            None => self.devices.entry(device_id.to_owned()).or_default(),
        };
        dev.note_category(e.category.as_deref());
        match e.metric {
            Metric::Messages => {
                dev.messages = dev.messages.saturating_add(e.quantity);
                dev.message_events = dev.message_events.saturating_add(1);
                dev.active |= e.quantity > 0;
            }
            Metric::DeviceActive => dev.active = true,
            Metric::DeviceBound | Metric::DeviceUnbound => {
                let b = Binding {
                    at_ms: e.ts.timestamp_millis(),
                    change: if e.metric == Metric::DeviceBound {
                        BindingChange::Bound
                    } else {
                        BindingChange::Unbound
                    },
                };
                let at = dev.bindings.partition_point(|x| *x <= b);
                dev.bindings.insert(at, b);
            }
        }
    }

    /// Adds another partial aggregate of the same (subscription, period).
    pub fn merge(&mut self, other: &Aggregates) {
        self.messages = self.messages.saturating_add(other.messages);
        self.message_events = self.message_events.saturating_add(other.message_events);
        for (id, dev) in &other.devices {
            match self.devices.get_mut(id) {
                Some(mine) => mine.merge(dev),
                None => {
                    self.devices.insert(id.clone(), dev.clone());
                }
            }
        }
    }

    /// Adds the platform's own measurements of `period` (the devices bound to the project, the
    /// messages ingest counted for them) to posted usage, counting each device once. The rule,
    /// per device the platform knows in the period (bound to the project at any time in it):
    /// - messages and activity: the platform's figure wins for the whole period, and whatever
    ///   was posted for that device is dropped from the device and from the totals (posted usage
    ///   is kept per device and period, not per day, so the period is the finest common grain);
    /// - bound days: per day, a day counts once if the platform or the posted transitions have
    ///   the device bound on it;
    /// - category: the platform's (its device record), else the posted one.
    ///
    /// Devices the platform does not know, and messages posted without a device, count as
    /// posted.
    pub fn overlay_platform(&mut self, platform: &Aggregates, period: Period) {
        self.messages = self.messages.saturating_add(platform.messages);
        self.message_events = self.message_events.saturating_add(platform.message_events);
        for (id, plat) in &platform.devices {
            let Some(posted) = self.devices.remove(id) else {
                self.devices.insert(id.clone(), plat.clone());
                continue;
            };
            self.messages = self.messages.saturating_sub(posted.messages);
            self.message_events = self.message_events.saturating_sub(posted.message_events);
            let bindings = if posted.bindings.is_empty() {
                plat.bindings.clone()
            } else {
                bindings_of_days(
                    period.start_ms(),
                    plat.bound_days(period) | posted.bound_days(period),
                )
            };
            self.devices.insert(
                id.clone(),
                DeviceUsage {
                    category: plat.category.clone().or(posted.category),
                    messages: plat.messages,
                    message_events: plat.message_events,
                    active: plat.active,
                    bindings,
                },
            );
        }
    }

    /// UNIQUE COUNT of active devices, by device category.
    pub fn active_devices(&self) -> BTreeMap<Option<String>, u64> {
        let mut out = BTreeMap::new();
        for dev in self.devices.values().filter(|d| d.active) {
            *out.entry(dev.category.clone()).or_insert(0) += 1;
        }
        out
    }

    /// Device-days bound in `period` (see [`DeviceUsage::bound_days`]), by device category,
    /// before any suspension.
    pub fn device_days(&self, period: Period) -> BTreeMap<Option<String>, u32> {
        let mut out = BTreeMap::new();
        for dev in self.devices.values() {
            let days = dev.bound_days(period).count_ones();
            if days > 0 {
                *out.entry(dev.category.clone()).or_insert(0) += days;
            }
        }
        out
    }
}

/// The key of one aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UsageKey {
    pub subscription_id: String,
    pub period: Period,
}

/// Folds usage events into [`Aggregates`] per (subscription, Shanghai-local month of `ts`).
///
/// The fold is order-independent and partial aggregators merge associatively and
/// commutatively, so events may be folded in any order and in parallel pieces. Two aggregators
/// that saw the same multiset of events compare equal.
#[derive(Debug, Clone, Default)]
pub struct Aggregator {
    // Per subscription, its periods sorted by period.
    subs: HashMap<String, Vec<(Period, Aggregates)>>,
    // The last period seen and its [start, end) in UTC ms: most events fall in it.
    last: Option<(i64, i64, Period)>,
}

impl PartialEq for Aggregator {
    fn eq(&self, other: &Self) -> bool {
        self.subs == other.subs
    }
}

impl Eq for Aggregator {}

impl Aggregator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one event in. A rejected event (negative message count, device metric without a
    /// device, empty subscription id) changes nothing.
    pub fn add(&mut self, e: &UsageEvent) -> Result<(), BillingError> {
        e.check()?;
        let period = self.period_of(e.ts.timestamp_millis());
        let periods = match self.subs.get_mut(e.subscription_id.as_str()) {
            Some(p) => p,
            None => self.subs.entry(e.subscription_id.clone()).or_default(),
        };
        let agg = match periods.binary_search_by_key(&period, |(p, _)| *p) {
            Ok(i) => &mut periods[i].1,
            Err(i) => {
                periods.insert(i, (period, Aggregates::default()));
                &mut periods[i].1
            }
        };
        agg.fold(e);
        Ok(())
    }

    fn period_of(&mut self, ms: i64) -> Period {
        if let Some((start, end, p)) = self.last
            && (start..end).contains(&ms)
        {
            return p;
        }
        let (y, m, _) = civil_from_days((ms + OFFSET_MS).div_euclid(DAY_MS));
        let p = Period {
            year: i32::try_from(y).unwrap_or(i32::MAX),
            month: m,
        };
        self.last = Some((p.start_ms(), p.end_ms(), p));
        p
    }

    /// Adds another partial aggregator.
    pub fn merge(&mut self, other: &Aggregator) {
        for (sub, periods) in &other.subs {
            let mine = match self.subs.get_mut(sub) {
                Some(p) => p,
                None => self.subs.entry(sub.clone()).or_default(),
            };
            for (period, agg) in periods {
                match mine.binary_search_by_key(period, |(p, _)| *p) {
                    Ok(i) => mine[i].1.merge(agg),
                    Err(i) => mine.insert(i, (*period, agg.clone())),
                }
            }
        }
    }

    /// The aggregate of one (subscription, period), if any event fell in it.
    pub fn get(&self, subscription_id: &str, period: Period) -> Option<&Aggregates> {
        let periods = self.subs.get(subscription_id)?;
        let i = periods.binary_search_by_key(&period, |(p, _)| *p).ok()?;
        Some(&periods[i].1)
    }

    /// All aggregates, sorted by subscription and period.
    pub fn into_aggregates(self) -> BTreeMap<UsageKey, Aggregates> {
        let mut out = BTreeMap::new();
        for (subscription_id, periods) in self.subs {
            for (period, agg) in periods {
                out.insert(
                    UsageKey {
                        subscription_id: subscription_id.clone(),
                        period,
                    },
                    agg,
                );
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Rating
// ---------------------------------------------------------------------------------------------

/// A line of an invoice.
///
/// `item` is a stable code: `one_off` (`one_off:2`, … when a package has several),
/// `project_month`, `project_month_credit` (upgrade credit, negative), `device_month[:category]`,
/// `device_day[:category]`, `messages_overage`; graduated lines add `#t<n>` for tier n (1-based),
/// one line per tier band used; corrections are `correction:<period>:<item>`. `(package_id,
/// package_version, item)` is unique within a rating. `quantity_milli` is in milli-units (see the
/// module docs). `trace` lists the aggregate keys the line derives from:
/// `<period>/timeline`, `<period>/messages`, `<period>/active_devices[:category]`,
/// `<period>/device_days[:category]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvoiceLine {
    pub item: String,
    pub description: String,
    pub package_id: String,
    pub package_version: u32,
    pub quantity_milli: i64,
    pub unit_price_fen: i64,
    pub amount_fen: i64,
    pub trace: Vec<String>,
    /// For a correction line: the closed period it corrects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrects: Option<Period>,
}

/// The sum of the lines' amounts: an invoice total, so within ±10^15 fen, or an error naming
/// `total_fen` (nothing is billed).
pub fn total_fen(lines: &[InvoiceLine]) -> Result<i64, BillingError> {
    super::bounds::sum_within(lines.iter().map(|l| l.amount_fen), MAX_AMOUNT_FEN)
        .ok_or_else(|| BillingError::out_of_bounds("total_fen"))
}

/// `numerator / denominator` rounded to the nearest integer, halves away from zero (half-up on
/// the magnitude). `denominator` must be positive.
pub fn round_half_up(numerator: i128, denominator: i128) -> i128 {
    let d = denominator.max(1);
    if numerator >= 0 {
        (2 * numerator + d) / (2 * d)
    } else {
        -((-2 * numerator + d) / (2 * d))
    }
}

/// The fee for part of a month: round_half_up(price × active_days / days_in_month), in fen.
pub fn prorate_fen(price_fen: i64, active_days: u32, days_in_month: u32) -> i64 {
    let v = round_half_up(
        i128::from(price_fen) * i128::from(active_days),
        i128::from(days_in_month),
    );
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

fn to_fen(v: i128, field: &str) -> Result<i64, BillingError> {
    i64::try_from(v).map_err(|_| BillingError::new(field, "amount out of range"))
}

fn item_base(unit: Unit, category: Option<&str>) -> String {
    let base = match unit {
        Unit::MessageOveragePer1k => "messages_overage",
        u => u.as_str(),
    };
    match category {
        Some(c) => format!("{base}:{c}"),
        None => base.to_owned(),
    }
}

fn key_with_category(period: Period, name: &str, category: Option<&str>) -> String {
    match category {
        Some(c) => format!("{period}/{name}:{c}"),
        None => format!("{period}/{name}"),
    }
}

struct LineOut<'a> {
    package: &'a Package,
    lines: Vec<InvoiceLine>,
}

impl LineOut<'_> {
    fn push(
        &mut self,
        item: String,
        description: String,
        quantity_milli: i64,
        unit_price_fen: i64,
        amount_fen: i64,
        trace: BTreeSet<String>,
    ) {
        if quantity_milli == 0 {
            return;
        }
        self.lines.push(InvoiceLine {
            item,
            description,
            package_id: self.package.id.clone(),
            package_version: self.package.version,
            quantity_milli,
            unit_price_fen,
            amount_fen,
            trace: trace.into_iter().collect(),
            corrects: None,
        });
    }

    /// Lines for `units` of a line, flat or graduated; `per` is the number of units the price is
    /// for (1, or 1000 for messages); `milli_per_unit` converts units to quantity milli-units.
    fn priced(
        &mut self,
        line: &PriceLine,
        units: i64,
        per: i64,
        milli_per_unit: i64,
        what: &str,
        trace: &BTreeSet<String>,
    ) -> Result<(), BillingError> {
        let base = item_base(line.unit, line.category.as_deref());
        let bands: Vec<(Option<usize>, i64, i64)> = match &line.tiers {
            Some(tiers) => graduate(tiers, units)
                .into_iter()
                .map(|(j, n)| (Some(j), n, tiers[j].price_fen))
                .collect(),
            None => vec![(None, units, line.price_fen)],
        };
        for (tier, n, price) in bands {
            let amount = to_fen(
                round_half_up(i128::from(n) * i128::from(price), i128::from(per)),
                &base,
            )?;
            let qty = to_fen(i128::from(n) * i128::from(milli_per_unit), &base)?;
            let (item, description) = match (tier, &line.tiers) {
                (Some(j), Some(tiers)) => {
                    let lower = if j == 0 {
                        0
                    } else {
                        tiers[j - 1].up_to.unwrap_or(0)
                    };
                    let band = match tiers[j].up_to {
                        Some(u) => format!("{}–{u}", lower + 1),
                        None => format!("{} 起", lower + 1),
                    };
                    (
                        format!("{base}#t{}", j + 1),
                        format!("{what}，第 {} 档（{band}）", j + 1),
                    )
                }
                _ => (base.clone(), what.to_owned()),
            };
            self.push(item, description, qty, price, amount, trace.clone());
        }
        Ok(())
    }
}

/// Rates one subscription's period: the lines of every package in force during the period, in
/// chronological order of the packages, and within a package in the order one-off,
/// project_month, project_month_credit, device_month, device_day (by line category, the
/// uncategorised line first), messages_overage.
///
/// Rules:
/// - Billable days are the period's days within `start..=end`. `project_month` charges
///   round_half_up(price × billable days / days in month), suspended days excluded if the
///   package's `pause_on_suspend.project_month`.
/// - Upgrade on day u: the old package's `project_month` is charged as if it ran to the period
///   end, then credited (negative `project_month_credit`) for its billable days from u on; the
///   new package is charged from u. Downgrades start with the next period.
/// - `device_day`: each package counts the bound days (see [`DeviceUsage::bound_days`]) on which
///   it is in force and the subscription is billable, suspended days excluded if
///   `pause_on_suspend.leasing_clock`; each device goes to the line of its category, else the
///   uncategorised line, else it is not charged.
/// - `device_month` and `messages_overage` are monthly and rated under the package in force on
///   the last billable day of the period. Overage = max(0, messages − included), amount =
///   round_half_up(overage × price / 1000) on the exact fraction.
/// - `one_off` lines of the package in force on the start date are charged in the period that
///   holds the start date.
/// - A period without billable days rates to no lines.
pub fn rate(
    package: &Package,
    timeline: &Timeline,
    aggregates: &Aggregates,
    period: Period,
) -> Result<Vec<InvoiceLine>, BillingError> {
    package.validate()?;
    timeline.validate()?;
    let dim = period.days_in_month();
    let all = day_bits(1, dim);
    let range = |from: NaiveDate, to: Option<NaiveDate>| -> u32 {
        let a = from.max(period.first_day());
        let b = to.map_or(period.last_day(), |t| t.min(period.last_day()));
        if a > b { 0 } else { day_bits(a.day(), b.day()) }
    };
    let billable = range(timeline.start, timeline.end);
    if billable == 0 {
        return Ok(Vec::new());
    }
    let suspended = timeline
        .suspensions
        .iter()
        .fold(0u32, |m, s| m | range(s.from, s.to));
    let schedule = timeline.schedule(package);
    let masks: Vec<u32> = schedule
        .iter()
        .enumerate()
        .map(|(k, e)| {
            let from = range(e.from, None);
            let until = schedule.get(k + 1).map_or(0, |n| range(n.from, None));
            from & !until & billable
        })
        .collect();
    let (Some(first_k), Some(last_k)) = (
        masks.iter().position(|m| *m != 0),
        masks.iter().rposition(|m| *m != 0),
    ) else {
        return Ok(Vec::new());
    };
    let bound: Vec<(Option<&str>, u32)> = aggregates
        .devices
        .values()
        .map(|d| (d.category.as_deref(), d.bound_days(period)))
        .filter(|(_, m)| *m != 0)
        .collect();
    let timeline_key = format!("{period}/timeline");
    let days_of = |m: u32| m.count_ones();

    let mut lines = Vec::new();
    for (k, entry) in schedule.iter().enumerate() {
        let mask = masks[k];
        if mask == 0 {
            continue;
        }
        let p = entry.package;
        let mut out = LineOut {
            package: p,
            lines: Vec::new(),
        };
        let tl_trace: BTreeSet<String> = BTreeSet::from([timeline_key.clone()]);

        // One-off charges, in the period of the start date.
        if k == first_k && period.contains_date(timeline.start) {
            let one_offs: Vec<&PriceLine> =
                p.prices.iter().filter(|l| l.unit == Unit::OneOff).collect();
            for (n, line) in one_offs.iter().enumerate() {
                let item = if one_offs.len() == 1 {
                    "one_off".to_owned()
                } else {
                    format!("one_off:{}", n + 1)
                };
                out.push(
                    item,
                    format!("一次性费用（{}）", p.name),
                    1000,
                    line.price_fen,
                    line.price_fen,
                    tl_trace.clone(),
                );
            }
        }

        // Project-month fee and upgrade credit.
        if let Some(line) = p.line(Unit::ProjectMonth) {
            let paying = if p.pause_on_suspend.project_month {
                all & !suspended
            } else {
                all
            } & billable;
            let upgraded_at = schedule
                .get(k + 1)
                .filter(|n| n.via == Some(ChangeKind::Upgrade) && period.contains_date(n.from))
                .map(|n| n.from);
            let charged = match upgraded_at {
                Some(_) => range(entry.from, None) & paying,
                None => mask & paying,
            };
            let days = days_of(charged);
            out.push(
                "project_month".to_owned(),
                format!("项目月服务费（{}，{days}/{dim} 天）", p.name),
                to_fen(
                    round_half_up(i128::from(days) * 1000, i128::from(dim)),
                    "project_month",
                )?,
                line.price_fen,
                prorate_fen(line.price_fen, days, dim),
                tl_trace.clone(),
            );
            if let Some(u) = upgraded_at {
                let unused = days_of(range(u, None) & paying);
                out.push(
                    "project_month_credit".to_owned(),
                    format!("升级抵减：{} 未使用 {unused}/{dim} 天", p.name),
                    -to_fen(
                        round_half_up(i128::from(unused) * 1000, i128::from(dim)),
                        "project_month_credit",
                    )?,
                    line.price_fen,
                    -prorate_fen(line.price_fen, unused, dim),
                    tl_trace.clone(),
                );
            }
        }

        // Active devices, under the package in force at the end of the period.
        if k == last_k {
            let mut per_line: BTreeMap<Option<&str>, (&PriceLine, i64, BTreeSet<String>)> =
                BTreeMap::new();
            for (category, n) in aggregates.active_devices() {
                if let Some(line) = p.device_line(Unit::DeviceMonth, category.as_deref()) {
                    let e = per_line.entry(line.category.as_deref()).or_insert((
                        line,
                        0,
                        BTreeSet::new(),
                    ));
                    e.1 = e.1.saturating_add(i64::try_from(n).unwrap_or(i64::MAX));
                    e.2.insert(key_with_category(
                        period,
                        "active_devices",
                        category.as_deref(),
                    ));
                }
            }
            for (category, (line, n, trace)) in per_line {
                let what = match category {
                    Some(c) => format!("活跃设备月费（{}，{c}）", p.name),
                    None => format!("活跃设备月费（{}）", p.name),
                };
                out.priced(line, n, 1, 1000, &what, &trace)?;
            }
        }

        // Device-days on the days this package is in force.
        let clock = if p.pause_on_suspend.leasing_clock {
            mask & !suspended
        } else {
            mask
        };
        let mut per_line: BTreeMap<Option<&str>, (&PriceLine, i64, BTreeSet<String>)> =
            BTreeMap::new();
        for (category, days) in &bound {
            let n = days_of(days & clock);
            if n == 0 {
                continue;
            }
            if let Some(line) = p.device_line(Unit::DeviceDay, *category) {
                let e = per_line.entry(line.category.as_deref()).or_insert((
                    line,
                    0,
                    BTreeSet::from([timeline_key.clone()]),
                ));
                e.1 = e.1.saturating_add(i64::from(n));
                e.2.insert(key_with_category(period, "device_days", *category));
            }
        }
        for (category, (line, n, trace)) in per_line {
            let what = match category {
                Some(c) => format!("设备租赁日费（{}，{c}）", p.name),
                None => format!("设备租赁日费（{}）", p.name),
            };
            out.priced(line, n, 1, 1000, &what, &trace)?;
        }

        // Message overage, under the package in force at the end of the period.
        if k == last_k
            && let Some(line) = p.line(Unit::MessageOveragePer1k)
        {
            let included = line.included.unwrap_or(0);
            let overage = aggregates.messages.saturating_sub(included).max(0);
            let what = format!(
                "消息超量（{}，共 {} 条，含 {included} 条，每千条计）",
                p.name, aggregates.messages
            );
            let trace = BTreeSet::from([format!("{period}/messages")]);
            out.priced(line, overage, 1000, 1, &what, &trace)?;
        }

        lines.extend(out.lines);
    }
    // Within the bounds line by line and in total, or nothing: an amount past them is refused
    // here, never stored.
    if let Some(l) = lines
        .iter()
        .find(|l| l.amount_fen.unsigned_abs() > MAX_AMOUNT_FEN.unsigned_abs())
    {
        return Err(BillingError::out_of_bounds(l.item.clone()));
    }
    total_fen(&lines)?;
    Ok(lines)
}

/// Correction lines for a closed period whose usage changed after it was invoiced (late
/// events): the period rated with `new` minus the period rated with `previous`, per line. The
/// lines go into the next open period's invoice; the closed invoice is never changed, and
/// `total(previous rating) + total(corrections) == total(new rating)`.
pub fn correction_lines(
    package: &Package,
    timeline: &Timeline,
    previous: &Aggregates,
    new: &Aggregates,
    period: Period,
) -> Result<Vec<InvoiceLine>, BillingError> {
    let before = rate(package, timeline, previous, period)?;
    let after = rate(package, timeline, new, period)?;
    diff_lines(period, &before, &after)
}

/// The delta lines turning the invoiced lines `before` of `period` into `after`, keyed by
/// (package_id, package_version, item): the lines of `after` in its order, then the lines only
/// in `before`. Unchanged lines are left out. Items become `correction:<period>:<item>`. The
/// deltas are computed checked (a difference beyond `i64` is an error naming the item).
pub fn diff_lines(
    period: Period,
    before: &[InvoiceLine],
    after: &[InvoiceLine],
) -> Result<Vec<InvoiceLine>, BillingError> {
    let key = |l: &InvoiceLine| (l.package_id.clone(), l.package_version, l.item.clone());
    let mut old: BTreeMap<_, &InvoiceLine> = before.iter().map(|l| (key(l), l)).collect();
    let mut out = Vec::new();
    let mut emit = |base: &InvoiceLine, qty: i64, amount: i64, trace: Vec<String>| {
        if qty == 0 && amount == 0 {
            return;
        }
        out.push(InvoiceLine {
            item: format!("correction:{period}:{}", base.item),
            description: format!("更正 {period}：{}", base.description),
            package_id: base.package_id.clone(),
            package_version: base.package_version,
            quantity_milli: qty,
            unit_price_fen: base.unit_price_fen,
            amount_fen: amount,
            trace,
            corrects: Some(period),
        });
    };
    let delta = |l: &InvoiceLine, a: i64, b: i64| {
        a.checked_sub(b)
            .ok_or_else(|| BillingError::out_of_bounds(l.item.clone()))
    };
    for l in after {
        let (qty, amount, trace) = match old.remove(&key(l)) {
            Some(o) => {
                let trace: BTreeSet<String> = l.trace.iter().chain(&o.trace).cloned().collect();
                (
                    delta(l, l.quantity_milli, o.quantity_milli)?,
                    delta(l, l.amount_fen, o.amount_fen)?,
                    trace.into_iter().collect(),
                )
            }
            None => (l.quantity_milli, l.amount_fen, l.trace.clone()),
        };
        emit(l, qty, amount, trace);
    }
    for o in before {
        if old.remove(&key(o)).is_some() {
            emit(
                o,
                delta(o, 0, o.quantity_milli)?,
                delta(o, 0, o.amount_fen)?,
                o.trace.clone(),
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn nov() -> Period {
        Period::parse("2026-11").unwrap()
    }

    fn dec() -> Period {
        Period::parse("2026-12").unwrap()
    }

    fn ev(
        id: &str,
        metric: Metric,
        quantity: i64,
        ts: &str,
        device: Option<&str>,
        category: Option<&str>,
    ) -> UsageEvent {
        UsageEvent {
            id: id.into(),
            subscription_id: "sub-1".into(),
            metric,
            quantity,
            ts: at(ts),
            device_id: device.map(Into::into),
            category: category.map(Into::into),
        }
    }

    fn package(id: &str, model: Model, prices: Vec<PriceLine>) -> Package {
        Package {
            id: id.into(),
            version: 1,
            name: id.into(),
            model,
            prices,
            pause_on_suspend: PausePolicy::default(),
        }
    }

    fn device_line(unit: Unit, price_fen: i64, category: Option<&str>) -> PriceLine {
        PriceLine {
            category: category.map(Into::into),
            ..PriceLine::flat(unit, price_fen)
        }
    }

    fn tiered(unit: Unit, tiers: &[(Option<i64>, i64)]) -> PriceLine {
        PriceLine {
            tiers: Some(
                tiers
                    .iter()
                    .map(|&(up_to, price_fen)| Tier { up_to, price_fen })
                    .collect(),
            ),
            ..PriceLine::flat(unit, 0)
        }
    }

    use Metric::{
        DeviceActive as Active, DeviceBound as Bound, DeviceUnbound as Unbound, Messages,
    };

    /// One usage stream of November 2026 (30 days), all times Shanghai-local:
    ///
    /// | device  | category    | bound (days)                    | messages | active |
    /// |---------|-------------|---------------------------------|----------|--------|
    /// | crane-1 | tower_crane | 1 Nov 00:00 – 20 Nov 10:00: 1–20 | 40,000   | yes    |
    /// | crane-2 | tower_crane | 11 Nov 09:00 – end: 11–30        | 25,500   | yes    |
    /// | dust-1  | dust_noise  | 1 Nov 00:00 – end: 1–30          | 60,000   | yes    |
    /// | hoist-1 | hoist       | 3 Nov 08:00 – 3 Nov 17:00: 3     | 0        | flag   |
    /// | cam-1   | camera      | never                            | 3,000    | yes    |
    /// | (none)  |             |                                  | 1,500    |        |
    ///
    /// Messages in November: 40,000 + 25,500 + 60,000 + 3,000 + 1,500 = 130,000; active devices 5.
    /// Two more events fall outside November (31 Oct 23:59:59 and 1 Dec 00:00 local).
    #[rustfmt::skip]
    fn stream() -> Vec<UsageEvent> {
        let (tc, dn, h) = (Some("tower_crane"), Some("dust_noise"), Some("hoist"));
        vec![
            ev("e1",  Bound,        1, "2026-11-01T00:00:00+08:00", Some("crane-1"), tc),
            ev("e2",  Unbound,      1, "2026-11-20T10:00:00+08:00", Some("crane-1"), tc),
            ev("e3",  Messages, 10_000, "2026-11-02T08:00:00+08:00", Some("crane-1"), tc),
            ev("e4",  Messages, 10_000, "2026-11-09T08:00:00+08:00", Some("crane-1"), tc),
            ev("e5",  Messages, 10_000, "2026-11-16T08:00:00+08:00", Some("crane-1"), tc),
            ev("e6",  Messages, 10_000, "2026-11-19T08:00:00+08:00", Some("crane-1"), tc),
            ev("e7",  Bound,        1, "2026-11-11T09:00:00+08:00", Some("crane-2"), tc),
            ev("e8",  Messages, 25_000, "2026-11-12T08:00:00+08:00", Some("crane-2"), tc),
            ev("e9",  Messages,    500, "2026-11-30T23:59:59+08:00", Some("crane-2"), tc),
            ev("e10", Bound,        1, "2026-11-01T00:00:00+08:00", Some("dust-1"), dn),
            ev("e11", Messages, 20_000, "2026-11-05T12:00:00+08:00", Some("dust-1"), dn),
            ev("e12", Messages, 20_000, "2026-11-15T12:00:00+08:00", Some("dust-1"), dn),
            ev("e13", Messages, 20_000, "2026-11-25T12:00:00+08:00", Some("dust-1"), dn),
            ev("e14", Bound,        1, "2026-11-03T08:00:00+08:00", Some("hoist-1"), h),
            ev("e15", Unbound,      1, "2026-11-03T17:00:00+08:00", Some("hoist-1"), h),
            ev("e16", Active,       1, "2026-11-03T09:00:00+08:00", Some("hoist-1"), h),
            ev("e17", Messages,  3_000, "2026-11-10T10:00:00+08:00", Some("cam-1"), Some("camera")),
            ev("e18", Messages,  1_500, "2026-11-21T10:00:00+08:00", None, None),
            ev("e19", Messages,  9_000, "2026-10-31T23:59:59+08:00", Some("crane-1"), tc),
            ev("e20", Messages,  7_000, "2026-12-01T00:00:00+08:00", Some("crane-2"), tc),
        ]
    }

    fn fold(events: &[UsageEvent]) -> Aggregator {
        let mut agg = Aggregator::new();
        for e in events {
            agg.add(e).unwrap();
        }
        agg
    }

    fn nov_usage(events: &[UsageEvent]) -> Aggregates {
        fold(events).get("sub-1", nov()).cloned().unwrap()
    }

    /// Full solution: ¥3,000/project-month, ¥12,000 installation, ¥0.50 per 1,000 messages
    /// beyond 100,250.
    fn full_solution() -> Package {
        let mut messages = PriceLine::flat(Unit::MessageOveragePer1k, 50);
        messages.included = Some(100_250);
        package(
            "pkg-full",
            Model::FullSolution,
            vec![
                PriceLine::flat(Unit::ProjectMonth, 300_000),
                PriceLine::flat(Unit::OneOff, 1_200_000),
                messages,
            ],
        )
    }

    /// Technical service: per active device per month, ¥50 for the first 3, ¥40 beyond.
    fn tech_service() -> Package {
        package(
            "pkg-tech",
            Model::TechService,
            vec![tiered(
                Unit::DeviceMonth,
                &[(Some(3), 5_000), (None, 4_000)],
            )],
        )
    }

    /// Leasing: per bound device-day, ¥8 tower crane, ¥3 dust monitor, ¥2 anything else.
    fn leasing() -> Package {
        package(
            "pkg-lease",
            Model::Leasing,
            vec![
                device_line(Unit::DeviceDay, 800, Some("tower_crane")),
                device_line(Unit::DeviceDay, 300, Some("dust_noise")),
                device_line(Unit::DeviceDay, 200, None),
            ],
        )
    }

    /// From 1 November, stopped work (停工) 5–14 November (10 days).
    fn suspended_timeline() -> Timeline {
        Timeline {
            suspensions: vec![Suspension {
                from: d(2026, 11, 5),
                to: Some(d(2026, 11, 14)),
            }],
            ..Timeline::starting(d(2026, 11, 1))
        }
    }

    fn summary(lines: &[InvoiceLine]) -> Vec<(&str, i64, i64, i64)> {
        lines
            .iter()
            .map(|l| {
                (
                    l.item.as_str(),
                    l.quantity_milli,
                    l.unit_price_fen,
                    l.amount_fen,
                )
            })
            .collect()
    }

    // ---- the same usage under the three models ----

    #[test]
    fn stream_aggregates_as_computed_by_hand() {
        let agg = fold(&stream());
        let n = agg.get("sub-1", nov()).unwrap();
        assert_eq!(n.messages, 130_000);
        assert_eq!(n.message_events, 11); // e3-e6, e8, e9, e11-e13, e17, e18
        assert_eq!(n.devices["crane-1"].messages, 40_000);
        assert_eq!(n.devices["crane-1"].message_events, 4);
        let active = n.active_devices();
        assert_eq!(active.values().sum::<u64>(), 5);
        assert_eq!(active[&Some("tower_crane".to_owned())], 2);
        // Before suspension: crane-1 1–20 (20) + crane-2 11–30 (20); dust-1 30; hoist-1 1.
        let days = n.device_days(nov());
        assert_eq!(days[&Some("tower_crane".to_owned())], 40);
        assert_eq!(days[&Some("dust_noise".to_owned())], 30);
        assert_eq!(days[&Some("hoist".to_owned())], 1);
        assert_eq!(days.len(), 3);
        // The two out-of-month events land in their own periods.
        let oct = Period::parse("2026-10").unwrap();
        assert_eq!(agg.get("sub-1", oct).unwrap().messages, 9_000);
        assert_eq!(agg.get("sub-1", dec()).unwrap().messages, 7_000);
    }

    #[test]
    fn full_solution_rates_the_stream() {
        let lines = rate(
            &full_solution(),
            &suspended_timeline(),
            &nov_usage(&stream()),
            nov(),
        )
        .unwrap();
        // one_off:         1 × 1,200,000                           = 1,200,000
        // project_month:   30 − 10 suspended = 20 days;
        //                  300,000 × 20 / 30 = 200,000; qty 20/30 → 0.667 = 200,000
        // messages:        130,000 − 100,250 = 29,750 over;
        //                  29,750 × 50 / 1,000 = 1,487.5 → 1,488 (half-up) = 1,488
        // total                                                        1,401,488
        assert_eq!(
            summary(&lines),
            vec![
                ("one_off", 1_000, 1_200_000, 1_200_000),
                ("project_month", 667, 300_000, 200_000),
                ("messages_overage", 29_750, 50, 1_488),
            ]
        );
        assert_eq!(total_fen(&lines).unwrap(), 1_401_488);
        assert_eq!(lines[1].trace, vec!["2026-11/timeline"]);
        assert_eq!(lines[2].trace, vec!["2026-11/messages"]);
        assert!(lines[1].description.contains("20/30"));
        assert!(lines.iter().all(|l| l.package_id == "pkg-full"));
    }

    #[test]
    fn tech_service_rates_the_stream() {
        let lines = rate(
            &tech_service(),
            &suspended_timeline(),
            &nov_usage(&stream()),
            nov(),
        )
        .unwrap();
        // Active: crane-1, crane-2, dust-1, hoist-1 (flag), cam-1 = 5 (suspension irrelevant).
        // Tier 1: 3 × 5,000 = 15,000; tier 2: 2 × 4,000 = 8,000; total 23,000.
        assert_eq!(
            summary(&lines),
            vec![
                ("device_month#t1", 3_000, 5_000, 15_000),
                ("device_month#t2", 2_000, 4_000, 8_000),
            ]
        );
        assert_eq!(total_fen(&lines).unwrap(), 23_000);
        assert_eq!(
            lines[0].trace,
            vec![
                "2026-11/active_devices:camera",
                "2026-11/active_devices:dust_noise",
                "2026-11/active_devices:hoist",
                "2026-11/active_devices:tower_crane",
            ]
        );
    }

    #[test]
    fn leasing_rates_the_stream_with_the_clock_paused() {
        let lines = rate(
            &leasing(),
            &suspended_timeline(),
            &nov_usage(&stream()),
            nov(),
        )
        .unwrap();
        // Suspended days 5–14 do not count:
        //   crane-1 1–20 → 1–4, 15–20 = 4 + 6 = 10; crane-2 11–30 → 15–30 = 16
        //   tower_crane 26 × 800 = 20,800
        //   dust-1 1–30 → 30 − 10 = 20; 20 × 300 = 6,000
        //   hoist-1 day 3 → 1 × 200 (uncategorised line) = 200
        //   cam-1 never bound → nothing
        // total 27,000
        assert_eq!(
            summary(&lines),
            vec![
                ("device_day", 1_000, 200, 200),
                ("device_day:dust_noise", 20_000, 300, 6_000),
                ("device_day:tower_crane", 26_000, 800, 20_800),
            ]
        );
        assert_eq!(total_fen(&lines).unwrap(), 27_000);
        assert_eq!(
            lines[0].trace,
            vec!["2026-11/device_days:hoist", "2026-11/timeline"]
        );
    }

    #[test]
    fn leasing_clock_runs_through_suspension_when_the_package_says_so() {
        let mut p = leasing();
        p.pause_on_suspend.leasing_clock = false;
        let lines = rate(&p, &suspended_timeline(), &nov_usage(&stream()), nov()).unwrap();
        // tower_crane 20 + 20 = 40 × 800 = 32,000; dust 30 × 300 = 9,000; hoist 200 → 41,200.
        assert_eq!(total_fen(&lines).unwrap(), 41_200);
        // And project_month keeps running when its pause is off: 300,000 × 30/30.
        let mut f = full_solution();
        f.pause_on_suspend.project_month = false;
        let lines = rate(&f, &suspended_timeline(), &nov_usage(&stream()), nov()).unwrap();
        assert_eq!(lines[1].amount_fen, 300_000);
    }

    // ---- timeline ----

    #[test]
    fn mid_month_start_and_end_are_prorated_by_day() {
        let usage = nov_usage(&stream());
        let tl = Timeline::starting(d(2026, 11, 11));
        let lines = rate(&full_solution(), &tl, &usage, nov()).unwrap();
        // 11–30 November = 20 of 30 days: 300,000 × 20 / 30 = 200,000; one-off in the start month.
        assert_eq!(summary(&lines)[0], ("one_off", 1_000, 1_200_000, 1_200_000));
        assert_eq!(summary(&lines)[1], ("project_month", 667, 300_000, 200_000));
        // Leasing from 11 November: crane-1 11–20 = 10, crane-2 11–30 = 20 → 30 × 800 = 24,000;
        // dust-1 11–30 = 20 × 300 = 6,000; hoist-1 (day 3) is before the start. Total 30,000.
        let lines = rate(&leasing(), &tl, &usage, nov()).unwrap();
        assert_eq!(total_fen(&lines).unwrap(), 30_000);
        // The one-off is not charged again in December: 31/31 of 300,000 and the overage only.
        let lines = rate(&full_solution(), &tl, &Aggregates::default(), dec()).unwrap();
        assert_eq!(
            summary(&lines),
            vec![("project_month", 1_000, 300_000, 300_000)]
        );
        // Ending on 10 November: 10/30 × 300,000 = 100,000.
        let tl = Timeline {
            end: Some(d(2026, 11, 10)),
            ..Timeline::starting(d(2026, 11, 1))
        };
        let lines = rate(&full_solution(), &tl, &Aggregates::default(), nov()).unwrap();
        assert_eq!(summary(&lines)[1], ("project_month", 333, 300_000, 100_000));
        // Nothing at all in a month after the end.
        assert!(
            rate(&full_solution(), &tl, &usage, dec())
                .unwrap()
                .is_empty()
        );
    }

    fn project_fee(id: &str, fee: i64) -> Package {
        package(
            id,
            Model::FullSolution,
            vec![PriceLine::flat(Unit::ProjectMonth, fee)],
        )
    }

    #[test]
    fn upgrade_applies_at_once_with_prorated_credit() {
        let a = project_fee("pkg-a", 310_000);
        let b = project_fee("pkg-b", 450_000);
        let mut tl = suspended_timeline();
        tl.changes.push(PackageChange {
            on: d(2026, 11, 16),
            package: b.clone(),
        });
        assert_eq!(classify_change(&a, &b), ChangeKind::Upgrade);
        let lines = rate(&a, &tl, &Aggregates::default(), nov()).unwrap();
        // A as if to the month end: 30 − 10 suspended = 20 days; 310,000 × 20/30 = 206,666.67
        //   → 206,667
        // A credit for 16–30 (15 unused days): 310,000 × 15/30 = 155,000 → −155,000
        // B from 16 November, 15 days: 450,000 × 15/30 = 225,000
        // total 206,667 − 155,000 + 225,000 = 276,667
        assert_eq!(
            summary(&lines),
            vec![
                ("project_month", 667, 310_000, 206_667),
                ("project_month_credit", -500, 310_000, -155_000),
                ("project_month", 500, 450_000, 225_000),
            ]
        );
        assert_eq!(lines[1].package_id, "pkg-a");
        assert_eq!(lines[2].package_id, "pkg-b");
        assert_eq!(total_fen(&lines).unwrap(), 276_667);
        // December: B only, in full.
        let lines = rate(&a, &tl, &Aggregates::default(), dec()).unwrap();
        assert_eq!(
            summary(&lines),
            vec![("project_month", 1_000, 450_000, 450_000)]
        );
        assert_eq!(lines[0].package_id, "pkg-b");
    }

    #[test]
    fn upgrade_splits_device_days_by_date() {
        let mut l1 = leasing();
        l1.prices = vec![
            PriceLine::flat(Unit::ProjectMonth, 10_000),
            device_line(Unit::DeviceDay, 800, Some("tower_crane")),
        ];
        let mut l2 = l1.clone();
        l2.id = "pkg-lease-plus".into();
        l2.prices = vec![
            PriceLine::flat(Unit::ProjectMonth, 20_000),
            device_line(Unit::DeviceDay, 1_000, Some("tower_crane")),
        ];
        let tl = Timeline {
            changes: vec![PackageChange {
                on: d(2026, 11, 16),
                package: l2,
            }],
            ..Timeline::starting(d(2026, 11, 1))
        };
        let lines = rate(&l1, &tl, &nov_usage(&stream()), nov()).unwrap();
        // L1 in force 1–15: crane-1 1–15 (15) + crane-2 11–15 (5) = 20 × 800 = 16,000
        // L2 in force 16–30: crane-1 16–20 (5) + crane-2 16–30 (15) = 20 × 1,000 = 20,000
        // project_month: L1 10,000 − 10,000 × 15/30 = −5,000 credit; L2 20,000 × 15/30 = 10,000
        // dust-1 and hoist-1 have no line in either package.
        // total 10,000 − 5,000 + 16,000 + 10,000 + 20,000 = 51,000
        assert_eq!(
            summary(&lines),
            vec![
                ("project_month", 1_000, 10_000, 10_000),
                ("project_month_credit", -500, 10_000, -5_000),
                ("device_day:tower_crane", 20_000, 800, 16_000),
                ("project_month", 500, 20_000, 10_000),
                ("device_day:tower_crane", 20_000, 1_000, 20_000),
            ]
        );
        assert_eq!(total_fen(&lines).unwrap(), 51_000);
    }

    #[test]
    fn downgrade_takes_effect_next_period() {
        let a = project_fee("pkg-a", 300_000);
        let c = project_fee("pkg-c", 200_000);
        let tl = Timeline {
            changes: vec![PackageChange {
                on: d(2026, 11, 16),
                package: c.clone(),
            }],
            ..Timeline::starting(d(2026, 11, 1))
        };
        assert_eq!(classify_change(&a, &c), ChangeKind::Downgrade);
        let s = tl.schedule(&a);
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].from, d(2026, 12, 1));
        assert_eq!(s[1].via, Some(ChangeKind::Downgrade));
        // November: A in full, no credit.
        let lines = rate(&a, &tl, &Aggregates::default(), nov()).unwrap();
        assert_eq!(
            summary(&lines),
            vec![("project_month", 1_000, 300_000, 300_000)]
        );
        assert_eq!(lines[0].package_id, "pkg-a");
        // December (31 days): C in full.
        let lines = rate(&a, &tl, &Aggregates::default(), dec()).unwrap();
        assert_eq!(
            summary(&lines),
            vec![("project_month", 1_000, 200_000, 200_000)]
        );
        assert_eq!(lines[0].package_id, "pkg-c");
    }

    #[test]
    fn later_requests_replace_pending_ones_and_ties_wait() {
        let a = project_fee("pkg-a", 300_000);
        let b = project_fee("pkg-b", 450_000);
        let c = project_fee("pkg-c", 200_000);
        let change = |on, p: &Package| PackageChange {
            on,
            package: p.clone(),
        };
        // Downgrade to C on 5 Nov, then upgrade to B on 20 Nov: C never takes effect.
        let tl = Timeline {
            changes: vec![change(d(2026, 11, 20), &b), change(d(2026, 11, 5), &c)],
            ..Timeline::starting(d(2026, 11, 1))
        };
        let s = tl.schedule(&a);
        let ids: Vec<(&str, NaiveDate)> =
            s.iter().map(|e| (e.package.id.as_str(), e.from)).collect();
        assert_eq!(
            ids,
            vec![("pkg-a", d(2026, 11, 1)), ("pkg-b", d(2026, 11, 20))]
        );
        // Upgrade to B on 10 Nov, then C on 20 Nov (a downgrade from B): C from 1 December.
        let tl = Timeline {
            changes: vec![change(d(2026, 11, 10), &b), change(d(2026, 11, 20), &c)],
            ..Timeline::starting(d(2026, 11, 1))
        };
        let s = tl.schedule(&a);
        let ids: Vec<(&str, NaiveDate)> =
            s.iter().map(|e| (e.package.id.as_str(), e.from)).collect();
        assert_eq!(
            ids,
            vec![
                ("pkg-a", d(2026, 11, 1)),
                ("pkg-b", d(2026, 11, 10)),
                ("pkg-c", d(2026, 12, 1))
            ]
        );
        // Equal daily value (neither has a project fee) is not an upgrade.
        assert_eq!(
            classify_change(&leasing(), &tech_service()),
            ChangeKind::Downgrade
        );
        assert_eq!(classify_change(&a, &a), ChangeKind::Downgrade);
    }

    // ---- rounding ----

    #[test]
    fn rounding_is_half_up_once_per_line() {
        assert_eq!(round_half_up(1, 2), 1); // 0.5 → 1
        assert_eq!(round_half_up(3, 2), 2); // 1.5 → 2
        assert_eq!(round_half_up(5, 2), 3); // 2.5 → 3
        assert_eq!(round_half_up(1, 3), 0); // 0.33 → 0
        assert_eq!(round_half_up(2, 3), 1); // 0.67 → 1
        assert_eq!(round_half_up(-1, 2), -1); // −0.5 → −1 (magnitude half-up)
        assert_eq!(round_half_up(-3, 2), -2);
        assert_eq!(round_half_up(-2, 3), -1);
        assert_eq!(prorate_fen(4_515, 1, 30), 151); // 150.5 → 151
        assert_eq!(prorate_fen(45, 1, 30), 2); // 1.5 → 2
        assert_eq!(prorate_fen(15, 1, 30), 1); // 0.5 → 1
        assert_eq!(prorate_fen(14, 1, 30), 0); // 0.467 → 0
        assert_eq!(prorate_fen(100_001, 20, 30), 66_667); // 66,667.33 → 66,667

        // One day (30 Nov) of 4,515: 150.5 → 151; quantity 1/30 → 0.033.
        let p = project_fee("pkg-a", 4_515);
        let tl = Timeline::starting(d(2026, 11, 30));
        let lines = rate(&p, &tl, &Aggregates::default(), nov()).unwrap();
        assert_eq!(summary(&lines), vec![("project_month", 33, 4_515, 151)]);

        // Upgrade 4,515 → 9,000 on 30 Nov: 4,515 − 150.5→151 credit + 9,000/30 = 300 → 4,664.
        let tl = Timeline {
            changes: vec![PackageChange {
                on: d(2026, 11, 30),
                package: project_fee("pkg-b", 9_000),
            }],
            ..Timeline::starting(d(2026, 11, 1))
        };
        let lines = rate(&p, &tl, &Aggregates::default(), nov()).unwrap();
        assert_eq!(
            summary(&lines),
            vec![
                ("project_month", 1_000, 4_515, 4_515),
                ("project_month_credit", -33, 4_515, -151),
                ("project_month", 33, 9_000, 300),
            ]
        );
        assert_eq!(total_fen(&lines).unwrap(), 4_664);
    }

    // ---- tiers ----

    #[test]
    fn graduated_tiers_at_their_boundaries() {
        let t = [
            Tier {
                up_to: Some(10),
                price_fen: 100,
            },
            Tier {
                up_to: Some(20),
                price_fen: 80,
            },
            Tier {
                up_to: None,
                price_fen: 50,
            },
        ];
        assert_eq!(graduate(&t, -5), vec![]);
        assert_eq!(graduate(&t, 0), vec![]);
        assert_eq!(graduate(&t, 1), vec![(0, 1)]);
        assert_eq!(graduate(&t, 10), vec![(0, 10)]);
        assert_eq!(graduate(&t, 11), vec![(0, 10), (1, 1)]);
        assert_eq!(graduate(&t, 20), vec![(0, 10), (1, 10)]);
        assert_eq!(graduate(&t, 21), vec![(0, 10), (1, 10), (2, 1)]);
        assert_eq!(
            graduate(
                &[Tier {
                    up_to: None,
                    price_fen: 7
                }],
                5
            ),
            vec![(0, 5)]
        );

        // Exactly 3 active devices: only the first band is billed (3 × 5,000).
        let mut usage = Aggregates::default();
        for i in 0..3 {
            let e = ev(
                "x",
                Active,
                1,
                "2026-11-02T00:00:00+08:00",
                Some(&format!("d{i}")),
                None,
            );
            usage.add(&e).unwrap();
        }
        let lines = rate(
            &tech_service(),
            &Timeline::starting(d(2026, 11, 1)),
            &usage,
            nov(),
        )
        .unwrap();
        assert_eq!(
            summary(&lines),
            vec![("device_month#t1", 3_000, 5_000, 15_000)]
        );
        assert!(lines[0].description.contains("1–3"));

        // Tiered messages, rounded per band line: 1,010 over, first 1,000 at 100 per 1k = 100;
        // next 10 at 50 per 1k = 0.5 → 1.
        let p = package(
            "pkg-msg",
            Model::FullSolution,
            vec![tiered(
                Unit::MessageOveragePer1k,
                &[(Some(1_000), 100), (None, 50)],
            )],
        );
        let mut usage = Aggregates::default();
        usage
            .add(&ev(
                "m",
                Messages,
                1_010,
                "2026-11-02T00:00:00+08:00",
                None,
                None,
            ))
            .unwrap();
        let lines = rate(&p, &Timeline::starting(d(2026, 11, 1)), &usage, nov()).unwrap();
        assert_eq!(
            summary(&lines),
            vec![
                ("messages_overage#t1", 1_000, 100, 100),
                ("messages_overage#t2", 10, 50, 1),
            ]
        );
    }

    // ---- aggregation ----

    fn bound_days(events: &[UsageEvent]) -> Vec<u32> {
        let mut a = Aggregates::default();
        for e in events {
            a.add(e).unwrap();
        }
        let mask = a.devices["x"].bound_days(nov());
        (1..=31)
            .filter(|day| mask & (1 << (day - 1)) != 0)
            .collect()
    }

    fn fold_events(events: &[UsageEvent]) -> Aggregates {
        let mut a = Aggregates::default();
        for e in events {
            a.add(e).unwrap();
        }
        a
    }

    fn days_of(mask: u32) -> Vec<u32> {
        (1..=31)
            .filter(|day| mask & (1 << (day - 1)) != 0)
            .collect()
    }

    /// A device the platform knows and the integrator also posts is counted once: the
    /// platform's messages and activity win, a bound day counts once whichever source has it.
    #[test]
    fn platform_usage_overlays_posted_usage_of_the_same_device_once() {
        let tc = Some("tower_crane");
        let posted = fold_events(&[
            // The device the platform knows: 100 messages in 2 events, bound on the 1st–5th,
            // then an unbind on the 12th the platform never saw.
            ev(
                "p1",
                Messages,
                60,
                "2026-11-02T10:00:00+08:00",
                Some("crane-1"),
                Some("hoist"),
            ),
            ev(
                "p2",
                Messages,
                40,
                "2026-11-03T10:00:00+08:00",
                Some("crane-1"),
                None,
            ),
            ev(
                "p3",
                Bound,
                1,
                "2026-11-01T00:00:00+08:00",
                Some("crane-1"),
                None,
            ),
            ev(
                "p4",
                Unbound,
                1,
                "2026-11-06T00:00:00+08:00",
                Some("crane-1"),
                None,
            ),
            ev(
                "p5",
                Unbound,
                1,
                "2026-11-12T12:00:00+08:00",
                Some("crane-1"),
                None,
            ),
            // A device only the integrator reports, and messages without a device.
            ev(
                "p6",
                Messages,
                7,
                "2026-11-02T10:00:00+08:00",
                Some("dust-9"),
                None,
            ),
            ev("p7", Messages, 3, "2026-11-02T10:00:00+08:00", None, None),
        ]);
        // The platform: crane-1 bound from the 10th on (still bound), 40 messages counted.
        let platform = fold_events(&[
            ev(
                "f1",
                Bound,
                1,
                "2026-11-10T09:00:00+08:00",
                Some("crane-1"),
                tc,
            ),
            ev(
                "f2",
                Messages,
                40,
                "2026-11-10T10:00:00+08:00",
                Some("crane-1"),
                tc,
            ),
        ]);

        let mut rated = posted.clone();
        rated.overlay_platform(&platform, nov());
        // 40 (platform, crane-1) + 7 (dust-9) + 3 (no device); never 100 + 40.
        assert_eq!(rated.messages, 50);
        assert_eq!(rated.message_events, 3);
        let crane = &rated.devices["crane-1"];
        assert_eq!(
            (crane.messages, crane.active, crane.category.as_deref()),
            (40, true, tc)
        );
        // Days 1–5 (posted) and 10–30 (platform): 26, each once. A plain merge of the
        // transitions would let the posted unbind on the 12th cut the platform's binding short.
        let mut days: Vec<u32> = (1..=5).collect();
        days.extend(10..=30);
        assert_eq!(days_of(crane.bound_days(nov())), days);
        assert_eq!(rated.device_days(nov())[&tc.map(str::to_owned)], 26);
        assert_eq!(rated.devices["dust-9"].messages, 7);

        // A device the platform knows and nobody posted keeps the platform's transitions.
        let mut only = fold_events(&[ev(
            "q",
            Messages,
            3,
            "2026-11-02T10:00:00+08:00",
            None,
            None,
        )]);
        only.overlay_platform(&platform, nov());
        assert_eq!(only.devices["crane-1"], platform.devices["crane-1"]);
        assert_eq!(only.messages, 43);
    }

    #[test]
    fn bindings_of_days_bind_exactly_those_days() {
        for mask in [
            0u32,
            1,
            0b1011,
            1 << 29,
            (1 << 30) - 1,
            0x5555_5555 & ((1 << 30) - 1),
        ] {
            let dev = DeviceUsage {
                bindings: bindings_of_days(nov().start_ms(), mask),
                ..DeviceUsage::default()
            };
            assert_eq!(dev.bound_days(nov()), mask, "{mask:#b}");
        }
        let dec_all = (1u32 << 31) - 1;
        let dev = DeviceUsage {
            bindings: bindings_of_days(dec().start_ms(), dec_all),
            ..DeviceUsage::default()
        };
        assert_eq!(dev.bound_days(dec()), dec_all);
    }

    #[test]
    fn device_days_count_any_part_of_a_shanghai_day() {
        let b = |ts| ev("b", Bound, 1, ts, Some("x"), None);
        let u = |ts| ev("u", Unbound, 1, ts, Some("x"), None);
        // 23:59 on the 3rd to 00:01 on the 4th: two days.
        assert_eq!(
            bound_days(&[
                b("2026-11-03T23:59:00+08:00"),
                u("2026-11-04T00:01:00+08:00")
            ]),
            vec![3, 4]
        );
        // Unbound exactly at midnight: the new day is not touched.
        assert_eq!(
            bound_days(&[
                b("2026-11-03T10:00:00+08:00"),
                u("2026-11-05T00:00:00+08:00")
            ]),
            vec![3, 4]
        );
        // The day boundary is Shanghai midnight, not UTC midnight (16:00 UTC).
        assert_eq!(
            bound_days(&[b("2026-11-03T15:30:00Z"), u("2026-11-03T16:30:00Z")]),
            vec![3, 4]
        );
        // Unbound and rebound on the same day: the day counts once.
        assert_eq!(
            bound_days(&[
                b("2026-11-03T08:00:00+08:00"),
                u("2026-11-03T12:00:00+08:00"),
                b("2026-11-03T14:00:00+08:00"),
                u("2026-11-04T10:00:00+08:00"),
            ]),
            vec![3, 4]
        );
        // First transition is an unbind: bound since the period start.
        assert_eq!(
            bound_days(&[u("2026-11-10T12:00:00+08:00")]),
            (1..=10).collect::<Vec<_>>()
        );
        // Bound and unbound at the same instant: nothing.
        assert_eq!(
            bound_days(&[
                b("2026-11-03T12:00:00+08:00"),
                u("2026-11-03T12:00:00+08:00")
            ]),
            Vec::<u32>::new()
        );
        // A repeated bind is a no-op: 2–6.
        assert_eq!(
            bound_days(&[
                b("2026-11-02T12:00:00+08:00"),
                b("2026-11-05T12:00:00+08:00"),
                u("2026-11-06T12:00:00+08:00"),
            ]),
            vec![2, 3, 4, 5, 6]
        );
        // Bound in October, unbound 2 November: each period counts its own days.
        let agg = fold(&[
            b("2026-10-30T10:00:00+08:00"),
            u("2026-11-02T12:00:00+08:00"),
        ]);
        let oct = Period::parse("2026-10").unwrap();
        assert_eq!(agg.get("sub-1", oct).unwrap().device_days(oct)[&None], 2); // 30, 31
        assert_eq!(
            agg.get("sub-1", nov()).unwrap().device_days(nov())[&None],
            2
        ); // 1, 2
    }

    #[test]
    fn a_device_has_its_smallest_category() {
        let mut a = Aggregates::default();
        let ts = "2026-11-02T00:00:00+08:00";
        a.add(&ev("1", Active, 1, ts, Some("x"), None)).unwrap();
        a.add(&ev("2", Active, 1, ts, Some("x"), Some("hoist")))
            .unwrap();
        a.add(&ev("3", Active, 1, ts, Some("x"), Some("camera")))
            .unwrap();
        a.add(&ev("4", Active, 1, ts, Some("x"), Some("spray")))
            .unwrap();
        assert_eq!(a.devices["x"].category.as_deref(), Some("camera"));
    }

    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }

        // 62 random bits, reduced (the slight modulo bias is irrelevant here).
        fn below(&mut self, n: u64) -> u64 {
            ((self.next() << 31) | self.next()) % n
        }
    }

    fn random_events(n: usize, rng: &mut Lcg) -> Vec<UsageEvent> {
        const CATEGORIES: [&str; 4] = ["tower_crane", "dust_noise", "hoist", "camera"];
        // 25 October 00:00 to 5 December 00:00 Shanghai: three periods.
        let from = at("2026-10-25T00:00:00+08:00").timestamp_millis();
        let span = at("2026-12-05T00:00:00+08:00").timestamp_millis() - from;
        let pick = |rng: &mut Lcg, n: usize| usize::try_from(rng.below(n as u64)).unwrap();
        (0..n)
            .map(|i| {
                let dev = pick(rng, 40);
                let metric = match rng.below(100) {
                    0..80 => Messages,
                    80..88 => Active,
                    88..94 => Bound,
                    _ => Unbound,
                };
                let ms = from + i64::try_from(rng.below(u64::try_from(span).unwrap())).unwrap();
                // Mostly the device's own category; one event in five carries another or none.
                let category = match pick(rng, 10) {
                    0 => None,
                    1 => Some(CATEGORIES[pick(rng, 4)].to_owned()),
                    _ => Some(CATEGORIES[dev % 4].to_owned()),
                };
                // One message event in fifty comes without a device.
                let device_id =
                    (metric != Messages || pick(rng, 50) != 0).then(|| format!("dev-{dev}"));
                UsageEvent {
                    id: format!("r{i}"),
                    subscription_id: format!("sub-{}", rng.below(3)),
                    metric,
                    quantity: i64::try_from(rng.below(200)).unwrap(),
                    ts: DateTime::from_timestamp_millis(ms).unwrap(),
                    device_id,
                    category,
                }
            })
            .collect()
    }

    #[test]
    fn aggregation_is_order_independent_and_merges() {
        let mut rng = Lcg(0x5eed);
        let events = random_events(5_000, &mut rng);
        let in_order = fold(&events);

        let mut shuffled = events.clone();
        for i in (1..shuffled.len()).rev() {
            let j = usize::try_from(rng.below(u64::try_from(i + 1).unwrap())).unwrap();
            shuffled.swap(i, j);
        }
        assert_ne!(shuffled, events);
        let reordered = fold(&shuffled);
        assert_eq!(in_order, reordered);

        // Three partial folds merged in another order give the same.
        let (a, rest) = shuffled.split_at(1_234);
        let (b, c) = rest.split_at(2_000);
        let mut merged = fold(c);
        merged.merge(&fold(a));
        let mut bc = fold(b);
        bc.merge(&Aggregator::new());
        merged.merge(&bc);
        assert_eq!(in_order, merged);

        // Not vacuous: three subscriptions × three periods, with bindings.
        let all = in_order.clone().into_aggregates();
        assert_eq!(all.len(), 9);
        assert!(
            all.values()
                .any(|a| a.devices.values().any(|d| !d.bindings.is_empty()))
        );
        assert_eq!(all, reordered.into_aggregates());

        // And the ratings are identical, line for line.
        let merged = merged.into_aggregates();
        for (key, usage) in &all {
            for p in [full_solution(), tech_service(), leasing()] {
                let tl = suspended_timeline();
                let x = rate(&p, &tl, usage, key.period).unwrap();
                let y = rate(&p, &tl, &merged[key], key.period).unwrap();
                assert_eq!(x, y);
            }
        }
    }

    // ---- corrections ----

    #[test]
    fn new_packages_and_usage_events_are_bounded() {
        let mut p = package(
            "pkg-max",
            Model::Leasing,
            vec![PriceLine::flat(Unit::DeviceDay, MAX_AMOUNT_FEN)],
        );
        p.validate_new().unwrap();
        for bad in [MAX_AMOUNT_FEN + 1, i64::MAX] {
            p.prices[0].price_fen = bad;
            assert_eq!(p.validate_new().unwrap_err().field, "prices[0].price_fen");
        }
        let mut t = package(
            "pkg-t",
            Model::TechService,
            vec![tiered(
                Unit::DeviceMonth,
                &[(Some(MAX_COUNT), 1), (None, MAX_AMOUNT_FEN)],
            )],
        );
        t.validate_new().unwrap();
        t.prices[0].tiers.as_mut().unwrap()[0].up_to = Some(MAX_COUNT + 1);
        assert_eq!(
            t.validate_new().unwrap_err().field,
            "prices[0].tiers[0].up_to"
        );
        let mut m = full_solution();
        m.prices[2].included = Some(MAX_COUNT + 1);
        assert_eq!(m.validate_new().unwrap_err().field, "prices[2].included");
        m.prices[2].included = Some(MAX_COUNT);
        m.name = "总体\u{202E}方案".into();
        assert_eq!(m.validate_new().unwrap_err().field, "name");

        let mut agg = Aggregates::default();
        let q = |n| ev("q", Messages, n, "2026-11-02T08:00:00+08:00", None, None);
        agg.add(&q(MAX_EVENT_QUANTITY)).unwrap();
        for bad in [MAX_EVENT_QUANTITY + 1, i64::MAX, -1, i64::MIN] {
            assert_eq!(agg.add(&q(bad)).unwrap_err().field, "quantity", "{bad}");
        }
        assert_eq!(agg.messages, MAX_EVENT_QUANTITY);
    }

    #[test]
    fn ratings_beyond_the_bounds_are_refused_never_wrapped() {
        let month = Timeline::starting(nov().first_day());
        let bound_all_month = nov_usage(&[ev(
            "b",
            Bound,
            1,
            "2026-11-01T00:00:00+08:00",
            Some("crane-1"),
            Some("tower_crane"),
        )]);
        // One device-day at the largest price is billable; thirty of them are beyond 10^15.
        let mut p = package(
            "pkg-max",
            Model::Leasing,
            vec![PriceLine::flat(Unit::DeviceDay, MAX_AMOUNT_FEN / 30)],
        );
        assert_eq!(
            total_fen(&rate(&p, &month, &bound_all_month, nov()).unwrap()).unwrap(),
            MAX_AMOUNT_FEN / 30 * 30
        );
        // Prices stored before the bounds (up to i64::MAX) and huge usage: a clear error naming
        // the line or the total, never a wrapped or saturated amount, never a panic.
        for price in [MAX_AMOUNT_FEN / 30 + 1, MAX_AMOUNT_FEN, i64::MAX] {
            p.prices[0].price_fen = price;
            let e = rate(&p, &month, &bound_all_month, nov()).unwrap_err();
            assert_eq!(e.field, "device_day", "{price}: {e}");
        }
        let fee = |price| {
            package(
                "pkg-fee",
                Model::FullSolution,
                vec![PriceLine::flat(Unit::ProjectMonth, price)],
            )
        };
        let none = Aggregates::default();
        assert_eq!(
            total_fen(&rate(&fee(MAX_AMOUNT_FEN), &month, &none, nov()).unwrap()).unwrap(),
            MAX_AMOUNT_FEN
        );
        let e = rate(&fee(i64::MAX), &month, &none, nov()).unwrap_err();
        assert_eq!(e.field, "project_month");
        // Two lines each within the bound whose sum is not: the total is refused.
        let two = package(
            "pkg-two",
            Model::FullSolution,
            vec![
                PriceLine::flat(Unit::ProjectMonth, MAX_AMOUNT_FEN),
                PriceLine::flat(Unit::OneOff, 1),
            ],
        );
        let e = rate(&two, &month, &Aggregates::default(), nov()).unwrap_err();
        assert_eq!(e.field, "total_fen");
        // A message count at i64::MAX (the store's limit) rates to a refusal, not a wrap.
        let mut overage = PriceLine::flat(Unit::MessageOveragePer1k, 1_000);
        overage.included = Some(0);
        let msgs = package("pkg-msg", Model::FullSolution, vec![overage]);
        let huge = Aggregates {
            messages: i64::MAX,
            ..Aggregates::default()
        };
        assert!(rate(&msgs, &month, &huge, nov()).is_err());
        // Totals and corrections of lines at the extremes are checked.
        let extreme = |amount_fen: i64, quantity_milli: i64| InvoiceLine {
            item: "x".into(),
            description: String::new(),
            package_id: "p".into(),
            package_version: 1,
            quantity_milli,
            unit_price_fen: 0,
            amount_fen,
            trace: Vec::new(),
            corrects: None,
        };
        assert!(total_fen(&[extreme(i64::MAX, 1), extreme(i64::MAX, 1)]).is_err());
        assert!(total_fen(&[extreme(i64::MIN, 1)]).is_err());
        assert_eq!(
            diff_lines(nov(), &[extreme(i64::MIN, 1)], &[extreme(1, 1)])
                .unwrap_err()
                .field,
            "x"
        );
        assert!(diff_lines(nov(), &[extreme(1, i64::MIN)], &[]).is_err());
    }

    #[test]
    fn late_usage_becomes_correction_lines() {
        // Closed with e2 (crane-1 unbound on the 20th) and e11 (20,000 dust-1 messages) missing.
        let all = stream();
        let early: Vec<UsageEvent> = all
            .iter()
            .filter(|e| e.id != "e2" && e.id != "e11")
            .cloned()
            .collect();
        let previous = nov_usage(&early);
        let new = nov_usage(&all);
        let tl = suspended_timeline();

        // Leasing: crane-1 was billed 1–4 and 15–30 = 20 days, now 10: −10 days × 800 = −8,000.
        // Previously 200 + 6,000 + 36 × 800 = 35,000; now 27,000.
        let before = rate(&leasing(), &tl, &previous, nov()).unwrap();
        assert_eq!(total_fen(&before).unwrap(), 35_000);
        let lines = correction_lines(&leasing(), &tl, &previous, &new, nov()).unwrap();
        assert_eq!(
            summary(&lines),
            vec![(
                "correction:2026-11:device_day:tower_crane",
                -10_000,
                800,
                -8_000
            )]
        );
        assert_eq!(lines[0].corrects, Some(nov()));
        assert_eq!(
            total_fen(&before).unwrap() + total_fen(&lines).unwrap(),
            27_000
        );

        // Full solution: 110,000 messages gave 9,750 over → 487.5 → 488; now 1,488: +1,000.
        let before = rate(&full_solution(), &tl, &previous, nov()).unwrap();
        let lines = correction_lines(&full_solution(), &tl, &previous, &new, nov()).unwrap();
        assert_eq!(
            summary(&lines),
            vec![("correction:2026-11:messages_overage", 20_000, 50, 1_000)]
        );
        assert_eq!(
            total_fen(&before).unwrap() + total_fen(&lines).unwrap(),
            1_401_488
        );

        // Tech service: the same five active devices, nothing to correct.
        assert!(
            correction_lines(&tech_service(), &tl, &previous, &new, nov())
                .unwrap()
                .is_empty()
        );

        // A line that disappears is reversed.
        let gone = diff_lines(nov(), &before[2..], &[]).unwrap();
        assert_eq!(
            summary(&gone),
            vec![("correction:2026-11:messages_overage", -9_750, 50, -488)]
        );
    }

    // ---- validation ----

    fn field_of(p: &Package) -> String {
        p.validate().unwrap_err().field
    }

    #[test]
    fn invalid_packages_name_the_field() {
        assert!(full_solution().validate().is_ok());
        assert!(tech_service().validate().is_ok());
        assert!(leasing().validate().is_ok());

        let with = |lines: Vec<PriceLine>| package("p", Model::Leasing, lines);
        let t = |tiers: &[(Option<i64>, i64)]| with(vec![tiered(Unit::DeviceDay, tiers)]);

        assert_eq!(
            field_of(&with(vec![PriceLine::flat(Unit::ProjectMonth, -1)])),
            "prices[0].price_fen"
        );
        assert_eq!(
            field_of(&t(&[(Some(10), 1), (None, -1)])),
            "prices[0].tiers[1].price_fen"
        );
        assert_eq!(
            field_of(&t(&[(Some(20), 1), (Some(10), 1), (None, 1)])),
            "prices[0].tiers[1].up_to"
        );
        assert_eq!(
            field_of(&t(&[(Some(10), 1), (Some(10), 1), (None, 1)])),
            "prices[0].tiers[1].up_to"
        );
        assert_eq!(
            field_of(&t(&[(Some(0), 1), (None, 1)])),
            "prices[0].tiers[0].up_to"
        );
        assert_eq!(
            field_of(&t(&[(Some(10), 1), (Some(20), 1)])),
            "prices[0].tiers[1].up_to"
        );
        assert_eq!(
            field_of(&t(&[(None, 1), (None, 1)])),
            "prices[0].tiers[0].up_to"
        );
        assert_eq!(field_of(&t(&[])), "prices[0].tiers");
        let mut priced_and_tiered = tiered(Unit::DeviceDay, &[(None, 1)]);
        priced_and_tiered.price_fen = 5;
        assert_eq!(
            field_of(&with(vec![priced_and_tiered])),
            "prices[0].price_fen"
        );
        assert_eq!(
            field_of(&with(vec![tiered(Unit::ProjectMonth, &[(None, 1)])])),
            "prices[0].tiers"
        );
        assert_eq!(
            field_of(&with(vec![device_line(
                Unit::ProjectMonth,
                1,
                Some("hoist")
            )])),
            "prices[0].category"
        );
        assert_eq!(
            field_of(&with(vec![device_line(
                Unit::DeviceDay,
                1,
                Some("Tower Crane")
            )])),
            "prices[0].category"
        );
        let mut included = PriceLine::flat(Unit::DeviceDay, 1);
        included.included = Some(10);
        assert_eq!(field_of(&with(vec![included])), "prices[0].included");
        let mut negative = PriceLine::flat(Unit::MessageOveragePer1k, 1);
        negative.included = Some(-1);
        assert_eq!(field_of(&with(vec![negative])), "prices[0].included");
        let dup = with(vec![
            device_line(Unit::DeviceDay, 1, Some("hoist")),
            device_line(Unit::DeviceDay, 2, Some("hoist")),
        ]);
        let err = dup.validate().unwrap_err();
        assert_eq!(err.field, "prices[1]");
        assert!(err.to_string().contains("device_day:hoist"), "{err}");
        assert_eq!(field_of(&with(vec![])), "prices");
        let mut v0 = leasing();
        v0.version = 0;
        assert_eq!(field_of(&v0), "version");

        // Several one-off lines are fine and get numbered items.
        let two = package(
            "p",
            Model::FullSolution,
            vec![
                PriceLine::flat(Unit::OneOff, 100),
                PriceLine::flat(Unit::OneOff, 200),
            ],
        );
        let lines = rate(
            &two,
            &Timeline::starting(d(2026, 11, 1)),
            &Aggregates::default(),
            nov(),
        )
        .unwrap();
        assert_eq!(
            summary(&lines),
            vec![
                ("one_off:1", 1_000, 100, 100),
                ("one_off:2", 1_000, 200, 200)
            ]
        );
    }

    #[test]
    fn invalid_timelines_and_events_name_the_field() {
        let mut tl = Timeline::starting(d(2026, 11, 10));
        tl.end = Some(d(2026, 11, 9));
        assert_eq!(tl.validate().unwrap_err().field, "end");
        let mut tl = Timeline::starting(d(2026, 11, 1));
        tl.suspensions.push(Suspension {
            from: d(2026, 11, 5),
            to: Some(d(2026, 11, 4)),
        });
        assert_eq!(tl.validate().unwrap_err().field, "suspensions[0].to");
        let mut tl = Timeline::starting(d(2026, 11, 10));
        tl.changes.push(PackageChange {
            on: d(2026, 11, 9),
            package: leasing(),
        });
        assert_eq!(tl.validate().unwrap_err().field, "changes[0].on");
        let mut bad = leasing();
        bad.prices[0].price_fen = -1;
        tl.changes[0] = PackageChange {
            on: d(2026, 11, 12),
            package: bad,
        };
        assert_eq!(
            tl.validate().unwrap_err().field,
            "changes[0].package.prices[0].price_fen"
        );
        assert!(rate(&leasing(), &tl, &Aggregates::default(), nov()).is_err());

        let mut agg = Aggregator::new();
        let ts = "2026-11-02T00:00:00+08:00";
        let err = agg.add(&ev("n", Messages, -1, ts, None, None)).unwrap_err();
        assert_eq!(err.field, "quantity");
        let err = agg.add(&ev("b", Bound, 1, ts, None, None)).unwrap_err();
        assert_eq!(err.field, "device_id");
        let mut e = ev("s", Messages, 1, ts, None, None);
        e.subscription_id.clear();
        assert_eq!(agg.add(&e).unwrap_err().field, "subscription_id");
        let mut e = ev("s", Messages, 1, ts, Some(""), None);
        assert_eq!(agg.add(&e).unwrap_err().field, "device_id");
        e.device_id = None;
        e.metric = Active;
        assert_eq!(agg.add(&e).unwrap_err().field, "device_id");
        // Rejected events left nothing behind.
        assert_eq!(agg, Aggregator::new());
    }

    // ---- periods ----

    #[test]
    fn periods_are_shanghai_calendar_months() {
        let p = nov();
        assert_eq!((p.year(), p.month()), (2026, 11));
        assert_eq!(p.to_string(), "2026-11");
        assert_eq!("2026-11".parse::<Period>().unwrap(), p);
        for bad in [
            "2026-13",
            "2026-00",
            "2026-1",
            "26-11",
            "2026/11",
            "2026-11-01",
            "",
            "２０２６-11",
            "1969-12",
        ] {
            assert_eq!(Period::parse(bad).unwrap_err().field, "period", "{bad}");
        }
        let days = |s| Period::parse(s).unwrap().days_in_month();
        assert_eq!(days("2026-11"), 30);
        assert_eq!(days("2026-12"), 31);
        assert_eq!(days("2026-02"), 28);
        assert_eq!(days("2028-02"), 29);
        assert_eq!(days("2100-02"), 28);
        assert_eq!(days("2000-02"), 29);
        assert_eq!(p.start(), at("2026-10-31T16:00:00Z"));
        assert_eq!(p.end(), at("2026-11-30T16:00:00Z"));
        assert_eq!(p.end(), p.next().start());
        assert_eq!(
            Period::parse("2026-12").unwrap().next().to_string(),
            "2027-01"
        );
        assert_eq!(p.first_day(), d(2026, 11, 1));
        assert_eq!(p.last_day(), d(2026, 11, 30));
        assert_eq!(
            Period::containing(at("2026-10-31T15:59:59.999Z")).to_string(),
            "2026-10"
        );
        assert_eq!(Period::containing(at("2026-10-31T16:00:00Z")), p);
        assert_eq!(shanghai_date(at("2026-10-31T16:00:00Z")), d(2026, 11, 1));
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"2026-11\"");
        assert_eq!(serde_json::from_str::<Period>("\"2026-11\"").unwrap(), p);
        assert!(serde_json::from_str::<Period>("\"2026-1\"").is_err());
        // The day arithmetic agrees with chrono across four centuries and leap days.
        for z in (-800_000i64..800_000).step_by(7) {
            let (y, m, dd) = civil_from_days(z);
            let c =
                NaiveDate::from_num_days_from_ce_opt(i32::try_from(z + 719_163).unwrap()).unwrap();
            assert_eq!((y, m, dd), (i64::from(c.year()), c.month(), c.day()));
            assert_eq!(days_from_civil(y, m, dd), z);
        }
    }

    // ---- wire forms ----

    #[test]
    fn wire_forms() {
        let json = r#"{"id":"pkg-1","version":2,"name":"综合方案","model":"full_solution",
            "prices":[{"unit":"message_overage_per_1k","price_fen":50,"included":1000},
                      {"unit":"device_month","tiers":[{"up_to":3,"price_fen":5000},{"price_fen":4000}]},
                      {"unit":"device_day","price_fen":800,"category":"tower_crane"}]}"#;
        let p: Package = serde_json::from_str(json).unwrap();
        p.validate().unwrap();
        assert_eq!(
            p.pause_on_suspend,
            PausePolicy {
                project_month: true,
                leasing_clock: true
            }
        );
        let back = serde_json::to_value(&p).unwrap();
        assert_eq!(back["model"], "full_solution");
        assert_eq!(back["prices"][0]["unit"], "message_overage_per_1k");
        assert_eq!(serde_json::from_value::<Package>(back).unwrap(), p);
        for (model, s) in [
            (Model::TechService, "tech_service"),
            (Model::Leasing, "leasing"),
        ] {
            assert_eq!(serde_json::to_value(model).unwrap(), s);
        }
        assert!(serde_json::from_str::<Package>(&json.replace("\"name\"", "\"nmae\"")).is_err());

        let e: UsageEvent = serde_json::from_str(
            r#"{"id":"u-1","subscription_id":"sub-1","metric":"messages","quantity":12,
                "ts":"2026-11-20T10:00:00+08:00"}"#,
        )
        .unwrap();
        assert_eq!(Period::containing(e.ts), nov());
        assert_eq!(e.device_id, None);

        let line = &rate(
            &full_solution(),
            &suspended_timeline(),
            &nov_usage(&stream()),
            nov(),
        )
        .unwrap()[1];
        let v = serde_json::to_value(line).unwrap();
        assert_eq!(v["item"], "project_month");
        assert_eq!(v["quantity_milli"], 667);
        assert!(v.get("corrects").is_none());
    }
}

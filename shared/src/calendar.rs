//! The calendar every concern shares: Asia/Shanghai is UTC+8 all year (no daylight saving), and
//! a month (`Period`, `YYYY-MM` on the wire) is a calendar month there. Dates are proleptic
//! Gregorian; the day arithmetic is H. Hinnant's, so no time-zone database is needed.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::FieldError;

/// Asia/Shanghai is UTC+8 all year.
pub const SHANGHAI_OFFSET_SECS: i32 = 8 * 3600;
/// The offset in milliseconds.
pub const OFFSET_MS: i64 = SHANGHAI_OFFSET_SECS as i64 * 1000;
/// A day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

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
    pub fn new(year: i32, month: u32) -> Result<Period, FieldError> {
        if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) {
            return Err(FieldError::new(
                "period",
                "must be a month YYYY-MM of year 1970..=9999",
            ));
        }
        Ok(Period { year, month })
    }

    /// Parses `YYYY-MM` (exactly four and two digits).
    pub fn parse(s: &str) -> Result<Period, FieldError> {
        let bad = || FieldError::new("period", format!("expected YYYY-MM, got {s:?}"));
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

    /// The period holding an instant given in milliseconds since the epoch (the usage fold's hot
    /// path: no `DateTime` is built).
    pub fn of_epoch_ms(ms: i64) -> Period {
        let (y, m, _) = civil_from_days((ms + OFFSET_MS).div_euclid(DAY_MS));
        Period {
            year: i32::try_from(y).unwrap_or(i32::MAX),
            month: m,
        }
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

    pub fn start_ms(self) -> i64 {
        days_from_civil(i64::from(self.year), self.month, 1) * DAY_MS - OFFSET_MS
    }

    pub fn end_ms(self) -> i64 {
        self.start_ms() + i64::from(self.days_in_month()) * DAY_MS
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Period {
    type Err = FieldError;
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

pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
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

    #[test]
    fn periods_are_shanghai_calendar_months() {
        let p = Period::parse("2026-11").unwrap();
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
}

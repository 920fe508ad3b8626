//! Calendar helpers.

use super::*;

/// A calendar month, serialised as `"YYYY-MM"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct YearMonth {
    year: i32,
    month: u32,
}

impl YearMonth {
    pub fn new(year: i32, month: u32) -> Result<Self> {
        if (1..=9999).contains(&year) && (1..=12).contains(&month) {
            Ok(YearMonth { year, month })
        } else {
            Err(SafetyFundError::InvalidMonth(format!("{year}-{month}")))
        }
    }

    /// The month containing `date` (years outside 1..=9999 are refused).
    pub fn of(date: NaiveDate) -> Result<Self> {
        YearMonth::new(date.year(), date.month())
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> u32 {
        self.month
    }

    pub fn first_day(self) -> Result<NaiveDate> {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).ok_or(SafetyFundError::DateOutOfRange)
    }

    /// The month end (月末), when accruals are due.
    pub fn last_day(self) -> Result<NaiveDate> {
        self.first_day()?
            .checked_add_months(Months::new(1))
            .and_then(|d| d.pred_opt())
            .ok_or(SafetyFundError::DateOutOfRange)
    }
}

impl fmt::Display for YearMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for YearMonth {
    type Err = SafetyFundError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || SafetyFundError::InvalidMonth(s.to_owned());
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 || !(y.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u32 = m.parse().map_err(|_| bad())?;
        YearMonth::new(year, month).map_err(|_| bad())
    }
}

impl Serialize for YearMonth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for YearMonth {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A configured window: whole months first (clamped to the month end, so Jan 31 + 1 month =
/// Feb 28/29), then days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    #[serde(default)]
    pub months: u32,
    #[serde(default)]
    pub days: u32,
}

impl Period {
    pub fn after(self, date: NaiveDate) -> Result<NaiveDate> {
        date.checked_add_months(Months::new(self.months))
            .and_then(|d| d.checked_add_days(Days::new(u64::from(self.days))))
            .ok_or(SafetyFundError::DateOutOfRange)
    }
}

/// A day of the year (month, day), e.g. the under-use report deadline April 30.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonthDay {
    pub month: u32,
    pub day: u32,
}

impl MonthDay {
    pub fn in_year(self, year: i32) -> Result<NaiveDate> {
        NaiveDate::from_ymd_opt(year, self.month, self.day).ok_or(SafetyFundError::DateOutOfRange)
    }
}

//! What is known of a person from the ID document: sex, and age on a given day; and how numbers
//! are shown (masked) in answers.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

/// Sex as the ID card records it (GB 11643: the 17th digit, odd for men).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    Male,
    Female,
}

/// Age in whole years on `day` (a calendar day in Asia/Shanghai), `None` before the birth date.
///
/// A person is a year older *on* their birthday: 18 on the 18th birthday, 17 the day before.
/// Someone born on 29 February has the birthday on 1 March in a year without one (on 28
/// February they are still the younger age) — the common reading of "周岁", and what comparing
/// (month, day) pairs gives, since (2, 28) < (2, 29) < (3, 1).
pub fn age_on(birth: NaiveDate, day: NaiveDate) -> Option<u32> {
    if day < birth {
        return None;
    }
    let years = day.year() - birth.year();
    let before_birthday = (day.month(), day.day()) < (birth.month(), birth.day());
    u32::try_from(years - i32::from(before_birthday)).ok()
}

/// Eight asterisks: a fixed count, so the mask does not tell the length of what it hides.
const MASK: &str = "********";

/// A number as answers show it: the first six characters, eight `*`, the last four (API.md:
/// `id_number_masked`) — for an 18-character ID that hides the birth date and sequence digits.
/// Shorter numbers (passports, permits) keep at most a third of their characters at the front
/// and a quarter at the back, so a mask never shows most of a number.
pub fn mask_number(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    let head = (n / 3).min(6);
    let tail = (n / 4).min(4);
    let mut out: String = chars[..head].iter().collect();
    out.push_str(MASK);
    out.extend(&chars[n - tail..]);
    out
}

/// A mobile number as answers show it: `138****5678`.
pub fn mask_phone(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() < 11 {
        return "****".into();
    }
    let n = chars.len();
    let mut out: String = chars[..3].iter().collect();
    out.push_str("****");
    out.extend(&chars[n - 4..]);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn a_person_turns_18_on_the_18th_birthday() {
        let birth = d("2008-06-15");
        assert_eq!(age_on(birth, d("2026-06-14")), Some(17));
        assert_eq!(age_on(birth, d("2026-06-15")), Some(18));
        assert_eq!(age_on(birth, d("2026-06-16")), Some(18));
        assert_eq!(age_on(birth, d("2008-06-15")), Some(0));
        assert_eq!(age_on(birth, d("2008-06-14")), None);
        // Year ends do not count as birthdays.
        assert_eq!(age_on(d("2008-12-31"), d("2026-12-30")), Some(17));
        assert_eq!(age_on(d("2008-12-31"), d("2026-12-31")), Some(18));
        assert_eq!(age_on(d("2009-01-01"), d("2026-12-31")), Some(17));
    }

    #[test]
    fn born_on_29_february_turns_older_on_1_march_in_common_years() {
        let birth = d("2008-02-29");
        // 2026 has no 29 February: still 17 on the 28th, 18 on 1 March.
        assert_eq!(age_on(birth, d("2026-02-28")), Some(17));
        assert_eq!(age_on(birth, d("2026-03-01")), Some(18));
        // 2028 has one: 20 on the 29th itself, still 19 on the 28th.
        assert_eq!(age_on(birth, d("2028-02-28")), Some(19));
        assert_eq!(age_on(birth, d("2028-02-29")), Some(20));
        assert_eq!(age_on(d("2010-02-28"), d("2028-02-28")), Some(18));
        assert_eq!(age_on(d("2010-02-28"), d("2028-02-27")), Some(17));
    }

    #[test]
    fn numbers_are_masked_to_first_six_and_last_four() {
        assert_eq!(mask_number("11010519491231002X"), "110105********002X");
        // A 9-character passport keeps 3 in front and 2 behind; a short number almost nothing.
        assert_eq!(mask_number("E12345678"), "E12********78");
        assert_eq!(mask_number("AB12"), "A********2");
        assert_eq!(mask_number("A1"), "********");
        assert_eq!(mask_phone("13812345678"), "138****5678");
        assert_eq!(mask_phone("1381"), "****");
    }
}

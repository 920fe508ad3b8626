//! ID documents (DOMAIN.md §11.4.2, `idCardType`).
//!
//! Type `01`, the resident identity card (居民身份证), carries an 18-character number (GB 11643):
//! a six-digit administrative division code, the birth date `YYYYMMDD`, a three-digit sequence
//! whose last digit is odd for men and even for women, and a check character. The birth date and
//! sex are read from it, never typed a second time. Other document types are kept as given, after
//! a length and character check.
//!
//! The number itself is [`IdNumber`]: it never prints (its `Debug` shows the mask), and no error
//! message here repeats it.

use std::fmt;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use smartsite_shared::domain::tenancy::RegionCode;
use smartsite_shared::ids::FieldError;

use super::contact::Secret;
use super::person::{Sex, mask_number};

/// The national `idCardType` dictionary.
pub const ID_CARD_TYPES: [(&str, &str); 26] = [
    ("01", "身份证"),
    ("02", "军官证"),
    ("03", "武警警官证"),
    ("04", "士兵证"),
    ("05", "军队离退休干部证"),
    ("06", "残疾证"),
    ("07", "残疾军人证(1-8级)"),
    ("08", "护照"),
    ("09", "港澳同胞回乡证"),
    ("10", "港澳居民来往内地通行证"),
    ("11", "中华人民共和国往来港澳通行证"),
    ("12", "台湾居民来往大陆通行证"),
    ("13", "大陆居民往来台湾通行证"),
    ("14", "外交官证"),
    ("15", "领事馆证"),
    ("16", "海员证"),
    ("17", "香港身份证"),
    ("18", "台湾身份证"),
    ("19", "澳门身份证"),
    ("20", "外国人身份证件"),
    ("21", "高校毕业生自主创业证"),
    ("22", "就业失业登记证"),
    ("23", "台胞证"),
    ("24", "退休证"),
    ("25", "离休证"),
    ("99", "其他证件"),
];

/// The resident identity card, the default type.
pub const RESIDENT_ID_CARD: &str = "01";

/// A code of the national `idCardType` dictionary.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct IdCardType(String);

impl IdCardType {
    pub fn parse(field: &str, s: &str) -> Result<IdCardType, FieldError> {
        if ID_CARD_TYPES.iter().any(|(code, _)| *code == s) {
            Ok(IdCardType(s.to_owned()))
        } else {
            Err(FieldError::new(
                field,
                "not a national id_card_type code (01 resident identity card, 02 … 25, 99)",
            ))
        }
    }

    pub fn resident() -> IdCardType {
        IdCardType(RESIDENT_ID_CARD.into())
    }

    pub fn is_resident(&self) -> bool {
        self.0 == RESIDENT_ID_CARD
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for IdCardType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        IdCardType::parse("id_card_type", &s).map_err(serde::de::Error::custom)
    }
}

/// A parsed ID number, upper case for type `01` (a trailing `x` becomes `X`), as given for the
/// other types. Shown only as its mask.
#[derive(Clone, PartialEq, Eq)]
pub struct IdNumber(String);

impl IdNumber {
    /// The clear number: for encryption, the blind index and an audited reveal only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// First 6, eight `*`, last 4 (API.md `id_number_masked`).
    pub fn masked(&self) -> String {
        mask_number(&self.0)
    }
}

impl fmt::Debug for IdNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdNumber({})", self.masked())
    }
}

/// A parsed ID document: its type, its number and, for type `01`, what the number tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdDocument {
    pub card_type: IdCardType,
    pub number: IdNumber,
    /// Birth date and sex read from a type-`01` number; `None` for other types.
    pub derived: Option<(NaiveDate, Sex)>,
}

/// GB 11643 weights of the first 17 characters (2^(17-i) mod 11).
const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// The check character for `sum mod 11`.
const CHECK: [u8; 11] = *b"10X98765432";

/// The GB 11643 check character of 17 digits, `None` unless they are 17 ASCII digits.
pub fn check_char(first17: &str) -> Option<char> {
    let b = first17.as_bytes();
    if b.len() != 17 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = b
        .iter()
        .zip(WEIGHTS)
        .map(|(c, w)| u32::from(c - b'0') * w)
        .sum();
    Some(CHECK[(sum % 11) as usize] as char)
}

/// The earliest birth year taken from a number (a person born before it would be over 125).
const FIRST_BIRTH_YEAR: i32 = 1900;

impl IdDocument {
    /// Parses `number` as a document of `card_type`. `today` (Asia/Shanghai) bounds the birth
    /// date. Errors name `field` and never repeat the number.
    pub fn parse(
        card_type: IdCardType,
        field: &str,
        number: &Secret,
        today: NaiveDate,
    ) -> Result<IdDocument, FieldError> {
        let s = number.expose().trim();
        if card_type.is_resident() {
            let (n, birth, sex) = parse_resident(field, s, today)?;
            return Ok(IdDocument {
                card_type,
                number: IdNumber(n),
                derived: Some((birth, sex)),
            });
        }
        let n = s.chars().count();
        let charset = s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-()".contains(c) || is_cjk(c));
        if !(4..=32).contains(&n) || !charset {
            return Err(FieldError::new(
                field,
                "expected 4 to 32 letters, digits, '-', '(', ')' or Chinese characters",
            ));
        }
        Ok(IdDocument {
            card_type,
            number: IdNumber(s.to_owned()),
            derived: None,
        })
    }
}

/// CJK Unified Ideographs: some military document numbers read 南字第…号.
fn is_cjk(c: char) -> bool {
    ('\u{4E00}'..='\u{9FFF}').contains(&c)
}

fn parse_resident(
    field: &str,
    s: &str,
    today: NaiveDate,
) -> Result<(String, NaiveDate, Sex), FieldError> {
    let err = |m: &str| FieldError::new(field, m);
    let n = s.to_ascii_uppercase();
    let b = n.as_bytes();
    if b.len() != 18 {
        return Err(err(
            "a resident identity card number (type 01) has 18 characters",
        ));
    }
    let first17 = &n[..17];
    let Some(expected) = check_char(first17) else {
        return Err(err(
            "the first 17 characters of a type 01 number are digits",
        ));
    };
    if b[17] != expected as u8 {
        return Err(err(
            "the check character (the 18th) does not match the first 17 digits (GB 11643)",
        ));
    }
    if RegionCode::parse(field, &n[..6]).is_err() {
        return Err(err(
            "the first 6 digits are not an administrative division code (GB/T 2260)",
        ));
    }
    let birth = n[6..14]
        .parse::<u32>()
        .ok()
        .and_then(|v| {
            NaiveDate::from_ymd_opt(i32::try_from(v / 10_000).ok()?, (v / 100) % 100, v % 100)
        })
        .filter(|d| d.year() >= FIRST_BIRTH_YEAR)
        .ok_or_else(|| err("digits 7 to 14 are not a birth date YYYYMMDD"))?;
    if birth > today {
        return Err(err("the birth date in the number lies in the future"));
    }
    let sex = if (b[16] - b'0') % 2 == 1 {
        Sex::Male
    } else {
        Sex::Female
    };
    Ok((n, birth, sex))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;

    /// A valid type-01 number: region, birth date `YYYYMMDD`, 3-digit sequence, check character.
    pub(crate) fn resident(region: &str, birth: &str, seq: &str) -> String {
        let first17 = format!("{region}{birth}{seq}");
        format!("{first17}{}", check_char(&first17).unwrap())
    }

    fn today() -> NaiveDate {
        "2026-06-15".parse().unwrap()
    }

    fn parse(s: &str) -> Result<IdDocument, FieldError> {
        IdDocument::parse(
            IdCardType::resident(),
            "id_number",
            &Secret::new(s),
            today(),
        )
    }

    #[test]
    fn check_characters_follow_gb_11643() {
        // The standard's own example: 11010519491231002X.
        assert_eq!(check_char("11010519491231002"), Some('X'));
        // Sum 0 mod 11 → '1', sum 1 → '0' (each member of the map reached once below).
        let mut seen = std::collections::BTreeSet::new();
        for seq in 0..200 {
            let n = resident("220102", "19900101", &format!("{seq:03}"));
            seen.insert(n.chars().last().unwrap());
            assert!(parse(&n).is_ok(), "{n}");
        }
        assert_eq!(seen.len(), 11, "every check character occurs: {seen:?}");
        assert_eq!(check_char("1101051949123100"), None);
        assert_eq!(check_char("1101051949123100A"), None);
    }

    #[test]
    fn a_valid_number_gives_birth_date_and_sex() {
        let doc = parse("11010519491231002X").unwrap();
        assert_eq!(doc.number.expose(), "11010519491231002X");
        // 17th digit 2: even, a woman.
        assert_eq!(
            doc.derived,
            Some(("1949-12-31".parse().unwrap(), Sex::Female))
        );
        let man = parse(&resident("220102", "20080615", "013")).unwrap();
        assert_eq!(man.derived.unwrap().1, Sex::Male);
        // A lower-case x is the same number.
        assert_eq!(
            parse("11010519491231002x").unwrap().number.expose(),
            "11010519491231002X"
        );
        assert_eq!(doc.number.masked(), "110105********002X");
        assert_eq!(format!("{:?}", doc.number), "IdNumber(110105********002X)");
    }

    #[test]
    fn invalid_numbers_are_refused_without_repeating_them() {
        let good = resident("220102", "19900101", "123");
        let last = good.chars().last().unwrap();
        let wrong_check = format!("{}{}", &good[..17], if last == '0' { '1' } else { '0' });
        let cases = [
            (wrong_check, "check character"),
            (good[..17].to_owned(), "18 characters"),
            (format!("{good}1"), "18 characters"),
            (resident("000000", "19900101", "123"), "administrative"),
            (resident("220102", "19900230", "123"), "birth date"),
            (resident("220102", "18991231", "123"), "birth date"),
            (resident("220102", "20260616", "123"), "future"),
            (format!("{}A{}", &good[..10], &good[11..]), "digits"),
        ];
        for (n, why) in cases {
            let e = parse(&n).unwrap_err();
            assert_eq!(e.field, "id_number");
            assert!(e.message.contains(why), "{n}: {}", e.message);
            assert!(!e.message.contains(&n[..10]), "{}", e.message);
        }
        // Born today is a valid (if young) person.
        assert!(parse(&resident("220102", "20260615", "123")).is_ok());
    }

    #[test]
    fn other_document_types_are_checked_for_length_and_characters() {
        let t = |code: &str| IdCardType::parse("id_card_type", code).unwrap();
        let p =
            |code: &str, n: &str| IdDocument::parse(t(code), "id_number", &Secret::new(n), today());
        let passport = p("08", " E12345678 ").unwrap();
        assert_eq!(passport.number.expose(), "E12345678");
        assert_eq!(passport.derived, None);
        assert!(p("17", "A123456(7)").is_ok());
        assert!(p("02", "南字第123456号").is_ok());
        for bad in [
            "E12",
            &"9".repeat(33),
            "E1234 5678",
            "E1234;5678",
            "E123\u{202e}45",
        ] {
            assert!(p("08", bad).is_err(), "{bad:?}");
        }
        for code in ["00", "26", "1", "011", "x"] {
            assert!(IdCardType::parse("id_card_type", code).is_err(), "{code}");
        }
        assert!(t("99").as_str() == "99" && !t("99").is_resident());
        assert!(IdCardType::resident().is_resident());
    }
}

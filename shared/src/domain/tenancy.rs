//! Tenancy (DOMAIN.md §8.1): integrators, customers, projects, users — and the parsed codes they
//! carry. Every constructor parses; a value of these types is valid by construction.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::ids::IntegratorId;

pub use crate::ids::FieldError;

/// `prefixed_id!(Name, "pfx-")`: an id newtype whose values are `pfx-` and lower-case hex (a
/// generated UUID v7) or digits, at most 64 characters, so it never holds the key delimiter.
/// Exported for the concerns' own ids (a caller needs `serde` and `uuid`).
#[macro_export]
macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, ::serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new random id (UUID v7: time-ordered, 74 random bits).
            pub fn generate() -> Self {
                $name(format!("{}{}", $prefix, ::uuid::Uuid::now_v7().simple()))
            }

            pub fn parse(field: &str, s: &str) -> Result<Self, $crate::ids::FieldError> {
                let ok = s.len() <= 64
                    && s.strip_prefix($prefix).is_some_and(|rest| {
                        !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                    });
                if ok {
                    Ok($name(s.to_owned()))
                } else {
                    Err($crate::ids::FieldError::new(field, format!("not a valid id (expected {}…)", $prefix)))
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as ::serde::Deserialize>::deserialize(d)?;
                $name::parse(stringify!($name), &s).map_err(::serde::de::Error::custom)
            }
        }
    };
}

/// The id newtypes of other domain modules (`devices`) are built by the same macro.
pub(crate) use crate::prefixed_id;

prefixed_id!(
    /// A customer (government region, enterprise or project owner) of an integrator.
    CustomerId, "cus-"
);
prefixed_id!(
    /// A construction project.
    ProjectId, "prj-"
);
prefixed_id!(
    /// A user account.
    UserId, "usr-"
);

/// New integrator ids look like the others (`int-…`) and are valid [`IntegratorId`]s.
pub fn generate_integrator_id() -> IntegratorId {
    let s = format!("int-{}", uuid::Uuid::now_v7().simple());
    // Hex and '-' only, 36 chars: always a valid slug.
    IntegratorId::parse(&s).unwrap_or_else(|_| unreachable!("generated ids are valid slugs"))
}

/// The telecom operator behind an integrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    ChinaTelecom,
    ChinaUnicom,
    ChinaMobile,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CustomerKind {
    /// A government supervision department (主管部门) governing a region.
    GovRegion,
    /// A construction enterprise (施工企业), the general contractor of its projects.
    Enterprise,
    /// A project owner (建设单位).
    ProjectOwner,
}

/// Project type (工程类别), which fixes the safety-fee rate (DOMAIN.md §1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProjectType {
    Mining,
    Railway,
    Building,
    UrbanRail,
    WaterHydro,
    Power,
    Smelting,
    MechElecInstall,
    ChemPetro,
    Telecom,
    Municipal,
    PortWaterway,
    Highway,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = TenantStatus)]
pub enum Status {
    Active,
    Suspended,
    /// Left the platform; data kept read-only and exportable.
    Offboarded,
}

/// An administrative division code (GB/T 2260): six digits, province first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RegionCode(String);

/// The province-level prefixes of GB/T 2260.
const PROVINCES: [&str; 34] = [
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41",
    "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71",
    "81", "82",
];

impl RegionCode {
    pub fn parse(field: &str, s: &str) -> Result<Self, FieldError> {
        if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FieldError::new(
                field,
                "a GB/T 2260 region code is 6 digits",
            ));
        }
        if !PROVINCES.contains(&&s[..2]) {
            return Err(FieldError::new(
                field,
                format!("{} is not a province code", &s[..2]),
            ));
        }
        if &s[2..4] == "00" && &s[4..6] != "00" {
            return Err(FieldError::new(
                field,
                "a county code needs its city digits",
            ));
        }
        Ok(RegionCode(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The significant prefix: trailing `00` pairs dropped (220000 → 22, 220100 → 2201).
    pub fn prefix(&self) -> &str {
        let s = self.0.as_str();
        if s.ends_with("0000") {
            &s[..2]
        } else if s.ends_with("00") {
            &s[..4]
        } else {
            s
        }
    }

    /// The two-digit province.
    pub fn province(&self) -> &str {
        &self.0[..2]
    }

    pub fn is_province(&self) -> bool {
        self.0.ends_with("0000")
    }

    /// Whether `other` lies within this region (a region covers itself and its children:
    /// 220000 ⊃ 220100 ⊃ 220102).
    pub fn covers(&self, other: &RegionCode) -> bool {
        other.0.starts_with(self.prefix())
    }
}

impl fmt::Display for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RegionCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RegionCode::parse("region_code", &s).map_err(serde::de::Error::custom)
    }
}

/// The unified social credit code (统一社会信用代码, GB 32100-2015): 18 characters from a
/// 31-character alphabet, the last a check character over the first 17.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Uscc(String);

const USCC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
/// Weight of position i is 3^i mod 31.
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

impl Uscc {
    /// The check character for the first 17 characters, if they are all in the alphabet.
    pub fn check_char(first17: &str) -> Option<char> {
        if first17.len() != 17 {
            return None;
        }
        let mut sum = 0u32;
        for (c, w) in first17.bytes().zip(USCC_WEIGHTS) {
            let v = USCC_ALPHABET.iter().position(|&a| a == c)?;
            sum += v as u32 * w;
        }
        let check = (31 - sum % 31) % 31;
        Some(USCC_ALPHABET[check as usize] as char)
    }

    pub fn parse(field: &str, s: &str) -> Result<Self, FieldError> {
        let s = s.trim().to_ascii_uppercase();
        if s.len() != 18 {
            return Err(FieldError::new(
                field,
                "a unified social credit code has 18 characters",
            ));
        }
        if let Some(bad) = s.bytes().find(|b| !USCC_ALPHABET.contains(b)) {
            return Err(FieldError::new(
                field,
                format!(
                    "character {:?} is not allowed (I, O, Z, S, V never occur)",
                    bad as char
                ),
            ));
        }
        let expected =
            Uscc::check_char(&s[..17]).ok_or_else(|| FieldError::new(field, "malformed"))?;
        if !s.ends_with(expected) {
            return Err(FieldError::new(
                field,
                format!("check character should be {expected}"),
            ));
        }
        Ok(Uscc(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Uscc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Uscc::parse("uscc", &s).map_err(serde::de::Error::custom)
    }
}

/// A login name: 3–64 of a-z 0-9 . _ - (case-folded).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    pub fn parse(field: &str, s: &str) -> Result<Self, FieldError> {
        let s = s.trim().to_ascii_lowercase();
        let ok = (3..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if ok {
            Ok(Username(s))
        } else {
            Err(FieldError::new(
                field,
                "3 to 64 characters of a-z, 0-9, '.', '_', '-'",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name: trimmed, 1–200 characters, single-line, without control, bidirectional or
/// invisible formatting characters ([`super::text::line`]).
pub fn parse_name(field: &str, s: &str) -> Result<String, FieldError> {
    super::text::line(field, s, 200)
}

/// A calendar date `YYYY-MM-DD`.
pub fn parse_date(field: &str, s: &str) -> Result<NaiveDate, FieldError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| FieldError::new(field, "a date is YYYY-MM-DD"))
}

/// Money in fen, `0 ..= 10^15` ([`super::bounds::amount`]).
pub fn parse_fen(field: &str, v: i64) -> Result<i64, FieldError> {
    super::bounds::amount(field, v)
}

pub fn parse_enum<T: for<'de> Deserialize<'de>>(field: &str, s: &str) -> Result<T, FieldError> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| FieldError::new(field, format!("{s:?} is not one of the allowed values")))
}

impl FromStr for RegionCode {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RegionCode::parse("region_code", s)
    }
}

// ---------------------------------------------------------------------------------------------
// Entities, as stored.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Integrator {
    #[schema(value_type = String)]
    pub id: IntegratorId,
    pub name: String,
    pub operator: Operator,
    #[schema(value_type = String, example = "220000")]
    pub province_code: RegionCode,
    pub status: Status,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Customer {
    #[schema(value_type = String)]
    pub id: CustomerId,
    #[schema(value_type = String)]
    pub integrator_id: IntegratorId,
    pub kind: CustomerKind,
    pub name: String,
    #[schema(value_type = String, example = "220100")]
    pub region_code: RegionCode,
    #[schema(value_type = Option<String>)]
    pub uscc: Option<Uscc>,
    pub status: Status,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_changed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_changed_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Project {
    #[schema(value_type = String)]
    pub id: ProjectId,
    #[schema(value_type = String)]
    pub integrator_id: IntegratorId,
    pub name: String,
    #[schema(value_type = String)]
    pub contractor_customer_id: CustomerId,
    #[schema(value_type = Option<String>)]
    pub owner_customer_id: Option<CustomerId>,
    #[schema(value_type = String, example = "220102")]
    pub region_code: RegionCode,
    pub project_type: ProjectType,
    pub contract_value_fen: i64,
    #[schema(value_type = String, format = Date)]
    pub contract_signed_date: NaiveDate,
    #[schema(value_type = Option<String>, format = Date)]
    pub tender_completed_date: Option<NaiveDate>,
    #[schema(value_type = Option<String>, format = Date)]
    pub start_date: Option<NaiveDate>,
    #[schema(value_type = Option<String>, format = Date)]
    pub planned_end_date: Option<NaiveDate>,
    pub created_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_check(first17: &str) -> String {
        format!("{first17}{}", Uscc::check_char(first17).unwrap())
    }

    #[test]
    fn uscc_check_character() {
        // Worked example: for 91220101MA0000001 the weighted sum is
        // 9·1+1·3+2·9+2·27+0·19+1·26+0·16+1·17+M(21)·20+A(10)·29+0·25+0·13+0·8+0·24+0·10+0·30+1·28
        // = 9+3+18+54+0+26+0+17+420+290+28 = 865; 865 mod 31 = 28; 31-28 = 3 → check '3'.
        assert_eq!(Uscc::check_char("91220101MA0000001"), Some('3'));
        assert!(Uscc::parse("uscc", "91220101MA00000013").is_ok());
        let e = Uscc::parse("uscc", "91220101MA00000014").unwrap_err();
        assert_eq!(e.field, "uscc");
        assert!(e.message.contains("should be 3"), "{e}");
        assert!(
            Uscc::parse("uscc", "91220101MA0000001").is_err(),
            "17 chars"
        );
        assert!(
            Uscc::parse("uscc", "91220101IA00000013")
                .unwrap_err()
                .message
                .contains("not allowed")
        );
        // Lower case is accepted and normalised.
        assert_eq!(
            Uscc::parse("uscc", "91220101ma00000013").unwrap().as_str(),
            "91220101MA00000013"
        );
        // Generated check characters round-trip through the parser.
        for s in ["12100000400000000", "91310000775785552"] {
            let full = with_check(s);
            assert!(Uscc::parse("u", &full).is_ok(), "{full}");
        }
    }

    #[test]
    fn region_codes_and_jurisdiction() {
        let jl = RegionCode::parse("r", "220000").unwrap();
        let cc = RegionCode::parse("r", "220100").unwrap();
        let cy = RegionCode::parse("r", "220102").unwrap();
        let hlj = RegionCode::parse("r", "230100").unwrap();
        assert_eq!(
            (jl.prefix(), cc.prefix(), cy.prefix()),
            ("22", "2201", "220102")
        );
        assert!(jl.covers(&cc) && jl.covers(&cy) && cc.covers(&cy) && cy.covers(&cy));
        assert!(!cc.covers(&jl) && !cy.covers(&cc) && !jl.covers(&hlj));
        // 220200 (Jilin City) is not inside 220100 (Changchun).
        assert!(!cc.covers(&RegionCode::parse("r", "220201").unwrap()));
        assert!(jl.is_province() && !cc.is_province());
        for bad in ["22010", "2201000", "22a100", "990000", "220012"] {
            assert!(RegionCode::parse("region_code", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_parse_with_their_prefix_only() {
        let p = ProjectId::generate();
        assert!(p.as_str().starts_with("prj-"));
        assert_eq!(ProjectId::parse("id", p.as_str()).unwrap(), p);
        assert!(ProjectId::parse("id", "cus-0123").is_err());
        assert!(ProjectId::parse("id", "prj-").is_err());
        assert!(ProjectId::parse("id", "prj-ABC").is_err());
        assert!(ProjectId::parse("id", "prj-a#b").is_err());
        let i = generate_integrator_id();
        assert!(i.as_str().starts_with("int-"));
    }

    #[test]
    fn usernames_names_dates_money() {
        assert_eq!(
            Username::parse("u", " CT-Admin ").unwrap().as_str(),
            "ct-admin"
        );
        assert!(Username::parse("u", "ab").is_err());
        assert!(Username::parse("u", "a b c").is_err());
        assert_eq!(parse_name("name", "  吉林建工  ").unwrap(), "吉林建工");
        assert!(parse_name("name", "   ").is_err());
        assert!(parse_date("start_date", "2026-02-30").is_err());
        assert_eq!(
            parse_date("d", "2022-11-21").unwrap().to_string(),
            "2022-11-21"
        );
        assert!(parse_fen("contract_value_fen", -1).is_err());
        assert_eq!(
            parse_fen("contract_value_fen", 1_000_000_000_000_000).unwrap(),
            1_000_000_000_000_000
        );
        assert!(parse_fen("contract_value_fen", 1_000_000_000_000_001).is_err());
        assert!(parse_fen("contract_value_fen", i64::MAX).is_err());
        assert!(parse_name("name", "吉林\u{202E}建工").is_err());
        assert!(parse_name("name", "吉林\0建工").is_err());
        let t: ProjectType = parse_enum("project_type", "urban_rail").unwrap();
        assert_eq!(t, ProjectType::UrbanRail);
        assert!(parse_enum::<ProjectType>("project_type", "castle").is_err());
    }
}

//! Numbers that identify or reach a person — ID, phone, bank card — as they cross the edge.
//!
//! [`Secret`] carries such a number from the request body to the parser: it deserializes from a
//! string only, and neither its `Debug` nor any error it produces shows the value, so a number
//! never reaches a log line or a problem detail. [`Phone`] and [`BankCard`] are parsed numbers;
//! like [`super::IdNumber`] they are printed only as masks.

use std::fmt;

use serde::Deserialize;
use smartsite_shared::ids::FieldError;

use super::person::{mask_number, mask_phone};

/// A request field holding a personal number, still unparsed. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The clear text, for the parser only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Secret, E> {
                Ok(Secret(s.to_owned()))
            }
            // Anything else is refused without echoing it: serde's default message quotes a
            // number it was given ("invalid type: integer `110105…`").
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
                Err(E::custom("expected a string"))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
                Err(E::custom("expected a string"))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom("expected a string"))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(E::custom("expected a string"))
            }
        }
        // `deserialize_any`, so a number reaches `visit_u64` and friends: asked for a string,
        // serde_json would describe the number it found itself.
        d.deserialize_any(V)
    }
}

/// Removes the separators people type inside numbers (spaces and hyphens).
fn compact(s: &str) -> String {
    s.chars().filter(|c| !matches!(c, ' ' | '-')).collect()
}

/// A mainland mobile number (11 digits starting 13–19), optionally written with `+86`/`86`,
/// spaces or hyphens. Workers sign in with it, so landlines are not taken.
#[derive(Clone, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    pub fn parse(field: &str, s: &Secret) -> Result<Phone, FieldError> {
        let c = compact(s.expose().trim());
        let c = c
            .strip_prefix("+86")
            .or_else(|| c.strip_prefix("86").filter(|r| r.len() == 11))
            .unwrap_or(&c);
        let b = c.as_bytes();
        let ok = b.len() == 11
            && b.iter().all(u8::is_ascii_digit)
            && b[0] == b'1'
            && (b'3'..=b'9').contains(&b[1]);
        if ok {
            Ok(Phone(c.to_owned()))
        } else {
            Err(FieldError::new(
                field,
                "expected a mainland mobile number: 11 digits starting 13 to 19",
            ))
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `138****5678`.
    pub fn masked(&self) -> String {
        mask_phone(&self.0)
    }
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Phone({})", self.masked())
    }
}

/// A bank card (payroll card, 工资卡) number: 12 to 19 digits.
#[derive(Clone, PartialEq, Eq)]
pub struct BankCard(String);

impl BankCard {
    pub fn parse(field: &str, s: &Secret) -> Result<BankCard, FieldError> {
        let c = compact(s.expose().trim());
        if (12..=19).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_digit()) {
            Ok(BankCard(c))
        } else {
            Err(FieldError::new(field, "expected 12 to 19 digits"))
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn masked(&self) -> String {
        mask_number(&self.0)
    }
}

impl fmt::Debug for BankCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BankCard({})", self.masked())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::new(s)
    }

    #[test]
    fn phones_are_mainland_mobiles_in_any_common_spelling() {
        for ok in [
            "13812345678",
            "+86 138 1234 5678",
            "86-138-1234-5678",
            "19912345678",
        ] {
            let p = Phone::parse("phone", &secret(ok)).unwrap();
            assert!(
                p.expose().len() == 11 && p.expose().starts_with('1'),
                "{ok}"
            );
        }
        assert_eq!(
            Phone::parse("phone", &secret("+8613812345678"))
                .unwrap()
                .masked(),
            "138****5678"
        );
        for bad in [
            "",
            "1381234567",
            "138123456789",
            "12812345678",
            "0431-88888888",
            "1381234567x",
        ] {
            let e = Phone::parse("phone", &secret(bad)).unwrap_err();
            assert_eq!(e.field, "phone");
            assert!(bad.is_empty() || !e.message.contains(bad), "{bad}");
        }
    }

    #[test]
    fn bank_cards_are_12_to_19_digits() {
        let c = BankCard::parse("bank_card", &secret("6222 0212 3456 7890 123")).unwrap();
        assert_eq!(c.expose(), "6222021234567890123");
        assert_eq!(c.masked(), "622202********0123");
        assert!(BankCard::parse("bank_card", &secret("62220212345")).is_err());
        assert!(BankCard::parse("bank_card", &secret("62220212345678901234")).is_err());
        assert!(BankCard::parse("bank_card", &secret("6222a212345678")).is_err());
    }

    #[test]
    fn secrets_never_print_and_refuse_non_strings_without_echoing() {
        let s: Secret = serde_json::from_str("\"110105194912310021\"").unwrap();
        assert_eq!(s.expose(), "110105194912310021");
        assert!(!format!("{s:?}").contains("1101"));
        let e = serde_json::from_str::<Secret>("110105194912310021")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("110105"), "{e}");
        let p = Phone::parse("phone", &secret("13812345678")).unwrap();
        assert_eq!(format!("{p:?}"), "Phone(138****5678)");
    }
}

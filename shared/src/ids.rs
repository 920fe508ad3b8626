//! Identifiers, parsed at the edge. A value of these types is always well formed, so keys built
//! from them never contain the key delimiter `#`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A parse failure, naming the field it came from so HTTP can answer 422 with that field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} must be 1 to {max} characters of a-z, 0-9 and '-', starting with a letter or digit (got {got:?})"
)]
pub struct IdError {
    pub what: &'static str,
    pub max: usize,
    pub got: String,
}

fn check_slug(what: &'static str, max: usize, s: &str) -> Result<(), IdError> {
    let ok = !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(IdError {
            what,
            max,
            got: s.to_owned(),
        })
    }
}

/// The integrator (集成服务商) that owns a slice of the pooled tables: every partition key starts
/// with `I#{integrator_id}#`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct IntegratorId(String);

impl IntegratorId {
    pub const MAX_LEN: usize = 40;

    pub fn parse(s: &str) -> Result<Self, IdError> {
        check_slug("integrator id", Self::MAX_LEN, s)?;
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IntegratorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for IntegratorId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrator_ids_parse_only_safe_slugs() {
        assert!(IntegratorId::parse("ct-jilin").is_ok());
        assert!(IntegratorId::parse("0abc").is_ok());
        for bad in ["", "-x", "Acme", "a#b", "a b", "a_b", &"x".repeat(41)] {
            assert!(IntegratorId::parse(bad).is_err(), "{bad:?} must be refused");
        }
        let e = IntegratorId::parse("a#b").unwrap_err();
        assert!(e.to_string().contains("integrator id"));
    }

    #[test]
    fn integrator_id_deserialization_parses() {
        let ok: IntegratorId = serde_json::from_str("\"cu-changchun\"").unwrap();
        assert_eq!(ok.as_str(), "cu-changchun");
        assert!(serde_json::from_str::<IntegratorId>("\"a#b\"").is_err());
    }
}

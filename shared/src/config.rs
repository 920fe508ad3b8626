//! Typed configuration, read once at start-up (a cold start in Lambda), never in a handler.

use chrono::NaiveDate;

use crate::store::{StoreError, TableDef};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("table definition: {0}")]
    Table(#[from] StoreError),
}

/// What a Lambda function of the AWS edition needs to reach its table.
#[derive(Debug, Clone)]
pub struct AwsTableConfig {
    /// Physical table name (the SAM template passes `!Ref MainTable`).
    pub table_name: String,
    pub def: &'static TableDef,
}

impl AwsTableConfig {
    pub const MAIN_TABLE_ENV: &'static str = "SMARTSITE_TABLE_MAIN";

    pub fn main_from_env() -> Result<Self, ConfigError> {
        let table_name = std::env::var(Self::MAIN_TABLE_ENV)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or(ConfigError::Missing(Self::MAIN_TABLE_ENV))?;
        Ok(AwsTableConfig {
            table_name,
            def: TableDef::main()?,
        })
    }
}

/// The Cognito user pool of the AWS edition, where the accounts of users created through the API
/// live (the SAM template passes `!Ref UserPool`).
#[derive(Debug, Clone)]
pub struct UserPoolConfig {
    pub user_pool_id: String,
}

impl UserPoolConfig {
    pub const USER_POOL_ID_ENV: &'static str = "SMARTSITE_USER_POOL_ID";

    pub fn from_env() -> Result<Self, ConfigError> {
        let user_pool_id = std::env::var(Self::USER_POOL_ID_ENV)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or(ConfigError::Missing(Self::USER_POOL_ID_ENV))?;
        Ok(UserPoolConfig { user_pool_id })
    }
}

/// One version of a versioned rule set (fee rules, gate rules …): a name, and the day from which
/// it applies.
pub trait Versioned {
    fn version(&self) -> &str;
    fn effective_from(&self) -> NaiveDate;
}

/// Orders versions by `effective_from`, refusing an empty set, a repeated name and two versions
/// taking effect on the same day (which of them would apply?).
pub fn order_versions<T: Versioned>(mut versions: Vec<T>) -> Result<Vec<T>, String> {
    if versions.is_empty() {
        return Err("no versions".into());
    }
    versions.sort_by_key(T::effective_from);
    let mut names = std::collections::BTreeSet::new();
    for v in &versions {
        if !names.insert(v.version()) {
            return Err(format!("version {} is repeated", v.version()));
        }
    }
    for w in versions.windows(2) {
        if w[0].effective_from() == w[1].effective_from() {
            return Err(format!(
                "versions {} and {} both take effect on {}",
                w[0].version(),
                w[1].version(),
                w[0].effective_from()
            ));
        }
    }
    Ok(versions)
}

/// The version in force on `day`: the latest with `effective_from ≤ day`.
pub fn in_force<T: Versioned>(versions: &[T], day: NaiveDate) -> Option<&T> {
    versions.iter().rev().find(|v| v.effective_from() <= day)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct V(&'static str, &'static str);

    impl Versioned for V {
        fn version(&self) -> &str {
            self.0
        }
        fn effective_from(&self) -> NaiveDate {
            self.1.parse().unwrap_or(NaiveDate::MIN)
        }
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap_or(NaiveDate::MIN)
    }

    #[test]
    fn versions_are_ordered_and_the_latest_begun_is_in_force() {
        let Ok(vs) = order_versions(vec![V("b", "2023-09-01"), V("a", "2019-03-01")]) else {
            panic!("two distinct versions order")
        };
        assert_eq!(vs.iter().map(|v| v.0).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(in_force(&vs, d("2019-02-28")).map(|v| v.0), None);
        assert_eq!(in_force(&vs, d("2019-03-01")).map(|v| v.0), Some("a"));
        assert_eq!(in_force(&vs, d("2023-08-31")).map(|v| v.0), Some("a"));
        assert_eq!(in_force(&vs, d("2023-09-01")).map(|v| v.0), Some("b"));
        assert!(order_versions::<V>(vec![]).is_err());
        assert!(order_versions(vec![V("a", "2019-03-01"), V("a", "2020-01-01")]).is_err());
        assert!(order_versions(vec![V("a", "2019-03-01"), V("b", "2019-03-01")]).is_err());
    }
}

//! Typed configuration, read once at start-up (a cold start in Lambda), never in a handler.

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

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

//! The `tenants` Lambda (AWS edition): wires configuration and clients once per cold start, then
//! serves the concern's router under lambda_http. Tokens come from Cognito and are verified by
//! the HTTP API's JWT authorizer; the handlers read the verified claims from the request context.
//! Users created through the API get their Cognito accounts from `CognitoAccounts`.

use std::sync::Arc;

use smartsite_shared::accounts::CognitoAccounts;
use smartsite_shared::auth::Authenticator;
use smartsite_shared::config::{AwsTableConfig, UserPoolConfig};
use smartsite_shared::directory::Directory;
use smartsite_shared::store::{Store, dynamo::DynamoStore};
use smartsite_shared::telemetry::{self, LogFormat};
use smartsite_tenants::{AppState, app};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init(LogFormat::from_env());
    let table = AwsTableConfig::main_from_env()?;
    let pool = UserPoolConfig::from_env()?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store: Arc<dyn Store> = Arc::new(DynamoStore::from_sdk_config(&aws, &table));
    let directory = Directory::new(Arc::clone(&store));
    let accounts = Arc::new(CognitoAccounts::from_sdk_config(&aws, &pool, directory));
    let state = AppState::new(store, Authenticator::ApiGateway, None, accounts);
    lambda_http::run(app(state)).await
}

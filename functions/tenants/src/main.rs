//! The `tenants` Lambda (AWS edition): wires configuration and clients once per cold start, then
//! serves the concern's router under lambda_http. Tokens come from Cognito and are verified by
//! the HTTP API's JWT authorizer; the handlers read the verified claims from the request context.

use std::sync::Arc;

use smartsite_shared::auth::Authenticator;
use smartsite_shared::config::AwsTableConfig;
use smartsite_shared::store::dynamo::DynamoStore;
use smartsite_shared::telemetry::{self, LogFormat};
use smartsite_tenants::{AppState, app};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init(LogFormat::from_env());
    let cfg = AwsTableConfig::main_from_env()?;
    let store = DynamoStore::from_config(&cfg).await;
    let state = AppState::new(Arc::new(store), Authenticator::ApiGateway, None);
    lambda_http::run(app(state)).await
}

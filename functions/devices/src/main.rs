//! The `devices` Lambda (AWS edition): wires configuration and clients once per cold start, then
//! serves the concern's router under lambda_http. API Gateway's JWT authorizer verifies the
//! Cognito tokens; the handlers read the verified claims from the request context.

use std::sync::Arc;

use smartsite_devices::{AppState, app};
use smartsite_shared::auth::Authenticator;
use smartsite_shared::config::AwsTableConfig;
use smartsite_shared::store::{Store, dynamo::DynamoStore};
use smartsite_shared::telemetry::{self, LogFormat};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init(LogFormat::from_env());
    let table = AwsTableConfig::main_from_env()?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store: Arc<dyn Store> = Arc::new(DynamoStore::from_sdk_config(&aws, &table));
    lambda_http::run(app(AppState::new(store, Authenticator::ApiGateway))).await
}

//! The `devices` Lambda (AWS edition): wires configuration and clients once per cold start, then
//! serves the concern's router under lambda_http. API Gateway's JWT authorizer verifies the
//! Cognito tokens; the handlers read the verified claims from the request context.

use std::sync::Arc;

use smartsite_devices::{AppState, app};
use smartsite_shared::auth::Authenticator;
use smartsite_shared::config::AwsTableConfig;
use smartsite_shared::iot::aws::{AwsIotRegistry, IotRegistryConfig};
use smartsite_shared::store::{Store, dynamo::DynamoStore};
use smartsite_shared::telemetry::{self, LogFormat};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init(LogFormat::from_env());
    let table = AwsTableConfig::main_from_env()?;
    let iot = IotRegistryConfig::from_env()?;
    let endpoint = std::env::var("SMARTSITE_IOT_ENDPOINT")
        .map_err(|_| "SMARTSITE_IOT_ENDPOINT is not set (the account's IoT ATS endpoint)")?;
    if endpoint.is_empty() {
        tracing::warn!("SMARTSITE_IOT_ENDPOINT is empty: provisioning answers no mqtt_endpoint");
    }
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store: Arc<dyn Store> = Arc::new(DynamoStore::from_sdk_config(&aws, &table));
    let registry = Arc::new(AwsIotRegistry::from_sdk_config(&aws, &iot));
    let state = AppState::new(store, Authenticator::ApiGateway, registry, endpoint);
    lambda_http::run(app(state)).await
}

//! The `alarms` Lambda (AWS edition): the concern's HTTP API under lambda_http.

use std::sync::Arc;

use smartsite_alarms::service::Alarms;
use smartsite_alarms::{AppState, app};
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
    let alarms = Alarms::new(store.clone());
    lambda_http::run(app(AppState::new(store, Authenticator::ApiGateway, alarms))).await
}

//! The `tenants` Lambda (AWS edition): wires configuration and clients once per cold start, then
//! serves the concern's router under lambda_http.

use std::sync::Arc;

use smartsite_shared::config::AwsTableConfig;
use smartsite_shared::store::dynamo::DynamoStore;
use smartsite_shared::telemetry::{self, LogFormat};
use smartsite_tenants::{AppState, app};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init(LogFormat::from_env());
    let cfg = AwsTableConfig::main_from_env()?;
    let store = DynamoStore::from_config(&cfg).await;
    lambda_http::run(app(AppState::new(Arc::new(store)))).await
}

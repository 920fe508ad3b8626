//! The `workforce` Lambda (AWS edition): the concern's HTTP API under lambda_http, personal
//! numbers sealed under data keys from AWS KMS.

use std::sync::Arc;

use smartsite_shared::auth::Authenticator;
use smartsite_shared::config::AwsTableConfig;
use smartsite_shared::store::{Store, dynamo::DynamoStore};
use smartsite_shared::telemetry::{self, LogFormat};
use smartsite_workforce::service::Workforce;
use smartsite_workforce::service::vault::KmsKeyVault;
use smartsite_workforce::{AppState, app};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init(LogFormat::from_env());
    let table = AwsTableConfig::main_from_env()?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store: Arc<dyn Store> = Arc::new(DynamoStore::from_sdk_config(&aws, &table));
    let vault = Arc::new(KmsKeyVault::from_env(&aws)?);
    let workforce = Workforce::with_default_rules(store.clone(), vault)?;
    lambda_http::run(app(AppState::new(
        store,
        Authenticator::ApiGateway,
        workforce,
    )))
    .await
}
